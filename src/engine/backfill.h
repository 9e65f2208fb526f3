// Backfill decisions: the batch statement of a task, how a checkpoint advances, the batch size
// and the statement limits. Pure.
#pragma once

#include <cstdint>

#include "engine/batch_sizer.h"
#include "engine/sql_text.h"
#include "engine/throttle.h"
#include "tide/config.h"
#include "tide/plan.h"
#include "tide/ports.h"

namespace tide {

// The limits every statement of `plan` runs with: the plan's settings over the daemon defaults.
StatementLimits LimitsFor(const Plan& plan, const Defaults& defaults);

// The task's batch size: the task's, else the plan's, else the daemon default.
int64_t BatchSizeFor(const Plan& plan, const BackfillTask& task, const Defaults& defaults);

// Everything that steers one backfill task: the task's keys over the plan's over the defaults.
struct BackfillOptions {
  int workers = 1;
  BatchSizerOptions sizer;
  int64_t max_rows_per_second = 0;
  Millis pause_between_batches{0};
  HealthLimits health;
  // A row the application moves behind a page scan (an UPDATE onto room a vacuum made on a page
  // already read) is caught: by a null_count gate on every set column (the catch-up fills it
  // before contract), or by the sync trigger (the UPDATE itself fills it).
  bool moved_rows_caught = false;
  // VACUUM the table when the batches' dead rows pile up (see VacuumSchedule), each under this
  // statement_timeout (the plan's gate_timeout: a vacuum reads the whole table).
  bool vacuum_between_batches = true;
  Millis vacuum_timeout{600000};
};
BackfillOptions OptionsFor(const Plan& plan, const BackfillTask& task, const Defaults& defaults);

// Whether the task's batches go by page (see RangeUnit): `batch_by: pages`, or by default an
// ordinary heap table (no partitions, no inheritance children), no `where` (a row that still
// matched it after its update would be found again on the page it moved to), and
// `moved_rows_caught` (see BackfillOptions). *error says why `batch_by: pages` cannot be
// honoured.
bool BatchesByPage(const BackfillTask& task, const TableInfo& info, bool moved_rows_caught,
                   std::string* error);

// The pages a batch of about `rows` rows spans at `rows_per_page`: at least 1.
int64_t PagesFor(int64_t rows, double rows_per_page);

// A place in the heap: a tuple id (page, line pointer offset). (p, 0) comes before every tuple
// of page p.
struct HeapPos {
  int64_t page = 0;
  int64_t offset = 0;
  bool operator==(const HeapPos& o) const { return page == o.page && offset == o.offset; }
};
// The span [from, to) of the next page batch of about `rows` rows, from `from`, in a range that
// ends before page `end`. Whole pages while the batch holds at least a page's rows; a smaller
// batch (after statement timeouts, or a small max_batch_size) takes a share of a page's line
// pointers, the page's last share running to the next page so that no tuple is left behind.
struct HeapSpan {
  HeapPos from, to;
  bool reaches_end = false;  // `to` is the range's end
};
HeapSpan NextPageSpan(HeapPos from, int64_t rows, double rows_per_page, int64_t end);

// A closed page range is updated in kPageShares shares: a batch takes, from a span of pages, the
// rows whose key falls in one share (see ShareOf), so that no batch transaction rewrites
// more than about a tenth of any heap page or index page. Every batch then finds room its
// predecessors left: the row versions earlier batches left behind are pruned as the next batch
// reads their page, so most new versions stay on their page (HOT: no new index entry), and the
// index takes the rest in the free tenth its pages are built with (fillfactor 90), removing
// earlier batches' dead entries before a page would split (bottom-up deletion). A batch that
// rewrote whole pages at once would move every row to a new page and split every index page it
// touched: the table and its index double.
//
// Share s has done the pages before its frontier f_s, and f_0 >= f_1 >= ... : share s runs only
// over pages share s-1 has done. The next batch is the last share that can move up to the one
// before it on pages the range's last kRecentBatches batches did not touch, else share 0 on new
// pages (a span of about kPageShares batches' rows, at most 1/(kRecentBatches + 1) of the pages
// left), else (on the range's last pages) the last share that can move. With a steady batch size
// a range goes share 0 over spans A to F in turn, then share 1 over A to F, ... share 9 over F,
// then the next six spans: a batch reads the pages a batch wrote only five batches later, when
// the row versions it left behind are dead to every transaction (the other workers' batches that
// began before it committed have ended), so that they can be pruned and their index entries
// removed. With one batch between them, two workers found a third of them still held; with
// three, a few (the index 1.05x); with five, it stays at 1.02x.
// The checkpoint (last_key) of a page range is {f_9, 0, f_0, ..., f_9, then the first and end
// page of each of the last kRecentBatches batches}: its first two say, as for spans of whole rows
// ({page, offset}: everything before that tuple is done), where every share has been.
constexpr int kPageShares = 10;
constexpr int kRecentBatches = 5;

// The next batch of a page range (see TaskCheckpoint) of about `batch_size` rows, in a heap
// whose range ends before page `end` (for an open range: the table's size now).
struct PageBatchPlan {
  bool empty = false;  // nothing left before `end`: the range is done, no statement runs
  HeapSpan span;
  std::vector<std::string> checkpoint;  // last_key after the batch (above)
  bool only_changes = false;  // see PageBatchUpdateSql
  int share = -1;             // the share of the span's rows the batch takes; -1: every row
  int shares = 0;             // kPageShares for a share batch, else 0 (PageBatchUpdateSql's)
  int64_t rows_held = 0;      // about how many rows the batch holds (the batch's `scanned`)
};
// With `shares` false (see BatchStatement::page_shares) a batch takes every row of a span. With
// `skip_unfillable` (see BatchStatement) every batch takes only the rows its update changes.
PageBatchPlan PlanPageBatch(const TaskCheckpoint& from, int64_t batch_size, double rows_per_page,
                            int64_t end, bool shares = true, bool skip_unfillable = false);

BatchStatement MakeBatchStatement(const BackfillTask& task, const std::vector<KeyColumn>& key,
                                  const std::map<std::string, std::string>& column_types = {});

// The checkpoint after `batch` committed. A key batch that found fewer rows than it asked for
// ends the pass: the keyset is exhausted (rows added later are the catch-up pass's and the
// gates' job). A page batch ends it when it reached the range's end.
TaskCheckpoint AdvanceCheckpoint(const TaskCheckpoint& before, const BatchResult& batch,
                                 int64_t batch_size);

// When a sweep (see SweepSql) runs while the gates wait: before every re-check while sweeps
// find rows; after a sweep that found none, the next 1, 2, 4... up to 64 re-checks go without,
// since a gate that waits on something else (a deploy) would otherwise cost a scan of the table
// every re-check for as long as it waits.
class SweepSchedule {
 public:
  static constexpr int kMaxSkip = 64;
  // Whether this re-check sweeps; counts a skipped one.
  bool Due();
  // After a sweep that found `pending` rows.
  void Swept(int64_t pending);

 private:
  int skip_ = 0;  // re-checks left to go without
  int next_ = 1;  // to skip after the next sweep that finds nothing
};

// When tide runs a plain VACUUM of a table it backfills, so that later batches reuse the room
// earlier ones left instead of growing the table: once its dead rows are at least 10% of its
// live ones and at least kMinDead, while no vacuum works on it, and at least a gap after
// tide's last one ended. The dead rows are the statistics' count or, when more, the rows tide
// wrote since its last vacuum began (the statistics arrive a second or more late, and the
// table grows meanwhile). The gap starts at 0.5 s and doubles (up to 5 min) after each vacuum
// that left at least half the dead rows it found: something (an old snapshot) holds them, and
// vacuum after vacuum would read the table for nothing.
class VacuumSchedule {
 public:
  static constexpr int64_t kMinDead = 10000;
  static constexpr int64_t kMinGapMs = 500;
  static constexpr int64_t kMaxGapMs = 300000;
  // Whether to vacuum now, with the table's dead rows as read at `now_ms`.
  bool Due(const DeadTuples& d, int64_t now_ms);
  // Rows tide's batches updated (each leaves a dead row version behind).
  void Wrote(int64_t rows) { written_ += rows; }
  void Started(const DeadTuples& d);
  // A vacuum ended at `now_ms`, leaving `after` (read right after it).
  void Ended(int64_t now_ms, const DeadTuples& after);

 private:
  bool ran_ = false;
  int64_t dead_before_ = 0;
  int64_t written_ = 0;  // since the last vacuum began
  int64_t ended_ms_ = 0;
  int64_t gap_ms_ = kMinGapMs;
};

// The vacuum_cost_delay of that VACUUM: autovacuum's 2 ms while the backfill yields to the
// application (yield_ratio above 0), none for a backfill that does not, so that it keeps up.
Millis VacuumCostDelay(const HealthLimits& limits);

// A backfill progress line goes to the audit log at most this often: every 10% of the estimate
// or every 30 s, whichever comes first.
bool ShouldReportProgress(int64_t rows_before, int64_t rows_after, int64_t estimated,
                          int64_t ms_since_last_report);

}  // namespace tide
