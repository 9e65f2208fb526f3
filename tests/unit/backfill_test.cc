#include "engine/backfill.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

TEST(Backfill, CheckpointAdvancesByTheBatch) {
  TaskCheckpoint cp;
  cp.rows_estimated = 10;
  BatchResult b{3, 4, {"40"}};
  TaskCheckpoint next = AdvanceCheckpoint(cp, b, 4);
  EXPECT_EQ(next.rows_updated, 3);
  EXPECT_EQ(next.rows_scanned, 4);
  EXPECT_EQ(next.batches, 1);
  EXPECT_EQ(next.last_key, std::vector<std::string>{"40"});
  EXPECT_FALSE(next.done);
}

TEST(Backfill, AShortBatchEndsThePass) {
  TaskCheckpoint cp;
  cp.last_key = {"40"};
  TaskCheckpoint next = AdvanceCheckpoint(cp, BatchResult{0, 0, {}}, 100);
  EXPECT_TRUE(next.done);
  EXPECT_EQ(next.last_key, std::vector<std::string>{"40"}) << "an empty batch keeps the last key";
  EXPECT_TRUE(AdvanceCheckpoint(cp, BatchResult{5, 99, {"99"}}, 100).done);
}

TEST(Backfill, PlanSettingsOverrideDaemonDefaults) {
  Defaults d;
  Plan p;
  EXPECT_EQ(LimitsFor(p, d).lock_timeout, Millis(2000));
  p.settings.lock_timeout = Millis(500);
  EXPECT_EQ(LimitsFor(p, d).lock_timeout, Millis(500));
  EXPECT_EQ(LimitsFor(p, d).statement_timeout, Millis(30000));
}

TEST(Backfill, BatchSizeComesFromTaskThenPlanThenDefault) {
  Defaults d;
  Plan p;
  BackfillTask t;
  EXPECT_EQ(BatchSizeFor(p, t, d), 1000);
  p.batch_size = 500;
  EXPECT_EQ(BatchSizeFor(p, t, d), 500);
  t.batch_size = 50;
  EXPECT_EQ(BatchSizeFor(p, t, d), 50);
}

TEST(Backfill, ProgressIsReportedEveryTenPercentOrThirtySeconds) {
  EXPECT_FALSE(ShouldReportProgress(100, 200, 10000, 1000));
  EXPECT_TRUE(ShouldReportProgress(900, 1000, 10000, 1000));
  EXPECT_TRUE(ShouldReportProgress(100, 200, 10000, 30000));
  EXPECT_FALSE(ShouldReportProgress(100, 200, 0, 1000)) << "no estimate: time only";
}

TEST(SweepSchedule, SweepsEveryRecheckWhileRowsTurnUpAndBacksOffWhenNoneDo) {
  SweepSchedule s;
  EXPECT_TRUE(s.Due());
  s.Swept(40);
  EXPECT_TRUE(s.Due()) << "rows turned up: sweep again at the next re-check";
  s.Swept(0);
  EXPECT_FALSE(s.Due());  // one re-check without
  EXPECT_TRUE(s.Due());
  s.Swept(0);
  EXPECT_FALSE(s.Due());  // then two
  EXPECT_FALSE(s.Due());
  EXPECT_TRUE(s.Due());
  for (int i = 0; i < 10; ++i) {
    s.Swept(0);
    while (!s.Due()) {}
  }
  s.Swept(0);
  int skipped = 0;
  while (!s.Due()) ++skipped;
  EXPECT_EQ(skipped, SweepSchedule::kMaxSkip) << "a long wait sweeps about every 64 re-checks";
  s.Swept(3);
  EXPECT_TRUE(s.Due()) << "rows again: back to every re-check";
  s.Swept(0);
  EXPECT_FALSE(s.Due());
  EXPECT_TRUE(s.Due()) << "and the back-off starts over at one";
}

}  // namespace
}  // namespace tide
