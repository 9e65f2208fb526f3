// Watches incoming/ with inotify and hands each plan file to a callback, within a second of it
// landing. A rescan every few seconds catches anything inotify could not report (an overflowed
// queue, a file that was still being written). Runs on the io_context's thread.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <array>
#include <functional>

#include "runtime/spool.h"

namespace tide {

class SpoolWatcher {
 public:
  using Handler = std::function<void(SpoolFile)>;
  // REQUIRES: `spool` outlives the watcher.
  SpoolWatcher(boost::asio::io_context& io, Spool* spool, Handler handler);
  ~SpoolWatcher();

  Status Start();
  void Stop();

 private:
  void Scan();
  void ReadEvents();
  void ScheduleRescan();

  Spool* spool_;
  Handler handler_;
  boost::asio::posix::stream_descriptor inotify_;
  boost::asio::steady_timer rescan_;
  std::array<char, 4096> buf_;
  bool stopped_ = false;
};

}  // namespace tide
