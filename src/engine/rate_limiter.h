// A rows-per-second cap shared by a task's workers. Pure: the caller passes the time.
//
// Each batch reserves its rows before it starts; the limiter answers how long to wait so that
// the rows committed over any minute stay at the cap. Unused capacity is not saved up beyond one
// second, so a pause is never followed by a burst.
#pragma once

#include <chrono>
#include <cstdint>

#include "tide/duration.h"

namespace tide {

class RateLimiter {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // rows_per_second <= 0: no cap.
  explicit RateLimiter(int64_t rows_per_second) : rate_(rows_per_second) {}

  // Reserves `rows` at `now`; returns how long the batch must wait before it starts.
  Millis Reserve(int64_t rows, TimePoint now);
  // Gives back `rows` a batch reserved and did not write (pages already filled, rows the
  // application filled): the cap counts the rows written.
  void Return(int64_t rows);
  bool enabled() const { return rate_ > 0; }
  int64_t rate() const { return rate_; }

 private:
  int64_t rate_;
  TimePoint next_free_{};
  bool started_ = false;
};

}  // namespace tide
