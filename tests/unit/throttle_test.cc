#include "engine/throttle.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

HealthLimits Limits() { return HealthLimits{Millis(10000), 50, "", 0}; }

TEST(Throttle, HealthyMeansRunAtFullSpeed) {
  auto d = Decide(HealthSample{Millis(1000), 10, 0, false}, Limits());
  EXPECT_EQ(d.kind, ThrottleDecision::Kind::kRun);
  EXPECT_EQ(d.size_factor, 1.0);
}

TEST(Throttle, NearALimitSlowsInProportion) {
  auto d = Decide(HealthSample{Millis(9000), 0, 0, false}, Limits());
  EXPECT_EQ(d.kind, ThrottleDecision::Kind::kSlow);
  EXPECT_EQ(d.reason, "replication_lag");
  EXPECT_NEAR(d.size_factor, 0.625, 1e-9);
  EXPECT_EQ(d.extra_pause, Millis(500));
  auto s = Decide(HealthSample{Millis(0), 48, 0, false}, Limits());
  EXPECT_EQ(s.reason, "active_sessions");
  EXPECT_LT(s.size_factor, 0.5);
}

TEST(Throttle, OverALimitWaits) {
  EXPECT_EQ(Decide(HealthSample{Millis(10001), 0, 0, false}, Limits()).kind,
            ThrottleDecision::Kind::kWait);
  auto d = Decide(HealthSample{Millis(0), 51, 0, false}, Limits());
  EXPECT_EQ(d.kind, ThrottleDecision::Kind::kWait);
  EXPECT_EQ(d.reason, "active_sessions");
  EXPECT_EQ(Decide(HealthSample{Millis(0), 0, 0, true}, Limits()).reason, "throttle_query");
}

TEST(Throttle, BlockingAnotherSessionHalvesTheBatch) {
  auto d = Decide(HealthSample{Millis(0), 0, 2, false}, Limits());
  EXPECT_EQ(d.kind, ThrottleDecision::Kind::kSlow);
  EXPECT_EQ(d.reason, "blocking");
  EXPECT_EQ(d.size_factor, 0.5);
}

TEST(Throttle, BlockingNeverLiftsTheYieldOrTheLoadsPause) {
  HealthLimits l = Limits();
  l.yield_ratio = 4;
  auto d = Decide(HealthSample{Millis(0), 5, 1, false}, l);
  EXPECT_EQ(d.reason, "blocking") << "its reason shrinks the sizer";
  EXPECT_EQ(d.pause_ratio, HealthLimits::kMaxYield) << "still yields to the five sessions";
  EXPECT_EQ(d.yield_sessions, 5);
  EXPECT_EQ(ThrottledReason(d), "blocking");
  EXPECT_TRUE(Yields(d));
  EXPECT_NEAR(d.size_factor, 0.5 / (1 + HealthLimits::kMaxYield), 1e-9);
  auto near = Decide(HealthSample{Millis(9500), 0, 1, false}, Limits());
  EXPECT_EQ(near.reason, "blocking");
  EXPECT_GT(near.extra_pause, Millis(0)) << "near the lag limit: its pause too";
  EXPECT_LE(near.size_factor, 0.5);
}

TEST(Throttle, ZeroLimitsAreOff) {
  HealthLimits off;
  off.yield_ratio = 0;
  EXPECT_EQ(Decide(HealthSample{Millis(999999), 9999, 0, false}, off).kind,
            ThrottleDecision::Kind::kRun);
}

TEST(Throttle, YieldsToOtherActiveSessionsInProportion) {
  HealthLimits l = Limits();
  l.yield_ratio = 1;
  auto idle = Decide(HealthSample{Millis(0), 0, 0, false}, l);
  EXPECT_EQ(idle.kind, ThrottleDecision::Kind::kRun) << "an idle database gets full speed";
  auto busy = Decide(HealthSample{Millis(0), 4, 0, false}, l);
  EXPECT_EQ(busy.kind, ThrottleDecision::Kind::kSlow);
  EXPECT_EQ(busy.reason, "yield");
  EXPECT_NEAR(busy.size_factor, 0.2, 1e-9);
  EXPECT_EQ(busy.pause_ratio, 4);
  EXPECT_EQ(busy.yield_sessions, 4) << "named in the status and tide_yielding_sessions";
  EXPECT_EQ(idle.yield_sessions, 0);
  EXPECT_TRUE(Yields(busy));
  EXPECT_FALSE(Yields(idle));
  EXPECT_EQ(ThrottledReason(busy), "") << "yielding is not throttling";
  auto crowded = Decide(HealthSample{Millis(0), 45, 0, false}, l);
  EXPECT_EQ(crowded.pause_ratio, HealthLimits::kMaxYield) << "capped";
  EXPECT_EQ(crowded.reason, "active_sessions") << "near the limit the limit's reason wins";
}

TEST(LagEstimator, NoStandbyOrCaughtUpIsNoLag) {
  LagEstimator e;
  auto t = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(e.Observe(t, 100, std::nullopt), Millis(0));
  EXPECT_EQ(e.Observe(t + Millis(1000), 200, 200), Millis(0));
}

TEST(LagEstimator, APausedStandbyFallsBehindWithTheClock) {
  LagEstimator e;
  auto t = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(e.Observe(t, 1000, 1000), Millis(0));
  // Replay stops at 1000 while the primary writes on.
  EXPECT_EQ(e.Observe(t + Millis(1000), 2000, 1000), Millis(0));
  EXPECT_EQ(e.Observe(t + Millis(2000), 3000, 1000), Millis(1000));
  EXPECT_EQ(e.Observe(t + Millis(5000), 6000, 1000), Millis(4000));
  // Replay resumes and catches up to the position of t+4s.
  EXPECT_EQ(e.Observe(t + Millis(6000), 7000, 6000), Millis(0));
  EXPECT_EQ(e.Observe(t + Millis(7000), 8000, 7000), Millis(0));
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {

TEST(HealthSignals, EachSignalWaitsWithItsReasonOnlyWhenItsLimitIsOn) {
  HealthLimits l;
  HealthSample s;
  s.autovacuum = true;
  s.archive_backlog = 500;
  s.slot_retained_wal = int64_t{8} << 30;
  s.xmin_age = Millis(7200 * 1000);
  EXPECT_EQ(Decide(s, l).kind, ThrottleDecision::Kind::kRun);  // every limit off
  l.max_xmin_age = Millis(3600 * 1000);
  EXPECT_EQ(Decide(s, l).reason, "xmin_age");
  l.max_slot_retained_wal = int64_t{4} << 30;
  EXPECT_EQ(Decide(s, l).reason, "slot_retained_wal");
  l.max_archive_backlog = 128;
  EXPECT_EQ(Decide(s, l).reason, "archive_backlog");
  l.hold_on_autovacuum = true;
  EXPECT_EQ(Decide(s, l).reason, "autovacuum");
  EXPECT_EQ(Decide(s, l).kind, ThrottleDecision::Kind::kWait);
  s.throttle_file = true;
  EXPECT_EQ(Decide(s, l).reason, "throttle_file");
}

TEST(HealthSignals, AForcedCheckpointHalvesTheBatch) {
  HealthLimits l;
  l.yield_ratio = 0;
  l.slow_on_forced_checkpoints = true;
  HealthSample s;
  s.forced_checkpoint = true;
  const ThrottleDecision d = Decide(s, l);
  EXPECT_EQ(d.kind, ThrottleDecision::Kind::kSlow);
  EXPECT_EQ(d.reason, "forced_checkpoint");
  EXPECT_DOUBLE_EQ(d.size_factor, 0.5);
}

TEST(HealthSignals, AHoldLastsAtLeastTheHoldTimeAfterTheLastBadSample) {
  ThrottleHold hold;
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  ThrottleDecision wait;
  wait.kind = ThrottleDecision::Kind::kWait;
  wait.reason = "autovacuum";
  const ThrottleDecision run;
  EXPECT_EQ(hold.Apply(wait, t0, Millis(10000)).reason, "autovacuum");
  EXPECT_EQ(hold.Apply(run, t0 + Millis(9000), Millis(10000)).reason, "autovacuum");
  EXPECT_EQ(hold.Apply(run, t0 + Millis(10001), Millis(10000)).kind, ThrottleDecision::Kind::kRun);
}

TEST(HealthSignals, AHeldSlowdownNeverHidesAStricterNewerOne) {
  ThrottleHold hold;
  const auto t0 = std::chrono::steady_clock::time_point{} + std::chrono::hours(1);
  ThrottleDecision checkpoint;
  checkpoint.kind = ThrottleDecision::Kind::kSlow;
  checkpoint.reason = "forced_checkpoint";
  checkpoint.size_factor = 0.5;
  hold.Apply(checkpoint, t0, Millis(10000));
  ThrottleDecision lag;
  lag.kind = ThrottleDecision::Kind::kSlow;
  lag.reason = "replication_lag";
  lag.size_factor = 0.3;
  lag.extra_pause = Millis(800);
  ThrottleDecision d = hold.Apply(lag, t0 + Millis(1000), Millis(10000));
  EXPECT_EQ(d.reason, "replication_lag");
  EXPECT_DOUBLE_EQ(d.size_factor, 0.3);
  EXPECT_EQ(d.extra_pause, Millis(800));
  ThrottleDecision blocking;
  blocking.kind = ThrottleDecision::Kind::kSlow;
  blocking.reason = "blocking";
  blocking.size_factor = 0.5;
  EXPECT_EQ(hold.Apply(blocking, t0 + Millis(2000), Millis(10000)).reason, "blocking")
      << "blocking shrinks the batch size; a hold must not hide it";
  ThrottleDecision yield;
  yield.kind = ThrottleDecision::Kind::kSlow;
  yield.reason = "yield";
  yield.size_factor = 0.8;
  yield.pause_ratio = 2;
  d = hold.Apply(yield, t0 + Millis(3000), Millis(10000));
  EXPECT_EQ(d.reason, "forced_checkpoint");
  EXPECT_DOUBLE_EQ(d.size_factor, 0.5);
  EXPECT_DOUBLE_EQ(d.pause_ratio, 2) << "the yield's pause stays";
  ThrottleDecision wait;
  wait.kind = ThrottleDecision::Kind::kWait;
  wait.reason = "replication_lag";
  EXPECT_EQ(hold.Apply(wait, t0 + Millis(4000), Millis(10000)).kind, ThrottleDecision::Kind::kWait);
}

}  // namespace
}  // namespace tide
