// Splitting a backfill task into disjoint key ranges, one per worker. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/sql_text.h"
#include "tide/ports.h"

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

// What the catalog says of a table's size, for each of its leaf partitions (or the table itself).
struct StoredSize {
  double reltuples = -1;  // pg_class.reltuples; -1 (or 0 before PostgreSQL 14) when never analyzed
  int64_t bytes = 0;      // pg_relation_size
};
// About how many rows: each part's reltuples where it was analyzed, else a guess from its size
// (50 rows a page), so that a table never analyzed, or a partitioned one, is not taken as empty.
int64_t EstimateRows(const std::vector<StoredSize>& parts);

// Keys of other types (text, uuid, timestamp, composite) split at the quantiles of a sample.
// How many sampled keys to ask for when splitting into `parts` ranges.
int64_t KeysToSample(int parts);

// The share of the table's blocks to read (TABLESAMPLE SYSTEM, in percent) to find about `wanted`
// keys in a table of about `estimated_rows` rows; 100 for a small or unknown table.
double SamplePercent(int64_t estimated_rows, int64_t wanted);

// Page ranges for `parts` workers over a heap of `pages` pages with about `rows` rows: `parts`
// ranges of about equal pages, then an open tail from the last page on, to the table's end
// as it is when the tail runs (rows the application wrote during the pass, and rows it moved
// there by updating them). The tail runs last, after every other range (see TailWaits). An
// empty heap gives the open tail alone.
std::vector<RangeBounds> SplitPages(int64_t pages, int64_t rows, int parts);

// Whether range `index` of `ranges` waits: an open page tail is taken only once every other
// range is done, so that it does not chase pages the other workers are still appending.
bool TailWaits(const std::vector<TaskCheckpoint>& ranges, size_t index);

// Splits at the quantiles of `sorted`, a sample of the key in the key's own order (as the table's
// index sorts it), into at most `parts` ranges. Bounds are sampled keys, so each range holds
// rows; a sample too small to split gives one open range.
std::vector<KeyRange> SplitAtSamples(const std::vector<std::vector<std::string>>& sorted, int parts);

}  // namespace tide
