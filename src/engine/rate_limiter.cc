#include "engine/rate_limiter.h"

#include <algorithm>

namespace tide {

Millis RateLimiter::Reserve(int64_t rows, TimePoint now) {
  if (rate_ <= 0 || rows <= 0) return Millis(0);
  if (!started_ || next_free_ < now - std::chrono::seconds(1)) {
    next_free_ = now - (started_ ? std::chrono::seconds(1) : std::chrono::seconds(0));
    started_ = true;
  }
  const TimePoint start = std::max(now, next_free_);
  next_free_ += std::chrono::microseconds(rows * 1000000 / rate_);
  return std::chrono::duration_cast<Millis>(start - now);
}

void RateLimiter::Return(int64_t rows) {
  if (rate_ <= 0 || rows <= 0 || !started_) return;
  next_free_ -= std::chrono::microseconds(rows * 1000000 / rate_);
}

}  // namespace tide
