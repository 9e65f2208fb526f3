#include "runtime/retry.h"

#include <algorithm>
#include <random>

namespace tide {

int64_t MillisSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t).count();
}

Millis Backoff(int attempt, Millis base, Millis cap) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  int64_t wait = base.count() << std::min(attempt, 16);
  wait = std::min<int64_t>(wait, cap.count());
  std::uniform_int_distribution<int64_t> jitter(wait / 2, std::max<int64_t>(wait, 1));
  return Millis(jitter(rng));
}

}  // namespace tide
