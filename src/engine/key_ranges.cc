#include "engine/key_ranges.h"

#include <algorithm>

namespace tide {

bool SplitsByValue(const std::vector<KeyColumn>& key) {
  if (key.size() != 1) return false;
  const std::string& t = key[0].type;
  return t == "smallint" || t == "integer" || t == "bigint";
}

namespace {
// Ranges between increasing inner bounds: open below, (b1, b2], ..., open above.
std::vector<KeyRange> RangesBetween(const std::vector<std::vector<std::string>>& bounds) {
  std::vector<KeyRange> out;
  std::vector<std::string> lower;
  for (const auto& b : bounds) {
    out.push_back(KeyRange{lower, b});
    lower = b;
  }
  out.push_back(KeyRange{lower, {}});
  return out;
}
}  // namespace

std::vector<KeyRange> SplitIntegerRange(std::optional<int64_t> min, std::optional<int64_t> max,
                                        int parts) {
  if (!min || !max || parts <= 1 || *max <= *min) return {KeyRange{}};
  // Width computed in long double: max - min can overflow int64.
  const long double span = static_cast<long double>(*max) - static_cast<long double>(*min);
  if (span < parts) parts = static_cast<int>(span);
  std::vector<std::vector<std::string>> bounds;
  for (int i = 1; i < parts; ++i) {
    bounds.push_back({std::to_string(*min + static_cast<int64_t>(span * i / parts))});
  }
  return RangesBetween(bounds);
}

std::vector<RangeBounds> SplitPages(int64_t pages, int64_t rows, int parts) {
  std::vector<RangeBounds> out;
  parts = static_cast<int>(std::clamp<int64_t>(pages, 1, std::max(1, parts)));
  if (pages > 0) {
    for (int i = 0; i < parts; ++i) {
      const int64_t from = pages * i / parts, to = pages * (i + 1) / parts;
      out.push_back(RangeBounds{{std::to_string(from)}, {std::to_string(to)}, RangeUnit::kPage,
                                rows * (to - from) / pages});
    }
  }
  out.push_back(RangeBounds{{std::to_string(std::max<int64_t>(0, pages))}, {}, RangeUnit::kPage, 0});
  return out;
}

bool TailWaits(const std::vector<TaskCheckpoint>& ranges, size_t index) {
  const TaskCheckpoint& r = ranges[index];
  if (r.unit != RangeUnit::kPage || !r.upper.empty()) return false;
  for (size_t i = 0; i < ranges.size(); ++i) {
    if (i != index && !ranges[i].done) return true;
  }
  return false;
}

int64_t EstimateRows(const std::vector<StoredSize>& parts) {
  double rows = 0;
  for (const auto& p : parts) rows += p.reltuples > 0 ? p.reltuples : p.bytes / 8192 * 50.0;
  return static_cast<int64_t>(rows);
}

int64_t KeysToSample(int parts) { return std::min<int64_t>(20000, 1000 * std::max(1, parts)); }

double SamplePercent(int64_t estimated_rows, int64_t wanted) {
  if (estimated_rows <= 0 || wanted >= estimated_rows) return 100;
  // Twice what the estimate asks for: blocks differ in how many live rows they hold.
  return std::clamp(200.0 * static_cast<double>(wanted) / static_cast<double>(estimated_rows),
                    0.0001, 100.0);
}

std::vector<KeyRange> SplitAtSamples(const std::vector<std::vector<std::string>>& sorted, int parts) {
  // Fewer than two samples per range says too little about where the keys lie.
  parts = static_cast<int>(std::min<int64_t>(parts, static_cast<int64_t>(sorted.size()) / 2));
  std::vector<std::vector<std::string>> bounds;
  for (int i = 1; i < parts; ++i) {
    const auto& b = sorted[sorted.size() * static_cast<size_t>(i) / static_cast<size_t>(parts)];
    if (bounds.empty() || bounds.back() != b) bounds.push_back(b);  // a repeat: no empty range
  }
  return RangesBetween(bounds);
}

}  // namespace tide
