// The blocker policy: which sessions tide ends when one of its DDL statements keeps timing out
// on a lock they hold. Retrying behind an idle transaction forever piles up lock waits (every
// attempt queues the application's queries behind it for up to lock_timeout); ending that
// session, when the operator opted in, lets the change go through at the next attempt. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tide/config.h"
#include "tide/plan.h"
#include "tide/ports.h"

namespace tide {

struct BlockerPolicy {
  bool enabled = false;  // a `blockers:` map in the plan's settings or the config's defaults
  int64_t after_lock_timeouts = 3;
  Millis terminate_idle_in_transaction{0};  // 0: never
  Millis cancel_queries_older_than{0};      // 0: never
  std::vector<std::string> never;
  int64_t max_per_plan = 5;
};

// The plan's `blockers:`, else the config's, each key of the plan's over the config's.
BlockerPolicy BlockerPolicyFor(const StatementSettings& plan, const Defaults& defaults);

// Why the plan's blocker policy could never act (its after_lock_timeouts is above the
// ddl_retries a statement gets before the plan fails), with what to change; empty when it can.
std::string BlockerPolicyProblem(const StatementSettings& plan, const Defaults& defaults);

struct BlockerVerdict {
  enum class Action { kLeave, kCancel, kTerminate };
  Action action = Action::kLeave;
  std::string why;  // for the audit log: the rule that matched, or why the session is left alone
};
const char* ToString(BlockerVerdict::Action a);

// What the policy does with `s`. Only client backends are touched, never a superuser's, a role in
// `never` (or a member of one: see SessionFacts::protected_role), a session of tide's own
// (application_name "tided...") or a pg_dump's (a backup). An idle transaction at least
// terminate_idle_in_transaction old is terminated. A query running at least
// cancel_queries_older_than is cancelled when it began its transaction (the cancel ends the
// transaction and its locks); inside a longer transaction a cancel would leave the locks held,
// so that session is terminated.
BlockerVerdict JudgeBlocker(const BlockerPolicy& policy, const SessionFacts& s);

// What the policy made of one blocking session.
struct BlockerOutcome {
  SessionFacts session;
  BlockerVerdict verdict;
  EndOutcome outcome = EndOutcome::kGone;  // when the verdict was to act
  Status error;                            // the cancel or terminate failed
};

// How an outcome is reported: the audit event (blocker_ended, blocker_left,
// blocker_not_ended), its details (who the session was and why, never its query text, which
// may hold row data), and a line for the log ("" for none).
struct BlockerReport {
  std::string event;
  JsonObject details;
  std::string log;
};
BlockerReport ReportBlocker(const BlockerOutcome& o, const BlockerPolicy& policy);

// The pids in a lock timeout's blockers (Status::detail(), a JSON array of objects with "pid").
std::vector<int64_t> BlockerPids(const std::string& detail);

}  // namespace tide
