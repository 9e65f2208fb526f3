// YAML text -> Plan. Pure: no filesystem, database or clock.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "tide/config.h"
#include "tide/plan.h"

namespace tide {

// Plans larger than this are refused before they are parsed.
constexpr size_t kMaxPlanBytes = 1 << 20;

struct PlanParseResult {
  Plan plan;                        // meaningful only when errors is empty
  std::vector<Diagnostic> errors;  // every problem found, in file order where possible
  bool ok() const { return errors.empty(); }
};

// Parses and validates a plan file's text. `file` is used only in diagnostics. The checks that
// need no outside knowledge are made here: keys, types, names, durations, the rules between
// phases (contract needs gates; null_count gates cover every backfilled column).
PlanParseResult ParsePlan(const std::string& text, const std::string& file);

// The start of the message of a diagnostic that is tide's bug, not the file's (an exception
// the parser did not expect); the fuzzer treats it as a crash.
constexpr const char* kInternalError = "internal error while reading the file";
Diagnostic InternalError(const std::string& file, const std::string& what);

// The checks that need the daemon's config: the plan's database must be a database or a
// database group it knows; `rollout` only goes with a group.
std::vector<Diagnostic> CheckPlanAgainstDatabases(const Plan& plan, const std::string& file,
                                                  const std::set<std::string>& databases,
                                                  const std::set<std::string>& groups = {});
std::vector<Diagnostic> CheckPlanAgainstConfig(const Plan& plan, const std::string& file,
                                               const Config& config);

// Splits "schema.table" on the dot. Returns false and sets *error when the name is empty, has
// more than one dot, is longer than 63 bytes a part, or holds a quote, semicolon or control
// character.
bool ParseQualifiedName(const std::string& text, QualifiedName* out, std::string* error);
bool CheckIdentifier(const std::string& text, std::string* error);

// [a-z0-9_]{1,63}
bool IsValidPlanName(const std::string& name);

}  // namespace tide
