// One plan on its way through its phases: expand, backfill, gates, contract, or rollback after
// an abort. Private to src/runtime; the Orchestrator creates, starts and stops it.
//
// Threading: lives on the io thread; its database session is used by at most one pool job at a
// time. Every wait is a steady_timer (After), cancelled by Stop and Abort.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/blockers.h"
#include "runtime/backfill_run.h"
#include "runtime/orchestrator.h"

namespace tide {

class Orchestrator::Run : public std::enable_shared_from_this<Orchestrator::Run> {
 public:
  Run(Orchestrator& o, Plan plan, PlanRecord record, std::shared_ptr<PlanDatabase> db);

  std::string key() const;

  const std::string& name() const;
  PlanState state() const { return cursor_.state; }
  // A database of a group's plan whose gates pass, waiting for the others' (contract: together).
  bool rollout_ready() const { return rollout_ready_; }
  // The database, for a plan on a database group (its pauses may name it); else "".
  std::string member_of() const { return plan_.group.empty() ? "" : plan_.database; }

  // For a plan that was not running (failed, say) and starts again to abort: who asked, and
  // whether its file is still in active/ (a failed plan's is in failed/ already).
  void AbortStopped(const std::string& actor, bool file_in_spool);
  // A run started by `tidectl revert` (the plan's cursor already in reverting): who asked.
  void RevertBy(const std::string& actor) { revert_by_ = actor; }

  void Start();

  // Stops driving the plan (shutdown, or its lease went to another tided): no new action
  // starts; an action in flight finishes on its own. Once the lease is lost, nothing more is
  // recorded for the plan, not even what an action in flight found.
  void Stop(bool lease_lost = false);

  // An operator's abort: the plan stops where it stands (a batch in flight commits) and runs its
  // rollback steps. Refused, with the reason in the audit log, once contract has started.
  void Abort(const std::string& actor, const std::string& via);
  // The plan's live settings changed (tidectl set): the running task takes them within a batch;
  // later tasks start with them.
  void ApplyLive(const LiveSettings& live);

  struct GateValue {
    std::string label;
    int64_t value = 0;
    int64_t expect = 0;
  };

 private:
  void Next();

  void BeginAbort();

  void FinishAborted();
  void FinishReverted();

  // backup_command, before the plan's first step.
  void RunBackup();

  // True while an operator's pause holds the plan's current phase; notes the start and the end.
  bool HeldByPause();

  // Audit and metrics for entering a new phase.
  void AnnouncePhase();

  // The sync triggers of `sync_trigger` tasks live from the backfill to the contract.
  void DropSyncTriggers();

  // Runs a step's statements (a typed operation's whole safe sequence, or one raw statement),
  // skipping those already in effect, and stores the cursor past it.
  void RunStep(const std::string& phase, const Step& step, size_t index);

  BackfillEnv MakeEnv();

  // Task `index` as a BackfillRun of `mode`, in the plan's current pass.
  std::shared_ptr<BackfillRun> MakeTask(size_t index, BackfillMode mode);

  void StartTask(size_t index);
  // ANALYZE of task `index`'s table once its backfill is done, so that the planner knows the
  // new column's values; a lock timeout or an error skips it (audited), autovacuum analyzes later.
  void AnalyzeThenAdvance(size_t index);

  // Where the gates stand in this run; the cursor only says "gating". Contract's set_not_null
  // steps add NOT VALID checks (GateChecks) once the gates pass, then the gates are read again
  // under them: a check in place while the gates still wait would make the old application's
  // writes of NULL fail, and without the re-read a NULL written between the gate and the check
  // would fail contract's VALIDATE.
  enum class GateStage {
    kEntering,  // checks an earlier run (or a crash) left behind are removed first
    kChecking,  // read, nothing failed yet in this run
    kWaiting,   // failing: caught up and read again every gate_recheck_interval
    kHeld,      // passing, but a pause of contract holds the checks and contract
  };

  struct GateReading {
    std::vector<GateValue> values;
    bool pass = true;
    std::vector<StatementOutcome> checks;  // SealGates: the checks added
  };
  static Result<GateReading> ReadGates(PlanDatabase& db, const std::vector<Gate>& gates,
                                       const StatementLimits& limits);

  // The gates' next action for the stage (from Next, so that pauses and the audit log apply).
  void CheckGates();
  // Reads every gate, without the checks.
  void QueryGates();
  void OnGates(const std::vector<GateValue>& values);
  // Adds the checks, reads the gates again, and removes the checks when a gate fails now.
  void SealGates();
  // contract: together: this database is ready; waits until every database of the rollout is
  // (without reading its gates meanwhile), then goes on to read them once more and contract.
  void HoldForRollout();
  // The gates or a verification fail: this database is not ready any more.
  // contract: together, ready while the rollout holds the contract: stores that it is ready,
  // then ends the run (no session, no lease) until the rollout starts it again.
  void Park();
  void NotReadyForRollout();
  void OnGatesFailed(const std::string& failing);
  // Every gate passes: the verifications (`verify: true` tasks) not done yet in this run, then
  // contract's checks and contract.
  void GatesPassed();
  // Task `index`'s verification (BackfillMode::kVerify); rows that differ keep contract waiting,
  // verified again at every re-check.
  void Verify(size_t index);
  // Removes the NOT VALID checks of the gates (each only when it is there), then `then`.
  void RemoveGateChecks(const std::string& why, std::function<void()> then);
  // Gates and sweeps scan whole tables: they run with gate_timeout as their statement_timeout.
  StatementLimits GateLimits() const;
  // The failing gates, in words, with the unfillable rows that keep them failing.
  std::string Failing(const std::vector<GateValue>& values) const;

  // While the gates wait, before each re-check, rows the application keeps writing are filled,
  // one task after another: task `index`'s tail (kTail: keys above the backfilled ones), then
  // its rows still pending anywhere (kSweep: random keys, rows written behind a pass), so that
  // writes alone never keep a plan from ending.
  void CatchUp(size_t index, BackfillMode mode);

  // The rows of task `index` that no update can fill, as the last sweep found them: metric,
  // audit (when the count changes) and the reason the gates wait.
  void NoteUnfillable(size_t index, const BackfillSummary& summary);
  // Why the plan waits, for `tidectl status` ("" once it goes on).
  // Stores why the plan waits, then goes on with `then` (the session is the run's: one job at a
  // time).
  void SaveWaiting(const std::string& reason, std::function<void()> then);

  void Finish();
  // The plan's file: to done/ or failed/, or, for a database of a group's plan, to its rollout.
  void FinishFile(bool ok, const std::string& error);

  // Stores `next` as the plan's cursor, then goes on.
  void Advance(PlanCursor next);

  // Transient errors are retried after a backoff, from the state the database holds: every piece
  // of progress is committed with the work it stands for, so re-reading it is always right.
  void OnError(const Status& s);
  // The blocker policy, after a lock timeout: the sessions among `pids` that it matches are
  // cancelled or terminated (each audited), then the statement is retried.
  void EndBlockers(const Status& s, const BlockerPolicy& policy, const std::vector<int64_t>& pids);
  // The retry of what failed with `s`, after a backoff (at once when blockers were ended).
  void RetryAfter(const Status& s, bool blockers_ended);

  void Reload();

  void Fail(const Status& s);

  // Waits, then goes on with `then`, unless the wait was cancelled (Stop, Abort) meanwhile.
  void After(Millis wait, std::function<void()> then);

  // Runs `work` on the pool and `then` on the io thread, unless the run was stopped meanwhile
  // because its lease went to another tided: such a run records nothing more.
  template <typename T>
  void Do(std::function<T()> work, std::function<void(T)> then) {
    o_.offloader_.Run<T>(std::move(work),
                         [self = shared_from_this(), then = std::move(then)](T result) {
                           if (self->lease_lost_) return;
                           then(std::move(result));
                         });
  }

  void Audit(const std::string& event, const std::string& phase, JsonObject details,
             const std::string& actor = "");

  static std::string OutcomesJson(const std::vector<StatementOutcome>& outcomes);

  void End();
  void Report(const Status& s);

  Orchestrator& o_;
  const Plan plan_;
  const PlanRecord record_;
  std::shared_ptr<PlanDatabase> db_;
  PlanCursor cursor_;
  const StatementLimits limits_;
  boost::asio::steady_timer timer_;
  int attempts_ = 0;
  std::string doing_ = "start";

  bool announced_ = false;
  PlanState announced_state_ = PlanState::kAccepted;
  SteadyClock::time_point phase_started_;
  GateStage gate_stage_ = GateStage::kEntering;
  // Cleanup before contract or the rollback, once per run.
  bool sync_triggers_dropped_ = false;
  bool gate_checks_removed_ = false;  // before the rollback
  bool held_ = false;
  bool rollout_ready_ = false;  // see rollout_ready()
  bool together_released_ = false;  // the rollout let this database go on to contract
  std::vector<SweepSchedule> sweeps_;  // per backfill task
  std::vector<bool> verified_;         // per backfill task: verified in this run, no row differs
  // Per backfill task: the rows no update can fill, found by the last sweep, and a few keys.
  struct Unfillable {
    int64_t rows = 0;
    std::string keys;
  };
  std::vector<Unfillable> unfillable_;
  bool backup_checked_ = false;
  bool accepted_stored_ = true;  // false while the stored state is accepted and this run is past it
  std::string abort_by_;  // who asked for the abort; empty: no abort
  std::string revert_by_;  // who asked for the revert
  bool file_in_spool_ = true;  // the plan's file is in active/
  bool waiting_ = false;  // on timer_, with no action in flight
  bool stopped_ = false;
  bool lease_lost_ = false;
  uint64_t generation_ = 0;  // bumped to orphan a wait that was cancelled

  // The backfill task in progress.
  std::shared_ptr<BackfillRun> task_;
  SteadyClock::time_point task_started_;
};

}  // namespace tide
