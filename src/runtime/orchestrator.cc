#include "runtime/orchestrator.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <algorithm>
#include <random>

#include "engine/backfill.h"
#include "runtime/backfill_run.h"
#include "engine/phase.h"
#include "engine/sqlstate.h"
#include "plan/lint.h"
#include "plan/plan_parser.h"
#include "util/sha256.h"

namespace tide {

namespace asio = boost::asio;
using SteadyClock = std::chrono::steady_clock;

namespace {

int64_t MillisSince(SteadyClock::time_point t) {
  return std::chrono::duration_cast<Millis>(SteadyClock::now() - t).count();
}

Millis Backoff(const OrchestratorOptions& o, int attempt) {
  static thread_local std::mt19937 rng{std::random_device{}()};
  int64_t base = o.retry_base.count() << std::min(attempt, 16);
  base = std::min<int64_t>(base, o.retry_cap.count());
  std::uniform_int_distribution<int64_t> jitter(base / 2, base);
  return Millis(jitter(rng));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// One plan on its way through the phases. Lives on the io thread; its database session is used
// by at most one pool job at a time.
class Orchestrator::Run : public std::enable_shared_from_this<Orchestrator::Run> {
 public:
  Run(Orchestrator& o, Plan plan, PlanRecord record, std::shared_ptr<PlanDatabase> db)
      : o_(o),
        plan_(std::move(plan)),
        record_(std::move(record)),
        db_(std::move(db)),
        cursor_(record_.cursor),
        limits_(LimitsFor(plan_, o.config_.defaults)),
        timer_(o.io_) {}

  std::string key() const { return plan_.database + "/" + plan_.name; }
  const std::string& name() const { return plan_.name; }
  // For a plan that was not running (failed, say) and starts again to abort: who asked, and
  // whether its file is still in active/ (a failed plan's is in failed/ already).
  void AbortStopped(const std::string& actor, bool file_in_spool) {
    abort_by_ = actor;
    file_in_spool_ = file_in_spool;
  }
  void Start() {
    o_.metrics_->PlanStarted(plan_.name);
    o_.metrics_->SetPaused(plan_.name, false);
    Next();
  }
  // Stops driving the plan (shutdown, or its lease went to another tided): no new action starts
  // and nothing more is recorded for it; an action in flight finishes on its own.
  void Stop() {
    stopped_ = true;
    ++generation_;
    timer_.cancel();
    if (task_) task_->Cancel(Status::Invalid("stopped"));
  }

  // An operator's abort: the plan stops where it stands (a batch in flight commits) and runs its
  // rollback steps. Refused, with the reason in the audit log, once contract has started.
  void Abort(const std::string& actor, const std::string& via) {
    const std::string refusal = AbortRefusal(cursor_.state, PlanState::kAccepted);
    if (!refusal.empty() || !abort_by_.empty()) {
      const std::string why = refusal.empty() ? "the plan is already aborting" : refusal;
      Audit("abort_refused", PhaseOf(cursor_.state), JsonObject().Str("via", via).Str("reason", why), actor);
      spdlog::warn("plan {}: abort by {} refused: {}", plan_.name, actor, why);
      return;
    }
    abort_by_ = actor;
    Audit("abort_requested", PhaseOf(cursor_.state),
          JsonObject().Str("via", via).Str("state", ToString(cursor_.state)), actor);
    spdlog::info("plan {}: abort requested by {}", plan_.name, actor);
    if (task_) return task_->Cancel(Status::Invalid("the plan is being aborted"));
    if (waiting_) {
      waiting_ = false;
      ++generation_;
      timer_.cancel();
      Next();
    }
    // Otherwise an action is in flight, and Next() follows it.
  }

 private:
  void Next() {
    if (o_.stopping_ || stopped_) return;
    if (!abort_by_.empty() && cursor_.state != PlanState::kAborting) return BeginAbort();
    cursor_ = Normalize(plan_, cursor_);
    AnnouncePhase();
    const bool aborting = cursor_.state == PlanState::kAborting;
    if (!aborting && HeldByPause()) return After(Millis(500), [this] { Next(); });
    if (!o_.audit_blocked_.empty()) return After(Millis(500), [this] { Next(); });
    if (!backup_checked_) {
      backup_checked_ = true;
      const bool fresh = cursor_ == Normalize(plan_, PlanCursor{});
      if (fresh && !aborting && !o_.config_.backup_command.empty()) return RunBackup();
    }
    const Action a = NextAction(plan_, cursor_);
    const bool ends_triggers = a.kind == Action::Kind::kRunContractStep ||
                               a.kind == Action::Kind::kFinish ||
                               a.kind == Action::Kind::kRunRollbackStep ||
                               a.kind == Action::Kind::kFinishAborted;
    if (ends_triggers && !sync_triggers_dropped_) return DropSyncTriggers();
    switch (a.kind) {
      case Action::Kind::kRunExpandStep: return RunStep("expand", plan_.expand[a.index], a.index);
      case Action::Kind::kRunContractStep:
        return RunStep("contract", plan_.contract[a.index], a.index);
      case Action::Kind::kRunRollbackStep:
        return RunStep("rollback", plan_.rollback[a.index], a.index);
      case Action::Kind::kRunBackfillTask: return StartTask(a.index);
      case Action::Kind::kCheckGates: return CheckGates();
      case Action::Kind::kFinish: return Finish();
      case Action::Kind::kFinishAborted: return FinishAborted();
      case Action::Kind::kNothing: return;
    }
  }

  void BeginAbort() {
    Audit("abort_started", "rollback",
          JsonObject()
              .Str("from", ToString(cursor_.state))
              .Int("rollback_steps", static_cast<int64_t>(plan_.rollback.size())),
          abort_by_);
    Advance(PlanCursor{PlanState::kAborting, 0, cursor_.catch_up});
  }

  void FinishAborted() {
    auto db = db_;
    const std::string name = plan_.name;
    const PlanCursor aborted = AfterSuccess(plan_, cursor_);
    o_.offloader_.Run<Status>([db, name, aborted] { return db->SaveCursor(name, aborted); },
                              [self = shared_from_this(), aborted](Status s) {
                                if (!s.ok()) return self->OnError(s);
                                self->cursor_ = aborted;
                                self->AnnouncePhase();
                                self->Audit("plan_aborted", "",
                                            JsonObject().Str("file", self->record_.file_name),
                                            self->abort_by_);
                                spdlog::info("plan {}: aborted; rollback done", self->plan_.name);
                                if (self->file_in_spool_) {
                                  self->Report(self->o_.spool_->Finish(
                                      self->record_.file_name, false,
                                      "aborted by " + self->abort_by_ + "; the rollback steps ran"));
                                }
                                self->o_.metrics_->PlanFinished(self->plan_.database, "aborted");
                                self->o_.OnRunFinished(self->key());
                              });
  }

  // backup_command, before the plan's first step.
  void RunBackup() {
    CommandRunner* runner = o_.options_.commands;
    if (!runner) return Fail(Status::Fatal("backup_command is set but this tided cannot run commands"));
    const std::string command = o_.config_.backup_command;
    const std::vector<std::pair<std::string, std::string>> env = {
        {"TIDE_PLAN", plan_.name}, {"TIDE_DATABASE", plan_.database}};
    const auto start = SteadyClock::now();
    doing_ = "backup_command";
    Audit("backup_started", "", JsonObject().Str("command", command));
    o_.offloader_.Run<Result<CommandResult>>(
        [runner, command, env] { return runner->Run(command, env); },
        [self = shared_from_this(), start](Result<CommandResult> r) {
          if (!r.ok()) return self->Fail(r.status());
          JsonObject details;
          details.Int("exit_code", r->exit_code).Str("output", r->output).Int(
              "duration_ms", MillisSince(start));
          if (r->exit_code != 0) {
            self->Audit("backup_failed", "", std::move(details));
            return self->Fail(Status::Fatal("backup_command exited with " +
                                            std::to_string(r->exit_code) +
                                            " before anything changed; its output is in the "
                                            "audit log (event backup_failed)"));
          }
          self->Audit("backup_finished", "", std::move(details));
          self->Next();
        });
  }

  // True while an operator's pause holds the plan's current phase; notes the start and the end.
  bool HeldByPause() {
    const char* phase = PhaseOf(cursor_.state);
    const tide::Pause* by = o_.PausedBy(plan_.name, phase);
    if (by && !held_) {
      held_ = true;
      o_.metrics_->SetPaused(plan_.name, true);
      Audit("plan_held", phase, JsonObject().Str("paused_by", by->actor).Str("via", by->via));
      spdlog::info("plan {}: paused before {} (by {})", plan_.name, phase, by->actor);
    } else if (!by && held_) {
      held_ = false;
      o_.metrics_->SetPaused(plan_.name, false);
      Audit("plan_released", phase, JsonObject());
    }
    return held_;
  }

  // Audit and metrics for entering a new phase.
  void AnnouncePhase() {
    if (announced_ && cursor_.state == announced_state_) return;
    if (announced_ && *PhaseOf(announced_state_)) {
      Audit("phase_finished", PhaseOf(announced_state_),
            JsonObject().Int("duration_ms", MillisSince(phase_started_)));
    }
    announced_ = true;
    announced_state_ = cursor_.state;
    phase_started_ = SteadyClock::now();
    o_.metrics_->SetPlanState(plan_.name, plan_.database, cursor_.state);
    if (*PhaseOf(cursor_.state)) {
      Audit("phase_started", PhaseOf(cursor_.state),
            JsonObject().Str("state", ToString(cursor_.state)).Bool("catch_up", cursor_.catch_up));
    }
  }

  // The sync triggers of `sync_trigger` tasks live from the backfill to the contract.
  void DropSyncTriggers() {
    std::string sql;
    for (size_t i = 0; i < plan_.backfill.size(); ++i) {
      if (plan_.backfill[i].sync_trigger) {
        sql += MakeSyncTrigger(plan_.name, static_cast<int>(i), plan_.backfill[i]).drop + "; ";
      }
    }
    if (sql.empty()) {
      sync_triggers_dropped_ = true;
      return Next();
    }
    auto db = db_;
    const StatementLimits limits = limits_;
    doing_ = "dropping the sync triggers";
    o_.offloader_.Run<Status>([db, sql, limits] { return db->Execute(sql, limits); },
                              [self = shared_from_this()](Status s) {
                                if (!s.ok()) return self->OnError(s);
                                self->Audit("sync_triggers_dropped", "contract", JsonObject());
                                self->sync_triggers_dropped_ = true;
                                self->Next();
                              });
  }

  // Runs a step's statements (a typed operation's whole safe sequence, or one raw statement),
  // skipping those already in effect, and stores the cursor past it.
  void RunStep(const std::string& phase, const Step& step, size_t index) {
    const PlanCursor after = AfterSuccess(plan_, cursor_);
    auto db = db_;
    const auto start = SteadyClock::now();
    const std::string name = plan_.name, what = step.Describe(), op = OpName(step.kind);
    const std::vector<DdlStatement> statements = CompileStep(step);
    StatementLimits limits = limits_;
    if (step.statement_timeout) limits.statement_timeout = *step.statement_timeout;
    doing_ = phase + " step " + std::to_string(index + 1);
    Audit("step_started", phase, JsonObject().Int("step", index + 1).Str("op", op).Str("sql", what));
    o_.offloader_.Run<Result<std::vector<StatementOutcome>>>(
        [db, name, statements, limits, after] {
          return db->RunStatements(name, statements, limits, after);
        },
        [self = shared_from_this(), phase, index, start, what, op, after](
            Result<std::vector<StatementOutcome>> r) {
          if (r.status().sqlstate() == "55P03") self->o_.metrics_->CountLockTimeout(self->plan_.name);
          if (!r.ok()) return self->OnError(r.status());
          self->o_.metrics_->RecordDdl(self->plan_.name, phase, MillisSince(start) / 1000.0);
          self->Audit("step_finished", phase,
                      JsonObject()
                          .Int("step", index + 1)
                          .Str("op", op)
                          .Str("sql", what)
                          .Raw("statements", OutcomesJson(*r))
                          .Int("duration_ms", MillisSince(start)));
          self->attempts_ = 0;
          self->cursor_ = after;
          self->Next();
        });
  }

  BackfillEnv MakeEnv() {
    BackfillEnv env;
    env.offload = &o_.offloader_;
    env.connector = o_.connector_;
    env.metrics = o_.metrics_;
    env.slots = &o_.slots_;
    env.max_retries = o_.options_.max_retries;
    env.retry_base = o_.options_.retry_base;
    env.retry_cap = o_.options_.retry_cap;
    std::weak_ptr<Run> weak = shared_from_this();
    env.audit = [weak](const std::string& event, JsonObject details) {
      if (auto self = weak.lock()) self->Audit(event, "backfill", std::move(details));
    };
    Orchestrator* o = &o_;
    env.stopping = [o] { return o->stopping_; };
    const std::string plan = plan_.name;
    env.paused = [o, plan] {
      return o->PausedBy(plan, "backfill") != nullptr || !o->audit_blocked_.empty();
    };
    // Health limits are read at every check, so that a reloaded config applies at once.
    std::weak_ptr<Run> weak_run = shared_from_this();
    env.health = [o, weak_run] {
      auto self = weak_run.lock();
      if (!self || self->plan_.backfill.empty()) return HealthLimits{};
      return OptionsFor(self->plan_, self->plan_.backfill.front(), o->config_.defaults).health;
    };
    return env;
  }

  void StartTask(size_t index) {
    const BackfillTask& task = plan_.backfill[index];
    doing_ = "backfill of " + task.table.Display();
    task_started_ = SteadyClock::now();
    task_ = std::make_shared<BackfillRun>(
        MakeEnv(), plan_.database, plan_.name, static_cast<int>(index), task,
        cursor_.catch_up ? 2 : 1, OptionsFor(plan_, task, o_.config_.defaults), limits_);
    task_->Start([self = shared_from_this(), index](Status s, BackfillSummary summary) {
      self->task_.reset();
      if (self->stopped_) return;
      if (!self->abort_by_.empty()) return self->Next();
      if (!s.ok()) return self->Fail(s);
      self->Audit("backfill_finished", "backfill",
                  JsonObject()
                      .Str("table", self->plan_.backfill[index].table.Display())
                      .Int("pass", summary.pass)
                      .Int("ranges", summary.ranges)
                      .Int("rows_updated", summary.rows_updated)
                      .Int("rows_scanned", summary.rows_scanned)
                      .Int("batches", summary.batches)
                      .Int("duration_ms", MillisSince(self->task_started_)));
      self->Advance(AfterSuccess(self->plan_, self->cursor_));
    });
  }

  struct GateValue {
    std::string label;
    int64_t value = 0;
    int64_t expect = 0;
  };

  void CheckGates() {
    if (!pre_gate_done_ && !PreGateStatements(plan_).empty()) return AddPreGateChecks();
    auto db = db_;
    const std::vector<Gate> gates = plan_.gates;
    const StatementLimits limits = limits_;
    doing_ = "gates";
    o_.offloader_.Run<Result<std::vector<GateValue>>>(
        [db, gates, limits]() -> Result<std::vector<GateValue>> {
          std::vector<GateValue> values;
          for (size_t i = 0; i < gates.size(); ++i) {
            const Gate& g = gates[i];
            const bool nulls = g.kind == Gate::Kind::kNullCount;
            auto v = db->QueryNumber(nulls ? NullCountSql(g.table, g.column) : g.sql, limits);
            if (!v.ok()) return v.status();
            values.push_back({g.Label(i), *v, nulls ? 0 : g.expect});
          }
          return values;
        },
        [self = shared_from_this()](Result<std::vector<GateValue>> r) {
          if (!r.ok()) return self->OnError(r.status());
          self->OnGates(*r);
        });
  }

  // The NOT VALID checks of contract's set_not_null steps go in before the gates are checked,
  // so the application cannot add NULLs between the gate and the constraint.
  void AddPreGateChecks() {
    auto db = db_;
    const std::string name = plan_.name;
    const std::vector<DdlStatement> statements = PreGateStatements(plan_);
    const StatementLimits limits = limits_;
    doing_ = "the NOT VALID checks before the gates";
    o_.offloader_.Run<Result<std::vector<StatementOutcome>>>(
        [db, name, statements, limits] {
          return db->RunStatements(name, statements, limits, std::nullopt);
        },
        [self = shared_from_this()](Result<std::vector<StatementOutcome>> r) {
          if (r.status().sqlstate() == "55P03") self->o_.metrics_->CountLockTimeout(self->plan_.name);
          if (!r.ok()) return self->OnError(r.status());
          self->pre_gate_done_ = true;
          self->Audit("gate_checks_added", "gate", JsonObject().Raw("statements", OutcomesJson(*r)));
          self->CheckGates();
        });
  }

  void OnGates(const std::vector<GateValue>& values) {
    attempts_ = 0;
    bool pass = true;
    std::string failing;
    for (const auto& v : values) {
      const bool ok = v.value == v.expect;
      o_.metrics_->SetGateRemaining(plan_.name, v.label, v.value);
      pass &= ok;
      if (!ok) failing += (failing.empty() ? "" : ", ") + v.label + " = " + std::to_string(v.value);
      if (!ok || !waiting_on_gates_) {
        Audit("gate_checked", "gate",
              JsonObject().Str("gate", v.label).Int("value", v.value).Int("expect", v.expect).Bool(
                  "passed", ok));
      }
    }
    if (pass) {
      waiting_on_gates_ = false;
      return Advance(AfterSuccess(plan_, cursor_));
    }
    const PlanCursor next = AfterGateFailure(cursor_);
    if (!(next == cursor_)) {
      Audit("gate_failed", "gate",
            JsonObject().Str("failing", failing).Str("action",
                                                     "backfill again over the rows that still "
                                                     "match, then check again"));
      return Advance(next);
    }
    if (!waiting_on_gates_) {
      waiting_on_gates_ = true;
      Audit("gate_waiting", "gate",
            JsonObject().Str("failing", failing).Int(
                "recheck_ms", o_.config_.defaults.gate_recheck_interval.count()));
      spdlog::warn("plan {}: gates fail ({}); contract waits, re-checking every {}", plan_.name,
                   failing, FormatDuration(o_.config_.defaults.gate_recheck_interval));
    }
    After(o_.config_.defaults.gate_recheck_interval, [this] { CatchUpTails(0); });
  }

  // While gates wait, rows the application inserts above the backfilled keys are filled before
  // each re-check, one task after another, so that inserts alone never keep a plan from ending.
  void CatchUpTails(size_t index) {
    if (index >= plan_.backfill.size()) return CheckGates();
    const BackfillTask& task = plan_.backfill[index];
    task_ = std::make_shared<BackfillRun>(MakeEnv(), plan_.database, plan_.name,
                                          static_cast<int>(index), task, cursor_.catch_up ? 2 : 1,
                                          OptionsFor(plan_, task, o_.config_.defaults), limits_,
                                          /*tail_only=*/true);
    task_->Start([self = shared_from_this(), index](Status s, BackfillSummary) {
      self->task_.reset();
      if (self->stopped_) return;
      if (!self->abort_by_.empty()) return self->Next();
      if (!s.ok()) return self->Fail(s);
      self->CatchUpTails(index + 1);
    });
  }

  void Finish() {
    auto db = db_;
    const std::string name = plan_.name;
    const PlanCursor done{PlanState::kDone, cursor_.step, cursor_.catch_up};
    o_.offloader_.Run<Status>([db, name, done] { return db->SaveCursor(name, done); },
                       [self = shared_from_this(), done](Status s) {
                         if (!s.ok()) return self->OnError(s);
                         self->cursor_ = done;
                         self->AnnouncePhase();
                         self->Audit("plan_done", "", JsonObject().Str("file", self->record_.file_name));
                         spdlog::info("plan {}: done", self->plan_.name);
                         self->Report(self->o_.spool_->Finish(self->record_.file_name, true, ""));
                         self->o_.metrics_->PlanFinished(self->plan_.database, "done");
                         self->o_.OnRunFinished(self->key());
                       });
  }

  // Stores `next` as the plan's cursor, then goes on.
  void Advance(PlanCursor next) {
    auto db = db_;
    const std::string name = plan_.name;
    o_.offloader_.Run<Status>([db, name, next] { return db->SaveCursor(name, next); },
                       [self = shared_from_this(), next](Status s) {
                         if (!s.ok()) return self->OnError(s);
                         self->cursor_ = next;
                         self->Next();
                       });
  }

  // Transient errors are retried after a backoff, from the state the database holds: every piece
  // of progress is committed with the work it stands for, so re-reading it is always right.
  void OnError(const Status& s) {
    const bool transient =
        s.code() == Status::Code::kRetryable || s.code() == Status::Code::kInDoubt;
    // A step that timed out on a lock is retried longer (ddl_retries): production went on
    // meanwhile, since nothing queued behind tide for more than lock_timeout.
    const bool lock_timeout = s.sqlstate() == "55P03";
    const int limit = lock_timeout ? static_cast<int>(plan_.settings.ddl_retries.value_or(
                                         o_.config_.defaults.ddl_retries))
                                   : o_.options_.max_retries;
    if (lock_timeout) {
      Audit("lock_timeout", PhaseOf(cursor_.state),
            JsonObject()
                .Str("doing", doing_)
                .Int("lock_timeout_ms", limits_.lock_timeout.count())
                .Int("attempt", attempts_ + 1)
                .Int("of", limit)
                .Raw("blockers", s.detail().empty() ? "[]" : s.detail()));
    }
    // A lost server is waited for, however long (the backoff is capped); other transient
    // errors have a budget.
    if (!transient || (attempts_ >= limit && !IsConnectionLoss(s))) return Fail(s);
    ++attempts_;
    o_.metrics_->CountRetry(plan_.name, RetryKind(s));
    const Millis wait = Backoff(o_.options_, attempts_ - 1);
    Audit("retry", PhaseOf(cursor_.state),
          JsonObject()
              .Str("doing", doing_)
              .Str("error", s.ToString())
              .Int("attempt", attempts_)
              .Int("of", o_.options_.max_retries)
              .Int("wait_ms", wait.count()));
    spdlog::warn("plan {}: {} failed ({}); retry {}/{} in {}", plan_.name, doing_, s.ToString(),
                 attempts_, o_.options_.max_retries, FormatDuration(wait));
    After(wait, [this] { Reload(); });
  }

  void Reload() {
    auto db = db_;
    const std::string name = plan_.name;
    o_.offloader_.Run<Result<std::optional<PlanRecord>>>(
        [db, name] { return db->FindPlan(name); },
        [self = shared_from_this()](Result<std::optional<PlanRecord>> r) {
          if (!r.ok()) return self->OnError(r.status());
          if (!r.value()) return self->Fail(Status::Fatal("the plan's row in tide.plans is gone"));
          self->cursor_ = r.value()->cursor;
          self->Next();
        });
  }

  void Fail(const Status& s) {
    if (stopped_) return;  // the plan is not ours any more (or the daemon is stopping)
    std::string error = "plan " + plan_.name + " failed in " + doing_ + ": " + s.ToString();
    if (!s.detail().empty() && s.detail() != "[]") error += "; held up by " + s.detail();
    spdlog::error("{}", error);
    auto db = db_;
    const std::string name = plan_.name;
    const PlanCursor at = Normalize(plan_, cursor_);
    const PlanCursor failed{PlanState::kFailed, at.step, at.catch_up};
    const std::string phase = PhaseOf(at.state);
    o_.offloader_.Run<Status>(
        [db, name, at, error] { return db->SaveFailure(name, at, error); },
        [self = shared_from_this(), error, phase, failed, s](Status saved) {
          if (!saved.ok()) {
            spdlog::error("plan {}: could not record the failure: {}", self->plan_.name,
                          saved.ToString());
          }
          self->cursor_ = failed;
          self->o_.metrics_->SetPlanState(self->plan_.name, self->plan_.database, failed.state);
          self->Audit("plan_failed", phase,
                      JsonObject().Str("error", error).Str("sqlstate", s.sqlstate()).Bool(
                          "recorded", saved.ok()));
          self->Report(self->o_.spool_->Finish(self->record_.file_name, false, error));
          self->o_.metrics_->PlanFinished(self->plan_.database, "failed");
          self->o_.OnRunFinished(self->key());
        });
  }

  // Waits, then goes on with `then`, unless the wait was cancelled (Stop, Abort) meanwhile.
  void After(Millis wait, std::function<void()> then) {
    waiting_ = true;
    const uint64_t generation = generation_;
    timer_.expires_after(wait);
    timer_.async_wait([self = shared_from_this(), then, generation](const boost::system::error_code& ec) {
      if (ec == asio::error::operation_aborted || self->o_.stopping_ ||
          generation != self->generation_) {
        return;
      }
      self->waiting_ = false;
      then();
    });
  }

  void Audit(const std::string& event, const std::string& phase, JsonObject details,
             const std::string& actor = "") {
    o_.Audit(AuditEvent{event, plan_.name, phase, actor, std::move(details)});
  }

  static std::string OutcomesJson(const std::vector<StatementOutcome>& outcomes) {
    std::string out = "[";
    for (const auto& o : outcomes) {
      JsonObject j;
      j.Str("sql", o.sql).Int("duration_ms", o.duration_ms);
      if (o.skipped) j.Bool("skipped", true);
      if (o.dropped_invalid_index) j.Bool("dropped_invalid_index", true);
      out += (out.size() > 1 ? "," : "") + j.ToString();
    }
    return out + "]";
  }

  void Report(const Status& s) {
    if (!s.ok()) spdlog::error("plan {}: spool: {}", plan_.name, s.ToString());
  }

  Orchestrator& o_;
  const Plan plan_;
  const PlanRecord record_;
  std::shared_ptr<PlanDatabase> db_;
  PlanCursor cursor_;
  const StatementLimits limits_;
  asio::steady_timer timer_;
  int attempts_ = 0;
  std::string doing_ = "start";

  bool announced_ = false;
  PlanState announced_state_ = PlanState::kAccepted;
  SteadyClock::time_point phase_started_;
  bool waiting_on_gates_ = false;
  bool sync_triggers_dropped_ = false;
  bool held_ = false;
  bool pre_gate_done_ = false;
  bool backup_checked_ = false;
  std::string abort_by_;  // who asked for the abort; empty: no abort
  bool file_in_spool_ = true;  // the plan's file is in active/
  bool waiting_ = false;  // on timer_, with no action in flight
  bool stopped_ = false;
  uint64_t generation_ = 0;  // bumped to orphan a wait that was cancelled

  // The backfill task in progress.
  std::shared_ptr<BackfillRun> task_;
  SteadyClock::time_point task_started_;
};

// ---------------------------------------------------------------------------------------------

struct Orchestrator::Admission {
  enum class Kind { kAccept, kReject, kLater } kind = Kind::kLater;
  std::string error;
  Plan plan;
  PlanRecord record;
  bool resumed = false;
  std::string preflight;  // the report, as JSON, for a new plan
  std::unique_ptr<PlanDatabase> db;
};

Orchestrator::Orchestrator(asio::io_context& io, asio::thread_pool& pool, Config config,
                           DatabaseConnector* connector, SpoolPort* spool, AuditSink* audit,
                           Metrics* metrics, OrchestratorOptions options)
    : io_(io),
      pool_(pool),
      config_(std::move(config)),
      connector_(connector),
      spool_(spool),
      audit_(audit),
      metrics_(metrics),
      options_(options),
      offloader_(io, pool),
      audit_timer_(io),
      lease_timer_(io),
      slots_(static_cast<int>(config_.max_workers)) {
  offloader_.set_on_complete([this] { CheckIdle(); });
  if (options_.instance.empty()) {
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    options_.instance = std::string(host) + ":" + std::to_string(::getpid()) + ":" +
                        std::to_string(std::random_device{}());
  }
  WatchAudit();
  RenewLeases();
}

Orchestrator::~Orchestrator() = default;

// Events wait in order while the log cannot be written, and no new work starts meanwhile: tide
// never acts without a record of it.
void Orchestrator::Audit(AuditEvent event) {
  unwritten_.push_back(std::move(event));
  FlushAudit();
}

void Orchestrator::FlushAudit() {
  while (!unwritten_.empty()) {
    Status s = audit_->Write(unwritten_.front());
    if (!s.ok()) return AuditBlocked(s);
    unwritten_.pop_front();
  }
  if (audit_blocked_.empty()) return;
  spdlog::warn("audit log writable again after {}; work goes on",
               FormatDuration(Millis(MillisSince(audit_blocked_since_))));
  const std::string was = audit_blocked_;
  audit_blocked_.clear();
  metrics_->SetAuditWritable(true);
  Audit(AuditEvent{"audit_log_recovered", "", "", "",
                   JsonObject().Str("error", was).Int("blocked_ms", MillisSince(audit_blocked_since_))});
}

void Orchestrator::AuditBlocked(const Status& s) {
  if (audit_blocked_.empty()) {
    audit_blocked_since_ = SteadyClock::now();
    spdlog::error("audit log: {}; tide starts no new work until it can write it again", s.ToString());
    metrics_->SetAuditWritable(false);
  }
  audit_blocked_ = s.message();
}

// Every 2 s: notices a log that was removed or replaced even when nothing is being written,
// and writes what waits once it can.
void Orchestrator::WatchAudit() {
  audit_timer_.expires_after(std::chrono::seconds(2));
  audit_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;
    Status s = audit_->Check();
    if (!s.ok()) AuditBlocked(s);
    else FlushAudit();
    if (!stopping_) WatchAudit();
  });
}

void Orchestrator::Submit(SpoolFile file) {
  if (stopping_ || pending_files_.count(file.name)) return;
  PlanParseResult parsed = ParsePlan(file.text, file.name);
  Audit(AuditEvent{"plan_submitted", parsed.plan.name, "", file.owner,
                   JsonObject().Str("file", file.name).Int("bytes", file.text.size())});
  if (parsed.ok()) {
    std::set<std::string> names;
    for (const auto& kv : config_.databases) names.insert(kv.first);
    parsed.errors = CheckPlanAgainstDatabases(parsed.plan, file.name, names);
  }
  if (!parsed.ok()) return Reject(file, parsed.plan.name, FormatDiagnostics(parsed.errors));
  const auto findings = LintPlan(parsed.plan);
  if (!findings.empty()) {
    std::string text;
    for (const auto& f : findings) text += f.ToString(file.name) + "\n";
    return Reject(file, parsed.plan.name, text);
  }

  pending_files_.insert(file.name);
  const std::string checksum = Sha256Hex(file.text);
  offloader_.Run<std::shared_ptr<Admission>>(
      [this, file, plan = parsed.plan, checksum] {
        return std::make_shared<Admission>(Admit(file, plan, checksum));
      },
      [this, file](std::shared_ptr<Admission> a) {
        pending_files_.erase(file.name);
        if (a->kind == Admission::Kind::kLater) {
          spdlog::warn("{}: {}; will try again", file.name, a->error);
          return;
        }
        const std::string key = a->plan.database + "/" + a->plan.name;
        if (a->kind == Admission::Kind::kAccept && runs_.count(key)) {
          a->kind = Admission::Kind::kReject;
          a->error = "plan `" + a->plan.name + "` is already running; see `tidectl status`";
        }
        if (a->kind == Admission::Kind::kReject) return Reject(file, a->plan.name, a->error);
        OnAdmitted(file, std::move(*a));
      });
}

void Orchestrator::Reject(const SpoolFile& file, const std::string& plan,
                          const std::string& error) {
  spdlog::warn("rejected {}:\n{}", file.name, error);
  Audit(AuditEvent{"plan_rejected", plan, "", file.owner,
                   JsonObject().Str("file", file.name).Str("reason", error)});
  Status s = spool_->Reject(file.name, error);
  if (!s.ok()) spdlog::error("spool: {}", s.ToString());
}

// On the pool.
Orchestrator::Admission Orchestrator::Admit(const SpoolFile& file, const Plan& plan,
                                            const std::string& checksum) {
  Admission a;
  a.plan = plan;
  auto db = connector_->Connect(plan.database);
  if (!db.ok()) {
    a.error = "cannot reach database `" + plan.database + "`: " + db.status().ToString();
    return a;
  }
  Status s = (*db)->EnsureSchema();
  if (!s.ok()) {
    a.error = "cannot prepare the tide schema in `" + plan.database + "`: " + s.ToString();
    return a;
  }
  auto existing = (*db)->FindPlan(plan.name);
  if (!existing.ok()) {
    a.error = existing.status().ToString();
    return a;
  }
  a.kind = Admission::Kind::kReject;
  if (const auto& r = existing.value()) {
    if (r->checksum != checksum) {
      a.error = "a different plan named `" + plan.name + "` is already known to database `" +
                plan.database + "` (state " + ToString(r->cursor.state) + ", its checksum " +
                r->checksum + ", this file's " + checksum + "); give the new plan a new name";
      return a;
    }
    if (r->cursor.state == PlanState::kDone) {
      a.error = "plan `" + plan.name + "` was already applied to `" + plan.database + "` at " +
                r->finished_at + "; nothing to do";
      return a;
    }
    a.record = *r;
    a.resumed = true;
    auto lease = (*db)->AcquireLease(plan.name, options_.instance, options_.lease_ttl);
    if (!lease.ok() || !*lease) {
      a.kind = lease.ok() ? Admission::Kind::kReject : Admission::Kind::kLater;
      a.error = lease.ok() ? "plan `" + plan.name + "` is being run by another tided on `" +
                                 plan.database + "`; see `tidectl status`"
                           : lease.status().ToString();
      return a;
    }
    if (r->cursor.state == PlanState::kAborted) {
      // The same file again after an abort: it starts over.
      Status s = (*db)->RestartPlan(plan.name);
      if (!s.ok()) {
        a.kind = Admission::Kind::kLater;
        a.error = "cannot restart aborted plan `" + plan.name + "`: " + s.ToString();
        return a;
      }
      a.record.cursor = PlanCursor{};
      a.record.submitted_by = file.owner;
      a.resumed = false;
    }
  } else {
    for (const auto& task : plan.backfill) {
      auto info = (*db)->DescribeTable(task.table, task.key);
      if (!info.ok()) {
        a.kind = Admission::Kind::kLater;
        a.error = info.status().ToString();
        return a;
      }
      if (info->exists && info->key.empty()) {
        a.error = file.name + ":" + std::to_string(task.pos.line) + ":" +
                  std::to_string(task.pos.column) + ": table `" + task.table.Display() +
                  "` has no primary key; add `key: <column>` (a unique, not-null column) to the "
                  "backfill task";
        return a;
      }
    }
    auto report = (*db)->Preflight(plan, false, LimitsFor(plan, config_.defaults));
    if (!report.ok()) {
      a.kind = Admission::Kind::kLater;
      a.error = "preflight: " + report.status().ToString();
      return a;
    }
    if (!report->ok()) {
      std::string problems;
      for (const auto& p : report->problems) problems += file.name + ": " + p + "\n";
      a.error = problems;
      return a;
    }
    a.preflight = PreflightJson(*report);
    a.record.name = plan.name;
    a.record.checksum = checksum;
    a.record.file_name = file.name;
    a.record.source = file.text;
    a.record.submitted_by = file.owner;
    Status ins = (*db)->InsertPlan(a.record);
    if (!ins.ok()) {
      a.error = "cannot record plan `" + plan.name + "`: " + ins.ToString();
      return a;
    }
    auto lease = (*db)->AcquireLease(plan.name, options_.instance, options_.lease_ttl);
    if (!lease.ok()) {
      a.kind = Admission::Kind::kLater;
      a.error = lease.status().ToString();
      return a;
    }
  }
  a.kind = Admission::Kind::kAccept;
  a.db = std::move(db).value();
  return a;
}

void Orchestrator::OnAdmitted(const SpoolFile& file, Admission a) {
  Status s = spool_->Accept(file.name);
  if (!s.ok()) spdlog::error("spool: {}", s.ToString());
  PlanRecord record = std::move(a.record);
  if (record.cursor.state == PlanState::kFailed) {
    // Re-submitting a failed plan, unchanged, retries it from the step that failed.
    record.cursor.state = record.failed_in;
  }
  JsonObject accepted;
  accepted.Str("file", file.name)
      .Str("database", a.plan.database)
      .Str("checksum", record.checksum)
      .Str("state", ToString(record.cursor.state));
  // Steps run despite the lint, and why: on-call reads this first after an incident.
  std::string unsafe;
  for (const auto* steps : {&a.plan.expand, &a.plan.contract}) {
    for (const auto& st : *steps) {
      if (!st.unsafe.empty()) unsafe += (unsafe.empty() ? "" : "; ") + st.sql + " -- " + st.unsafe;
    }
  }
  if (!unsafe.empty()) accepted.Str("unsafe_steps", unsafe);
  Audit(AuditEvent{a.resumed ? "plan_resumed" : "plan_accepted", a.plan.name, "", file.owner,
                   std::move(accepted)});
  if (!a.preflight.empty()) {
    Audit(AuditEvent{"preflight", a.plan.name, "", file.owner, JsonObject().Raw("report", a.preflight)});
  }
  spdlog::info("plan {}: {} on database {}", a.plan.name, a.resumed ? "resumed" : "accepted",
               a.plan.database);
  StartRun(std::move(a.plan), std::move(record), std::move(a.db));
}

void Orchestrator::StartRun(Plan plan, PlanRecord record, std::shared_ptr<PlanDatabase> db) {
  auto run = std::make_shared<Run>(*this, std::move(plan), std::move(record), std::move(db));
  runs_[run->key()] = run;
  run->Start();
}

void Orchestrator::OnRunFinished(const std::string& key) {
  // Keep the Run alive until the handler that called this returns.
  auto it = runs_.find(key);
  if (it == runs_.end()) return;
  asio::post(io_, [run = it->second] {});
  runs_.erase(it);
}

void Orchestrator::ResumeAll() {
  for (const auto& kv : config_.databases) ResumeDatabase(kv.first);
}

namespace {
struct ResumeItem {
  Plan plan;
  PlanRecord record;
  std::shared_ptr<PlanDatabase> db;
  std::string error;  // the stored source no longer parses
};
struct ResumeResult {
  Status status;
  std::vector<ResumeItem> items;
  std::vector<Pause> pauses;
};
}  // namespace

void Orchestrator::ResumeDatabase(const std::string& database) {
  offloader_.Run<ResumeResult>(
      [this, database] {
        ResumeResult out;
        auto db = connector_->Connect(database);
        if (!db.ok()) return out.status = db.status(), out;
        if (!(out.status = (*db)->EnsureSchema()).ok()) return out;
        auto pauses = (*db)->ListPauses();
        if (!pauses.ok()) return out.status = pauses.status(), out;
        out.pauses = std::move(pauses).value();
        auto plans = (*db)->ListPlans();
        if (!plans.ok()) return out.status = plans.status(), out;
        for (const auto& r : *plans) {
          if (IsFinal(r.cursor.state)) continue;
          // Another tided runs it while its lease lasts; this one takes it over after that.
          auto lease = (*db)->AcquireLease(r.name, options_.instance, options_.lease_ttl);
          if (!lease.ok()) return out.status = lease.status(), out;
          if (!*lease) {
            spdlog::debug("plan {} ({}): another tided holds its lease", r.name, ToString(r.cursor.state));
            continue;
          }
          ResumeItem item;
          auto parsed = ParsePlan(r.source, r.file_name);
          if (!parsed.ok()) item.error = FormatDiagnostics(parsed.errors);
          item.plan = parsed.plan;
          item.record = r;
          auto conn = connector_->Connect(database);
          if (!conn.ok()) return out.status = conn.status(), out;
          item.db = std::move(conn).value();
          out.items.push_back(std::move(item));
        }
        return out;
      },
      [this, database](ResumeResult r) {
        if (!r.status.ok()) {
          spdlog::warn("database {}: {}; trying again in {}", database, r.status.ToString(),
                       FormatDuration(options_.reconnect_interval));
          auto timer = std::make_shared<asio::steady_timer>(io_, options_.reconnect_interval);
          timer->async_wait([this, timer, database](const boost::system::error_code& ec) {
            if (!ec && !stopping_) ResumeDatabase(database);
          });
          return;
        }
        for (const auto& p : r.pauses) {
          if (!PausedBy(p.plan, p.phase) ||
              std::none_of(pauses_.begin(), pauses_.end(), [&](const tide::Pause& q) {
                return q.plan == p.plan && q.phase == p.phase;
              })) {
            pauses_.push_back(p);
          }
        }
        for (auto& item : r.items) {
          if (!item.error.empty()) {
            spdlog::error("plan {}: stored plan no longer parses:\n{}", item.record.name, item.error);
            continue;
          }
          const std::string key = database + "/" + item.plan.name;
          if (runs_.count(key)) continue;
          Audit(AuditEvent{"plan_resumed", item.plan.name, "", "",
                           JsonObject()
                               .Str("database", database)
                               .Str("state", ToString(item.record.cursor.state))
                               .Str("instance", options_.instance)});
          spdlog::info("plan {}: resuming in state {}", item.plan.name,
                       ToString(item.record.cursor.state));
          StartRun(std::move(item.plan), std::move(item.record), std::move(item.db));
        }
        spdlog::debug("database {}: {} unfinished plan(s) to run here; looking again in {}",
                      database, r.items.size(), FormatDuration(options_.takeover_scan));
        // Look again later: a plan whose daemon died is taken over once its lease expires.
        auto timer = std::make_shared<asio::steady_timer>(io_, options_.takeover_scan);
        timer->async_wait([this, timer, database](const boost::system::error_code& ec) {
          if (!ec && !stopping_) ResumeDatabase(database);
        });
      });
}

// Every lease_renew: extends the leases of the plans running here, one statement per database
// on a session of its own (a long step never delays it), and stops the runs whose lease is gone.
void Orchestrator::RenewLeases() {
  lease_timer_.expires_after(options_.lease_renew);
  lease_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || stopping_) return;
    std::map<std::string, std::vector<std::string>> plans;  // database -> plans
    for (const auto& kv : runs_) {
      const std::string database = kv.first.substr(0, kv.first.find('/'));
      plans[database].push_back(kv.second->name());
    }
    if (plans.empty()) return RenewLeases();
    auto pending = std::make_shared<size_t>(plans.size());
    for (const auto& [database, names] : plans) {
      // The slot is made here, on the io thread; only this job uses the session in it.
      std::shared_ptr<PlanDatabase>* keeper = &keepers_[database];
      offloader_.Run<Result<std::vector<std::string>>>(
          [this, keeper, database = database, names = names]() -> Result<std::vector<std::string>> {
            if (!*keeper) {
              auto db = connector_->Connect(database);
              if (!db.ok()) return db.status();
              *keeper = std::move(db).value();
            }
            return (*keeper)->RenewLeases(options_.instance, names, options_.lease_ttl);
          },
          [this, database = database, names = names, pending](Result<std::vector<std::string>> r) {
            if (!r.ok()) {
              // Unreachable: the runs find out themselves; the lease may lapse meanwhile.
              spdlog::warn("database {}: cannot renew plan leases: {}", database, r.status().ToString());
            } else {
              OnLeasesRenewed(database, names, *r);
            }
            if (--*pending == 0 && !stopping_) RenewLeases();
          });
    }
  });
}

void Orchestrator::OnLeasesRenewed(const std::string& database, const std::vector<std::string>& asked,
                                   const std::vector<std::string>& held) {
  for (const auto& plan : asked) {
    if (std::find(held.begin(), held.end(), plan) != held.end()) continue;
    auto it = runs_.find(database + "/" + plan);
    if (it == runs_.end()) continue;
    spdlog::warn("plan {}: its lease went to another tided; stopping here", plan);
    Audit(AuditEvent{"lease_lost", plan, "", "", JsonObject().Str("instance", options_.instance)});
    it->second->Stop();
    OnRunFinished(it->first);
  }
}

namespace {
struct AbortLookup {
  Status status;
  bool found = false;
  bool was_failed = false;  // else it was not running yet (a request left while tided was down)
  std::string refusal;
  Plan plan;
  PlanRecord record;
  std::shared_ptr<PlanDatabase> db;
};
}  // namespace

void Orchestrator::Abort(const std::string& plan, const std::string& actor, const std::string& via) {
  for (auto& kv : runs_) {
    if (kv.second->name() == plan) return kv.second->Abort(actor, via);
  }
  // Not running: a failed plan (or none), in whichever database knows it.
  for (const auto& kv : config_.databases) {
    const std::string database = kv.first;
    offloader_.Run<AbortLookup>(
        [this, database, plan] {
          AbortLookup out;
          auto db = connector_->Connect(database);
          if (!db.ok()) return out.status = db.status(), out;
          if (!(out.status = (*db)->EnsureSchema()).ok()) return out;
          auto found = (*db)->FindPlan(plan);
          if (!found.ok()) return out.status = found.status(), out;
          if (!found.value()) return out;
          out.found = true;
          out.record = *found.value();
          out.refusal = AbortRefusal(out.record.cursor.state, out.record.failed_in);
          out.was_failed = out.record.cursor.state == PlanState::kFailed;
          if (!out.was_failed) out.record.failed_in = out.record.cursor.state;
          if (!out.refusal.empty()) return out;
          auto parsed = ParsePlan(out.record.source, out.record.file_name);
          if (!parsed.ok()) return out.refusal = "its stored text no longer parses", out;
          out.plan = parsed.plan;
          out.record.cursor = PlanCursor{PlanState::kAborting, 0, out.record.cursor.catch_up};
          if (!(out.status = (*db)->SaveCursor(plan, out.record.cursor)).ok()) return out;
          out.db = std::move(db).value();
          return out;
        },
        [this, database, plan, actor, via](AbortLookup r) {
          if (!r.status.ok()) {
            spdlog::error("abort of {} on {}: {}", plan, database, r.status.ToString());
            return;
          }
          if (!r.found) return;
          const std::string phase = PhaseOf(r.record.failed_in);
          if (!r.refusal.empty()) {
            Audit(AuditEvent{"abort_refused", plan, phase, actor,
                             JsonObject().Str("via", via).Str("reason", r.refusal)});
            spdlog::warn("plan {}: abort by {} refused: {}", plan, actor, r.refusal);
            return;
          }
          // A resumed run may have started meanwhile: it takes the request itself.
          const std::string key = database + "/" + plan;
          if (runs_.count(key)) return runs_[key]->Abort(actor, via);
          Audit(AuditEvent{"abort_requested", plan, phase, actor,
                           JsonObject().Str("via", via).Str("state", ToString(r.record.failed_in))});
          auto run = std::make_shared<Run>(*this, std::move(r.plan), r.record, std::move(r.db));
          run->AbortStopped(actor, !r.was_failed);
          runs_[run->key()] = run;
          run->Start();
        });
  }
}

const tide::Pause* Orchestrator::PausedBy(const std::string& plan, const std::string& phase) const {
  for (const auto& p : pauses_) {
    if (PauseCovers(p.plan, p.phase, plan, phase)) return &p;
  }
  return nullptr;
}

void Orchestrator::Pause(const tide::Pause& pause) {
  pauses_.erase(std::remove_if(pauses_.begin(), pauses_.end(),
                               [&](const tide::Pause& p) {
                                 return p.plan == pause.plan && p.phase == pause.phase;
                               }),
                pauses_.end());
  pauses_.push_back(pause);
  Audit(AuditEvent{"paused", pause.plan, pause.phase, pause.actor,
                   JsonObject().Str("via", pause.via).Str(
                       "scope", pause.phase.empty() ? "every phase" : pause.phase)});
  spdlog::info("pause of {} ({}) by {}", pause.plan == "*" ? "every plan" : pause.plan,
               pause.phase.empty() ? "every phase" : pause.phase, pause.actor);
  for (const auto& kv : config_.databases) {
    const std::string database = kv.first;
    offloader_.Run<Status>(
        [this, database, pause] {
          auto db = connector_->Connect(database);
          if (!db.ok()) return db.status();
          Status s = (*db)->EnsureSchema();
          return s.ok() ? (*db)->SavePause(pause) : s;
        },
        [database](Status s) {
          if (!s.ok()) spdlog::error("database {}: cannot store the pause: {}", database, s.ToString());
        });
  }
}

void Orchestrator::Resume(const std::string& plan, const std::string& phase,
                          const std::string& actor, const std::string& via) {
  pauses_.erase(std::remove_if(pauses_.begin(), pauses_.end(),
                               [&](const tide::Pause& p) {
                                 return p.plan == plan && (phase.empty() || p.phase == phase);
                               }),
                pauses_.end());
  Audit(AuditEvent{"resumed", plan, phase, actor, JsonObject().Str("via", via)});
  spdlog::info("resume of {} ({}) by {}", plan == "*" ? "every plan" : plan,
               phase.empty() ? "every phase" : phase, actor);
  for (const auto& kv : config_.databases) {
    const std::string database = kv.first;
    offloader_.Run<Status>(
        [this, database, plan, phase] {
          auto db = connector_->Connect(database);
          if (!db.ok()) return db.status();
          Status s = (*db)->EnsureSchema();
          return s.ok() ? (*db)->DeletePauses(plan, phase) : s;
        },
        [database](Status s) {
          if (!s.ok()) spdlog::error("database {}: cannot store the resume: {}", database, s.ToString());
        });
  }
}

void Orchestrator::UpdateConfig(const Config& config) {
  config_.defaults = config.defaults;
  config_.max_workers = config.max_workers;
  config_.log_level = config.log_level;
  config_.backup_command = config.backup_command;
  slots_.set_capacity(static_cast<int>(config.max_workers));
}

void Orchestrator::Shutdown(std::function<void()> on_idle) {
  stopping_ = true;
  audit_timer_.cancel();
  lease_timer_.cancel();
  on_idle_ = std::move(on_idle);
  for (auto& kv : runs_) kv.second->Stop();
  CheckIdle();
}

void Orchestrator::CheckIdle() {
  if (!stopping_ || offloader_.in_flight() > 0 || !on_idle_) return;
  auto done = std::move(on_idle_);
  on_idle_ = nullptr;
  done();
}

}  // namespace tide
