#include "plan/guards_parser.h"

#include "plan/duration_ranges.h"

namespace tide {

namespace {
constexpr DurationRange kXminAgeRange{Millis(0), std::chrono::hours(24 * 30)};
constexpr DurationRange kThrottleHoldRange{Millis(0), std::chrono::hours(1)};
constexpr DurationRange kBlockerAgeRange{Millis(0), std::chrono::hours(24 * 7)};

void ParseBlockers(YamlReader& r, const YAML::Node& node, const std::string& what,
                   BlockerSettings* b) {
  const std::string in = "`blockers` of " + what;
  if (!r.ExpectMap(node, in, {"after_lock_timeouts", "terminate_idle_in_transaction",
                              "cancel_queries_older_than", "never", "max_per_plan"})) {
    return;
  }
  b->after_lock_timeouts = r.Int(node, "after_lock_timeouts", in, 1, 1000);
  b->terminate_idle_in_transaction = r.Duration(node, "terminate_idle_in_transaction", in, kBlockerAgeRange);
  b->cancel_queries_older_than = r.Duration(node, "cancel_queries_older_than", in, kBlockerAgeRange);
  b->max_per_plan = r.Int(node, "max_per_plan", in, 0, 10000);
  if (const YAML::Node never = node["never"]) {
    if (!never.IsSequence()) {
      r.Error(never, "`never` in " + in + " is " + KindName(never) + ", not a list of roles",
              "write never: [replicator, batch_jobs]");
    } else {
      for (const auto& role : never) {
        if (!role.IsScalar() || role.Scalar().empty()) {
          r.Error(role, "`never` in " + in + " holds " + KindName(role) + ", not a role name",
                  "write never: [replicator, batch_jobs]");
          continue;
        }
        b->never.push_back(role.Scalar());
      }
    }
  }
  if (!b->terminate_idle_in_transaction && !b->cancel_queries_older_than) {
    r.Error(node, in + " ends no session: it has neither terminate_idle_in_transaction nor "
                       "cancel_queries_older_than",
            "add terminate_idle_in_transaction: 10s (idle transactions holding a lock), or "
            "remove `blockers`");
  }
}
}  // namespace

const std::vector<std::string>& GuardKeys() {
  static const std::vector<std::string> keys = {
      "hold_on_autovacuum", "max_archive_backlog", "max_slot_retained_wal", "max_xmin_age",
      "slow_on_forced_checkpoints", "throttle_hold", "vacuum_between_batches", "blockers"};
  return keys;
}

void ParseGuards(YamlReader& r, const YAML::Node& node, const std::string& what,
                 HealthSettings* h) {
  h->hold_on_autovacuum = r.Bool(node, "hold_on_autovacuum", what);
  h->max_archive_backlog = r.Int(node, "max_archive_backlog", what, 0, 1000000);
  h->max_slot_retained_wal = r.ByteSize(node, "max_slot_retained_wal", what);
  h->max_xmin_age = r.Duration(node, "max_xmin_age", what, kXminAgeRange);
  h->slow_on_forced_checkpoints = r.Bool(node, "slow_on_forced_checkpoints", what);
  h->throttle_hold = r.Duration(node, "throttle_hold", what, kThrottleHoldRange);
  h->vacuum_between_batches = r.Bool(node, "vacuum_between_batches", what);
  if (const YAML::Node b = node["blockers"]) {
    BlockerSettings settings;
    ParseBlockers(r, b, what, &settings);
    h->blockers = settings;
  }
}

}  // namespace tide
