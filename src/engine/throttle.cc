#include "engine/throttle.h"

#include <algorithm>

namespace tide {

namespace {
constexpr double kSlowFrom = 0.8;  // slow down from 80% of a limit

// How close `value` is to `limit`, as 0 (at 80% or below) .. 1 (at the limit), or >1 over it.
double Pressure(double value, double limit) {
  if (limit <= 0) return 0;
  if (value > limit) return 2;
  return std::max(0.0, (value / limit - kSlowFrom) / (1 - kSlowFrom));
}
}  // namespace

ThrottleDecision Decide(const HealthSample& s, const HealthLimits& l) {
  ThrottleDecision d;
  if (s.throttle_query_true) {
    d.kind = ThrottleDecision::Kind::kWait;
    d.reason = "throttle_query";
    return d;
  }
  const double lag = Pressure(static_cast<double>(s.replication_lag.count()),
                              static_cast<double>(l.max_replication_lag.count()));
  const double sessions = Pressure(static_cast<double>(s.active_sessions),
                                   static_cast<double>(l.max_active_sessions));
  if (lag > 1 || sessions > 1) {
    d.kind = ThrottleDecision::Kind::kWait;
    d.reason = lag > 1 ? "replication_lag" : "active_sessions";
    return d;
  }
  if (s.blocked_by_us > 0) {
    d.kind = ThrottleDecision::Kind::kSlow;
    d.reason = "blocking";
    d.size_factor = 0.5;
    return d;
  }
  const double p = std::max(lag, sessions);
  if (p > 0) {
    d.kind = ThrottleDecision::Kind::kSlow;
    d.reason = lag >= sessions ? "replication_lag" : "active_sessions";
    d.size_factor = 1.0 - 0.75 * p;
    d.extra_pause = Millis(static_cast<int64_t>(1000 * p));
  }
  const double yield = std::min(10.0, l.yield_ratio * static_cast<double>(s.active_sessions));
  if (yield > 0) {
    if (d.kind == ThrottleDecision::Kind::kRun) {
      d.kind = ThrottleDecision::Kind::kSlow;
      d.reason = "yield";
    }
    d.size_factor /= 1 + yield;
    d.pause_ratio = yield;
  }
  return d;
}

Millis LagEstimator::Observe(TimePoint now, int64_t current_lsn, std::optional<int64_t> replay_lsn) {
  history_.emplace_back(now, current_lsn);
  if (!replay_lsn || *replay_lsn >= current_lsn) {
    // Caught up: only the newest sample matters from here on.
    while (history_.size() > 1) history_.pop_front();
    return Millis(0);
  }
  // The oldest sample the standby has not replayed yet is when it started falling behind.
  // The newest sample is above the replayed position, so one always remains.
  while (history_.front().second <= *replay_lsn) history_.pop_front();
  while (history_.size() > 86400) history_.pop_front();  // a day of one-second samples
  return std::chrono::duration_cast<Millis>(now - history_.front().first);
}

ThrottleDecision HealthUnknown() {
  ThrottleDecision d;
  d.kind = ThrottleDecision::Kind::kWait;
  d.reason = "health_unknown";
  return d;
}

}  // namespace tide
