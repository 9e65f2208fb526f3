// Signals through signalfd, read on the event loop, with who sent them.
//
// BlockSignals must run in main before any thread starts, so that every thread inherits the
// mask and the signals are only ever seen through the signalfd. Not thread-safe: io thread only.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tide/status.h"

namespace tide {

struct SignalEvent {
  int signo = 0;
  pid_t pid = 0;    // the sender
  uid_t uid = 0;
  bool queued = false;  // sent with sigqueue(), carrying `value`
  int value = 0;
};

// "alice (uid 1000), pid 4242: kill -USR1 17"; the command line from /proc when readable.
std::string DescribeSender(pid_t pid, uid_t uid);

// Whether the signal mask `field` ("SigBlk", "SigCgt") of a /proc/PID/status text holds `signo`;
// nullopt when the text has no such field. Pure.
std::optional<bool> StatusMaskHolds(const std::string& status, const std::string& field, int signo);
// Whether process `pid` (its main thread) blocks `signo`, as tided blocks the signals it reads
// through its signalfd; nullopt when /proc/PID/status cannot be read.
std::optional<bool> ProcessBlocksSignal(pid_t pid, int signo);

class SignalWatcher {
 public:
  using Handler = std::function<void(const SignalEvent&)>;

  static Status BlockSignals(const std::vector<int>& signals);

  SignalWatcher(boost::asio::io_context& io, std::vector<int> signals, Handler handler);
  ~SignalWatcher();
  Status Start();

 private:
  void Read();

  std::vector<int> signals_;
  Handler handler_;
  boost::asio::posix::stream_descriptor fd_;
  char buf_[128 * 8];
};

}  // namespace tide
