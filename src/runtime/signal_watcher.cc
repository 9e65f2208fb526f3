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

std::optional<bool> StatusMaskHolds(const std::string& status, const std::string& field, int signo) {
  const std::string key = field + ":";
  size_t at = status.compare(0, key.size(), key) == 0 ? 0 : status.find("\n" + key);
  if (at == std::string::npos || signo < 1) return std::nullopt;
  at += (at == 0 ? 0 : 1) + key.size();
  while (at < status.size() && (status[at] == ' ' || status[at] == '\t')) ++at;
  const size_t end = status.find_first_not_of("0123456789abcdefABCDEF", at);
  const std::string hex = status.substr(at, end == std::string::npos ? std::string::npos : end - at);
  if (hex.empty()) return std::nullopt;
  // The mask is hex, signal n its bit n-1, the lowest bits last.
  const size_t digit = static_cast<size_t>(signo - 1) / 4;
  if (digit >= hex.size()) return false;
  const int value = std::stoi(hex.substr(hex.size() - 1 - digit, 1), nullptr, 16);
  return ((value >> ((signo - 1) % 4)) & 1) != 0;
}

std::optional<bool> ProcessBlocksSignal(pid_t pid, int signo) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return std::nullopt;
  std::stringstream ss;
  ss << in.rdbuf();
  return StatusMaskHolds(ss.str(), "SigBlk", signo);
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
