// Splitting a backfill task into disjoint key ranges, one per worker. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/sql_text.h"

namespace tide {

// A range of keys: lower exclusive, upper inclusive; an empty bound is open. The first range is
// open below and the last open above, so rows inserted beyond the maximum during the backfill
// are covered too.
struct KeyRange {
  std::vector<std::string> lower;
  std::vector<std::string> upper;
};

// True for single-column integer keys (smallint, integer, bigint), which split by value.
bool SplitsByValue(const std::vector<KeyColumn>& key);

// Splits [min, max] into at most `parts` ranges of about equal width. Empty or one-value tables,
// and parts <= 1, give one open range.
std::vector<KeyRange> SplitIntegerRange(std::optional<int64_t> min, std::optional<int64_t> max,
                                        int parts);

}  // namespace tide
