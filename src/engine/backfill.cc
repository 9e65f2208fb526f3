#include "engine/backfill.h"

#include <algorithm>
#include <cmath>

#include "engine/guards.h"

namespace tide {

const char* ToString(RangeUnit unit) { return unit == RangeUnit::kPage ? "page" : "key"; }

StatementLimits LimitsFor(const Plan& plan, const Defaults& defaults) {
  return StatementLimits{plan.settings.lock_timeout.value_or(defaults.lock_timeout),
                         plan.settings.statement_timeout.value_or(defaults.statement_timeout)};
}

int64_t BatchSizeFor(const Plan& plan, const BackfillTask& task, const Defaults& defaults) {
  if (task.batch_size) return *task.batch_size;
  if (plan.batch_size) return *plan.batch_size;
  return defaults.batch_size;
}

BackfillOptions OptionsFor(const Plan& plan, const BackfillTask& task, const Defaults& d) {
  BackfillOptions o;
  o.workers = static_cast<int>(task.workers.value_or(d.workers));
  o.sizer.min = task.min_batch_size.value_or(d.min_batch_size);
  o.sizer.max = std::max(o.sizer.min, task.max_batch_size.value_or(d.max_batch_size));
  o.sizer.initial = BatchSizeFor(plan, task, d);
  o.sizer.target = task.target_batch_time.value_or(d.target_batch_time);
  o.max_rows_per_second = task.max_rows_per_second.value_or(d.max_rows_per_second);
  o.pause_between_batches = task.pause_between_batches.value_or(d.pause_between_batches);
  o.health.max_replication_lag = plan.settings.max_replication_lag.value_or(d.max_replication_lag);
  o.health.max_active_sessions = plan.settings.max_active_sessions.value_or(d.max_active_sessions);
  o.health.throttle_query = plan.settings.throttle_query.value_or(d.throttle_query);
  o.health.yield_ratio = plan.settings.yield_ratio.value_or(d.yield_ratio);
  const Guards g = EffectiveGuards(plan.settings, d);
  o.health.hold_on_autovacuum = g.hold_on_autovacuum;
  o.health.max_archive_backlog = g.max_archive_backlog;
  o.health.max_slot_retained_wal = g.max_slot_retained_wal;
  o.health.max_xmin_age = g.max_xmin_age;
  o.health.slow_on_forced_checkpoints = g.slow_on_forced_checkpoints;
  o.health.hold = g.throttle_hold;
  o.vacuum_between_batches = g.vacuum_between_batches;
  o.vacuum_timeout = plan.settings.gate_timeout.value_or(d.gate_timeout);
  bool gated = true;
  for (const auto& [column, expr] : task.set) gated &= NullCountGateCovers(plan, task.table, column);
  o.moved_rows_caught = task.sync_trigger || (gated && !task.set.empty());
  return o;
}

bool BatchesByPage(const BackfillTask& task, const TableInfo& info, bool moved_rows_caught,
                   std::string* error) {
  using By = BackfillTask::BatchBy;
  if (task.batch_by == By::kKey) return false;
  if (task.batch_by == By::kPages && !info.plain_heap) {
    *error = "`batch_by: pages` needs an ordinary table, and `" + task.table.Display() +
             "` is partitioned, has inheritance children or is not a heap table; remove `batch_by` "
             "(it goes by key)";
    return false;
  }
  if (task.batch_by == By::kPages) return true;
  return info.plain_heap && task.where.empty() && moved_rows_caught;
}

int64_t PagesFor(int64_t rows, double rows_per_page) {
  const double per_page = std::max(1.0, rows_per_page);
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(static_cast<double>(rows) / per_page)));
}

HeapSpan NextPageSpan(HeapPos from, int64_t rows, double rows_per_page, int64_t end) {
  HeapSpan s;
  s.from = from;
  const double per_page = std::max(1.0, rows_per_page);
  rows = std::max<int64_t>(1, rows);
  if (from.offset == 0 && static_cast<double>(rows) >= per_page) {
    s.to = HeapPos{from.page + PagesFor(rows, per_page), 0};
  } else {
    const int64_t to = from.offset + rows;
    // The page's last share runs to the next page: offsets past the estimate are covered too.
    if (static_cast<double>(to) >= std::ceil(per_page)) {
      s.to = HeapPos{from.page + 1, 0};
    } else {
      s.to = HeapPos{from.page, to};
    }
  }
  if (s.to.page >= end) s.to = HeapPos{end, 0};
  s.reaches_end = s.to.page >= end && s.to.offset == 0;
  return s;
}

namespace {

// The next span of rows by position from `at`, as NextPageSpan gives it.
PageBatchPlan SpanBatch(HeapPos at, int64_t batch_size, double rows_per_page, int64_t end) {
  PageBatchPlan p;
  p.span = NextPageSpan(at, batch_size, rows_per_page, end);
  p.checkpoint = {std::to_string(p.span.to.page), std::to_string(p.span.to.offset)};
  const double per_page = std::max(1.0, rows_per_page);
  p.rows_held = p.span.from.offset == 0 && p.span.to.offset == 0
                    ? static_cast<int64_t>(static_cast<double>(p.span.to.page - p.span.from.page) * per_page)
                    : batch_size;
  return p;
}

}  // namespace

namespace {

PageBatchPlan PlanPageBatchOf(const TaskCheckpoint& from, int64_t batch_size,
                              double rows_per_page, int64_t end, bool shares) {
  HeapPos at{std::stoll(from.lower.at(0)), 0};
  std::vector<int64_t> frontier;
  std::vector<std::pair<int64_t, int64_t>> recent;  // the pages of the range's last batches
  if (!from.last_key.empty()) {
    at.page = std::stoll(from.last_key.at(0));
    at.offset = from.last_key.size() > 1 ? std::stoll(from.last_key[1]) : 0;
    if (from.last_key.size() == 2 + kPageShares + 2 * kRecentBatches) {
      for (int s = 0; s < kPageShares; ++s) frontier.push_back(std::stoll(from.last_key[2 + s]));
      for (int b = 0; b < kRecentBatches; ++b) {
        recent.emplace_back(std::stoll(from.last_key[2 + kPageShares + 2 * b]),
                            std::stoll(from.last_key[3 + kPageShares + 2 * b]));
      }
    }
  }
  const bool open = from.upper.empty();
  if (at.page >= end) {
    PageBatchPlan p;
    p.only_changes = open;
    // Nothing left. An open range whose table a vacuum truncated stands at the new end, so that
    // the pages the table grows back into are read by the next catch-up.
    p.empty = true;
    p.checkpoint = open || from.last_key.empty()
                       ? std::vector<std::string>{std::to_string(end), "0"}
                       : from.last_key;
    return p;
  }
  batch_size = std::max<int64_t>(1, batch_size);
  const bool below_a_page = static_cast<double>(batch_size) * kPageShares < rows_per_page;
  if (open || !shares || below_a_page || (frontier.empty() && at.offset != 0)) {
    // Spans of whole rows: the open tail, a task without shares, a batch smaller than a page's
    // share (statement timeouts cut it), or a range a span left in the middle of a page. From
    // where every share has been, taking only the rows an update changes where some shares have
    // gone further (a row whose expression yields NULL is not taken twice).
    PageBatchPlan p = SpanBatch(at, batch_size, rows_per_page, end);
    p.only_changes = open || (!frontier.empty() && frontier.front() > frontier.back());
    return p;
  }
  if (frontier.empty()) frontier.assign(kPageShares, at.page);
  const int64_t pages = PagesFor(batch_size * kPageShares, rows_per_page);
  // The last share that can move up to the one before it, on pages the last batches left alone;
  // else share 0 onto new pages; else (at the range's end) the last share that can move at all.
  int share = -1, fallback = -1;
  int64_t to = 0;
  for (int s = kPageShares - 1; s > 0 && share < 0; --s) {
    if (frontier[s] >= frontier[s - 1]) continue;
    const int64_t f = frontier[s];
    int64_t limit = std::min(f + pages, frontier[s - 1]);
    bool blocked = false;
    for (const auto& [first, last] : recent) {
      if (f >= first && f < last) blocked = true;
      if (f < first) limit = std::min(limit, first);
    }
    if (blocked) {
      if (fallback < 0) fallback = s;
      continue;
    }
    share = s;
    to = limit;
  }
  if (share < 0 && frontier[0] < end) {
    // At most a share of what is left, so that the range's last pages still make enough spans.
    share = 0;
    to = frontier[0] + std::min(pages, std::max<int64_t>(1, (end - frontier[0] + kRecentBatches) /
                                                                (kRecentBatches + 1)));
  }
  if (share < 0) {
    share = fallback;
    to = std::min(frontier[share] + pages, frontier[share - 1]);
  }
  PageBatchPlan p;
  p.share = share;
  p.shares = kPageShares;
  p.span.from = HeapPos{frontier[share], 0};
  p.span.to = HeapPos{to, 0};
  frontier[share] = to;
  p.span.reaches_end = frontier.back() >= end;
  p.checkpoint = {std::to_string(frontier.back()), "0"};
  for (int64_t f : frontier) p.checkpoint.push_back(std::to_string(f));
  recent.insert(recent.begin(), {p.span.from.page, to});
  recent.resize(kRecentBatches, {0, 0});
  for (const auto& [first, last] : recent) {
    p.checkpoint.push_back(std::to_string(first));
    p.checkpoint.push_back(std::to_string(last));
  }
  p.rows_held = static_cast<int64_t>(static_cast<double>(p.span.to.page - p.span.from.page) *
                                     std::max(1.0, rows_per_page) / kPageShares);
  return p;
}

}  // namespace

PageBatchPlan PlanPageBatch(const TaskCheckpoint& from, int64_t batch_size,
                            double rows_per_page, int64_t end, bool shares,
                            bool skip_unfillable) {
  PageBatchPlan p = PlanPageBatchOf(from, batch_size, rows_per_page, end, shares);
  p.only_changes = p.only_changes || skip_unfillable;
  return p;
}

BatchStatement MakeBatchStatement(const BackfillTask& task, const std::vector<KeyColumn>& key,
                                  const std::map<std::string, std::string>& column_types) {
  BatchStatement b{task.table, key, task.set, task.where, {}};
  for (const auto& [column, expr] : task.set) {
    auto it = column_types.find(column);
    if (it != column_types.end()) b.column_types[column] = it->second;
  }
  return b;
}

TaskCheckpoint AdvanceCheckpoint(const TaskCheckpoint& before, const BatchResult& batch,
                                 int64_t batch_size) {
  TaskCheckpoint after = before;
  after.rows_updated += batch.updated;
  after.rows_scanned += batch.scanned;
  after.batches += 1;
  if (!batch.last_key.empty()) after.last_key = batch.last_key;
  after.done = before.unit == RangeUnit::kPage ? batch.reached_end : batch.scanned < batch_size;
  return after;
}

bool SweepSchedule::Due() {
  if (skip_ == 0) return true;
  --skip_;
  return false;
}

void SweepSchedule::Swept(int64_t pending) {
  if (pending > 0) {
    skip_ = 0;
    next_ = 1;
    return;
  }
  skip_ = next_;
  next_ = std::min(next_ * 2, kMaxSkip);
}

bool ShouldReportProgress(int64_t rows_before, int64_t rows_after, int64_t estimated,
                          int64_t ms_since_last_report) {
  if (ms_since_last_report >= 30000) return true;
  if (estimated <= 0) return false;
  return rows_before * 10 / estimated != rows_after * 10 / estimated;
}

bool VacuumSchedule::Due(const DeadTuples& d, int64_t now_ms) {
  const int64_t dead = std::max(d.dead, written_);
  if (d.vacuum_running || dead < kMinDead || dead * 10 < d.live) return false;
  return !ran_ || now_ms - ended_ms_ >= gap_ms_;
}

Millis VacuumCostDelay(const HealthLimits& limits) {
  return limits.yield_ratio > 0 ? Millis(2) : Millis(0);
}

void VacuumSchedule::Started(const DeadTuples& d) {
  dead_before_ = std::max(d.dead, written_);
  written_ = 0;
}

void VacuumSchedule::Ended(int64_t now_ms, const DeadTuples& after) {
  ran_ = true;
  ended_ms_ = now_ms;
  // It left most of them when something (an old snapshot) holds them.
  gap_ms_ = after.dead * 2 < dead_before_ ? kMinGapMs : std::min(gap_ms_ * 2, kMaxGapMs);
}

}  // namespace tide
