// Throttling on PostgreSQL's own health signals. Pure: samples in, decisions out.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "tide/duration.h"

namespace tide {

// Limits; a zero limit is off.
struct HealthLimits {
  Millis max_replication_lag{0};
  int64_t max_active_sessions = 0;
  std::string throttle_query;  // returns true while tide should wait
  // Yielding to production: with N other sessions in a transaction, a batch is cut to
  // 1 / (1 + yield_ratio * N) of its size and followed by a pause of yield_ratio * N times its
  // duration (N * yield_ratio capped at kMaxYield). 0 turns it off: full speed whatever the load.
  double yield_ratio = 4.0;
  // A busy server's batches run at most 1/21 of the time. The p99 latency of an application
  // that keeps two cores busy rises with the rows tide writes meanwhile, not with how long
  // each batch is (see the README's Performance).
  static constexpr double kMaxYield = 20;
  // PostgreSQL's own signals (see Guards for their defaults): wait while autovacuum works on the
  // table, while more WAL files than this wait to be archived, while a replication slot retains
  // more WAL than this (bytes), while a transaction this old holds back vacuum; run at half size
  // after a checkpoint forced by WAL volume. Once one of them holds, it holds at least `hold`.
  bool hold_on_autovacuum = false;
  int64_t max_archive_backlog = 0;
  int64_t max_slot_retained_wal = 0;
  Millis max_xmin_age{0};
  bool slow_on_forced_checkpoints = false;
  Millis hold{0};
};

// One reading of the database's health.
struct HealthSample {
  Millis replication_lag{0};       // from LagEstimator
  int64_t active_sessions = 0;     // other sessions running a query
  int64_t blocked_by_us = 0;       // sessions waiting on a lock a backfill worker holds
  bool throttle_query_true = false;
  bool throttle_file = false;      // <spool>/control/throttle names this plan (or every plan)
  bool autovacuum = false;         // an autovacuum worker is on the table
  int64_t archive_backlog = 0;     // WAL files waiting to be archived
  int64_t slot_retained_wal = 0;   // the most WAL one replication slot retains, bytes
  Millis xmin_age{0};              // the oldest transaction that holds back vacuum
  bool forced_checkpoint = false;  // a checkpoint was requested (WAL volume) since the last sample
};

struct ThrottleDecision {
  enum class Kind { kRun, kSlow, kWait };
  Kind kind = Kind::kRun;
  // "replication_lag", "active_sessions", "blocking", "throttle_query", "throttle_file",
  // "autovacuum", "archive_backlog", "slot_retained_wal", "xmin_age", "forced_checkpoint"
  std::string reason;
  double size_factor = 1.0;  // multiply the batch size by this (kSlow)
  Millis extra_pause{0};     // add this pause between batches (kSlow)
  double pause_ratio = 0;    // and pause this many times the last batch's duration
  int64_t yield_sessions = 0;  // the other sessions in a transaction it yields to (pause_ratio)
};

// Over a limit: wait (re-check every second). Within 20% below it: slow down in proportion, down
// to a quarter of the batch size and up to a second's extra pause at the limit. Blocking another
// session halves the batch at once. Other active sessions below the limits: yield to them (see
// HealthLimits::yield_ratio); the reason is then "yield", which is not counted as throttled.
// The throttle file and the throttle_query wait first; then the limits above; a forced
// checkpoint halves the batch.
ThrottleDecision Decide(const HealthSample& s, const HealthLimits& l);

// The reason a decision holds the backfill back, as status, tide_throttled and the audit log
// show it: "" at full speed, and while it only yields to the application (not throttling).
std::string ThrottledReason(const ThrottleDecision& d);
// Whether a decision yields to the application: smaller batches and a rest after each.
bool Yields(const ThrottleDecision& d);

// Whether `reason` is one of PostgreSQL's signals that hold for HealthLimits::hold.
bool IsHeldSignal(const std::string& reason);

// Anti-flapping: once a held signal (IsHeldSignal) holds the backfill, its decision stands for
// `hold` after the last sample that showed it, unless another reason says wait meanwhile.
class ThrottleHold {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  ThrottleDecision Apply(const ThrottleDecision& d, TimePoint now, Millis hold);

 private:
  std::optional<ThrottleDecision> held_;
  TimePoint until_{};
};

// When the health cannot be read (the reading failed, or the throttle_query errs or returns
// something other than one boolean): wait, reason "health_unknown". Fail safe: a backfill never
// runs on health tide cannot see.
ThrottleDecision HealthUnknown();

// Replication lag as time, measured without writing anything: the primary's WAL position is
// sampled every second; a standby's lag is how long ago the primary was at the position the
// standby has replayed. With replay paused, the lag grows with the clock.
class LagEstimator {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // current_lsn: the primary's WAL position (bytes); replay_lsn: the slowest standby's replayed
  // position, nullopt when there is no standby.
  Millis Observe(TimePoint now, int64_t current_lsn, std::optional<int64_t> replay_lsn);

 private:
  std::deque<std::pair<TimePoint, int64_t>> history_;  // (time, WAL position), oldest first
};

}  // namespace tide
