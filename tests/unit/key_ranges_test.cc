#include "engine/key_ranges.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

TEST(KeyRanges, OnlySingleIntegerKeysSplitByValue) {
  EXPECT_TRUE(SplitsByValue({{"id", "bigint"}}));
  EXPECT_TRUE(SplitsByValue({{"id", "integer"}}));
  EXPECT_FALSE(SplitsByValue({{"id", "text"}}));
  EXPECT_FALSE(SplitsByValue({{"id", "uuid"}}));
  EXPECT_FALSE(SplitsByValue({{"a", "integer"}, {"b", "integer"}}));
}

TEST(KeyRanges, SplitsIntoDisjointRangesOpenAtBothEnds) {
  auto r = SplitIntegerRange(1, 1000, 4);
  ASSERT_EQ(r.size(), 4u);
  EXPECT_TRUE(r[0].lower.empty());
  EXPECT_EQ(r[0].upper, std::vector<std::string>{"250"});
  EXPECT_EQ(r[1].lower, std::vector<std::string>{"250"});
  EXPECT_EQ(r[1].upper, std::vector<std::string>{"500"});
  EXPECT_EQ(r[3].lower, std::vector<std::string>{"750"});
  EXPECT_TRUE(r[3].upper.empty()) << "rows inserted above the maximum are covered";
}

TEST(KeyRanges, EmptyTinyAndSingleWorkerTablesGetOneRange) {
  EXPECT_EQ(SplitIntegerRange(std::nullopt, std::nullopt, 4).size(), 1u);
  EXPECT_EQ(SplitIntegerRange(5, 5, 4).size(), 1u);
  EXPECT_EQ(SplitIntegerRange(1, 1000, 1).size(), 1u);
  EXPECT_EQ(SplitIntegerRange(1, 3, 8).size(), 2u);
}

TEST(KeyRanges, HugeSpansDoNotOverflow) {
  auto r = SplitIntegerRange(INT64_MIN + 1, INT64_MAX, 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].upper, std::vector<std::string>{"0"});
}

TEST(KeyRanges, OtherKeysSplitAtTheQuantilesOfASample) {
  std::vector<std::vector<std::string>> sample;
  for (char c = 'a'; c <= 'z'; ++c) sample.push_back({std::string(1, c), "1"});
  auto r = SplitAtSamples(sample, 2);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(r[0].lower.empty());
  EXPECT_EQ(r[0].upper, (std::vector<std::string>{"n", "1"})) << "the 13th of 26 keys";
  EXPECT_EQ(r[1].lower, r[0].upper) << "disjoint and adjacent";
  EXPECT_TRUE(r[1].upper.empty());
  auto four = SplitAtSamples(sample, 4);
  ASSERT_EQ(four.size(), 4u);
  for (size_t i = 1; i < four.size(); ++i) EXPECT_EQ(four[i].lower, four[i - 1].upper);
  EXPECT_LT(four[0].upper, four[1].upper);
  EXPECT_LT(four[1].upper, four[2].upper);
}

TEST(KeyRanges, ASmallOrRepeatedSampleNeverGivesAnEmptyRange) {
  EXPECT_EQ(SplitAtSamples({}, 4).size(), 1u);
  EXPECT_EQ(SplitAtSamples({{"a"}, {"b"}, {"c"}}, 4).size(), 1u) << "fewer than 2 samples a range";
  EXPECT_EQ(SplitAtSamples({{"a"}, {"b"}, {"c"}, {"d"}}, 4).size(), 2u);
  // Sampling the same key twice (it cannot be in the table twice) never repeats a bound.
  auto r = SplitAtSamples({{"a"}, {"b"}, {"b"}, {"b"}, {"b"}, {"c"}, {"d"}, {"e"}}, 4);
  for (size_t i = 1; i < r.size(); ++i) EXPECT_NE(r[i].lower, r[i - 1].lower);
  EXPECT_TRUE(r.back().upper.empty());
  EXPECT_EQ(SplitAtSamples({{"a"}, {"b"}}, 1).size(), 1u);
}

TEST(KeyRanges, TheSampleReadsAShareOfTheTableBigEnoughForTheKeysWanted) {
  EXPECT_EQ(SamplePercent(0, 2000), 100) << "unknown size: read it all";
  EXPECT_EQ(SamplePercent(1500, 2000), 100);
  EXPECT_DOUBLE_EQ(SamplePercent(1000000, 2000), 0.4) << "twice the share the estimate asks";
  EXPECT_GT(SamplePercent(int64_t{1} << 40, 2000), 0);
  EXPECT_EQ(KeysToSample(2), 2000);
  EXPECT_EQ(KeysToSample(64), 20000) << "capped";
}

TEST(KeyRanges, RowsAreEstimatedFromStatisticsElseFromSize) {
  EXPECT_EQ(EstimateRows({{1000000, 1 << 30}}), 1000000) << "analyzed: its statistics";
  EXPECT_EQ(EstimateRows({{-1, 8192 * 100}}), 5000) << "never analyzed: 50 rows a page";
  EXPECT_EQ(EstimateRows({{0, 8192 * 10}}), 500) << "0 before PostgreSQL 14 also means unknown";
  EXPECT_EQ(EstimateRows({{-1, 0}}), 0) << "empty";
  // A partitioned table: the sum of its partitions, each by what is known of it.
  EXPECT_EQ(EstimateRows({{2000, 8192 * 20}, {-1, 8192 * 20}}), 3000);
  EXPECT_EQ(EstimateRows({}), 0);
}

TEST(KeyRanges, PagesSplitEvenlyAndEndInAnOpenTail) {
  const auto r = SplitPages(1000, 157000, 2);
  ASSERT_EQ(r.size(), 3u);
  for (const auto& b : r) EXPECT_EQ(b.unit, RangeUnit::kPage);
  EXPECT_EQ(r[0].lower, std::vector<std::string>{"0"});
  EXPECT_EQ(r[0].upper, std::vector<std::string>{"500"});
  EXPECT_EQ(r[1].lower, std::vector<std::string>{"500"}) << "pages: lower inclusive, upper not";
  EXPECT_EQ(r[1].upper, std::vector<std::string>{"1000"});
  EXPECT_EQ(r[2].lower, std::vector<std::string>{"1000"});
  EXPECT_TRUE(r[2].upper.empty()) << "the tail runs to the table's end when it runs";
  EXPECT_EQ(r[0].rows_estimated + r[1].rows_estimated, 157000);
  EXPECT_EQ(r[2].rows_estimated, 0);
  // More workers than pages: one range a page; an empty heap: the tail alone.
  EXPECT_EQ(SplitPages(2, 100, 8).size(), 3u);
  const auto empty = SplitPages(0, 0, 4);
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(empty[0].lower, std::vector<std::string>{"0"});
  EXPECT_TRUE(empty[0].upper.empty());
}

TEST(KeyRanges, TheOpenPageTailWaitsForEveryOtherRange) {
  std::vector<TaskCheckpoint> r(3);
  for (auto& cp : r) cp.unit = RangeUnit::kPage;
  r[0].upper = {"500"};
  r[1].upper = {"1000"};
  EXPECT_FALSE(TailWaits(r, 0));
  EXPECT_FALSE(TailWaits(r, 1));
  EXPECT_TRUE(TailWaits(r, 2));
  r[0].done = true;
  EXPECT_TRUE(TailWaits(r, 2)) << "range 1 still appends new row versions at the end";
  r[1].done = true;
  EXPECT_FALSE(TailWaits(r, 2));
  // A key range open above never waits: it holds its share of the rows.
  std::vector<TaskCheckpoint> keys(2);
  keys[0].upper = {"500"};
  EXPECT_FALSE(TailWaits(keys, 1));
}

}  // namespace
}  // namespace tide
