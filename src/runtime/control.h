// Operators' requests that arrive by signal: a file in <spool>/control/ says what to do, and a
// SIGUSR1 sent with sigqueue() and the value kControlSignalValue tells tided to read it. tided
// writes its pid to <spool>/tided.pid so that tidectl can find it.
#pragma once

#include <string>
#include <vector>

#include "tide/status.h"

namespace tide {

constexpr int kControlSignalValue = 1;

struct ControlRequest {
  std::string action;  // "pause", "resume" or "abort"
  std::string plan;    // "*": every plan
  std::string phase;   // "" or expand, backfill, gate, contract
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

}  // namespace tide
