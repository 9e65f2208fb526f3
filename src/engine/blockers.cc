#include "engine/blockers.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace tide {

BlockerPolicy BlockerPolicyFor(const StatementSettings& plan, const Defaults& defaults) {
  BlockerPolicy p;
  const auto& mine = plan.health.blockers;
  const auto& theirs = defaults.health.blockers;
  if (!mine && !theirs) return p;
  p.enabled = true;
  const BlockerSettings none;
  const BlockerSettings& a = mine ? *mine : none;
  const BlockerSettings& b = theirs ? *theirs : none;
  p.after_lock_timeouts = a.after_lock_timeouts.value_or(b.after_lock_timeouts.value_or(p.after_lock_timeouts));
  p.terminate_idle_in_transaction = a.terminate_idle_in_transaction.value_or(
      b.terminate_idle_in_transaction.value_or(p.terminate_idle_in_transaction));
  p.cancel_queries_older_than =
      a.cancel_queries_older_than.value_or(b.cancel_queries_older_than.value_or(p.cancel_queries_older_than));
  p.max_per_plan = a.max_per_plan.value_or(b.max_per_plan.value_or(p.max_per_plan));
  p.never = b.never;
  p.never.insert(p.never.end(), a.never.begin(), a.never.end());
  return p;
}

std::string BlockerPolicyProblem(const StatementSettings& plan, const Defaults& defaults) {
  const BlockerPolicy policy = BlockerPolicyFor(plan, defaults);
  const int64_t retries = plan.ddl_retries.value_or(defaults.ddl_retries);
  if (!policy.enabled || policy.after_lock_timeouts <= retries) return "";
  return "`blockers.after_lock_timeouts` is " + std::to_string(policy.after_lock_timeouts) +
         ", above `ddl_retries` (" + std::to_string(retries) +
         "): a statement fails the plan after that many lock timeouts, before the blocker "
         "policy would act; lower `after_lock_timeouts` or raise `ddl_retries`";
}

const char* ToString(BlockerVerdict::Action a) {
  switch (a) {
    case BlockerVerdict::Action::kLeave: return "leave";
    case BlockerVerdict::Action::kCancel: return "cancel";
    case BlockerVerdict::Action::kTerminate: return "terminate";
  }
  return "leave";
}

BlockerVerdict JudgeBlocker(const BlockerPolicy& policy, const SessionFacts& s) {
  using A = BlockerVerdict::Action;
  auto Leave = [](std::string why) { return BlockerVerdict{A::kLeave, std::move(why)}; };
  if (!policy.enabled) return Leave("no blocker policy");
  if (s.backend_type != "client backend") return Leave("not a client session (" + s.backend_type + ")");
  if (s.superuser) return Leave("a superuser's session");
  if (s.protected_role ||
      std::find(policy.never.begin(), policy.never.end(), s.user) != policy.never.end()) {
    return Leave("role " + s.user + " is in `never` (or a member of a role there)");
  }
  if (s.application_name.rfind("tided", 0) == 0) return Leave("a session of tide's own");
  // A backup's long transaction: ending it loses the backup.
  if (s.application_name.rfind("pg_dump", 0) == 0) return Leave("a pg_dump (a backup)");
  const bool idle_in_transaction = s.state.rfind("idle in transaction", 0) == 0;
  if (idle_in_transaction) {
    if (policy.terminate_idle_in_transaction.count() > 0 &&
        s.state_age_ms >= policy.terminate_idle_in_transaction.count()) {
      return BlockerVerdict{A::kTerminate, "idle in transaction for " + FormatDuration(Millis(s.state_age_ms)) +
                                               " (terminate_idle_in_transaction: " +
                                               FormatDuration(policy.terminate_idle_in_transaction) + ")"};
    }
    return Leave(policy.terminate_idle_in_transaction.count() > 0
                     ? "idle in transaction for only " + FormatDuration(Millis(s.state_age_ms))
                     : "idle in transaction, and terminate_idle_in_transaction is not set");
  }
  if (s.state == "active" && s.query_age_ms >= 0) {
    if (policy.cancel_queries_older_than.count() > 0 &&
        s.query_age_ms >= policy.cancel_queries_older_than.count()) {
      const std::string rule = "query running for " + FormatDuration(Millis(s.query_age_ms)) +
                               " (cancel_queries_older_than: " +
                               FormatDuration(policy.cancel_queries_older_than) + ")";
      if (s.query_began_transaction) return BlockerVerdict{A::kCancel, rule};
      return BlockerVerdict{A::kTerminate, rule + " inside a longer transaction, which a cancel "
                                                  "would leave holding its locks"};
    }
    return Leave(policy.cancel_queries_older_than.count() > 0
                     ? "query running for only " + FormatDuration(Millis(s.query_age_ms))
                     : "a running query, and cancel_queries_older_than is not set");
  }
  return Leave("state `" + s.state + "` matches no rule");
}

BlockerReport ReportBlocker(const BlockerOutcome& o, const BlockerPolicy& policy) {
  const SessionFacts& x = o.session;
  BlockerReport r;
  r.details.Int("pid", x.pid).Str("user", x.user).Str("application_name", x.application_name)
      .Str("client_addr", x.client_addr).Str("backend_type", x.backend_type).Str("state", x.state)
      .Int("state_age_ms", x.state_age_ms).Int("transaction_age_ms", x.transaction_age_ms)
      .Str("why", o.verdict.why);
  const std::string pid = std::to_string(x.pid);
  if (o.verdict.action == BlockerVerdict::Action::kLeave) return r.event = "blocker_left", r;
  const std::string action = ToString(o.verdict.action);
  r.details.Str("action", action);
  if (!o.error.ok()) {
    r.event = "blocker_not_ended";
    r.details.Str("error", o.error.ToString());
    if (o.error.sqlstate() == "42501") {
      r.details.Str("hint", "grant pg_signal_backend to tide's role, or end the session yourself: "
                            "SELECT pg_terminate_backend(" + pid + ")");
    }
    r.log = "cannot " + action + " blocking session pid " + pid + ": " + o.error.ToString();
    return r;
  }
  switch (o.outcome) {
    case EndOutcome::kBudgetSpent:
      r.event = "blocker_not_ended";
      r.details.Str("error", "max_per_plan (" + std::to_string(policy.max_per_plan) +
                                 ") sessions ended already for this plan");
      r.log = "blocking session pid " + pid + " left alone: max_per_plan (" +
              std::to_string(policy.max_per_plan) + ") spent";
      break;
    case EndOutcome::kGone:
      r.event = "blocker_left";
      r.details.Str("why", "it ended, or moved on to another transaction, before it was ended");
      break;
    case EndOutcome::kEnded:
      r.event = "blocker_ended";
      r.log = std::string(o.verdict.action == BlockerVerdict::Action::kTerminate
                              ? "terminated"
                              : "cancelled the query of") +
              " blocking session pid " + pid + " (" + x.user + ", " + x.application_name + "): " +
              o.verdict.why;
      break;
  }
  return r;
}

std::vector<int64_t> BlockerPids(const std::string& detail) {
  std::vector<int64_t> out;
  const nlohmann::json j = nlohmann::json::parse(detail, nullptr, /*allow_exceptions=*/false);
  if (!j.is_array()) return out;
  for (const auto& e : j) {
    if (!e.is_object()) continue;
    auto it = e.find("pid");
    if (it == e.end() || !it->is_number_integer()) continue;
    const int64_t pid = it->get<int64_t>();
    if (std::find(out.begin(), out.end(), pid) == out.end()) out.push_back(pid);
  }
  return out;
}

}  // namespace tide
