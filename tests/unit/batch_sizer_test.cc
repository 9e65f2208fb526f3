#include "engine/batch_sizer.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

BatchSizerOptions Opts() { return BatchSizerOptions{1000, 100, 50000, Millis(500)}; }

TEST(BatchSizer, StartsAtTheInitialSizeWithinBounds) {
  EXPECT_EQ(BatchSizer(Opts()).size(), 1000);
  EXPECT_EQ(BatchSizer({10, 100, 500, Millis(500)}).size(), 100);
  EXPECT_EQ(BatchSizer({9000, 100, 500, Millis(500)}).size(), 500);
}

TEST(BatchSizer, GrowsGentlyTowardTheTarget) {
  BatchSizer s(Opts());
  // 1000 rows in 50 ms: the database could do 10,000 rows in the 500 ms target.
  s.OnBatch(1000, Millis(50));
  EXPECT_EQ(s.size(), 1200) << "at most x1.2 per batch";
  int64_t last = s.size();
  for (int i = 0; i < 30; ++i) {
    s.OnBatch(s.size(), Millis(s.size() / 20));  // 20,000 rows/s
    EXPECT_LE(s.size(), last * 12 / 10 + 1);
    last = s.size();
  }
  EXPECT_NEAR(s.size(), 10000, 500) << "settles where a batch takes the target time";
}

TEST(BatchSizer, ShrinksAtOnceWhenABatchIsFarTooSlow) {
  BatchSizer s(BatchSizerOptions{8000, 100, 50000, Millis(500)});
  s.OnBatch(8000, Millis(2000));
  EXPECT_EQ(s.size(), 4000);
}

TEST(BatchSizer, FollowsASlowdownBySmoothedRate) {
  BatchSizer s(BatchSizerOptions{10000, 100, 50000, Millis(500)});
  for (int i = 0; i < 5; ++i) s.OnBatch(10000, Millis(500));
  for (int i = 0; i < 10; ++i) s.OnBatch(s.size(), Millis(s.size() / 5));  // 5,000 rows/s now
  EXPECT_NEAR(s.size(), 2500, 300);
}

TEST(BatchSizer, TimeoutsHalveDownToTheMinimum) {
  BatchSizer s(BatchSizerOptions{400, 100, 50000, Millis(500)});
  s.Shrink();
  EXPECT_EQ(s.size(), 200);
  s.Shrink();
  s.Shrink();
  EXPECT_EQ(s.size(), 100);
}

TEST(BatchSizer, EmptyBatchesChangeNothing) {
  BatchSizer s(Opts());
  s.OnBatch(0, Millis(5));
  EXPECT_EQ(s.size(), 1000);
  EXPECT_EQ(s.smoothed_rate(), 0);
}

}  // namespace
}  // namespace tide
