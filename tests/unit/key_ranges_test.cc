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

}  // namespace
}  // namespace tide
