// The audit log: JSON Lines, one event a line, appended and flushed with fdatasync as it happens.
//
// Each line: {"seq":N,"ts":"2026-11-21T14:02:11.123Z","event":...,"plan":...,"phase":...,
// "actor":..., <details>,"prev":"<hash of the line before>","hash":"<SHA-256 of this line up to
// and including prev>"}. The hash chain makes an edited, inserted or deleted line detectable;
// seq and the chain continue across restarts (read from the file's last line) and across a
// reopened (rotated) file. Thread-safe.
#pragma once

#include <unistd.h>

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tide/ports.h"
#include "util/audit_chain.h"

namespace tide {

class AuditLog : public AuditSink {
 public:
  // Flushes the open file to disk: fdatasync, or a stand-in that fails, for tests.
  using SyncFunction = std::function<int(int fd)>;

  explicit AuditLog(std::string path, SyncFunction sync = ::fdatasync)
      : path_(std::move(path)), sync_(std::move(sync)) {}
  ~AuditLog() override;

  // Opens (or reopens, after logrotate moved the file) the log for appending, the chain going
  // on from the file's last line. Refused, with the file and the line, when that line is not a
  // whole audit line: the chain is never restarted at seq 1 over an existing log.
  Status Open();
  // Appends the event's line and syncs it. A failed sync is reported, but the line is in the
  // file, so seq and the chain move past it: the next line never repeats its seq nor skips it.
  // Until a sync succeeds again, Write and Check fail without writing; an event written again
  // after that appears twice, under two seqs, the second copy synced.
  Status Write(const AuditEvent& event) override;
  Status Check() override;

 private:
  Status OpenLocked();   // REQUIRES: mu_ held
  Status CheckLocked();  // REQUIRES: mu_ held

  std::string path_;
  SyncFunction sync_;
  std::mutex mu_;
  int fd_ = -1;             // GUARDED_BY(mu_)
  int64_t seq_ = 0;         // GUARDED_BY(mu_)
  std::string last_hash_;   // GUARDED_BY(mu_)
  bool unsynced_ = false;   // GUARDED_BY(mu_): the open file's last sync failed
};

// Now as RFC 3339 UTC with milliseconds.
std::string NowRfc3339();

// How the log open at `fd` ends, to continue its chain: the last line's seq and hash, or nullopt
// when the file holds no line. The last line is read backwards from the end in growing blocks,
// however long it is. A last line that is not a whole audit line (no newline after it, cut
// short, or not tide's) is an error naming `path`, the line's number and its beginning.
Result<std::optional<AuditLink>> ReadAuditTail(int fd, const std::string& path);

}  // namespace tide
