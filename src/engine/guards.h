// The health signals in force for a plan: tide/guards.h with the built-in defaults filled in.
// Pure.
#pragma once

#include <cstdint>

#include "tide/config.h"
#include "tide/guards.h"
#include "tide/plan.h"

namespace tide {

// The built-in defaults, documented in the README's "Health signals".
struct Guards {
  bool hold_on_autovacuum = true;
  int64_t max_archive_backlog = 128;                 // WAL files (2 GB of 16 MB segments)
  int64_t max_slot_retained_wal = int64_t{4} << 30;  // 4 GB
  Millis max_xmin_age{3600 * 1000};                  // 1 h
  bool slow_on_forced_checkpoints = true;
  Millis throttle_hold{10000};
  bool vacuum_between_batches = true;
};

// A plan's value, else the config's, else the built-in default.
Guards EffectiveGuards(const StatementSettings& plan, const Defaults& defaults);

}  // namespace tide
