// Lint of raw `sql:` steps: the statements that lock up production or rewrite a table, as
// squawk and strong_migrations know them, each with the safe way to write it. Pure.
#pragma once

#include <string>
#include <vector>

#include "tide/plan.h"

namespace tide {

struct LintFinding {
  std::string rule;   // e.g. "require-concurrent-index-creation"
  std::string phase;  // "expand" or "contract"
  size_t step = 0;    // 1-based
  SourcePos pos;
  std::string message;
  std::string fix;

  // "file:line:col: expand step 2: <rule>: <message>; <fix>"
  std::string ToString(const std::string& file) const;
};

// True when `sql` calls a function that returns a new value on every call (random(),
// clock_timestamp(), gen_random_uuid(), nextval(), ...): as a column default it rewrites the table.
bool IsVolatileExpression(const std::string& sql);

// The lock a raw statement takes, and what it holds up, for the preflight report. A statement
// it does not recognize is reported as taking ACCESS EXCLUSIVE, the worst case.
std::string LockTakenBy(const std::string& sql);

// Every finding of every raw step not marked `unsafe:`. Typed operations compile to their safe
// form and are not linted.
std::vector<LintFinding> LintPlan(const Plan& plan);

// The findings for one statement; `earlier` holds the plan's steps before it (for rules that
// depend on them, such as SET NOT NULL after a validated CHECK).
std::vector<LintFinding> LintStep(const std::string& sql, const std::string& phase,
                                  const std::vector<std::string>& earlier);

}  // namespace tide
