// PostgreSQL's own health signals that hold a backfill, beyond replication lag and sessions,
// written in a plan's `settings` or the config's `defaults`: a plan's value wins, then the
// config's, then the built-in default (see EffectiveGuards in engine/guards.h).
#pragma once

#include <cstdint>
#include <optional>

#include "tide/duration.h"

namespace tide {

struct HealthSettings {
  std::optional<bool> hold_on_autovacuum;        // wait while autovacuum works on the table
  std::optional<int64_t> max_archive_backlog;    // WAL files waiting to be archived; 0: off
  std::optional<int64_t> max_slot_retained_wal;  // bytes of WAL a replication slot holds; 0: off
  std::optional<Millis> max_xmin_age;            // oldest transaction holding back vacuum; 0: off
  std::optional<bool> slow_on_forced_checkpoints;  // half speed after a checkpoint WAL forced
  std::optional<Millis> throttle_hold;           // a hold on these signals lasts at least this
};

}  // namespace tide
