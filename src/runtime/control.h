// Operators' requests that arrive by signal: a file in <spool>/control/ says what to do, and the
// real-time signal ControlSignal(), sent with sigqueue(), tells tided to read it. tided writes
// its pid to <spool>/tided.pid so that tidectl can find it.
#pragma once

#include <csignal>
#include <string>
#include <vector>

#include "tide/status.h"

namespace tide {

// "Read the control folder": a real-time signal, because those are queued, one per send. A
// standard signal is not: a SIGUSR1 already pending absorbs the next, so a `kill -USR1` (pause
// every plan) and a request arriving together would lose one of the two. tided also takes the
// form older tidectl sends, SIGUSR1 queued with the value kControlSignalValue.
inline int ControlSignal() { return SIGRTMIN + 1; }
constexpr int kControlSignalValue = 1;

struct ControlRequest {
  std::string action;  // "pause", "resume", "abort", "retry", "revert", "finalize" or "set"
  std::string plan;    // "*": every plan
  std::string phase;   // "" or expand, backfill, gate, contract
  std::string settings;  // set: "max_rows_per_second=5000 batch_size=default"
  // pause, resume, abort, retry: only this database of a plan on a database group; "": all
  std::string database;
  std::string file;    // where it came from
  std::string owner;   // the file's owner, "alice (uid 1000)"
};

// Parses a request file's text. Pure.
Result<ControlRequest> ParseControlRequest(const std::string& text);
// The text tidectl writes for a request.
std::string FormatControlRequest(const ControlRequest& r);

// Reads every request in `dir` (oldest name first) and removes the files; a request that does
// not parse is reported in `errors` and removed too.
std::vector<ControlRequest> TakeControlRequests(const std::string& dir,
                                                std::vector<std::string>* errors);

// The operator's throttle file, <spool>/control/throttle (as gh-ost's throttle flag file):
// while it is there, backfills wait (reason "throttle_file") and go on within a second of its
// removal. Empty, it holds every plan; else the plans it names, one per line ("*": every plan).
// Pure: the file's text in, the answer out.
bool ThrottleFileHolds(const std::string& text, const std::string& plan);
// Reads the file: whether it holds `plan` now.
bool ThrottledByFile(const std::string& path, const std::string& plan);

}  // namespace tide
