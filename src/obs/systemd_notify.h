// The systemd notify protocol (sd_notify): READY, STATUS, WATCHDOG, STOPPING. Without
// NOTIFY_SOCKET (not started by systemd) every call does nothing.
#pragma once

#include <chrono>
#include <string>

namespace tide {

class SystemdNotifier {
 public:
  void Ready(const std::string& status);
  void Status(const std::string& status);
  void Stopping();
  void Watchdog();
  // The interval at which to send WATCHDOG=1 (half of WatchdogSec), or zero when the watchdog
  // is off.
  std::chrono::milliseconds WatchdogInterval() const;
};

}  // namespace tide
