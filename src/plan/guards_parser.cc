#include "plan/guards_parser.h"

#include "plan/duration_ranges.h"

namespace tide {

namespace {
constexpr DurationRange kXminAgeRange{Millis(0), std::chrono::hours(24 * 30)};
constexpr DurationRange kThrottleHoldRange{Millis(0), std::chrono::hours(1)};
}  // namespace

const std::vector<std::string>& GuardKeys() {
  static const std::vector<std::string> keys = {
      "hold_on_autovacuum", "max_archive_backlog", "max_slot_retained_wal", "max_xmin_age",
      "slow_on_forced_checkpoints", "throttle_hold"};
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
}

}  // namespace tide
