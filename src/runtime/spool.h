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
};

class Spool : public SpoolPort {
 public:
  explicit Spool(std::string dir) : dir_(std::move(dir)) {}

  // Creates the folders that are missing.
  Status Prepare();
  // Plan files waiting in incoming/, sorted by name.
  std::vector<std::string> ListIncoming() const;
  Result<SpoolFile> Read(const std::string& name) const;
  std::string incoming_dir() const { return dir_ + "/incoming"; }

  Status Accept(const std::string& name) override;
  Status Finish(const std::string& name, bool success, const std::string& error) override;
  Status Reject(const std::string& name, const std::string& error) override;

 private:
  Status Move(const std::string& from_dir, const std::string& name, const std::string& to_dir,
              const std::string& error);

  std::string dir_;
};

// True for names tide picks up: not a dotfile, ending in .yaml or .yml.
bool IsPlanFileName(const std::string& name);

}  // namespace tide
