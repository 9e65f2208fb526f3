#include "engine/backfill.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

namespace tide {
namespace {

// A page range from page `lower` up to `upper` (empty: the open tail).
TaskCheckpoint PageRange(const std::string& lower, const std::string& upper) {
  TaskCheckpoint cp;
  cp.unit = RangeUnit::kPage;
  cp.lower = {lower};
  if (!upper.empty()) cp.upper = {upper};
  return cp;
}

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

TEST(Backfill, APageRangeEndsWhenItsBatchReachesTheEndNotWhenItFindsFewRows) {
  TaskCheckpoint cp = PageRange("0", "100");
  BatchResult b{0, 0, {"40"}};
  TaskCheckpoint next = AdvanceCheckpoint(cp, b, 1000);
  EXPECT_FALSE(next.done) << "pages the application already filled say nothing of the end";
  EXPECT_EQ(next.last_key, std::vector<std::string>{"40"});
  b.reached_end = true;
  b.last_key = {"100"};
  EXPECT_TRUE(AdvanceCheckpoint(next, b, 1000).done);
}

TEST(Backfill, PagesOnlyForAnOrdinaryTableWithoutWhere) {
  BackfillTask task;
  task.table = {"", "t"};
  TableInfo heap;
  heap.plain_heap = true;
  TableInfo partitioned;
  std::string error;
  EXPECT_TRUE(BatchesByPage(task, heap, true, &error));
  EXPECT_FALSE(BatchesByPage(task, heap, false, &error))
      << "no gate or sync trigger would catch a row moved behind the scan";
  EXPECT_FALSE(BatchesByPage(task, partitioned, true, &error));
  EXPECT_EQ(error, "");
  task.batch_by = BackfillTask::BatchBy::kKey;
  EXPECT_FALSE(BatchesByPage(task, heap, true, &error)) << "the operator asked for key order";
  task.batch_by = BackfillTask::BatchBy::kPages;
  EXPECT_TRUE(BatchesByPage(task, heap, false, &error)) << "the operator asked for pages";
  EXPECT_FALSE(BatchesByPage(task, partitioned, true, &error));
  EXPECT_NE(error.find("`batch_by: pages` needs an ordinary table"), std::string::npos) << error;
  task.batch_by = BackfillTask::BatchBy::kAuto;
  task.where = "status = 'old'";
  error.clear();
  EXPECT_FALSE(BatchesByPage(task, heap, true, &error)) << "a row could match `where` again";
  EXPECT_EQ(error, "");
}

TEST(Backfill, MovedRowsAreCaughtByNullCountGatesOnEverySetColumnOrTheSyncTrigger) {
  Plan plan;
  BackfillTask task;
  task.table = {"", "t"};
  task.set = {{"a", "1"}, {"b", "2"}};
  Defaults d;
  EXPECT_FALSE(OptionsFor(plan, task, d).moved_rows_caught);
  Gate ga;
  ga.kind = Gate::Kind::kNullCount;
  ga.table = task.table;
  ga.column = "a";
  plan.gates.push_back(ga);
  EXPECT_FALSE(OptionsFor(plan, task, d).moved_rows_caught) << "b has no gate";
  Gate gb = ga;
  gb.column = "b";
  plan.gates.push_back(gb);
  EXPECT_TRUE(OptionsFor(plan, task, d).moved_rows_caught);
  plan.gates.clear();
  task.sync_trigger = true;
  EXPECT_TRUE(OptionsFor(plan, task, d).moved_rows_caught);
}

TEST(Backfill, APageSpanIsWholePagesOrAShareOfOneNeverLeavingATupleBehind) {
  // Whole pages while the batch holds a page's rows.
  HeapSpan s = NextPageSpan({0, 0}, 5000, 157, 100);
  EXPECT_EQ(s.from, (HeapPos{0, 0}));
  EXPECT_EQ(s.to, (HeapPos{32, 0}));
  EXPECT_FALSE(s.reaches_end);
  s = NextPageSpan({90, 0}, 5000, 157, 100);
  EXPECT_EQ(s.to, (HeapPos{100, 0})) << "clamped to the range's end";
  EXPECT_TRUE(s.reaches_end);
  // Smaller batches take line pointers; the page's last share runs to the next page.
  s = NextPageSpan({7, 0}, 60, 157, 100);
  EXPECT_EQ(s.to, (HeapPos{7, 60}));
  s = NextPageSpan({7, 60}, 60, 157, 100);
  EXPECT_EQ(s.to, (HeapPos{7, 120}));
  s = NextPageSpan({7, 120}, 60, 157, 100);
  EXPECT_EQ(s.to, (HeapPos{8, 0})) << "offsets past the estimate are covered too";
  s = NextPageSpan({99, 120}, 60, 157, 100);
  EXPECT_EQ(s.to, (HeapPos{100, 0}));
  EXPECT_TRUE(s.reaches_end);
  // A batch in the middle of a page finishes the page's share first, whatever its size.
  s = NextPageSpan({7, 60}, 5000, 157, 100);
  EXPECT_EQ(s.to, (HeapPos{8, 0}));
}

namespace {
// Runs PlanPageBatch batch after batch as RunBatch would, returning "share:from-to" of each.
std::vector<std::string> PageBatches(TaskCheckpoint* cp, const std::vector<int64_t>& sizes,
                                     double rows_per_page, int64_t end) {
  std::vector<std::string> out;
  for (int64_t size : sizes) {
    PageBatchPlan p = PlanPageBatch(*cp, size, rows_per_page, end);
    if (p.empty) break;
    out.push_back(std::to_string(p.share) + ":" + std::to_string(p.span.from.page) + "-" +
                  std::to_string(p.span.to.page));
    cp->last_key = p.checkpoint;
    cp->done = p.span.reaches_end;
    if (cp->done) break;
  }
  return out;
}
}  // namespace

// Every share takes every page of [from, to) once, and no other.
void ExpectEveryShareTakesEveryPageOnce(const std::vector<std::string>& batches, int from, int to) {
  std::map<int, std::vector<int>> pages_of_share;
  for (const auto& b : batches) {
    const int share = std::stoi(b.substr(0, b.find(':')));
    const int first = std::stoi(b.substr(b.find(':') + 1));
    const int last = std::stoi(b.substr(b.find('-') + 1));
    for (int page = first; page < last; ++page) pages_of_share[share].push_back(page);
  }
  std::vector<int> all;
  for (int page = from; page < to; ++page) all.push_back(page);
  for (int s = 0; s < kPageShares; ++s) {
    std::vector<int> got = pages_of_share[s];
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, all) << "share " << s;
  }
}

// No batch reads a page one of the kRecentBatches batches before it wrote, but on the range's
// last pages (from `last_pages` on), where fewer spans are left.
void ExpectNoBatchReadsWhatTheLastOnesWrote(const std::vector<std::string>& batches,
                                                 int last_pages) {
  auto span = [](const std::string& b) {
    return std::make_pair(std::stoi(b.substr(b.find(':') + 1)), std::stoi(b.substr(b.find('-') + 1)));
  };
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto [first, last] = span(batches[i]);
    for (size_t back = 1; back <= kRecentBatches && back <= i; ++back) {
      const auto [wrote_first, wrote_last] = span(batches[i - back]);
      if (first < wrote_last && wrote_first < last) {
        EXPECT_GE(first, last_pages) << "batch " << i << " " << batches[i] << " reads what "
                                     << batches[i - back] << " wrote";
      }
    }
  }
}

TEST(Backfill, APageRangeGoesShareByShareSoNoBatchRewritesMoreThanATenthOfAPage) {
  const int spans = kRecentBatches + 1;
  const int end = 10 + 2 * spans * 10;
  TaskCheckpoint cp = PageRange("10", std::to_string(end));
  // 100 rows a page, batches of 100 rows: spans of 10 pages, each share over them in turn.
  PageBatchPlan p = PlanPageBatch(cp, 100, 100, end);
  EXPECT_EQ(p.share, 0);
  EXPECT_EQ(p.span.from, (HeapPos{10, 0}));
  EXPECT_EQ(p.span.to, (HeapPos{20, 0}));
  EXPECT_EQ(p.rows_held, 100);
  EXPECT_FALSE(p.only_changes);
  EXPECT_FALSE(p.span.reaches_end);
  std::vector<std::string> checkpoint = {"10", "0", "20"};
  for (int s = 1; s < kPageShares; ++s) checkpoint.push_back("10");
  checkpoint.insert(checkpoint.end(), {"10", "20"});
  for (int b = 1; b < kRecentBatches; ++b) checkpoint.insert(checkpoint.end(), {"0", "0"});
  EXPECT_EQ(p.checkpoint, checkpoint)
      << "where every share stands, each share's frontier, the pages of the last batches";
  const std::vector<std::string> got = PageBatches(&cp, std::vector<int64_t>(1000, 100), 100, end);
  // kRecentBatches + 1 spans in turn, so that a batch reads the pages a batch wrote only
  // kRecentBatches batches later.
  std::vector<std::string> expected;
  for (int s = 0; s < kPageShares; ++s) {
    for (int span = 0; span < spans; ++span) {
      expected.push_back(std::to_string(s) + ":" + std::to_string(10 + 10 * span) + "-" +
                         std::to_string(20 + 10 * span));
    }
  }
  ASSERT_GE(got.size(), expected.size());
  EXPECT_EQ(std::vector<std::string>(got.begin(), got.begin() + expected.size()), expected);
  EXPECT_TRUE(cp.done);
  EXPECT_EQ(cp.last_key.at(0), std::to_string(end));
  ExpectEveryShareTakesEveryPageOnce(got, 10, end);
  ExpectNoBatchReadsWhatTheLastOnesWrote(got, end - 5);

  // A range of a few spans: the spans near its end get smaller, so that there are still enough.
  TaskCheckpoint odd = PageRange("0", "40");
  const std::vector<std::string> odd_batches = PageBatches(&odd, std::vector<int64_t>(400, 100), 100, 40);
  EXPECT_TRUE(odd.done);
  ExpectEveryShareTakesEveryPageOnce(odd_batches, 0, 40);
  ExpectNoBatchReadsWhatTheLastOnesWrote(odd_batches, 36);

  // A batch size cut to a third after three batches (statement timeouts): later batches go over
  // fewer pages; no page is left to a share and none is taken twice.
  TaskCheckpoint shrunk = PageRange("0", "40");
  std::vector<int64_t> sizes = {100, 100, 100};
  sizes.resize(400, 30);
  const std::vector<std::string> shrunk_batches = PageBatches(&shrunk, sizes, 100, 40);
  EXPECT_TRUE(shrunk.done);
  ExpectEveryShareTakesEveryPageOnce(shrunk_batches, 0, 40);
  ExpectNoBatchReadsWhatTheLastOnesWrote(shrunk_batches, 36);
  // A batch size that grows: wider spans, the same coverage.
  TaskCheckpoint grown = PageRange("0", "97");
  std::vector<int64_t> growing;
  for (int i = 0; i < 400; ++i) growing.push_back(20 + 7 * i);
  const std::vector<std::string> grown_batches = PageBatches(&grown, growing, 100, 97);
  EXPECT_TRUE(grown.done);
  ExpectEveryShareTakesEveryPageOnce(grown_batches, 0, 97);
  ExpectNoBatchReadsWhatTheLastOnesWrote(grown_batches, 93);
}

TEST(Backfill, WithoutSharesOrBelowAPagesShareAPageRangeGoesBySpansOfWholeRows) {
  TaskCheckpoint cp = PageRange("0", "100");
  PageBatchPlan p = PlanPageBatch(cp, 500, 100, 100, /*shares=*/false);
  EXPECT_EQ(p.share, -1);
  EXPECT_EQ(p.span.to, (HeapPos{5, 0}));
  EXPECT_FALSE(p.only_changes);
  // Shares under way, then a batch cut below a tenth of a page: spans from where every share
  // has been, taking only the rows an update changes while some shares have gone further.
  std::vector<std::string> got =
      PageBatches(&cp, std::vector<int64_t>(kRecentBatches + 2, 100), 100, 100);
  EXPECT_EQ(got.back(), "1:0-10");
  p = PlanPageBatch(cp, 5, 100, 100);
  EXPECT_EQ(p.share, -1);
  EXPECT_EQ(p.span.from, (HeapPos{0, 0}));
  EXPECT_EQ(p.span.to, (HeapPos{0, 5}));
  EXPECT_TRUE(p.only_changes);
  EXPECT_EQ(p.checkpoint, (std::vector<std::string>{"0", "5"}));
  // Grown back: shares again, once a span has reached a page's start.
  cp.last_key = {"7", "0"};
  p = PlanPageBatch(cp, 100, 100, 100);
  EXPECT_EQ(p.share, 0);
  EXPECT_EQ(p.span.from, (HeapPos{7, 0}));
  EXPECT_EQ(p.shares, kPageShares);
}

TEST(Backfill, OnceARowStaysNullEveryPageBatchTakesOnlyTheRowsItsUpdateChanges) {
  const TaskCheckpoint cp = PageRange("0", "100");
  for (bool shares : {true, false}) {
    EXPECT_FALSE(PlanPageBatch(cp, 100, 100, 100, shares).only_changes);
    const PageBatchPlan p = PlanPageBatch(cp, 100, 100, 100, shares, /*skip_unfillable=*/true);
    EXPECT_TRUE(p.only_changes);
    EXPECT_EQ(p.shares, shares ? kPageShares : 0);
  }
}

TEST(Backfill, APageBatchGoesOnFromItsCheckpointAndAnOpenTailFollowsATruncatedTable) {
  TaskCheckpoint cp = PageRange("10", "20");
  // A checkpoint in the middle of a page (a span of whole rows, as an earlier version of tide
  // left it) goes on by spans to the page's end, then by shares.
  cp.last_key = {"15", "40"};
  PageBatchPlan p = PlanPageBatch(cp, 30, 100, 20);
  EXPECT_EQ(p.share, -1);
  EXPECT_EQ(p.span.from, (HeapPos{15, 40}));
  EXPECT_EQ(p.checkpoint, (std::vector<std::string>{"15", "70"}));
  EXPECT_EQ(p.rows_held, 30);
  cp.last_key = {"16", "0"};
  p = PlanPageBatch(cp, 30, 100, 20);
  EXPECT_EQ(p.share, 0);
  EXPECT_EQ(p.span.from, (HeapPos{16, 0}));
  EXPECT_EQ(p.span.to, (HeapPos{17, 0})) << "a quarter of the four pages left";
  // The open tail, in a table a vacuum cut to 12 pages: done, standing at the new end.
  TaskCheckpoint tail = PageRange("20", "");
  tail.last_key = {"30", "0"};
  p = PlanPageBatch(tail, 1000, 100, 12);
  EXPECT_TRUE(p.empty);
  EXPECT_TRUE(p.only_changes);
  EXPECT_EQ(p.checkpoint, (std::vector<std::string>{"12", "0"}));
  // The open tail takes spans of whole rows, only the rows an update changes.
  tail.last_key = {"10", "0"};
  p = PlanPageBatch(tail, 1000, 100, 12);
  EXPECT_EQ(p.share, -1);
  EXPECT_TRUE(p.only_changes);
  EXPECT_EQ(p.span.to, (HeapPos{12, 0}));
  EXPECT_TRUE(p.span.reaches_end);
}

TEST(Backfill, ABatchSizeBecomesPages) {
  EXPECT_EQ(PagesFor(5000, 157), 32);
  EXPECT_EQ(PagesFor(1, 157), 1);
  EXPECT_EQ(PagesFor(5000, 0), 5000) << "no estimate: a row a page at most";
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

namespace tide {
namespace {

TEST(VacuumSchedule, VacuumsOnceDeadRowsPileUpAndNotWhileAVacuumRuns) {
  VacuumSchedule v;
  EXPECT_FALSE(v.Due(DeadTuples{1000000, 5000, false}, 0)) << "below 10,000 dead rows";
  EXPECT_FALSE(v.Due(DeadTuples{1000000, 90000, false}, 0)) << "below 10% of the live rows";
  EXPECT_TRUE(v.Due(DeadTuples{1000000, 150000, false}, 0));
  EXPECT_FALSE(v.Due(DeadTuples{1000000, 150000, true}, 0)) << "autovacuum is at it";
}

TEST(VacuumSchedule, WaitsAGapAfterEachAndBacksOffWhenAVacuumReclaimsNothing) {
  VacuumSchedule v;
  const DeadTuples piled{1000000, 200000, false};
  ASSERT_TRUE(v.Due(piled, 0));
  v.Started(piled);
  v.Ended(1000, DeadTuples{1000000, 1000, false});
  // It reclaimed them; new ones piled up again.
  EXPECT_FALSE(v.Due(DeadTuples{1000000, 150000, false}, 1400)) << "within the 0.5 s gap";
  EXPECT_TRUE(v.Due(DeadTuples{1000000, 150000, false}, 1500));
  v.Started(DeadTuples{1000000, 150000, false});
  v.Ended(2000, DeadTuples{1000000, 149000, false});
  // An old snapshot keeps them: the dead rows stay, and the gap doubles each time.
  EXPECT_FALSE(v.Due(DeadTuples{1000000, 150000, false}, 2999)) << "gap now 1 s";
  EXPECT_TRUE(v.Due(DeadTuples{1000000, 150000, false}, 3000));
  v.Started(DeadTuples{1000000, 150000, false});
  v.Ended(4000, DeadTuples{1000000, 150000, false});
  EXPECT_FALSE(v.Due(DeadTuples{1000000, 150000, false}, 4000 + 1999));
  EXPECT_TRUE(v.Due(DeadTuples{1000000, 150000, false}, 4000 + 2000));
  for (int i = 0; i < 20; ++i) v.Ended(0, DeadTuples{1000000, 150000, false});
  EXPECT_FALSE(v.Due(DeadTuples{1000000, 150000, false}, 299999)) << "at most 5 min";
  EXPECT_TRUE(v.Due(DeadTuples{1000000, 150000, false}, 300000));
}

TEST(VacuumSchedule, CountsTheRowsTideWroteBeforeTheStatisticsDo) {
  VacuumSchedule v;
  const DeadTuples stale{1000000, 0, false};  // the statistics have not caught up yet
  v.Wrote(60000);
  EXPECT_FALSE(v.Due(stale, 0));
  v.Wrote(60000);
  EXPECT_TRUE(v.Due(stale, 0));
  v.Started(stale);
  v.Ended(500, DeadTuples{1000000, 0, false});
  v.Wrote(50000);
  EXPECT_FALSE(v.Due(stale, 5000)) << "the count starts again at each vacuum";
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {
TEST(VacuumSchedule, TheVacuumIsAsGentleAsAutovacuumWhileTheBackfillYields) {
  HealthLimits l;
  EXPECT_EQ(VacuumCostDelay(l).count(), 2) << "the default yields";
  l.yield_ratio = 0;
  EXPECT_EQ(VacuumCostDelay(l).count(), 0);
}
}  // namespace
}  // namespace tide
