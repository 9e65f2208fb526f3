// The spool directory: where operators drop plans, and where tide files them when it is done.
//
//   incoming/  plans to run (dotfiles and names not ending in .yaml/.yml are ignored, so
//              `cp p.yaml incoming/.p.tmp && mv incoming/.p.tmp incoming/p.yaml` is atomic)
//   active/    plans tide accepted and is running
//   done/, failed/, rejected/   finished plans; failed and rejected ones have <file>.error beside
//
// All moves are rename(2) within one filesystem. Thread-safe: the methods touch only the
// filesystem.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <set>
#include <string>
#include <vector>

#include "tide/status.h"

namespace tide {

struct SpoolFile {
  std::string name;   // file name inside incoming/
  std::string text;   // contents, at most kMaxPlanBytes + 1 bytes
  std::string owner;  // the owning user's name (or uid when unknown)
};

// What the orchestrator does with spool files. Abstract so that it can be faked in tests.
class SpoolPort {
 public:
  virtual ~SpoolPort() = default;
  virtual Status Accept(const std::string& name) = 0;  // incoming -> active
  // active -> done or failed; a failed plan gets <file>.error with `error`.
  virtual Status Finish(const std::string& name, bool success, const std::string& error) = 0;
  // incoming -> rejected, with <file>.error.
  virtual Status Reject(const std::string& name, const std::string& error) = 0;
  // Whether `name` is in active/ (accepted, not finished).
  virtual bool IsActive(const std::string& /*name*/) const { return false; }
};

class Spool : public SpoolPort {
 public:
  // `allowed_uids`: the owners whose files are taken; empty takes any owner.
  explicit Spool(std::string dir, std::set<uid_t> allowed_uids = {})
      : dir_(std::move(dir)), allowed_uids_(std::move(allowed_uids)) {}

  // Creates the folders that are missing, then refuses a spool that every user can write to
  // or whose folders are links.
  Status Prepare();
  // Plan files waiting in incoming/, sorted by name.
  std::vector<std::string> ListIncoming() const;
  // The file's text and owner. Invalid (and so rejected, never followed or read) for a link, a
  // fifo or other non-regular file, a file with several hard links, or an owner not allowed.
  Result<SpoolFile> Read(const std::string& name) const;
  std::string incoming_dir() const { return dir_ + "/incoming"; }

  Status Accept(const std::string& name) override;
  Status Finish(const std::string& name, bool success, const std::string& error) override;
  Status Reject(const std::string& name, const std::string& error) override;
  bool IsActive(const std::string& name) const override;

 private:
  Status Move(const std::string& from_dir, const std::string& name, const std::string& to_dir,
              const std::string& error);

  // Why the file at `path` (lstat'ed into `st`) is refused: a link, not a regular file, more
  // than one hard link, or an owner not allowed to submit. Ok when none of these.
  Status CheckSubmission(const std::string& path, const struct stat& st) const;
  Status CheckPermissions() const;

  std::string dir_;
  std::set<uid_t> allowed_uids_;
};

// True for names tide picks up: not a dotfile, ending in .yaml or .yml.
bool IsPlanFileName(const std::string& name);

}  // namespace tide
