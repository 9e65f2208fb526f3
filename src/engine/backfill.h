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
};
BackfillOptions OptionsFor(const Plan& plan, const BackfillTask& task, const Defaults& defaults);

BatchStatement MakeBatchStatement(const BackfillTask& task, const std::vector<KeyColumn>& key,
                                  const std::map<std::string, std::string>& column_types = {});

// The checkpoint after `batch` committed. A batch that found fewer rows than it asked for ends
// the pass: the keyset is exhausted (rows added later are the catch-up pass's and the gates' job).
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

// A backfill progress line goes to the audit log at most this often: every 10% of the estimate
// or every 30 s, whichever comes first.
bool ShouldReportProgress(int64_t rows_before, int64_t rows_after, int64_t estimated,
                          int64_t ms_since_last_report);

}  // namespace tide
