// What protects production while a plan runs, beyond replication lag and sessions: PostgreSQL's
// own health signals that hold a backfill, the VACUUM between batches, and the policy for
// sessions that keep a DDL statement timing out. Written in a plan's `settings` or the config's
// `defaults`: a plan's value wins, then the config's, then the built-in default (see
// EffectiveGuards in engine/guards.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "tide/duration.h"

namespace tide {

// `blockers:` (opt in): after `after_lock_timeouts` lock timeouts of one statement, the sessions
// that blocked it are ended when they match (see engine/blockers.h).
struct BlockerSettings {
  std::optional<int64_t> after_lock_timeouts;
  std::optional<Millis> terminate_idle_in_transaction;  // 0: never
  std::optional<Millis> cancel_queries_older_than;      // 0: never
  std::vector<std::string> never;                       // roles never touched
  std::optional<int64_t> max_per_plan;
};

struct HealthSettings {
  std::optional<bool> hold_on_autovacuum;        // wait while autovacuum works on the table
  std::optional<int64_t> max_archive_backlog;    // WAL files waiting to be archived; 0: off
  std::optional<int64_t> max_slot_retained_wal;  // bytes of WAL a replication slot holds; 0: off
  std::optional<Millis> max_xmin_age;            // oldest transaction holding back vacuum; 0: off
  std::optional<bool> slow_on_forced_checkpoints;  // half speed after a checkpoint WAL forced
  std::optional<Millis> throttle_hold;           // a hold on these signals lasts at least this
  std::optional<bool> vacuum_between_batches;     // VACUUM the table when its dead rows pile up
  std::optional<BlockerSettings> blockers;        // absent: no session is ever ended
};

}  // namespace tide
