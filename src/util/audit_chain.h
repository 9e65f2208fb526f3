// The audit log's line format and its SHA-256 hash chain. Pure but for the hash.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tide/ports.h"

namespace tide {

// The line for an event (without the newline), chained to `prev`. Pure, for tests and tools.
std::string FormatAuditLine(int64_t seq, const std::string& ts, const AuditEvent& event,
                            const std::string& prev);

// Checks a log's lines in order: each line's hash, and that each links to the one before
// (`prev` is the hash the first line must link to; empty accepts any). Returns the 1-based
// number of the first broken line and why, or 0 when the chain holds; *last_hash gets the last
// line's hash (to verify the next, rotated, file).
struct ChainCheck {
  size_t broken_line = 0;
  std::string reason;
  std::string last_hash;
  size_t lines = 0;
};
// The hash a line ends with, or "" when it has none.
std::string AuditLineHash(const std::string& line);

// What the next line links to: the seq and hash of a line already written.
struct AuditLink {
  int64_t seq = 0;
  std::string hash;
};
// The seq and hash of a whole audit line (without its newline): it must begin with `{"seq":N,`
// (N >= 1) and end with its hash, as FormatAuditLine writes it. Anything else (a line cut short,
// a line tide did not write) is an error saying what is missing. Pure.
Result<AuditLink> ParseAuditLink(const std::string& line);

ChainCheck VerifyAuditChain(const std::vector<std::string>& lines, const std::string& prev);

}  // namespace tide
