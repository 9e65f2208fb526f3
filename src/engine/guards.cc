#include "engine/guards.h"

namespace tide {

Guards EffectiveGuards(const StatementSettings& plan, const Defaults& defaults) {
  Guards g;
  const HealthSettings& p = plan.health;
  const HealthSettings& d = defaults.health;
  g.hold_on_autovacuum = p.hold_on_autovacuum.value_or(d.hold_on_autovacuum.value_or(g.hold_on_autovacuum));
  g.max_archive_backlog = p.max_archive_backlog.value_or(d.max_archive_backlog.value_or(g.max_archive_backlog));
  g.max_slot_retained_wal =
      p.max_slot_retained_wal.value_or(d.max_slot_retained_wal.value_or(g.max_slot_retained_wal));
  g.max_xmin_age = p.max_xmin_age.value_or(d.max_xmin_age.value_or(g.max_xmin_age));
  g.slow_on_forced_checkpoints =
      p.slow_on_forced_checkpoints.value_or(d.slow_on_forced_checkpoints.value_or(g.slow_on_forced_checkpoints));
  g.throttle_hold = p.throttle_hold.value_or(d.throttle_hold.value_or(g.throttle_hold));
  g.vacuum_between_batches =
      p.vacuum_between_batches.value_or(d.vacuum_between_batches.value_or(g.vacuum_between_batches));
  return g;
}

}  // namespace tide
