// The Orchestrator's plans on a database group: admission on every database of the group, the
// rollout's decisions (engine/rollout.h) applied, retries of failed databases.
//
// Threading: as the Orchestrator's: on the io thread, blocking work on the pool.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "engine/sqlstate.h"
#include "plan/plan_parser.h"
#include "runtime/orchestrator.h"
#include "runtime/plan_run.h"

namespace tide {


struct Orchestrator::RolloutAdmission {
  enum class Kind { kAccept, kReject, kLater } kind = Kind::kLater;
  std::string error;
  std::vector<RolloutMember> members;
  std::vector<std::string> recorded;  // databases where the plan was recorded now
};

bool Orchestrator::AsMember(Plan* plan, const std::string& database) const {
  auto g = config_.database_groups.find(plan->group.empty() ? plan->database : plan->group);
  if (g == config_.database_groups.end()) return false;
  if (std::find(g->second.begin(), g->second.end(), database) == g->second.end()) return false;
  plan->group = g->first;
  plan->database = database;
  return true;
}

void Orchestrator::SubmitRollout(const SpoolFile& file, const Plan& plan,
                                 const std::string& checksum) {
  auto under_way = rollouts_.find(plan.name);
  if (under_way != rollouts_.end() && !under_way->second.file_finished) {
    return Reject(file, plan.name,
                  "the rollout of plan `" + plan.name + "` is already under way; see `tidectl "
                  "status`, and `tidectl retry " + plan.name + "` for its failed databases");
  }
  pending_files_.insert(file.name);
  offloader_.Run<std::shared_ptr<RolloutAdmission>>(
      [this, file, plan, checksum] {
        return std::make_shared<RolloutAdmission>(AdmitRollout(file, plan, checksum));
      },
      [this, file, plan](std::shared_ptr<RolloutAdmission> a) {
        pending_files_.erase(file.name);
        if (a->kind == RolloutAdmission::Kind::kLater) {
          spdlog::warn("{}: {}; will try again", file.name, a->error);
          if (waiting_files_.insert(file.name).second) {
            Audit(AuditEvent{"plan_waiting", plan.name, "", file.owner,
                             JsonObject().Str("file", file.name).Str("reason", a->error)});
          }
          return;
        }
        waiting_files_.erase(file.name);
        if (a->kind == RolloutAdmission::Kind::kAccept && rollouts_.count(plan.name) &&
            !rollouts_[plan.name].file_finished) {
          a->kind = RolloutAdmission::Kind::kReject;
          a->error = "the rollout of plan `" + plan.name + "` is already under way; see `tidectl "
                     "status`, and `tidectl retry " + plan.name + "` for its failed databases";
        }
        if (a->kind == RolloutAdmission::Kind::kReject) return Reject(file, plan.name, a->error);
        Status s = spool_->Accept(file.name);
        if (!s.ok()) spdlog::error("spool: {}", s.ToString());
        std::string databases;
        for (const auto& m : a->members) databases += (databases.empty() ? "" : ",") + m.database;
        Audit(AuditEvent{"rollout_accepted", plan.name, "", file.owner,
                         JsonObject()
                             .Str("file", file.name)
                             .Str("group", plan.database)
                             .Str("databases", databases)
                             .Int("canary", plan.rollout.canary)
                             .Int("max_parallel", plan.rollout.max_parallel)
                             .Str("on_failure", plan.rollout.on_failure == Rollout::OnFailure::kHalt
                                                    ? "halt" : "continue")
                             .Str("contract", plan.rollout.contract == Rollout::Contract::kTogether
                                                  ? "together" : "each")});
        spdlog::info("plan {}: rollout accepted on group {} ({} databases)", plan.name,
                     plan.database, a->members.size());
        RolloutRun& r = rollouts_[plan.name];
        r = RolloutRun{};
        r.plan = plan;
        r.file_name = file.name;
        r.members = a->members;
        for (auto& m : r.members) PlaceMember(r.plan, &m);
        AdvanceRollout(plan.name);
      });
}

// On the pool. Every database is checked before the plan is recorded in any, so that a plan
// one of them cannot take (a missing table, a lint finding) is rejected as a whole; a database
// that holds the plan already (a file submitted again) keeps its state, a failed one retries.
Orchestrator::RolloutAdmission Orchestrator::AdmitRollout(const SpoolFile& file, const Plan& plan,
                                                          const std::string& checksum) {
  RolloutAdmission out;
  const std::vector<std::string> group = config_.database_groups.at(plan.database);
  std::vector<std::string> restart;  // aborted copies, to start over
  // One session at a time: a group of hundreds of databases must not hold hundreds.
  for (const auto& database : group) {
    Plan copy = plan;
    AsMember(&copy, database);
    auto db = connector_->Connect(database);
    if (!db.ok()) {
      out.error = "cannot reach database `" + database + "` of group `" + plan.database +
                  "`: " + db.status().ToString();
      return out;
    }
    Status s = (*db)->EnsureSchema();
    if (!s.ok()) {
      Undecided(&out, "cannot prepare the tide schema in `" + database + "`: " + s.ToString(), s);
      return out;
    }
    auto existing = (*db)->FindPlan(plan.name);
    if (!existing.ok()) {
      Undecided(&out, database + ": " + existing.status().ToString(), existing.status());
      return out;
    }
    RolloutMember m;
    m.database = database;
    m.known = true;
    if (const auto& r = existing.value()) {
      if (r->checksum != checksum) {
        out.kind = RolloutAdmission::Kind::kReject;
        out.error = "a different plan named `" + plan.name + "` is already known to database `" +
                    database + "` (state " + ToString(r->cursor.state) +
                    "); give the new plan a new name";
        return out;
      }
      m.state = r->cursor.state;
      m.started = !(r->cursor.state == PlanState::kAccepted && r->started_at.empty());
      if (r->cursor.state == PlanState::kAborted) {
        // The same file again after an abort: this database starts over.
        restart.push_back(database);
        m.state = PlanState::kAccepted;
        m.started = false;
      }
    } else {
      Admission a;
      if (!CheckNewPlan(**db, file, copy, &a)) {
        out.kind = a.kind == Admission::Kind::kLater ? RolloutAdmission::Kind::kLater
                                                     : RolloutAdmission::Kind::kReject;
        out.error = "database `" + database + "` of group `" + plan.database + "`: " + a.error;
        return out;
      }
      out.recorded.push_back(database);
    }
    out.members.push_back(m);
  }
  for (size_t i = 0; i < group.size(); ++i) {
    const bool restarts = std::find(restart.begin(), restart.end(), group[i]) != restart.end();
    const bool records =
        std::find(out.recorded.begin(), out.recorded.end(), group[i]) != out.recorded.end();
    if (!restarts && !records) continue;
    auto db = connector_->Connect(group[i]);
    if (!db.ok()) {
      Undecided(&out, "cannot reach database `" + group[i] + "`: " + db.status().ToString(), db.status());
      return out;
    }
    if (restarts) {
      Status s = (*db)->RestartPlan(plan.name);
      if (!s.ok()) {
        Undecided(&out, "cannot restart plan `" + plan.name + "` in `" + group[i] + "`: " + s.ToString(), s);
        return out;
      }
      continue;
    }
    PlanRecord record;
    record.name = plan.name;
    record.checksum = checksum;
    record.file_name = file.name;
    record.source = file.text;
    record.submitted_by = file.owner;
    Status ins = (*db)->InsertPlan(record);
    if (!ins.ok()) {
      Undecided(&out, "cannot record plan `" + plan.name + "` in `" + group[i] + "`: " + ins.ToString(), ins);
      return out;
    }
  }
  out.kind = RolloutAdmission::Kind::kAccept;
  return out;
}

RolloutMember* Orchestrator::MemberOf(const std::string& plan, const std::string& database) {
  auto it = rollouts_.find(plan);
  if (it == rollouts_.end()) return nullptr;
  for (auto& m : it->second.members) {
    if (m.database == database) return &m;
  }
  return nullptr;
}

std::vector<RolloutMember> Orchestrator::RolloutMembers(const std::string& plan) const {
  auto it = rollouts_.find(plan);
  if (it == rollouts_.end()) return {};
  std::vector<RolloutMember> out = it->second.members;
  for (auto& m : out) {
    auto run = runs_.find(m.database + "/" + plan);
    if (run == runs_.end()) continue;
    m.state = run->second->state();
    m.ready = run->second->rollout_ready();
    m.elsewhere = false;  // it runs here
    m.parked = false;
  }
  return out;
}

void Orchestrator::AdvanceRollout(const std::string& plan) {
  auto it = rollouts_.find(plan);
  if (it == rollouts_.end() || stopping_ || it->second.file_finished) return;
  RolloutRun& r = it->second;
  const std::vector<RolloutMember> members = RolloutMembers(plan);
  const RolloutDecision d =
      DecideRollout(r.plan.rollout, members, config_.max_connections_per_server, r.released);
  if (d.release && !r.released) {
    r.released = true;
    Audit(AuditEvent{"rollout_released", plan, "contract", "",
                     JsonObject().Str("group", r.plan.database).Str(
                         "reason", "every database's gates pass: contract goes on, max_parallel at a time")});
  }
  const std::string summary = RolloutSummary(members);
  if (summary != r.summary) {
    spdlog::info("rollout {} on {}: {}", plan, r.plan.database, summary);
    r.summary = summary;
  }
  if (d.halted && !r.halted_announced) {
    std::string failed;
    for (const auto& m : members) {
      if (m.state == PlanState::kFailed || m.state == PlanState::kAborted) {
        failed += (failed.empty() ? "" : ",") + m.database;
      }
    }
    Audit(AuditEvent{"rollout_halted", plan, "", "",
                     JsonObject().Str("group", r.plan.database).Str("failed", failed).Str(
                         "reason", "a database failed; no new database starts until `tidectl "
                                   "retry " + plan + " --database DB` or an abort")});
    spdlog::error("rollout {}: halted ({} failed)", plan, failed);
  }
  r.halted_announced = d.halted;
  std::map<std::string, int> by_state;
  for (const auto& m : members) {
    if (!m.known || m.recorded) ++by_state[RolloutLabel(m)];
  }
  metrics_->SetRollout(plan, r.plan.database, by_state, d.halted);
  if (!r.aborted && audit_blocked_.empty()) {
    for (const auto& database : d.start) {
      if (abort_pending_.count(database + "/" + plan)) continue;
      RolloutMember* m = MemberOf(plan, database);
      const bool parked = m->parked;
      m->started = true;
      m->elsewhere = false;
      m->parked = false;
      m->ready = false;
      Audit(AuditEvent{parked ? "rollout_database_released" : "rollout_database_started", plan,
                       "", "", JsonObject().Str("database", database).Str(
                                   "stage", parked ? "contract" : d.canary ? "canary" : "rollout")});
      StartMember(plan, database);
    }
  }
  if (d.over && !r.file_finished) {
    r.file_finished = true;
    Audit(AuditEvent{d.all_done ? "rollout_done" : "rollout_ended", plan, "", "",
                     JsonObject().Str("group", r.plan.database).Str("databases", summary)});
    // The file is in the spool of the tided it was submitted to; the others took part only.
    if (spool_->IsActive(r.file_name)) {
      Status s = spool_->Finish(r.file_name, d.all_done, d.all_done ? "" : summary);
      if (!s.ok()) spdlog::error("spool: {}", s.ToString());
    }
    rollouts_.erase(it);  // over: the databases hold what is left to know
  }
}

namespace {
struct MemberStart {
  Status status;
  bool elsewhere = false;  // another tided holds the plan's lease on this database
  Plan plan;
  PlanRecord record;
  std::shared_ptr<PlanDatabase> db;
};
}  // namespace

void Orchestrator::StartMember(const std::string& plan, const std::string& database,
                               bool restart) {
  const Plan group_plan = rollouts_.at(plan).plan;
  starting_.insert(database + "/" + plan);
  offloader_.Run<MemberStart>(
      [this, plan, database, group_plan, restart] {
        MemberStart out;
        auto db = connector_->Connect(database);
        if (!db.ok()) return out.status = db.status(), out;
        auto lease = (*db)->AcquireLease(plan, options_.instance, options_.lease_ttl);
        if (!lease.ok()) return out.status = lease.status(), out;
        if (!*lease) return out.elsewhere = true, out;
        if (restart && !(out.status = (*db)->RestartPlan(plan)).ok()) return out;
        auto found = (*db)->FindPlan(plan);
        if (!found.ok()) return out.status = found.status(), out;
        if (!found.value()) return out.status = Status::Fatal("the plan is not recorded there"), out;
        out.record = *found.value();
        out.plan = group_plan;
        AsMember(&out.plan, database);
        out.db = std::move(db).value();
        return out;
      },
      [this, plan, database](MemberStart r) {
        starting_.erase(database + "/" + plan);
        RolloutMember* m = MemberOf(plan, database);
        if (!m) return;
        if (r.elsewhere) {
          // Another tided started it first: it runs there, and this one takes the next.
          spdlog::info("rollout {}: {} runs on another tided", plan, database);
          m->elsewhere = true;
          elsewhere_since_[database + "/" + plan] = SteadyClock::now();
          boost::asio::post(io_, [this, plan] { AdvanceRollout(plan); });
          return;
        }
        if (!r.status.ok()) {
          spdlog::warn("rollout {}: cannot start on {}: {}; trying again in {}", plan, database,
                       r.status.ToString(), FormatDuration(options_.reconnect_interval));
          m->started = false;
          auto timer = std::make_shared<boost::asio::steady_timer>(io_, options_.reconnect_interval);
          timer->async_wait([this, timer, plan](const boost::system::error_code& ec) {
            if (!ec && !stopping_) AdvanceRollout(plan);
          });
          return;
        }
        if (runs_.count(database + "/" + plan)) return;
        // An abort came meanwhile (of the rollout, or of this database), or the database
        // finished for good: it does not start.
        const bool aborted = rollouts_.at(plan).aborted ||
                             abort_pending_.count(database + "/" + plan) > 0 ||
                             m->state == PlanState::kAborted;
        if (aborted || (IsFinal(r.record.cursor.state) && r.record.cursor.state != PlanState::kFailed)) {
          m->started = IsFinal(r.record.cursor.state);
          if (IsFinal(r.record.cursor.state)) m->state = r.record.cursor.state;
          return;
        }
        if (r.record.cursor.state == PlanState::kFailed) r.record.cursor.state = r.record.failed_in;
        m->state = r.record.cursor.state;
        elsewhere_since_.erase(database + "/" + plan);
        spdlog::info("rollout {}: starting on {}", plan, database);
        StartRun(std::move(r.plan), std::move(r.record), std::move(r.db));
      });
}

bool Orchestrator::RolloutHoldsContract(const Plan& plan) {
  if (plan.group.empty() || plan.rollout.contract != Rollout::Contract::kTogether) return false;
  auto it = rollouts_.find(plan.name);
  if (it == rollouts_.end()) return true;  // the rollout is not known yet: wait
  if (it->second.released) return false;
  return !DecideRollout(plan.rollout, RolloutMembers(plan.name)).contract_allowed;
}

void Orchestrator::MemberParked(const Plan& plan) {
  RolloutMember* m = MemberOf(plan.name, plan.database);
  if (!m) return;
  m->state = PlanState::kGating;
  m->ready = true;
  m->parked = true;
  boost::asio::post(io_, [this, name = plan.name] { AdvanceRollout(name); });
}

void Orchestrator::PlaceMember(const Plan& plan, RolloutMember* m) {
  m->server = connector_->ServerOf(m->database);
  m->sessions = SessionsOf(plan, config_.defaults.workers);
}

void Orchestrator::MemberEnded(const Plan& plan, PlanState state) {
  RolloutMember* m = MemberOf(plan.name, plan.database);
  if (!m) return;
  m->state = state;
  m->ready = m->parked = false;
  // After the run is gone from runs_.
  boost::asio::post(io_, [this, name = plan.name] { AdvanceRollout(name); });
}

// A stored plan found while resuming a database: its rollout learns the database's state.
void Orchestrator::NoteMember(const Plan& plan, const PlanRecord& record,
                              const std::string& database, bool elsewhere) {
  if (!rollouts_.count(plan.name)) {
    // Not while its admission is deciding (it records the plan database after database), and
    // not for a rollout that is over (its file left active/, every database finished).
    if (pending_files_.count(record.file_name) || waiting_files_.count(record.file_name)) return;
    if (IsFinal(record.cursor.state) && !spool_->IsActive(record.file_name)) return;
  }
  RolloutRun& r = rollouts_[plan.name];
  if (r.members.empty()) {
    r.plan = plan;
    r.plan.database = plan.group;
    r.plan.group.clear();
    r.file_name = record.file_name;
    for (const auto& d : config_.database_groups.at(plan.group)) {
      RolloutMember m;
      m.database = d;
      PlaceMember(r.plan, &m);
      r.members.push_back(m);
    }
  }
  RolloutMember* m = MemberOf(plan.name, database);
  if (!m) return;
  const bool started = !(record.cursor.state == PlanState::kAccepted && record.started_at.empty());
  // Another tided runs it: how far it is, and whether it is ready, come from its tide schema.
  const std::string key = database + "/" + plan.name;
  auto Elsewhere = [&] {
    if (IsFinal(record.cursor.state)) elsewhere_since_.erase(key);
    m->elsewhere = (elsewhere || elsewhere_since_.count(key)) && !IsFinal(record.cursor.state);
    // Ready, as its tide schema says: parked (no run anywhere holds it), or held by the tided
    // that took its lease.
    m->ready = ReadyForContract(record.cursor.state, record.waiting_reason);
    m->parked = m->ready && !elsewhere && !starting_.count(key);
  };
  m->recorded = true;
  if (!m->known) {
    m->known = true;
    m->state = record.cursor.state;
    m->started = started;
    Elsewhere();
    return;
  }
  // Known already: a database this daemon does not run (another tided does, or did) moves on
  // in its tide schema; one it runs reports through its run.
  if (runs_.count(database + "/" + plan.name)) return;
  m->state = record.cursor.state;  // a retry elsewhere makes a failed one accepted again
  if (IsFinal(record.cursor.state) || started) {
    m->started = true;
  } else if (m->started && !starting_.count(database + "/" + plan.name)) {
    // Taken by another tided (its lease) and still not started there: once that lease may have
    // lapsed (its tided died before it started it), it waits its turn here again.
    auto since = elsewhere_since_.find(database + "/" + plan.name);
    if (since == elsewhere_since_.end() || SteadyClock::now() - since->second > options_.lease_ttl) {
      m->started = false;
      m->elsewhere = false;
      if (since != elsewhere_since_.end()) elsewhere_since_.erase(since);
      return;
    }
  }
  Elsewhere();
}

void Orchestrator::Retry(const std::string& plan, const std::string& database,
                         const std::string& actor, const std::string& via) {
  auto it = rollouts_.find(plan);
  if (it == rollouts_.end()) {
    Audit(AuditEvent{"retry_refused", plan, "", actor,
                     JsonObject().Str("via", via).Str("database", database).Str(
                         "reason", "no rollout of this plan is known to tided")});
    return;
  }
  int retried = 0;
  for (auto& m : it->second.members) {
    if (!database.empty() && m.database != database) continue;
    // A failed database goes on from where it failed; an aborted one starts over.
    const bool aborted = m.state == PlanState::kAborted;
    if ((m.state != PlanState::kFailed && !aborted) || runs_.count(m.database + "/" + plan)) continue;
    ++retried;
    m.started = true;
    if (aborted) m.state = PlanState::kAccepted;
    Audit(AuditEvent{"retry_requested", plan, "", actor,
                     JsonObject().Str("via", via).Str("database", m.database).Bool("starts_over", aborted)});
    Audit(AuditEvent{"rollout_database_started", plan, "", actor,
                     JsonObject().Str("database", m.database).Str("stage", "retry")});
    StartMember(plan, m.database, aborted);
  }
  if (retried == 0) {
    Audit(AuditEvent{"retry_refused", plan, "", actor,
                     JsonObject().Str("via", via).Str("database", database).Str(
                         "reason", "no failed database to retry")});
    return;
  }
  it->second.aborted = false;
}

}  // namespace tide
