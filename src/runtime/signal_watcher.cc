#include "runtime/signal_watcher.h"

#include <pwd.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace tide {

namespace asio = boost::asio;

namespace {
sigset_t MaskOf(const std::vector<int>& signals) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  return set;
}
}  // namespace

std::string DescribeSender(pid_t pid, uid_t uid) {
  struct passwd* pw = ::getpwuid(uid);
  std::string who = (pw ? std::string(pw->pw_name) : "unknown") + " (uid " + std::to_string(uid) +
                    "), pid " + std::to_string(pid);
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string cmd = ss.str();
  while (!cmd.empty() && cmd.back() == '\0') cmd.pop_back();
  for (char& c : cmd) {
    if (c == '\0') c = ' ';
  }
  if (cmd.size() > 200) cmd = cmd.substr(0, 200) + "...";
  if (!cmd.empty()) who += ": " + cmd;
  return who;
}

Status SignalWatcher::BlockSignals(const std::vector<int>& signals) {
  sigset_t set = MaskOf(signals);
  if (int rc = pthread_sigmask(SIG_BLOCK, &set, nullptr); rc != 0) {
    return Status::Io(std::string("pthread_sigmask: ") + std::strerror(rc));
  }
  return Status::Ok();
}

SignalWatcher::SignalWatcher(asio::io_context& io, std::vector<int> signals, Handler handler)
    : signals_(std::move(signals)), handler_(std::move(handler)), fd_(io) {}

SignalWatcher::~SignalWatcher() {
  boost::system::error_code ec;
  if (fd_.is_open()) fd_.close(ec);
}

Status SignalWatcher::Start() {
  sigset_t set = MaskOf(signals_);
  int fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (fd < 0) return Status::Io(std::string("signalfd: ") + std::strerror(errno));
  fd_.assign(fd);
  Read();
  return Status::Ok();
}

void SignalWatcher::Read() {
  fd_.async_read_some(asio::buffer(buf_), [this](const boost::system::error_code& ec, size_t n) {
    if (ec == asio::error::operation_aborted) return;
    for (size_t off = 0; !ec && off + sizeof(signalfd_siginfo) <= n; off += sizeof(signalfd_siginfo)) {
      signalfd_siginfo info;
      std::memcpy(&info, buf_ + off, sizeof info);
      SignalEvent e;
      e.signo = static_cast<int>(info.ssi_signo);
      e.pid = static_cast<pid_t>(info.ssi_pid);
      e.uid = static_cast<uid_t>(info.ssi_uid);
      e.queued = info.ssi_code == SI_QUEUE;
      e.value = info.ssi_int;
      handler_(e);
    }
    Read();
  });
}

}  // namespace tide
