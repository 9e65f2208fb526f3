#include "engine/batch_sizer.h"

#include <algorithm>

namespace tide {

namespace {
constexpr double kGrowth = 1.2;    // at most this much larger than the last size
constexpr double kSmoothing = 0.3;  // weight of the newest batch in the moving average
}  // namespace

BatchSizer::BatchSizer(BatchSizerOptions o) : o_(o), size_(0) {
  o_.min = std::max<int64_t>(1, o_.min);
  o_.max = std::max(o_.min, o_.max);
  size_ = Clamp(static_cast<double>(o_.initial));
}

void BatchSizer::Reconfigure(BatchSizerOptions o, bool restart) {
  o_ = o;
  o_.min = std::max<int64_t>(1, o_.min);
  o_.max = std::max(o_.min, o_.max);
  size_ = Clamp(static_cast<double>(restart ? o_.initial : size_));
}

int64_t BatchSizer::Clamp(double v) const {
  return std::clamp(static_cast<int64_t>(v), o_.min, o_.max);
}

void BatchSizer::OnBatch(int64_t scanned, Millis elapsed) {
  if (scanned <= 0) return;  // an empty batch says nothing about speed
  const double ms = std::max<double>(1.0, static_cast<double>(elapsed.count()));
  const double rate = scanned * 1000.0 / ms;
  rate_ = rate_ == 0 ? rate : (1 - kSmoothing) * rate_ + kSmoothing * rate;
  if (elapsed.count() > 2 * o_.target.count()) {
    size_ = Clamp(size_ / 2.0);
    return;
  }
  const double ideal = rate_ * static_cast<double>(o_.target.count()) / 1000.0;
  size_ = Clamp(std::min(ideal, size_ * kGrowth));
}

void BatchSizer::Shrink() { size_ = Clamp(size_ / 2.0); }

}  // namespace tide
