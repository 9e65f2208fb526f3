#include "runtime/plan_run.h"

#include "runtime/control.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/backfill.h"
#include "engine/operations.h"
#include "engine/phase.h"
#include "engine/sqlstate.h"
#include "engine/sql_text.h"
#include "runtime/retry.h"

namespace tide {

namespace asio = boost::asio;

Orchestrator::Run::Run(Orchestrator& o, Plan plan, PlanRecord record,
                       std::shared_ptr<PlanDatabase> db)
    : o_(o),
      plan_(std::move(plan)),
      record_(std::move(record)),
      db_(std::move(db)),
      cursor_(record_.cursor),
      limits_(LimitsFor(plan_, o.config_.defaults)),
      timer_(o.io_),
      sweeps_(plan_.backfill.size()),
      verified_(plan_.backfill.size(), false),
      unfillable_(plan_.backfill.size()) {}

std::string Orchestrator::Run::key() const { return plan_.database + "/" + plan_.name; }

const std::string& Orchestrator::Run::name() const { return plan_.name; }

void Orchestrator::Run::AbortStopped(const std::string& actor, bool file_in_spool) {
  abort_by_ = actor;
  file_in_spool_ = file_in_spool;
}

void Orchestrator::Run::Start() {
  o_.metrics_->PlanStarted(plan_.name);
  o_.metrics_->SetPaused(plan_.name, false);
  if (!plan_.group.empty() && plan_.rollout.contract == Rollout::Contract::kTogether &&
      cursor_.state == PlanState::kGating) {
    // A run that starts here (a restart, a takeover) reads the gates again before it is ready:
    // what an earlier run stored, that it was, no longer holds for the other tided.
    auto db = db_;
    const std::string name = plan_.name;
    return Do<Status>([db, name] { return db->SaveWaitReason(name, "the gates are read again"); },
                      [self = shared_from_this()](Status) { self->Next(); });
  }
  Next();
}

void Orchestrator::Run::Stop(bool lease_lost) {
  stopped_ = true;
  lease_lost_ |= lease_lost;
  ++generation_;
  timer_.cancel();
  if (task_) task_->Cancel(Status::Invalid("stopped"));
}

void Orchestrator::Run::Abort(const std::string& actor, const std::string& via) {
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

void Orchestrator::Run::Next() {
  if (o_.stopping_ || stopped_) return;
  if (!abort_by_.empty() && cursor_.state != PlanState::kAborting) return BeginAbort();
  const PlanCursor normalized = Normalize(plan_, cursor_);
  // A phase with nothing to do is passed in the stored state too, so that `tidectl status`
  // shows where the plan is (gating, not backfilling, for a plan without backfill). A plan that
  // has not started stays accepted until it does something (see kRunBackfillTask below).
  if (normalized.state != cursor_.state && cursor_.state != PlanState::kAccepted) {
    return Advance(normalized);
  }
  if (cursor_.state == PlanState::kAccepted && normalized.state == PlanState::kBackfilling) {
    accepted_stored_ = false;
  }
  cursor_ = normalized;
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
  const bool rolls_back =
      a.kind == Action::Kind::kRunRollbackStep || a.kind == Action::Kind::kFinishAborted;
  // The sync triggers stay through contract's leading constraint steps, so that the old
  // application's writes still get their values while the constraints go in; any other step
  // (a drop of a column the expressions read, say) comes after them.
  const bool ends_triggers =
      (a.kind == Action::Kind::kRunContractStep && !AddsConstraintOnly(plan_.contract[a.index])) ||
      a.kind == Action::Kind::kFinish || rolls_back;
  if (ends_triggers && !sync_triggers_dropped_) return DropSyncTriggers();
  if (rolls_back && !gate_checks_removed_) {
    // An abort leaves no constraint of tide's behind.
    return RemoveGateChecks("the plan is being aborted", [this] {
      gate_checks_removed_ = true;
      Next();
    });
  }
  switch (a.kind) {
    case Action::Kind::kRunExpandStep: return RunStep("expand", plan_.expand[a.index], a.index);
    case Action::Kind::kRunContractStep:
      return RunStep("contract", plan_.contract[a.index], a.index);
    case Action::Kind::kRunRollbackStep:
      return RunStep("rollback", plan_.rollback[a.index], a.index);
    case Action::Kind::kRunBackfillTask:
      // A plan without expand steps starts with its backfill: stored as backfilling (with its
      // start time) before the first batch, not left accepted in `tidectl status` until its
      // gates. Past the pause, the audit log and the backup, like an expand step's cursor.
      if (!accepted_stored_) {
        accepted_stored_ = true;
        return Advance(cursor_);
      }
      return StartTask(a.index);
    case Action::Kind::kCheckGates: return CheckGates();
    case Action::Kind::kFinish: return Finish();
    case Action::Kind::kFinishAborted: return FinishAborted();
    case Action::Kind::kRunRevertStep: return RunStep("revert", plan_.revert[a.index], a.index);
    case Action::Kind::kFinishReverted: return FinishReverted();
    case Action::Kind::kNothing: return;
  }
}

void Orchestrator::Run::BeginAbort() {
  NotReadyForRollout();
  Audit("abort_started", "rollback",
        JsonObject()
            .Str("from", ToString(cursor_.state))
            .Int("rollback_steps", static_cast<int64_t>(plan_.rollback.size())),
        abort_by_);
  Advance(PlanCursor{PlanState::kAborting, 0, cursor_.catch_up});
}

void Orchestrator::Run::FinishAborted() {
  auto db = db_;
  const std::string name = plan_.name;
  const PlanCursor aborted = AfterSuccess(plan_, cursor_);
  Do<Status>([db, name, aborted] { return db->SaveCursor(name, aborted); },
                            [self = shared_from_this(), aborted](Status s) {
                              if (!s.ok()) return self->OnError(s);
                              self->cursor_ = aborted;
                              self->AnnouncePhase();
                              self->Audit("plan_aborted", "",
                                          JsonObject().Str("file", self->record_.file_name),
                                          self->abort_by_);
                              spdlog::info("plan {}: aborted; rollback done", self->plan_.name);
                              self->FinishFile(false, "aborted by " + self->abort_by_ +
                                                          "; the rollback steps ran");
                              self->o_.metrics_->PlanFinished(self->plan_.database, "aborted");
                              self->End();
                            });
}

void Orchestrator::Run::FinishReverted() {
  auto db = db_;
  const std::string name = plan_.name;
  const PlanCursor reverted = AfterSuccess(plan_, cursor_);
  Do<Status>([db, name, reverted] { return db->SaveCursor(name, reverted); },
             [self = shared_from_this(), reverted](Status s) {
               if (!s.ok()) return self->OnError(s);
               self->cursor_ = reverted;
               self->AnnouncePhase();
               self->Audit("plan_reverted", "revert", JsonObject(), self->revert_by_);
               spdlog::info("plan {}: reverted; the old columns have their names back",
                            self->plan_.name);
               self->o_.metrics_->PlanFinished(self->plan_.database, "reverted");
               self->FinishFile(true, "");
               self->End();
             });
}

void Orchestrator::Run::RunBackup() {
  CommandRunner* runner = o_.options_.commands;
  if (!runner) return Fail(Status::Fatal("backup_command is set but this tided cannot run commands"));
  const std::string command = o_.config_.backup_command;
  const std::vector<std::pair<std::string, std::string>> env = {
      {"TIDE_PLAN", plan_.name}, {"TIDE_DATABASE", plan_.database}};
  const auto start = SteadyClock::now();
  doing_ = "backup_command";
  Audit("backup_started", "", JsonObject().Str("command", command));
  Do<Result<CommandResult>>(
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

bool Orchestrator::Run::HeldByPause() {
  const char* phase = PhaseOf(cursor_.state);
  const tide::Pause* by = o_.PausedBy(plan_.name, phase, member_of());
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

void Orchestrator::Run::AnnouncePhase() {
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

void Orchestrator::Run::DropSyncTriggers() {
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
  Do<Status>([db, sql, limits] { return db->Execute(sql, limits); },
                            [self = shared_from_this()](Status s) {
                              if (!s.ok()) return self->OnError(s);
                              self->Audit("sync_triggers_dropped", "contract", JsonObject());
                              self->sync_triggers_dropped_ = true;
                              self->Next();
                            });
}

void Orchestrator::Run::RunStep(const std::string& phase, const Step& step, size_t index) {
  const PlanCursor after = AfterSuccess(plan_, cursor_);
  auto db = db_;
  const auto start = SteadyClock::now();
  const std::string name = plan_.name, what = step.Describe(), op = OpName(step.kind);
  // The switch of alter_column steps is computed from the catalog as it is now, just before it
  // runs (what to build again on the shadows); every other step from the plan alone.
  const bool from_catalog = step.kind == OpKind::kSwitch || step.kind == OpKind::kRevertSwitch;
  const std::vector<DdlStatement> statements = from_catalog ? std::vector<DdlStatement>{}
                                                            : CompileStep(step);
  StatementLimits limits = limits_;
  if (step.statement_timeout) limits.statement_timeout = *step.statement_timeout;
  doing_ = phase + " step " + std::to_string(index + 1);
  Audit("step_started", phase, JsonObject().Int("step", index + 1).Str("op", op).Str("sql", what));
  Do<Result<std::vector<StatementOutcome>>>(
      [db, name, statements, limits, after, from_catalog, step,
       gate_timeout = GateLimits().statement_timeout]() -> Result<std::vector<StatementOutcome>> {
        if (!from_catalog) return db->RunStatements(name, statements, limits, after);
        std::string problem;
        std::vector<DdlStatement> computed;
        if (step.kind == OpKind::kRevertSwitch) {
          auto kept = db->ListRetained(name);
          if (!kept.ok()) return kept.status();
          const Step shape = RevertShape(step, *kept, &problem);
          if (!problem.empty()) return Status::Fatal("the revert cannot run: " + problem);
          Result<SwitchFacts> facts = db->ReadSwitchFacts(shape);
          if (!facts.ok()) return facts.status();
          computed = CompileRevert(shape, *facts, *kept, &problem, limits.lock_timeout,
                                   limits.statement_timeout);
          if (!problem.empty()) return Status::Fatal("the revert cannot run: " + problem);
        } else {
          Result<SwitchFacts> facts = db->ReadSwitchFacts(step);
          if (!facts.ok()) return facts.status();
          computed = CompileSwitch(step, *facts, &problem, limits.lock_timeout, limits.statement_timeout);
          if (!problem.empty()) return Status::Fatal("the switch cannot run: " + problem);
        }
        // The index builds, validations and the check that every row agrees scan whole tables:
        // they run under gate_timeout; the switch's own transaction under statement_timeout.
        StatementLimits slow = limits;
        slow.statement_timeout = std::max(limits.statement_timeout, gate_timeout);
        return db->RunStatements(name, computed, slow, after);
      },
      [self = shared_from_this(), phase, index, start, what, op, after](
          Result<std::vector<StatementOutcome>> r) {
        if (r.status().sqlstate() == "55P03") self->o_.metrics_->CountLockTimeout(self->plan_.name);
        if (!r.ok()) return self->OnError(r.status());
        self->o_.metrics_->RecordDdl(self->plan_.name, phase, MillisSince(start) / 1000.0);
        for (const auto& o : *r) {
          if (o.lock_held_ms < 0) continue;
          spdlog::info("plan {}: the switch held its locks for {} ms", self->plan_.name, o.lock_held_ms);
          self->o_.metrics_->RecordSwitch(self->plan_.name, o.lock_held_ms / 1000.0);
          self->Audit("switch_finished", phase,
                      JsonObject().Int("step", index + 1).Int("lock_held_ms", o.lock_held_ms));
        }
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

BackfillEnv Orchestrator::Run::MakeEnv() {
  BackfillEnv env;
  env.offload = &o_.offloader_;
  env.connector = o_.connector_;
  env.metrics = o_.metrics_;
  env.slots = &o_.slots_;
  env.server_health = &o_.server_health_;
  env.server = o_.connector_->ServerOf(plan_.database);
  env.max_retries = o_.options_.max_retries;
  env.retry_base = o_.options_.retry_base;
  env.retry_cap = o_.options_.retry_cap;
  std::weak_ptr<Run> weak = shared_from_this();
  env.audit = [weak](const std::string& event, JsonObject details) {
    if (auto self = weak.lock()) self->Audit(event, "backfill", std::move(details));
  };
  Orchestrator* o = &o_;
  env.stopping = [o] { return o->stopping_; };
  // The catch-up while the gates wait is held by a pause of the gates as well.
  env.paused = [o, weak] {
    auto self = weak.lock();
    if (!self) return true;
    const std::string& plan = self->plan_.name;
    const std::string database = self->member_of();
    return o->PausedBy(plan, "backfill", database) != nullptr ||
           o->PausedBy(plan, PhaseOf(self->cursor_.state), database) != nullptr ||
           !o->audit_blocked_.empty();
  };
  // Health limits are read at every check, so that a reloaded config applies at once.
  std::weak_ptr<Run> weak_run = shared_from_this();
  env.health = [o, weak_run] {
    auto self = weak_run.lock();
    if (!self || self->plan_.backfill.empty()) return HealthLimits{};
    return OptionsFor(self->plan_, self->plan_.backfill.front(), o->config_.defaults).health;
  };
  env.throttle_file = [o](const std::string& plan) {
    return ThrottledByFile(o->config_.spool_dir + "/control/throttle", plan);
  };
  return env;
}

std::shared_ptr<BackfillRun> Orchestrator::Run::MakeTask(size_t index, BackfillMode mode) {
  const BackfillTask& task = plan_.backfill[index];
  // A sweep scans the table, as a gate does.
  const StatementLimits limits = mode == BackfillMode::kSweep ? GateLimits() : limits_;
  return std::make_shared<BackfillRun>(MakeEnv(), plan_.database, plan_.name,
                                       static_cast<int>(index), task, cursor_.catch_up ? 2 : 1,
                                       OptionsFor(plan_, task, o_.config_.defaults), limits, mode,
                                       o_.LiveFor(plan_.database, plan_.name));
}

void Orchestrator::Run::ApplyLive(const LiveSettings& live) {
  if (task_) task_->ApplyLive(live);
}

void Orchestrator::Run::StartTask(size_t index) {
  const BackfillTask& task = plan_.backfill[index];
  doing_ = "backfill of " + task.table.Display();
  task_started_ = SteadyClock::now();
  task_ = MakeTask(index, BackfillMode::kPass);
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
    self->AnalyzeThenAdvance(index);
  });
}

void Orchestrator::Run::AnalyzeThenAdvance(size_t index) {
  auto db = db_;
  const QualifiedName table = plan_.backfill[index].table;
  const StatementLimits limits = GateLimits();
  const auto start = SteadyClock::now();
  doing_ = "ANALYZE of " + table.Display();
  Do<Status>([db, table, limits] { return db->Execute(AnalyzeSql(table), limits); },
             [self = shared_from_this(), table, start](Status s) {
               if (self->stopped_) return;
               if (!self->abort_by_.empty()) return self->Next();
               if (s.ok()) {
                 self->Audit("table_analyzed", "backfill",
                             JsonObject().Str("table", table.Display()).Int("duration_ms", MillisSince(start)));
               } else {
                 spdlog::warn("plan {}: ANALYZE of {} skipped: {}", self->plan_.name, table.Display(),
                              s.ToString());
                 self->Audit("analyze_skipped", "backfill",
                             JsonObject().Str("table", table.Display()).Str("error", s.ToString()));
               }
               self->Advance(AfterSuccess(self->plan_, self->cursor_));
             });
}

StatementLimits Orchestrator::Run::GateLimits() const {
  StatementLimits l = limits_;
  l.statement_timeout = plan_.settings.gate_timeout.value_or(o_.config_.defaults.gate_timeout);
  return l;
}

Result<Orchestrator::Run::GateReading> Orchestrator::Run::ReadGates(
    PlanDatabase& db, const std::vector<Gate>& gates, const StatementLimits& limits) {
  GateReading out;
  for (size_t i = 0; i < gates.size(); ++i) {
    const Gate& g = gates[i];
    const bool nulls = g.kind == Gate::Kind::kNullCount;
    auto v = db.QueryNumber(nulls ? NullCountSql(g.table, g.column) : g.sql, limits);
    if (!v.ok()) return v.status();
    const int64_t expect = nulls ? 0 : g.expect;
    out.values.push_back({g.Label(i), *v, expect});
    out.pass &= *v == expect;
  }
  return out;
}

void Orchestrator::Run::CheckGates() {
  if (gate_stage_ == GateStage::kEntering) {
    gate_stage_ = GateStage::kChecking;
    if (!GateCheckRemovals(plan_).empty()) {
      return RemoveGateChecks("left by an earlier run; they go in only once the gates pass",
                              [this] { QueryGates(); });
    }
  }
  if (gate_stage_ == GateStage::kWaiting) return CatchUp(0, BackfillMode::kTail);
  QueryGates();
}

void Orchestrator::Run::QueryGates() {
  auto db = db_;
  const std::vector<Gate> gates = plan_.gates;
  const StatementLimits limits = GateLimits();
  doing_ = "gates";
  Do<Result<GateReading>>([db, gates, limits] { return ReadGates(*db, gates, limits); },
                          [this](Result<GateReading> r) {
                            if (!abort_by_.empty()) return Next();
                            if (!r.ok()) return OnError(r.status());
                            OnGates(r->values);
                          });
}

std::string Orchestrator::Run::Failing(const std::vector<GateValue>& values) const {
  std::string failing;
  for (const auto& v : values) {
    if (v.value == v.expect) continue;
    failing += (failing.empty() ? "" : ", ") + v.label + " = " + std::to_string(v.value);
  }
  for (size_t i = 0; i < unfillable_.size(); ++i) {
    if (unfillable_[i].rows == 0) continue;
    failing += "; " + std::to_string(unfillable_[i].rows) + " rows of " +
               plan_.backfill[i].table.Display() +
               (plan_.backfill[i].where.empty()
                    ? ": the expression yields NULL"
                    : ": still match `where` after their update (the expression yields NULL or "
                      "their current value)");
  }
  return failing;
}

void Orchestrator::Run::OnGates(const std::vector<GateValue>& values) {
  bool pass = true;
  for (const auto& v : values) {
    const bool ok = v.value == v.expect;
    o_.metrics_->SetGateRemaining(plan_.name, v.label, v.value);
    pass &= ok;
    if (!ok || gate_stage_ != GateStage::kWaiting) {
      Audit("gate_checked", "gate",
            JsonObject().Str("gate", v.label).Int("value", v.value).Int("expect", v.expect).Bool(
                "passed", ok));
    }
  }
  if (!pass) {
    attempts_ = 0;  // the gates were read: a wait, not an error
    return OnGatesFailed(Failing(values));
  }
  GatesPassed();
}

void Orchestrator::Run::GatesPassed() {
  if (!plan_.group.empty() && plan_.rollout.contract == Rollout::Contract::kTogether &&
      !together_released_) {
    // Ready once the gates pass and the verifications find no row that differs.
    for (size_t i = 0; i < plan_.backfill.size(); ++i) {
      if (plan_.backfill[i].verify && !verified_[i]) return Verify(i);
    }
    return HoldForRollout();
  }
  bool verifies = false;
  for (const auto& task : plan_.backfill) verifies |= task.verify;
  // Errors on the way to contract (a lock timeout adding the checks) keep their count, so that
  // their retry budget runs out.
  if (GateChecks(plan_).empty() && !verifies) return Advance(AfterSuccess(plan_, cursor_));
  const tide::Pause* hold = o_.PausedBy(plan_.name, "contract", member_of());
  if (hold) {
    // The checks are contract's first effect: a hold of contract keeps them out too. A
    // verification is done once the hold ends, right before contract, never hours before it.
    verified_.assign(verified_.size(), false);
    if (gate_stage_ != GateStage::kHeld) {
      gate_stage_ = GateStage::kHeld;
      o_.metrics_->SetPaused(plan_.name, true);
      Audit("plan_held", "contract",
            JsonObject().Str("paused_by", hold->actor).Str("via", hold->via).Str(
                "reason", "the gates pass; contract and its NOT VALID checks wait for the hold"));
      spdlog::info("plan {}: gates pass; held before contract (by {})", plan_.name, hold->actor);
    }
    return After(o_.config_.defaults.gate_recheck_interval, [this] { Next(); });
  }
  if (gate_stage_ == GateStage::kHeld) {
    gate_stage_ = GateStage::kChecking;
    o_.metrics_->SetPaused(plan_.name, false);
    Audit("plan_released", "contract", JsonObject());
  }
  for (size_t i = 0; i < plan_.backfill.size(); ++i) {
    if (plan_.backfill[i].verify && !verified_[i]) return Verify(i);
  }
  if (GateChecks(plan_).empty()) return Advance(AfterSuccess(plan_, cursor_));
  SealGates();
}

void Orchestrator::Run::HoldForRollout() {
  const bool was = rollout_ready_;
  rollout_ready_ = true;
  const bool holds = o_.RolloutHoldsContract(plan_);
  if (!was) {
    Audit("rollout_ready", "contract",
          JsonObject().Bool("held", holds).Str(
              "reason", holds ? "the gates pass; contract waits until every database of group `" +
                                    plan_.group + "` is ready"
                              : "the gates pass; every database of group `" + plan_.group +
                                    "` is ready"));
    o_.AdvanceRollout(plan_.name);
  }
  if (!holds) {
    together_released_ = true;
    rollout_ready_ = false;  // in flight again: it counts against max_parallel
    // The gates and verifications were read just now: on to contract. One that held reads them
    // once more, right before contract.
    if (!was) return GatesPassed();
    verified_.assign(verified_.size(), false);
    return Next();
  }
  Park();
}

// Ready, and the rollout holds the contract: the run ends here, its session and lease given
// back, and the database waits with nothing open (its readiness stored in its tide schema) until
// the rollout starts it again. A ready database of a 200-database rollout costs no session.
void Orchestrator::Run::Park() {
  auto db = db_;
  const std::string name = plan_.name, owner = o_.options_.instance;
  const std::string ready = kReadyForContract + plan_.group + "` (contract: together)";
  // The lease goes in the same job, once the readiness is stored: the rollout may start the
  // database again at once, here or on another tided.
  Do<Status>([db, name, ready, owner] {
               Status s = db->SaveWaitReason(name, ready);
               if (s.ok()) db->ReleaseLease(name, owner);
               return s;
             },
             [self = shared_from_this()](Status s) {
               if (!self->abort_by_.empty()) return self->Next();
               if (!s.ok()) {
                 // Not stored: it holds here, and tries again.
                 spdlog::warn("plan {}: cannot store that it is ready: {}", self->plan_.name, s.ToString());
                 return self->After(self->o_.config_.defaults.gate_recheck_interval,
                                    [self] { self->HoldForRollout(); });
               }
               self->Audit("rollout_parked", "contract",
                           JsonObject().Str("reason", "ready; waits for the other databases of group `" +
                                                          self->plan_.group + "` with no session open"));
               self->o_.OnRunFinished(self->key());
               self->o_.MemberParked(self->plan_);
             });
}

void Orchestrator::Run::NotReadyForRollout() {
  together_released_ = false;
  if (!rollout_ready_) return;
  rollout_ready_ = false;
  o_.AdvanceRollout(plan_.name);
}

void Orchestrator::Run::SealGates() {
  auto db = db_;
  const std::string name = plan_.name;
  const std::vector<DdlStatement> checks = GateChecks(plan_), removals = GateCheckRemovals(plan_);
  const std::vector<Gate> gates = plan_.gates;
  const StatementLimits limits = limits_, gate_limits = GateLimits();
  doing_ = "the NOT VALID checks once the gates pass";
  // Under the checks, every column they cover is counted too, gate or no gate: VALIDATE would
  // fail on a NULL in contract, where there is no way back.
  std::vector<Gate> reread = gates;
  for (const auto& step : plan_.contract) {
    if (step.kind != OpKind::kSetNotNull) break;  // the steps GateChecks covers
    Gate g;
    g.kind = Gate::Kind::kNullCount;
    g.table = step.table;
    g.column = step.column;
    reread.push_back(g);
  }
  Do<Result<GateReading>>(
      [db, name, checks, removals, reread, limits, gate_limits]() -> Result<GateReading> {
        auto added = db->RunStatements(name, checks, limits, std::nullopt);
        if (!added.ok()) {
          db->RunStatements(name, removals, limits, std::nullopt);  // those that went in
          return added.status();
        }
        auto reading = ReadGates(*db, reread, gate_limits);
        if (!reading.ok() || !reading->pass) {
          // A NULL came in between the gate and the check (or the re-read failed): the checks
          // go again, so that writes of NULL do not fail while the gates wait.
          auto removed = db->RunStatements(name, removals, limits, std::nullopt);
          if (!reading.ok()) return reading.status();
          if (!removed.ok()) return removed.status();
        }
        GateReading sealed = std::move(reading).value();
        sealed.checks = std::move(added).value();
        return sealed;
      },
      [this](Result<GateReading> r) {
        if (r.status().sqlstate() == "55P03") o_.metrics_->CountLockTimeout(plan_.name);
        if (!abort_by_.empty()) return Next();  // the rollback removes the checks
        if (!r.ok()) return OnError(r.status());
        if (!r->pass) {
          const std::string failing = Failing(r->values);
          Audit("gate_checks_removed", "gate",
                JsonObject().Str("failing", failing).Str(
                    "reason", "a gate failed again right after the checks went in (the old "
                              "application may still be writing NULLs); the checks were "
                              "removed so that its writes do not fail"));
          return OnGatesFailed(failing);
        }
        Audit("gate_checks_added", "gate", JsonObject().Raw("statements", OutcomesJson(r->checks)));
        attempts_ = 0;
        gate_stage_ = GateStage::kChecking;
        Advance(AfterSuccess(plan_, cursor_));
      });
}

void Orchestrator::Run::OnGatesFailed(const std::string& failing) {
  NotReadyForRollout();
  // A verification counts only for the gates that passed with it.
  verified_.assign(verified_.size(), false);
  if (gate_stage_ == GateStage::kHeld) {
    o_.metrics_->SetPaused(plan_.name, false);
    Audit("plan_released", "contract", JsonObject().Str("reason", "the gates fail again"));
  }
  const PlanCursor next = AfterGateFailure(cursor_);
  if (!(next == cursor_)) {
    Audit("gate_failed", "gate",
          JsonObject().Str("failing", failing).Str("action",
                                                   "backfill again over the rows that still "
                                                   "match, then check again"));
    gate_stage_ = GateStage::kChecking;
    return Advance(next);
  }
  if (gate_stage_ != GateStage::kWaiting) {
    Audit("gate_waiting", "gate",
          JsonObject().Str("failing", failing).Int(
              "recheck_ms", o_.config_.defaults.gate_recheck_interval.count()));
    spdlog::warn("plan {}: gates fail ({}); contract waits, re-checking every {}", plan_.name,
                 failing, FormatDuration(o_.config_.defaults.gate_recheck_interval));
  }
  gate_stage_ = GateStage::kWaiting;
  SaveWaiting(failing, [this] {
    if (!abort_by_.empty()) return Next();
    After(o_.config_.defaults.gate_recheck_interval, [this] { Next(); });
  });
}

void Orchestrator::Run::RemoveGateChecks(const std::string& why, std::function<void()> then) {
  const std::vector<DdlStatement> removals = GateCheckRemovals(plan_);
  if (removals.empty()) return then();
  auto db = db_;
  const std::string name = plan_.name;
  const StatementLimits limits = limits_;
  doing_ = "removing the gates' NOT VALID checks";
  Do<Result<std::vector<StatementOutcome>>>(
      [db, name, removals, limits] { return db->RunStatements(name, removals, limits, std::nullopt); },
      [this, why, then](Result<std::vector<StatementOutcome>> r) {
        if (r.status().sqlstate() == "55P03") o_.metrics_->CountLockTimeout(plan_.name);
        if (!r.ok()) return OnError(r.status());
        const bool any = std::any_of(r->begin(), r->end(),
                                     [](const StatementOutcome& o) { return !o.skipped; });
        if (any) {
          Audit("gate_checks_removed", PhaseOf(cursor_.state),
                JsonObject().Str("reason", why).Raw("statements", OutcomesJson(*r)));
        }
        then();
      });
}

void Orchestrator::Run::Verify(size_t index) {
  const BackfillTask& task = plan_.backfill[index];
  doing_ = "verification of " + task.table.Display();
  const auto started = SteadyClock::now();
  task_ = MakeTask(index, BackfillMode::kVerify);
  task_->Start([self = shared_from_this(), index, started](Status s, BackfillSummary summary) {
    self->task_.reset();
    if (self->stopped_) return;
    if (!self->abort_by_.empty()) return self->Next();
    if (!s.ok()) return self->OnError(s);
    const std::string table = self->plan_.backfill[index].table.Display();
    self->o_.metrics_->SetVerifyDiffering(self->plan_.name, table, summary.differing);
    if (summary.differing == 0) {
      self->verified_[index] = true;
      self->Audit("verified", "gate",
                  JsonObject().Str("table", table).Int("rows", summary.rows_scanned).Int(
                      "batches", summary.batches).Int("duration_ms", MillisSince(started)));
      return self->GatesPassed();
    }
    std::string keys;
    for (const auto& k : summary.differing_keys) keys += (keys.empty() ? "" : "; ") + std::string("(") + k + ")";
    std::string columns;
    for (const auto& [column, expr] : self->plan_.backfill[index].set) {
      columns += (columns.empty() ? "" : ", ") + column + " = NULL";
    }
    const std::string failing =
        "verify:" + table + " found " + std::to_string(summary.differing) + " row" +
        (summary.differing == 1 ? "" : "s") + " whose stored value differs from the task's "
        "expression (keys " + keys + "); find why (a write that bypassed the sync trigger, a "
        "changed function), then set them to NULL (UPDATE " + table + " SET " + columns +
        " WHERE ...) and tide fills them again; verified again every " +
        FormatDuration(self->o_.config_.defaults.gate_recheck_interval);
    self->Audit("verify_failed", "gate",
                JsonObject().Str("table", table).Int("rows", summary.rows_scanned).Int(
                    "differing", summary.differing).Str("keys", keys));
    spdlog::warn("plan {}: {}", self->plan_.name, failing);
    self->NotReadyForRollout();
    self->attempts_ = 0;
    self->gate_stage_ = GateStage::kWaiting;
    self->SaveWaiting(failing, [self] {
      if (!self->abort_by_.empty()) return self->Next();
      self->After(self->o_.config_.defaults.gate_recheck_interval, [self] { self->Next(); });
    });
  });
}

void Orchestrator::Run::CatchUp(size_t index, BackfillMode mode) {
  if (index >= plan_.backfill.size()) return QueryGates();
  task_ = MakeTask(index, mode);
  task_->Start([self = shared_from_this(), index, mode](Status s, BackfillSummary summary) {
    self->task_.reset();
    if (self->stopped_) return;
    if (!self->abort_by_.empty()) return self->Next();
    if (!s.ok()) return self->Fail(s);
    if (mode == BackfillMode::kTail) {
      if (self->sweeps_[index].Due()) return self->CatchUp(index, BackfillMode::kSweep);
      return self->CatchUp(index + 1, BackfillMode::kTail);
    }
    self->sweeps_[index].Swept(summary.rows_scanned);
    self->NoteUnfillable(index, summary);
    if (summary.rows_updated > 0) {
      // Rows the application wrote behind the passes (keys that do not only grow).
      self->Audit("backfill_swept", "backfill",
                  JsonObject()
                      .Str("table", self->plan_.backfill[index].table.Display())
                      .Int("rows_updated", summary.rows_updated)
                      .Int("batches", summary.batches));
    }
    self->CatchUp(index + 1, BackfillMode::kTail);
  });
}

void Orchestrator::Run::Finish() {
  auto db = db_;
  const std::string name = plan_.name;
  const PlanCursor done{PlanState::kDone, cursor_.step, cursor_.catch_up};
  Do<Status>([db, name, done] { return db->SaveCursor(name, done); },
                     [self = shared_from_this(), done](Status s) {
                       if (!s.ok()) return self->OnError(s);
                       self->cursor_ = done;
                       self->AnnouncePhase();
                       self->Audit("plan_done", "", JsonObject().Str("file", self->record_.file_name));
                       spdlog::info("plan {}: done", self->plan_.name);
                       self->FinishFile(true, "");
                       self->o_.metrics_->PlanFinished(self->plan_.database, "done");
                       const bool finalize_now = self->plan_.retention &&
                                                 self->plan_.retention->count() == 0 &&
                                                 !self->plan_.revert.empty();
                       Orchestrator& o = self->o_;
                       const std::string plan = self->plan_.name, database = self->plan_.database;
                       self->End();
                       if (finalize_now) o.Finalize(plan, "retention", "retention", database);
                     });
}

void Orchestrator::Run::Advance(PlanCursor next) {
  auto db = db_;
  const std::string name = plan_.name;
  Do<Status>([db, name, next] { return db->SaveCursor(name, next); },
                     [self = shared_from_this(), next](Status s) {
                       if (!s.ok()) return self->OnError(s);
                       self->cursor_ = next;
                       self->Next();
                     });
}

void Orchestrator::Run::NoteUnfillable(size_t index, const BackfillSummary& summary) {
  Unfillable& u = unfillable_[index];
  if (summary.unfillable == u.rows) return;
  u.rows = summary.unfillable;
  u.keys = summary.unfillable_keys;
  const std::string table = plan_.backfill[index].table.Display();
  o_.metrics_->SetUnfillable(plan_.name, table, u.rows);
  Audit("backfill_unfillable", "backfill",
        JsonObject()
            .Str("table", table)
            .Int("rows", u.rows)
            .Str("example_keys", u.keys)
            .Str("reason", u.rows ? "the expression yields NULL for these rows (no matching "
                                    "row, say); they are not rewritten, and a null_count gate "
                                    "on them waits until the data or the plan is fixed"
                                  : "every row can be filled now"));
  if (u.rows) {
    spdlog::warn("plan {}: {} rows of {}: the expression yields NULL (e.g. keys {})", plan_.name,
                 u.rows, table, u.keys);
  }
}

void Orchestrator::Run::SaveWaiting(const std::string& reason, std::function<void()> then) {
  auto db = db_;
  const std::string name = plan_.name;
  Do<Status>([db, name, reason] { return db->SaveWaitReason(name, reason); },
             [name, then = std::move(then)](Status s) {
               if (!s.ok()) spdlog::debug("plan {}: wait reason not stored: {}", name, s.ToString());
               then();
             });
}

void Orchestrator::Run::OnError(const Status& s) {
  // The gates start over from removing their checks: an error may have left them in.
  if (cursor_.state == PlanState::kGating) gate_stage_ = GateStage::kEntering;
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
  if (!MayRetry(s, attempts_, limit)) return Fail(s);
  if (lock_timeout) {
    const BlockerPolicy policy = BlockerPolicyFor(plan_.settings, o_.config_.defaults);
    const std::vector<int64_t> pids = BlockerPids(s.detail());
    if (policy.enabled && attempts_ + 1 >= policy.after_lock_timeouts && !pids.empty()) {
      return EndBlockers(s, policy, pids);
    }
  }
  RetryAfter(s, false);
}

void Orchestrator::Run::EndBlockers(const Status& s, const BlockerPolicy& policy,
                                    const std::vector<int64_t>& pids) {
  auto db = db_;
  const std::string name = plan_.name;
  using Outcomes = Result<std::vector<BlockerOutcome>>;
  Do<Outcomes>(
      [db, name, policy, pids]() -> Outcomes {
        auto sessions = db->DescribeSessions(pids, policy.never);
        if (!sessions.ok()) return sessions.status();
        std::vector<BlockerOutcome> out;
        for (const auto& session : *sessions) {
          BlockerOutcome o;
          o.session = session;
          o.verdict = JudgeBlocker(policy, session);
          if (o.verdict.action != BlockerVerdict::Action::kLeave) {
            auto ended = db->EndSession(name, session,
                                        o.verdict.action == BlockerVerdict::Action::kTerminate,
                                        policy.max_per_plan);
            if (ended.ok()) {
              o.outcome = *ended;
            } else {
              o.error = ended.status();
            }
          }
          out.push_back(o);
        }
        return out;
      },
      [self = shared_from_this(), s, policy](Outcomes r) {
        bool ended_any = false;
        if (!r.ok()) {
          spdlog::warn("plan {}: cannot look at the sessions that block it: {}", self->plan_.name,
                       r.status().ToString());
        }
        for (const auto& o : r.ok() ? *r : std::vector<BlockerOutcome>{}) {
          const BlockerReport report = ReportBlocker(o, policy);
          JsonObject details = report.details;
          details.Str("doing", self->doing_);
          self->Audit(report.event, PhaseOf(self->cursor_.state), std::move(details));
          if (o.outcome == EndOutcome::kEnded) {
            ended_any = true;
            self->o_.metrics_->CountBlockerEnded(self->plan_.name, ToString(o.verdict.action));
          }
          if (!report.log.empty()) spdlog::warn("plan {}: {}", self->plan_.name, report.log);
        }
        self->RetryAfter(s, ended_any);
      });
}

void Orchestrator::Run::RetryAfter(const Status& s, bool blockers_ended) {
  ++attempts_;
  o_.metrics_->CountRetry(plan_.name, RetryKind(s));
  // Once blockers are ended the next attempt goes at once, before the application's next
  // transaction takes their place.
  const Millis wait = blockers_ended ? Millis(100)
                                     : Backoff(attempts_ - 1, o_.options_.retry_base, o_.options_.retry_cap);
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

void Orchestrator::Run::Reload() {
  auto db = db_;
  const std::string name = plan_.name;
  Do<Result<std::optional<PlanRecord>>>(
      [db, name] { return db->FindPlan(name); },
      [self = shared_from_this()](Result<std::optional<PlanRecord>> r) {
        if (!r.ok()) return self->OnError(r.status());
        if (!r.value()) return self->Fail(Status::Fatal("the plan's row in tide.plans is gone"));
        self->cursor_ = r.value()->cursor;
        self->Next();
      });
}

void Orchestrator::Run::Fail(const Status& s) {
  if (stopped_) return;  // the plan is not ours any more (or the daemon is stopping)
  std::string error = "plan " + plan_.name + " failed in " + doing_ + ": " + s.ToString();
  if (!s.detail().empty() && s.detail() != "[]") error += "; held up by " + s.detail();
  spdlog::error("{}", error);
  auto db = db_;
  const std::string name = plan_.name;
  const PlanCursor at = Normalize(plan_, cursor_);
  const PlanCursor failed{PlanState::kFailed, at.step, at.catch_up};
  const std::string phase = PhaseOf(at.state);
  // A plan that fails in the gates leaves no check of theirs in force: the old application's
  // writes of NULL must not fail while the plan waits for an operator.
  const std::vector<DdlStatement> removals =
      at.state == PlanState::kGating ? GateCheckRemovals(plan_) : std::vector<DdlStatement>{};
  const StatementLimits limits = limits_;
  Do<Status>(
      [db, name, at, error, removals, limits] {
        if (!removals.empty()) db->RunStatements(name, removals, limits, std::nullopt);
        return db->SaveFailure(name, at, error);
      },
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
        self->FinishFile(false, error);
        self->o_.metrics_->PlanFinished(self->plan_.database, "failed");
        self->End();
      });
}

void Orchestrator::Run::After(Millis wait, std::function<void()> then) {
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

void Orchestrator::Run::Audit(const std::string& event, const std::string& phase, JsonObject details,
             const std::string& actor) {
  if (!plan_.group.empty()) details.Str("database", plan_.database);
  o_.Audit(AuditEvent{event, plan_.name, phase, actor, std::move(details)});
}

std::string Orchestrator::Run::OutcomesJson(const std::vector<StatementOutcome>& outcomes) {
  std::string out = "[";
  for (const auto& o : outcomes) {
    JsonObject j;
    j.Str("sql", o.sql).Int("duration_ms", o.duration_ms);
    if (o.skipped) j.Bool("skipped", true);
    if (o.dropped_invalid_index) j.Bool("dropped_invalid_index", true);
    if (o.lock_held_ms >= 0) j.Int("lock_held_ms", o.lock_held_ms);
    out += (out.size() > 1 ? "," : "") + j.ToString();
  }
  return out + "]";
}

// A plan on one database moves its file to done/ or failed/; a database of a group's plan
// tells the rollout instead, which moves the file once every database finished.
void Orchestrator::Run::FinishFile(bool ok, const std::string& error) {
  if (!plan_.group.empty()) {
    if (!IsFinal(cursor_.state)) return;
    rollout_ready_ = false;
    return o_.MemberEnded(plan_, cursor_.state);
  }
  // A reverted plan's file went to done/ when it was done; a failed plan's, to failed/.
  if (!file_in_spool_ || cursor_.state == PlanState::kReverted) return;
  Report(o_.spool_->Finish(record_.file_name, ok, error));
}

// The plan reached a final state, or parked: its lease goes back (so that a retry may run on
// any tided at once) and the orchestrator forgets the run. No action is in flight, so the
// session is free.
void Orchestrator::Run::End() {
  auto db = db_;
  const std::string plan = plan_.name, owner = o_.options_.instance;
  o_.offloader_.Run<Status>([db, plan, owner] { return db->ReleaseLease(plan, owner); },
                            [plan](Status s) {
                              if (!s.ok()) spdlog::warn("plan {}: lease not released: {}", plan, s.ToString());
                            });
  o_.OnRunFinished(key());
}

void Orchestrator::Run::Report(const Status& s) {
  if (!s.ok()) spdlog::error("plan {}: spool: {}", plan_.name, s.ToString());
}

}  // namespace tide
