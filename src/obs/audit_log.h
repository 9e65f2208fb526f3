// The audit log: JSON Lines, one event a line, appended and flushed with fdatasync as it happens.
//
// Each line: {"seq":N,"ts":"2026-11-21T14:02:11.123Z","event":...,"plan":...,"phase":...,
// "actor":..., <details>,"prev":"<hash of the line before>","hash":"<SHA-256 of this line up to
// and including prev>"}. The hash chain makes an edited, inserted or deleted line detectable;
// seq and the chain continue across restarts (read from the file's last line) and across a
// reopened (rotated) file. Thread-safe.
#pragma once

#include <mutex>
#include <string>
#include <vector>

#include "tide/ports.h"
#include "util/audit_chain.h"

namespace tide {

class AuditLog : public AuditSink {
 public:
  explicit AuditLog(std::string path) : path_(std::move(path)) {}
  ~AuditLog() override;

  // Opens (or reopens, after logrotate moved the file) the log for appending.
  Status Open();
  Status Write(const AuditEvent& event) override;
  Status Check() override;

 private:
  Status OpenLocked();   // REQUIRES: mu_ held
  Status CheckLocked();  // REQUIRES: mu_ held

  std::string path_;
  std::mutex mu_;
  int fd_ = -1;             // GUARDED_BY(mu_)
  int64_t seq_ = 0;         // GUARDED_BY(mu_)
  std::string last_hash_;   // GUARDED_BY(mu_)
};

// Now as RFC 3339 UTC with milliseconds.
std::string NowRfc3339();

}  // namespace tide
