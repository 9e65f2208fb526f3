#include "runtime/spool_watcher.h"

#include <spdlog/spdlog.h>
#include <sys/inotify.h>

#include <cerrno>
#include <cstring>

namespace tide {

namespace asio = boost::asio;

SpoolWatcher::SpoolWatcher(asio::io_context& io, Spool* spool, Handler handler)
    : spool_(spool), handler_(std::move(handler)), inotify_(io), rescan_(io) {}

SpoolWatcher::~SpoolWatcher() { Stop(); }

Status SpoolWatcher::Start() {
  int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) return Status::Io(std::string("inotify_init1: ") + std::strerror(errno));
  if (::inotify_add_watch(fd, spool_->incoming_dir().c_str(), IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    ::close(fd);
    return Status::Io("cannot watch " + spool_->incoming_dir() + ": " + std::strerror(errno));
  }
  inotify_.assign(fd);
  Scan();
  ReadEvents();
  ScheduleRescan();
  return Status::Ok();
}

void SpoolWatcher::Stop() {
  stopped_ = true;
  boost::system::error_code ec;
  rescan_.cancel();
  if (inotify_.is_open()) inotify_.close(ec);
}

void SpoolWatcher::Scan() {
  if (stopped_) return;
  for (const auto& name : spool_->ListIncoming()) {
    auto file = spool_->Read(name);
    if (file.status().code() == Status::Code::kInvalid) {
      // Not a regular file (a fifo, a link): refuse it rather than report it every rescan.
      Status s = spool_->Reject(name, file.status().message());
      spdlog::warn("spool: rejected {}: {}", name, file.status().message());
      if (!s.ok()) spdlog::error("spool: {}", s.ToString());
      continue;
    }
    if (!file.ok()) {
      spdlog::warn("spool: {}", file.status().ToString());
      continue;
    }
    handler_(std::move(file).value());
  }
}

void SpoolWatcher::ReadEvents() {
  inotify_.async_read_some(asio::buffer(buf_), [this](const boost::system::error_code& ec, size_t) {
    if (ec == asio::error::operation_aborted || stopped_) return;
    if (ec) {
      spdlog::warn("spool: inotify: {}; relying on the rescan", ec.message());
      return;
    }
    Scan();
    ReadEvents();
  });
}

void SpoolWatcher::ScheduleRescan() {
  rescan_.expires_after(std::chrono::seconds(3));
  rescan_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    Scan();
    ScheduleRescan();
  });
}

}  // namespace tide
