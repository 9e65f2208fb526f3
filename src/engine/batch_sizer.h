// Adaptive batch size: steers each batch toward a target duration. Pure; no clock of its own.
//
// The size follows the smoothed rate (an exponential moving average of rows per second over
// recent batches): grow gently (at most x1.2 a batch, as GitLab's optimizer does), shrink fast
// (a batch over twice the target halves the size at once; a statement timeout halves it too),
// always within [min, max].
#pragma once

#include <cstdint>

#include "tide/duration.h"

namespace tide {

struct BatchSizerOptions {
  int64_t initial = 1000;
  int64_t min = 100;
  int64_t max = 50000;
  Millis target{500};
};

class BatchSizer {
 public:
  explicit BatchSizer(BatchSizerOptions o);

  // The size of the next batch, before throttling.
  int64_t size() const { return size_; }

  // A batch of `scanned` rows took `elapsed`.
  void OnBatch(int64_t scanned, Millis elapsed);
  // New options (an operator's live settings): the size starts over from `initial` with
  // `restart`, else keeps where it stands within the new bounds.
  void Reconfigure(BatchSizerOptions o, bool restart);
  // The batch hit statement_timeout (or blocked other sessions): halve at once.
  void Shrink();
  // The rows per second the sizer believes in (0 before the first batch).
  double smoothed_rate() const { return rate_; }

 private:
  int64_t Clamp(double v) const;

  BatchSizerOptions o_;
  int64_t size_;
  double rate_ = 0;  // rows per second, smoothed
};

}  // namespace tide
