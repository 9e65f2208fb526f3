// The audit log: JSON Lines, one event a line, appended and flushed with fdatasync as it happens.
//
// Each line: {"seq":N,"ts":"2026-11-21T14:02:11.123Z","event":...,"plan":...,"phase":...,
// "actor":..., <details>}. seq continues across restarts (read from the file's last line).
// Thread-safe.
#pragma once

#include <mutex>
#include <string>

#include "tide/ports.h"

namespace tide {

class AuditLog : public AuditSink {
 public:
  explicit AuditLog(std::string path) : path_(std::move(path)) {}
  ~AuditLog() override;

  Status Open();
  Status Write(const AuditEvent& event) override;

 private:
  std::string path_;
  std::mutex mu_;
  int fd_ = -1;       // GUARDED_BY(mu_)
  int64_t seq_ = 0;   // GUARDED_BY(mu_)
};

// The line for an event (without the newline). Pure, for tests and tools.
std::string FormatAuditLine(int64_t seq, const std::string& ts, const AuditEvent& event);

// Now as RFC 3339 UTC with milliseconds.
std::string NowRfc3339();

}  // namespace tide
