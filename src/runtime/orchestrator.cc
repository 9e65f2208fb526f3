#include "runtime/orchestrator.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <algorithm>
#include <random>
#include <thread>

#include "engine/backfill.h"
#include "engine/blockers.h"
#include "runtime/backfill_run.h"
#include "runtime/plan_run.h"
#include "runtime/retry.h"
#include "engine/phase.h"
#include "engine/sqlstate.h"
#include "plan/lint.h"
#include "plan/plan_parser.h"
#include "util/sha256.h"

namespace tide {

namespace asio = boost::asio;


// ---------------------------------------------------------------------------------------------


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
      slots_(static_cast<int>(config_.max_workers)),
      server_health_(Millis(900), metrics) {
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
    parsed.errors = CheckPlanAgainstConfig(parsed.plan, file.name, config_);
  }
  if (!parsed.ok()) return Reject(file, parsed.plan.name, FormatDiagnostics(parsed.errors));
  const bool group = config_.database_groups.count(parsed.plan.database) > 0;
  // Refused at once unless only the catalog can tell (a type change that may be binary
  // coercible, a function that may be stable): those are decided at admission, with it.
  const auto findings = LintPlan(parsed.plan);
  if (std::any_of(findings.begin(), findings.end(), [](const LintFinding& f) { return !DependsOnCatalog(f); })) {
    std::string text;
    for (const auto& f : findings) text += f.ToString(file.name) + "\n";
    return Reject(file, parsed.plan.name, text);
  }
  const std::string policy = BlockerPolicyProblem(parsed.plan.settings, config_.defaults);
  if (!policy.empty()) return Reject(file, parsed.plan.name, file.name + ": settings: " + policy);

  const std::string checksum = Sha256Hex(file.text);
  if (group) return SubmitRollout(file, parsed.plan, checksum);
  pending_files_.insert(file.name);
  offloader_.Run<std::shared_ptr<Admission>>(
      [this, file, plan = parsed.plan, checksum] {
        return std::make_shared<Admission>(Admit(file, plan, checksum));
      },
      [this, file](std::shared_ptr<Admission> a) {
        pending_files_.erase(file.name);
        if (a->kind == Admission::Kind::kLater) {
          spdlog::warn("{}: {}; will try again", file.name, a->error);
          if (waiting_files_.insert(file.name).second) {
            Audit(AuditEvent{"plan_waiting", a->plan.name, "", file.owner,
                             JsonObject().Str("file", file.name).Str("reason", a->error)});
          }
          return;
        }
        waiting_files_.erase(file.name);
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
bool Orchestrator::CheckNewPlan(PlanDatabase& db, const SpoolFile& file, const Plan& plan,
                                Admission* a) {
  a->kind = Admission::Kind::kReject;
  auto facts = db.ReadLintFacts(LintQuestionsOf(plan));
  if (!facts.ok()) {
    Undecided(a, "reading the catalog for the lint: " + facts.status().ToString(), facts.status());
    return false;
  }
  std::string findings;
  for (const auto& f : LintPlan(plan, &*facts)) findings += f.ToString(file.name) + "\n";
  if (!findings.empty()) {
    a->error = findings;
    return false;
  }
  for (const auto& task : plan.backfill) {
    auto info = db.DescribeTable(task.table, task.key);
    if (!info.ok()) {
      Undecided(a, info.status().ToString(), info.status());
      return false;
    }
    if (info->exists && info->key.empty()) {
      a->error = file.name + ":" + std::to_string(task.pos.line) + ":" +
                 std::to_string(task.pos.column) + ": table `" + task.table.Display() +
                 "` has no primary key; add `key: <column>` (a unique, not-null column) to the "
                 "backfill task";
      return false;
    }
  }
  auto report = db.Preflight(plan, false, LimitsFor(plan, config_.defaults));
  if (!report.ok()) {
    Undecided(a, "preflight: " + report.status().ToString(), report.status());
    return false;
  }
  if (!report->ok()) {
    std::string problems;
    for (const auto& p : report->problems) problems += file.name + ": " + p + "\n";
    a->error = problems;
    return false;
  }
  a->preflight = PreflightJson(*report);
  return true;
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
    Undecided(&a, "cannot prepare the tide schema in `" + plan.database + "`: " + s.ToString(), s);
    return a;
  }
  auto existing = (*db)->FindPlan(plan.name);
  if (!existing.ok()) {
    Undecided(&a, existing.status().ToString(), existing.status());
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
    if (r->cursor.state == PlanState::kReverted) {
      a.error = "plan `" + plan.name + "` was applied to `" + plan.database + "` and reverted at " +
                r->updated_at + "; to apply it again, give it a new name";
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
        Undecided(&a, "cannot restart aborted plan `" + plan.name + "`: " + s.ToString(), s);
        return a;
      }
      a.record.cursor = PlanCursor{};
      a.record.submitted_by = file.owner;
      a.resumed = false;
    }
  } else {
    if (!CheckNewPlan(**db, file, plan, &a)) return a;
    a.record.name = plan.name;
    a.record.checksum = checksum;
    a.record.file_name = file.name;
    a.record.source = file.text;
    a.record.submitted_by = file.owner;
    // The lease first: of two tided admitting the same new plan, only the one holding it
    // records and runs it.
    auto lease = (*db)->AcquireLease(plan.name, options_.instance, options_.lease_ttl);
    if (!lease.ok()) {
      Undecided(&a, lease.status().ToString(), lease.status());
      return a;
    }
    if (!*lease) {
      a.error = "plan `" + plan.name + "` is being admitted by another tided on `" +
                plan.database + "`; see `tidectl status`";
      return a;
    }
    Status ins = (*db)->InsertPlan(a.record);
    if (!ins.ok()) {
      (*db)->ReleaseLease(plan.name, options_.instance);
      Undecided(&a, "cannot record plan `" + plan.name + "`: " + ins.ToString(), ins);
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
  bool elsewhere = false;  // another tided holds its lease
};
struct ResumeResult {
  Status status;
  std::vector<ResumeItem> items;
  // Plans of a database group, to their rollout: those that have not started (no lease taken
  // here: the rollout starts them in turn) and those that finished.
  std::vector<ResumeItem> members;
  std::vector<Pause> pauses;
  std::vector<LiveSettingsRecord> live;
  std::vector<std::string> expired;  // plans whose kept old columns' retention has passed
};
}  // namespace

void Orchestrator::ResumeDatabase(const std::string& database) {
  // The rollouts that know this database's state already, and for good: it is final there.
  // (One that another tided runs moves on in its tide schema alone.)
  std::set<std::string> known;
  for (const auto& [name, rollout] : rollouts_) {
    for (const auto& m : rollout.members) {
      if (m.database == database && m.known && IsFinal(m.state)) known.insert(name);
    }
  }
  // Plans this tided runs, or is starting, on this database: the scan leaves them alone (their
  // lease is this tided's already; a run that just parked is the rollout's to start again).
  std::set<std::string> here;
  const std::string prefix = database + "/";
  for (const auto& key : starting_) {
    if (key.rfind(prefix, 0) == 0) here.insert(key.substr(prefix.size()));
  }
  for (const auto& [key, run] : runs_) {
    if (key.rfind(prefix, 0) == 0) here.insert(key.substr(prefix.size()));
  }
  offloader_.Run<ResumeResult>(
      [this, database, known, here] {
        ResumeResult out;
        auto db = connector_->Connect(database);
        if (!db.ok()) return out.status = db.status(), out;
        if (!(out.status = (*db)->EnsureSchema()).ok()) return out;
        if (!options_.instance_prefix.empty()) {
          // This daemon holds the spool's lock, so an earlier process of this host and spool
          // is gone: its plans are taken back now, not once their leases expire.
          auto taken = (*db)->ReclaimLeases(options_.instance_prefix, options_.instance);
          if (!taken.ok()) return out.status = taken.status(), out;
        }
        auto pauses = (*db)->ListPauses();
        if (!pauses.ok()) return out.status = pauses.status(), out;
        out.pauses = std::move(pauses).value();
        auto live = (*db)->ListLiveSettings();
        if (!live.ok()) return out.status = live.status(), out;
        out.live = std::move(live).value();
        auto plans = (*db)->ListPlans();
        if (!plans.ok()) return out.status = plans.status(), out;
        auto kept = (*db)->ListRetained("");
        if (!kept.ok()) return out.status = kept.status(), out;
        for (const auto& k : *kept) {
          if (k.expired && std::find(out.expired.begin(), out.expired.end(), k.plan) == out.expired.end()) {
            out.expired.push_back(k.plan);
          }
        }
        for (const auto& r : *plans) {
          Plan member;
          bool of_group = false;
          // Finished plans are many: only those that may name a group are parsed.
          const bool may_be_member = std::any_of(
              config_.database_groups.begin(), config_.database_groups.end(),
              [&](const auto& g) { return r.source.find(g.first) != std::string::npos; });
          if (may_be_member && (!IsFinal(r.cursor.state) || !known.count(r.name))) {
            auto parsed = ParsePlan(r.source, r.file_name);
            member = parsed.plan;
            of_group = parsed.ok() && AsMember(&member, database);
          }
          // Parked ready (contract: together) is the rollout's to start again, as one that
          // never started is.
          if (of_group && (IsFinal(r.cursor.state) ||
                           (r.cursor.state == PlanState::kAccepted && r.started_at.empty()) ||
                           ReadyForContract(r.cursor.state, r.waiting_reason))) {
            out.members.push_back(ResumeItem{member, r, nullptr, ""});
            continue;
          }
          if (IsFinal(r.cursor.state) || here.count(r.name)) continue;
          // Another tided runs it while its lease lasts; this one takes it over after that.
          auto lease = (*db)->AcquireLease(r.name, options_.instance, options_.lease_ttl);
          if (!lease.ok()) return out.status = lease.status(), out;
          if (!*lease) {
            spdlog::debug("plan {} ({}): another tided holds its lease", r.name, ToString(r.cursor.state));
            // Its rollout still learns where it stands.
            if (of_group) out.members.push_back(ResumeItem{member, r, nullptr, "", true});
            continue;
          }
          // Read again under the lease: the tided that held it may have finished the plan
          // between the listing and now.
          auto fresh = (*db)->FindPlan(r.name);
          if (!fresh.ok()) return out.status = fresh.status(), out;
          if (!fresh.value() || IsFinal(fresh.value()->cursor.state)) {
            (*db)->ReleaseLease(r.name, options_.instance);
            continue;
          }
          if (of_group && ReadyForContract(fresh.value()->cursor.state, fresh.value()->waiting_reason)) {
            // Parked meanwhile: the rollout's to start again.
            (*db)->ReleaseLease(r.name, options_.instance);
            out.members.push_back(ResumeItem{member, *fresh.value(), nullptr, ""});
            continue;
          }
          ResumeItem item;
          auto parsed = ParsePlan(r.source, r.file_name);
          if (!parsed.ok()) item.error = FormatDiagnostics(parsed.errors);
          item.plan = parsed.plan;
          if (of_group) item.plan = member;
          item.record = *fresh.value();
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
          // Lifted here while this database still held it (the resume reaches the databases
          // one after the other): it stays lifted.
          auto lifted = lifted_.find({p.plan, p.phase});
          if (lifted != lifted_.end() && SteadyClock::now() - lifted->second < kLiftedFor) continue;
          if (!PausedBy(p.plan, p.phase) ||
              std::none_of(pauses_.begin(), pauses_.end(), [&](const tide::Pause& q) {
                return q.plan == p.plan && q.phase == p.phase;
              })) {
            pauses_.push_back(p);
          }
        }
        for (const auto& l : r.live) OnLiveSettings(database, l);
        std::set<std::string> rollouts;
        for (const auto& m : r.members) {
          NoteMember(m.plan, m.record, database, m.elsewhere);
          rollouts.insert(m.plan.name);
        }
        for (const auto& item : r.items) {
          if (item.plan.group.empty()) continue;
          // Taken here under its lease: whatever another tided did with it is over.
          elsewhere_since_.erase(database + "/" + item.plan.name);
          NoteMember(item.plan, item.record, database, false);
          if (RolloutMember* m = MemberOf(item.plan.name, database)) m->ready = m->parked = false;
          rollouts.insert(item.plan.name);
        }
        // This database has answered: a rollout of its group that it holds no copy of does not
        // run here. Only the tided it was submitted to knows that: another may look while the
        // admission still records the plan database by database.
        for (auto& [name, rollout] : rollouts_) {
          RolloutMember* m = MemberOf(name, database);
          if (m && !m->known && spool_->IsActive(rollout.file_name)) {
            m->known = true;
            m->recorded = false;
            rollouts.insert(name);
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
        for (const auto& name : rollouts) AdvanceRollout(name);
        for (const auto& plan : r.expired) Finalize(plan, "retention", "retention", database);
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
    // A database with no plan running here keeps no session open for leases.
    for (auto it = keepers_.begin(); it != keepers_.end();) {
      it = plans.count(it->first) ? std::next(it) : keepers_.erase(it);
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
    it->second->Stop(true);
    OnRunFinished(it->first);
  }
}

namespace {
struct AbortLookup {
  Status status;
  bool found = false;
  bool was_failed = false;  // else it was not running yet (a request left while tided was down)
  bool not_started = false;  // accepted, never started (a rollout's database waiting its turn)
  std::string refusal;
  Plan plan;
  PlanRecord record;
  std::shared_ptr<PlanDatabase> db;
};
}  // namespace

void Orchestrator::Abort(const std::string& plan, const std::string& actor, const std::string& via,
                         const std::string& database) {
  auto rollout = rollouts_.find(plan);
  const bool of_group = rollout != rollouts_.end();
  // The whole rollout: no database starts any more.
  if (of_group && database.empty()) rollout->second.aborted = true;
  std::vector<std::shared_ptr<Run>> running;
  for (auto& kv : runs_) {
    if (kv.second->name() == plan && (database.empty() || kv.first == database + "/" + plan)) {
      running.push_back(kv.second);
    }
  }
  for (auto& run : running) run->Abort(actor, via);
  if (!running.empty() && !of_group) return;
  // Not running: a failed plan (or none), in whichever database knows it; for a rollout, every
  // database not running it (one that has not started is marked aborted at once).
  for (const auto& kv : config_.databases) {
    const std::string db_name = kv.first;
    if (!database.empty() && db_name != database) continue;
    if (runs_.count(db_name + "/" + plan)) continue;
    // A rollout starts no run on it until the lookup has decided (see StartMember).
    if (of_group) abort_pending_.insert(db_name + "/" + plan);
    offloader_.Run<AbortLookup>(
        [this, db_name, plan] {
          AbortLookup out;
          auto db = connector_->Connect(db_name);
          if (!db.ok()) return out.status = db.status(), out;
          if (!(out.status = (*db)->EnsureSchema()).ok()) return out;
          auto found = (*db)->FindPlan(plan);
          if (!found.ok()) return out.status = found.status(), out;
          if (!found.value()) return out;
          out.found = true;
          out.record = *found.value();
          out.refusal = AbortRefusal(out.record.cursor.state, out.record.failed_in);
          if (out.refusal.empty()) {
            auto lease = (*db)->AcquireLease(plan, options_.instance, options_.lease_ttl);
            if (!lease.ok()) return out.status = lease.status(), out;
            if (!*lease) out.refusal = "another tided is running the plan; abort it there";
          }
          out.was_failed = out.record.cursor.state == PlanState::kFailed;
          out.not_started =
              out.record.cursor.state == PlanState::kAccepted && out.record.started_at.empty();
          if (!out.was_failed) out.record.failed_in = out.record.cursor.state;
          if (!out.refusal.empty()) return out;
          auto parsed = ParsePlan(out.record.source, out.record.file_name);
          if (!parsed.ok()) return out.refusal = "its stored text no longer parses", out;
          out.plan = parsed.plan;
          AsMember(&out.plan, db_name);
          if (out.not_started && !out.plan.group.empty()) {
            // A database of a rollout that never started: nothing to roll back.
            out.record.cursor = PlanCursor{PlanState::kAborted, 0, false};
            out.status = (*db)->SaveCursor(plan, out.record.cursor);
            (*db)->ReleaseLease(plan, options_.instance);
            return out;
          }
          out.record.cursor = PlanCursor{PlanState::kAborting, 0, out.record.cursor.catch_up};
          if (!(out.status = (*db)->SaveCursor(plan, out.record.cursor)).ok()) return out;
          out.db = std::move(db).value();
          return out;
        },
        [this, db_name, plan, actor, via](AbortLookup r) {
          abort_pending_.erase(db_name + "/" + plan);
          if (!r.status.ok()) {
            spdlog::error("abort of {} on {}: {}", plan, db_name, r.status.ToString());
            return;
          }
          if (!r.found) return;
          const std::string phase = PhaseOf(r.record.failed_in);
          JsonObject where;
          if (!r.plan.group.empty()) where.Str("database", db_name);
          if (!r.refusal.empty()) {
            Audit(AuditEvent{"abort_refused", plan, phase, actor,
                             where.Str("via", via).Str("reason", r.refusal)});
            spdlog::warn("plan {}: abort by {} refused: {}", plan, actor, r.refusal);
            return;
          }
          if (r.record.cursor.state == PlanState::kAborted) {
            Audit(AuditEvent{"plan_aborted", plan, "", actor,
                             where.Str("via", via).Str("reason", "aborted before it started")});
            if (RolloutMember* m = MemberOf(plan, db_name)) {
              m->state = PlanState::kAborted;
              AdvanceRollout(plan);
            }
            return;
          }
          // A resumed run may have started meanwhile: it takes the request itself.
          const std::string key = db_name + "/" + plan;
          if (runs_.count(key)) return runs_[key]->Abort(actor, via);
          Audit(AuditEvent{"abort_requested", plan, phase, actor,
                           where.Str("via", via).Str("state", ToString(r.record.failed_in))});
          auto run = std::make_shared<Run>(*this, std::move(r.plan), r.record, std::move(r.db));
          run->AbortStopped(actor, !r.was_failed);
          runs_[run->key()] = run;
          run->Start();
        });
  }
}

namespace {
struct RevertLookup {
  Status status;
  bool found = false;
  std::string refusal;
  Plan plan;
  PlanRecord record;
  std::shared_ptr<PlanDatabase> db;
};
}  // namespace

void Orchestrator::Revert(const std::string& plan, const std::string& actor, const std::string& via) {
  for (auto& kv : runs_) {
    if (kv.second->name() == plan) {
      Audit(AuditEvent{"revert_refused", plan, "revert", actor,
                       JsonObject().Str("via", via).Str("reason", "the plan is running")});
      spdlog::warn("plan {}: revert by {} refused: the plan is running", plan, actor);
      return;
    }
  }
  if (!BeginRevertOrFinalize(plan, "revert", actor, via)) return;
  for (const auto& kv : config_.databases) {
    const std::string database = kv.first;
    ++in_flight_[plan];
    offloader_.Run<RevertLookup>(
        [this, database, plan] {
          RevertLookup out;
          auto db = connector_->Connect(database);
          if (!db.ok()) return out.status = db.status(), out;
          if (!(out.status = (*db)->EnsureSchema()).ok()) return out;
          auto found = (*db)->FindPlan(plan);
          if (!found.ok()) return out.status = found.status(), out;
          if (!found.value()) return out;
          out.found = true;
          out.record = *found.value();
          auto parsed = ParsePlan(out.record.source, out.record.file_name);
          if (!parsed.ok()) return out.refusal = "its stored text no longer parses", out;
          out.plan = parsed.plan;
          AsMember(&out.plan, database);
          auto kept = (*db)->ListRetained(plan);
          if (!kept.ok()) return out.status = kept.status(), out;
          out.refusal = RevertRefusal(out.plan, out.record.cursor.state, out.record.failed_in,
                                      !kept->empty());
          if (!out.refusal.empty()) return out;
          auto lease = (*db)->AcquireLease(plan, options_.instance, options_.lease_ttl);
          if (!lease.ok()) return out.status = lease.status(), out;
          if (!*lease) return out.refusal = "another tided is running the plan", out;
          out.record.failed_in = PlanState::kReverting;
          out.record.cursor = PlanCursor{PlanState::kReverting, 0, false};
          if (!(out.status = (*db)->SaveCursor(plan, out.record.cursor)).ok()) return out;
          out.db = std::move(db).value();
          return out;
        },
        [this, database, plan, actor, via](RevertLookup r) {
          EndRevertOrFinalize(plan);
          if (!r.status.ok()) {
            spdlog::error("revert of {} on {}: {}", plan, database, r.status.ToString());
            return;
          }
          if (!r.found) return;
          if (!r.refusal.empty()) {
            Audit(AuditEvent{"revert_refused", plan, "revert", actor,
                             JsonObject().Str("via", via).Str("reason", r.refusal)});
            spdlog::warn("plan {}: revert by {} refused: {}", plan, actor, r.refusal);
            return;
          }
          const std::string key = database + "/" + plan;
          if (runs_.count(key)) return;  // resumed meanwhile: it reverts already
          Audit(AuditEvent{"revert_requested", plan, "revert", actor, JsonObject().Str("via", via)});
          spdlog::info("plan {}: revert requested by {}", plan, actor);
          auto run = std::make_shared<Run>(*this, std::move(r.plan), r.record, std::move(r.db));
          run->RevertBy(actor);
          runs_[run->key()] = run;
          run->Start();
        });
  }
}

bool Orchestrator::BeginRevertOrFinalize(const std::string& plan, const char* what,
                                         const std::string& actor, const std::string& via) {
  if (!in_flight_.count(plan)) return true;
  const std::string reason = "a revert or finalize of the plan is under way";
  Audit(AuditEvent{std::string(what) + "_refused", plan, "", actor,
                   JsonObject().Str("via", via).Str("reason", reason)});
  spdlog::warn("plan {}: {} by {} refused: {}", plan, what, actor, reason);
  return false;
}

void Orchestrator::EndRevertOrFinalize(const std::string& plan) {
  auto it = in_flight_.find(plan);
  if (it != in_flight_.end() && --it->second <= 0) in_flight_.erase(it);
}

namespace {
struct FinalizeResult {
  Status status;
  bool found = false;
  std::string refusal;
  std::vector<RetainedColumn> kept;
  int64_t duration_ms = 0;
  bool gave_up_revert = false;  // finalized after a failed revert
  int lock_timeouts = 0;        // attempts that timed out on a lock before the last
};
}  // namespace

void Orchestrator::Finalize(const std::string& plan, const std::string& actor, const std::string& via,
                            const std::string& only_database) {
  for (auto& kv : runs_) {
    if (kv.second->name() == plan) {
      Audit(AuditEvent{"finalize_refused", plan, "", actor,
                       JsonObject().Str("via", via).Str("reason", "the plan is running")});
      return;
    }
  }
  if (!BeginRevertOrFinalize(plan, "finalize", actor, via)) return;
  for (const auto& kv : config_.databases) {
    const std::string database = kv.first;
    if (!only_database.empty() && database != only_database) continue;
    ++in_flight_[plan];
    offloader_.Run<FinalizeResult>(
        [this, database, plan] {
          FinalizeResult out;
          auto db = connector_->Connect(database);
          if (!db.ok()) return out.status = db.status(), out;
          if (!(out.status = (*db)->EnsureSchema()).ok()) return out;
          auto found = (*db)->FindPlan(plan);
          if (!found.ok()) return out.status = found.status(), out;
          if (!found.value()) return out;
          out.found = true;
          auto kept = (*db)->ListRetained(plan);
          if (!kept.ok()) return out.status = kept.status(), out;
          out.kept = *kept;
          const PlanRecord& record = *found.value();
          out.refusal = FinalizeRefusal(record.cursor.state, record.failed_in, !out.kept.empty());
          if (!out.refusal.empty()) return out;
          out.gave_up_revert = record.cursor.state == PlanState::kFailed;
          auto lease = (*db)->AcquireLease(plan, options_.instance, options_.lease_ttl);
          if (!lease.ok()) return out.status = lease.status(), out;
          if (!*lease) return out.refusal = "another tided is running the plan", out;
          auto parsed = ParsePlan(record.source, record.file_name);
          const StatementLimits limits =
              parsed.ok() ? LimitsFor(parsed.plan, config_.defaults)
                          : StatementLimits{config_.defaults.lock_timeout, config_.defaults.statement_timeout};
          // Like any step of tide's, a lock_timeout is retried (ddl_retries, with backoff):
          // the application went on meanwhile.
          const int retries = static_cast<int>(
              parsed.ok() ? parsed.plan.settings.ddl_retries.value_or(config_.defaults.ddl_retries)
                          : config_.defaults.ddl_retries);
          const auto statements = CompileFinalize(plan, out.kept, limits.lock_timeout);
          for (int attempt = 0;; ++attempt) {
            const auto start = std::chrono::steady_clock::now();
            auto r = (*db)->RunStatements(plan, statements, limits, std::nullopt);
            out.duration_ms = MillisSince(start);
            out.status = r.status();
            if (out.status.ok() || out.status.sqlstate() != "55P03" || attempt >= retries) break;
            out.lock_timeouts = attempt + 1;
            std::this_thread::sleep_for(Backoff(attempt, options_.retry_base, options_.retry_cap));
          }
          if (out.status.ok() && out.gave_up_revert) {
            // The revert is given up: the plan stays switched, as it was when it was done.
            out.status = (*db)->SaveCursor(plan, PlanCursor{PlanState::kDone, record.cursor.step, false});
          }
          (*db)->ReleaseLease(plan, options_.instance);
          return out;
        },
        [this, database, plan, actor, via](FinalizeResult r) {
          EndRevertOrFinalize(plan);
          if (!r.found && r.status.ok()) return;
          std::string columns;
          for (const auto& k : r.kept) {
            if (!k.kept.empty()) columns += (columns.empty() ? "" : ", ") + k.table_display + "." + k.kept;
          }
          if (!r.refusal.empty()) {
            Audit(AuditEvent{"finalize_refused", plan, "", actor,
                             JsonObject().Str("via", via).Str("reason", r.refusal)});
            spdlog::warn("plan {}: finalize by {} refused: {}", plan, actor, r.refusal);
            return;
          }
          if (!r.status.ok()) {
            JsonObject d;
            d.Str("via", via).Str("error", r.status.ToString()).Str("columns", columns);
            if (!r.status.detail().empty()) d.Raw("blockers", r.status.detail());
            Audit(AuditEvent{"finalize_failed", plan, "", actor, std::move(d)});
            spdlog::warn("plan {}: finalize on {} failed ({}): {}", plan, database,
                         r.kept.empty() || r.kept[0].retain_until.empty()
                             ? "run `tidectl finalize` again"
                             : "tried again by the next retention check, or run `tidectl finalize` again",
                         r.status.ToString());
            return;
          }
          Audit(AuditEvent{"finalized", plan, "", actor,
                           JsonObject().Str("via", via).Str("dropped", columns).Int(
                               "duration_ms", r.duration_ms).Int("lock_timeouts", r.lock_timeouts)
                               .Bool("revert_given_up", r.gave_up_revert)});
          spdlog::info("plan {}: finalized; dropped the old columns {}", plan,
                       columns.empty() ? "(none: renames only)" : columns);
        });
  }
}

const tide::Pause* Orchestrator::PausedBy(const std::string& plan, const std::string& phase,
                                          const std::string& database) const {
  for (const auto& p : pauses_) {
    if (PauseCovers(p.plan, p.phase, plan, phase, database)) return &p;
  }
  return nullptr;
}

void Orchestrator::Pause(const tide::Pause& pause) {
  lifted_.erase({pause.plan, pause.phase});
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

LiveSettings Orchestrator::LiveFor(const std::string& database, const std::string& plan) const {
  auto it = live_.find(database + "/" + plan);
  return it == live_.end() ? LiveSettings{} : it->second.settings;
}

// A stored version newer than the one known here (a restart, another tided's change, a change
// made here) goes to the plan's run, if it runs here.
void Orchestrator::OnLiveSettings(const std::string& database, const LiveSettingsRecord& l) {
  const std::string key = database + "/" + l.plan;
  auto known = live_.find(key);
  if (known != live_.end() && known->second.version >= l.version) return;
  auto parsed = ParseLiveSettings(l.settings);
  if (!parsed.ok()) {
    spdlog::error("plan {}: its stored live settings `{}` are not understood ({}); the plan's own "
                  "apply: run `tidectl set {} key=value...` again",
                  l.plan, l.settings, parsed.status().message(), l.plan);
    return;
  }
  live_[key] = Live{*parsed, l.version};
  metrics_->SetLiveSettings(l.plan, LiveValues(*parsed));
  auto run = runs_.find(key);
  if (run != runs_.end()) run->second->ApplyLive(*parsed);
}

void Orchestrator::Set(const std::string& plan, const LiveChange& change, const std::string& actor,
                       const std::string& via) {
  live_requests_.push_back(LiveRequest{plan, change, actor, via});
  NextLiveRequest();
}

void Orchestrator::NextLiveRequest() {
  if (live_busy_ || live_requests_.empty() || stopping_) return;
  live_busy_ = true;
  const LiveRequest req = live_requests_.front();
  live_requests_.pop_front();
  const std::string change = DescribeChange(req.change);
  struct Outcome {
    std::string database;
    Result<std::optional<LiveSettingsRecord>> record = std::optional<LiveSettingsRecord>();
  };
  std::vector<std::string> databases;
  for (const auto& kv : config_.databases) databases.push_back(kv.first);
  offloader_.Run<std::vector<Outcome>>(
      [this, databases, req, change] {
        std::vector<Outcome> out;
        for (const auto& database : databases) {
          Outcome o;
          o.database = database;
          auto db = connector_->Connect(database);
          Status s = db.ok() ? (*db)->EnsureSchema() : db.status();
          o.record = s.ok() ? (*db)->ChangeLiveSettings(req.plan, change, req.actor)
                            : Result<std::optional<LiveSettingsRecord>>(s);
          out.push_back(std::move(o));
        }
        return out;
      },
      [this, req, change](std::vector<Outcome> outcomes) {
        live_busy_ = false;
        std::string changed_in, failed;
        std::string now;
        bool running = false;
        for (const auto& o : outcomes) {
          if (!o.record.ok()) {
            failed += (failed.empty() ? "" : "; ") + o.database + ": " + o.record.status().ToString();
            continue;
          }
          if (!*o.record) continue;  // no such unfinished plan there
          changed_in += (changed_in.empty() ? "" : ", ") + o.database;
          now = (*o.record)->settings;
          running |= runs_.count(o.database + "/" + req.plan) > 0;
          OnLiveSettings(o.database, **o.record);
        }
        JsonObject d;
        d.Str("via", req.via).Str("changed", change).Str("settings", now).Str("databases", changed_in)
            .Bool("running", running);
        if (!failed.empty()) d.Str("error", failed);
        if (changed_in.empty()) {
          Audit(AuditEvent{"settings_refused", req.plan, "", req.actor, std::move(d)});
          spdlog::warn("plan {}: live settings `{}` not applied: {}", req.plan, change,
                       failed.empty() ? "no configured database has the plan unfinished" : failed);
        } else {
          Audit(AuditEvent{"settings_changed", req.plan, "", req.actor, std::move(d)});
          spdlog::info("plan {}: live settings now `{}` (by {}){}", req.plan, now.empty() ? "none" : now,
                       req.actor, running ? "" : "; the plan is not running here, they apply when it runs");
          if (!failed.empty()) spdlog::error("plan {}: live settings not stored in {}", req.plan, failed);
        }
        NextLiveRequest();
      });
}

void Orchestrator::Resume(const std::string& plan, const std::string& phase,
                          const std::string& actor, const std::string& via) {
  for (const auto& p : pauses_) {
    if ((p.plan == plan || p.plan.rfind(plan + "@", 0) == 0) && (phase.empty() || p.phase == phase)) {
      lifted_[{p.plan, p.phase}] = SteadyClock::now();
    }
  }
  pauses_.erase(std::remove_if(pauses_.begin(), pauses_.end(),
                               [&](const tide::Pause& p) {
                                 return (p.plan == plan || p.plan.rfind(plan + "@", 0) == 0) &&
                                        (phase.empty() || p.phase == phase);
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
  config_.max_connections_per_server = config.max_connections_per_server;
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
