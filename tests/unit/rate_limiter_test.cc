#include "engine/rate_limiter.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

using Clock = std::chrono::steady_clock;

TEST(RateLimiter, NoCapNeverWaits) {
  RateLimiter r(0);
  EXPECT_EQ(r.Reserve(1000000, Clock::now()), Millis(0));
}

TEST(RateLimiter, HoldsTheCapOverAMinuteForSeveralWorkers) {
  RateLimiter r(20000);
  auto now = Clock::time_point{} + std::chrono::hours(1);
  // Three workers, each batch of 1000 rows takes 10 ms of work once it may start.
  std::vector<Clock::time_point> free_at(3, now);
  int64_t rows = 0;
  const auto end = now + std::chrono::minutes(1);
  for (;;) {
    size_t w = std::min_element(free_at.begin(), free_at.end()) - free_at.begin();
    auto t = free_at[w];
    if (t >= end) break;
    auto wait = r.Reserve(1000, t);
    auto start = t + wait;
    if (start >= end) break;
    rows += 1000;
    free_at[w] = start + Millis(10);
  }
  EXPECT_NEAR(rows, 20000 * 60, 20000 * 60 / 100) << "within 1%";
}

TEST(RateLimiter, APauseIsNotFollowedByABurst) {
  RateLimiter r(1000);
  auto now = Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(r.Reserve(1000, now), Millis(0));
  now += std::chrono::minutes(5);  // idle (throttled) for five minutes
  EXPECT_EQ(r.Reserve(1000, now), Millis(0));
  EXPECT_EQ(r.Reserve(1000, now), Millis(0)) << "one second of credit at most";
  EXPECT_EQ(r.Reserve(1000, now), Millis(1000));
}

TEST(RateLimiter, RowsReservedButNotWrittenAreGivenBack) {
  RateLimiter r(1000);
  auto now = Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(r.Reserve(1000, now), Millis(0));
  EXPECT_EQ(r.Reserve(1000, now), Millis(1000));
  r.Return(1000);  // the second batch's pages were already filled
  EXPECT_EQ(r.Reserve(1000, now), Millis(1000)) << "as if the second batch had not been";
  // Never more than the one second of credit a pause leaves.
  r.Return(100000);
  now += std::chrono::seconds(10);
  EXPECT_EQ(r.Reserve(1000, now), Millis(0));
  EXPECT_EQ(r.Reserve(1000, now), Millis(0));
  EXPECT_EQ(r.Reserve(1000, now), Millis(1000));
}

}  // namespace
}  // namespace tide
