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
  auto Wait = [&d](const char* reason) {
    d.kind = ThrottleDecision::Kind::kWait;
    d.reason = reason;
    return d;
  };
  if (s.throttle_file) return Wait("throttle_file");
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
  if (l.hold_on_autovacuum && s.autovacuum) return Wait("autovacuum");
  if (l.max_archive_backlog > 0 && s.archive_backlog > l.max_archive_backlog) return Wait("archive_backlog");
  if (l.max_slot_retained_wal > 0 && s.slot_retained_wal > l.max_slot_retained_wal) {
    return Wait("slot_retained_wal");
  }
  if (l.max_xmin_age.count() > 0 && s.xmin_age > l.max_xmin_age) return Wait("xmin_age");
  // Blocking a session halves the batch, and the pauses of the load still apply: blocking the
  // application never makes tide faster. Its reason wins, since it also shrinks the sizer.
  const bool blocking = s.blocked_by_us > 0;
  if (blocking || (l.slow_on_forced_checkpoints && s.forced_checkpoint)) {
    d.kind = ThrottleDecision::Kind::kSlow;
    d.reason = blocking ? "blocking" : "forced_checkpoint";
    d.size_factor = 0.5;
  }
  const double p = std::max(lag, sessions);
  if (p > 0) {
    if (d.kind == ThrottleDecision::Kind::kRun || (!blocking && 1.0 - 0.75 * p < d.size_factor)) {
      d.reason = lag >= sessions ? "replication_lag" : "active_sessions";
    }
    d.kind = ThrottleDecision::Kind::kSlow;
    d.size_factor = std::min(d.size_factor, 1.0 - 0.75 * p);
    d.extra_pause = Millis(static_cast<int64_t>(1000 * p));
  }
  const double yield = std::min(HealthLimits::kMaxYield, l.yield_ratio * static_cast<double>(s.active_sessions));
  if (yield > 0) {
    if (d.kind == ThrottleDecision::Kind::kRun) {
      d.kind = ThrottleDecision::Kind::kSlow;
      d.reason = "yield";
    }
    d.size_factor /= 1 + yield;
    d.pause_ratio = yield;
    d.yield_sessions = s.active_sessions;
  }
  return d;
}

std::string ThrottledReason(const ThrottleDecision& d) {
  return d.kind == ThrottleDecision::Kind::kRun || d.reason == "yield" ? std::string() : d.reason;
}

bool Yields(const ThrottleDecision& d) {
  return d.kind == ThrottleDecision::Kind::kSlow && d.pause_ratio > 0;
}

bool IsHeldSignal(const std::string& reason) {
  return reason == "autovacuum" || reason == "archive_backlog" || reason == "slot_retained_wal" ||
         reason == "xmin_age" || reason == "forced_checkpoint";
}

ThrottleDecision ThrottleHold::Apply(const ThrottleDecision& d, TimePoint now, Millis hold) {
  if (IsHeldSignal(d.reason)) {
    held_ = d;
    until_ = now + hold;
    return d;
  }
  if (!held_ || now >= until_) {
    held_.reset();
    return d;
  }
  // Within the hold: a wait wins; otherwise the stricter of the two, so that a held slowdown
  // never hides a newer one (the lag's pause, a yield, blocking's shrink).
  if (d.kind == ThrottleDecision::Kind::kWait) return d;
  if (held_->kind == ThrottleDecision::Kind::kWait || d.kind != ThrottleDecision::Kind::kSlow) {
    return *held_;
  }
  ThrottleDecision out =
      d.reason == "blocking" || d.size_factor < held_->size_factor ? d : *held_;
  out.size_factor = std::min(d.size_factor, held_->size_factor);
  out.extra_pause = std::max(d.extra_pause, held_->extra_pause);
  out.pause_ratio = std::max(d.pause_ratio, held_->pause_ratio);
  out.yield_sessions = d.pause_ratio >= held_->pause_ratio ? d.yield_sessions : held_->yield_sessions;
  return out;
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
