// The range of each duration setting, shared by plans (`settings:`, a step's own
// `statement_timeout:`, a backfill task) and the daemon's config (`defaults:`), so that a value
// means the same wherever it is written.
//
// PostgreSQL reads a timeout of 0 as "no timeout", so every timeout has a minimum above 0; only
// the settings documented with "0 turns it off" (pause_between_batches, max_replication_lag)
// start at 0.
#pragma once

#include <chrono>

#include "plan/yaml_reader.h"

namespace tide {

inline constexpr DurationRange kLockTimeoutRange{
    Millis(10), std::chrono::minutes(10),
    "mean no timeout: a DDL statement could wait for ever and every query would queue behind it"};

// Up to a day: an index build or a VALIDATE CONSTRAINT on a large table needs long ones.
inline constexpr DurationRange kStatementTimeoutRange{
    Millis(100), std::chrono::hours(24),
    "mean no timeout: a statement could run for ever and hold its locks all that time"};

// Gate queries and the catch-up sweeps count or scan the whole table.
inline constexpr DurationRange kGateTimeoutRange{
    std::chrono::seconds(1), std::chrono::hours(24),
    "mean no timeout: a gate query or sweep could scan the table for ever"};

inline constexpr DurationRange kGateRecheckIntervalRange{
    Millis(100), std::chrono::hours(1), "re-check failing gates in a busy loop"};

inline constexpr DurationRange kTargetBatchTimeRange{
    Millis(10), std::chrono::minutes(10), "halve every batch down to `min_batch_size`"};

inline constexpr DurationRange kPauseBetweenBatchesRange{Millis(0), std::chrono::minutes(10)};

inline constexpr DurationRange kMaxReplicationLagRange{Millis(0), std::chrono::hours(24)};

// How long a switch keeps the old columns for `tidectl revert`: 0 drops them right after it.
inline constexpr DurationRange kRetentionRange{Millis(0), std::chrono::hours(24 * 365)};

}  // namespace tide
