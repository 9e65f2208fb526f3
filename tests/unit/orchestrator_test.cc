// The orchestrator against in-memory fakes of the database, spool and audit log: the order of
// actions, resumption, retries, failures and gates. SQL itself is tested against PostgreSQL in
// tests/integration.
#include "runtime/orchestrator.h"

#include "engine/backfill.h"
#include "engine/live_settings.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <atomic>
#include <deque>
#include <mutex>
#include <set>

namespace tide {
namespace {

// A table of `rows` rows keyed 1..rows, and the tide schema, in memory. Thread-safe.
class FakeDatabase : public PlanDatabase {
 public:
  explicit FakeDatabase(int rows) : filled_(rows + 1, 0) {}

  Status EnsureSchema() override { return Status::Ok(); }
  Result<std::optional<PlanRecord>> FindPlan(const std::string& name) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!plans_.count(name)) return std::optional<PlanRecord>();
    return std::optional<PlanRecord>(plans_[name]);
  }
  Result<std::vector<PlanRecord>> ListPlans() override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<PlanRecord> out;
    for (auto& kv : plans_) out.push_back(kv.second);
    return out;
  }
  Status InsertPlan(const PlanRecord& r) override {
    std::lock_guard<std::mutex> l(mu_);
    plans_[r.name] = r;
    return Status::Ok();
  }
  Status SaveCursor(const std::string& plan, const PlanCursor& c) override {
    std::lock_guard<std::mutex> l(mu_);
    plans_[plan].cursor = c;
    return Status::Ok();
  }
  Status SaveFailure(const std::string& plan, const PlanCursor& at, const std::string& e) override {
    std::lock_guard<std::mutex> l(mu_);
    plans_[plan].cursor = {PlanState::kFailed, at.step, at.catch_up};
    plans_[plan].failed_in = at.state;
    plans_[plan].last_error = e;
    return Status::Ok();
  }
  Result<std::vector<StatementOutcome>> RunStatements(const std::string& plan,
                                                      const std::vector<DdlStatement>& statements,
                                                      const StatementLimits& limits,
                                                      const std::optional<PlanCursor>& after) override {
    std::lock_guard<std::mutex> l(mu_);
    last_limits_ = limits;
    std::vector<StatementOutcome> out;
    for (const auto& st : statements) {
      if (!step_errors_.empty() && step_errors_.front().first == st.sql) {
        Status s = step_errors_.front().second;
        step_errors_.pop_front();
        return s;
      }
      steps_.push_back(st.sql);
      order_.push_back(st.sql);
      out.push_back(StatementOutcome{st.sql, false, false, 0});
    }
    if (after) plans_[plan].cursor = *after;
    return out;
  }
  Result<bool> AcquireLease(const std::string&, const std::string&, Millis) override { return true; }
  Result<std::vector<std::string>> RenewLeases(const std::string&,
                                               const std::vector<std::string>& plans, Millis) override {
    return plans;
  }
  Status ReleaseLease(const std::string&, const std::string&) override { return Status::Ok(); }
  Result<int64_t> ReclaimLeases(const std::string&, const std::string&) override { return 0; }
  Status RestartPlan(const std::string& plan) override {
    std::lock_guard<std::mutex> l(mu_);
    plans_[plan].cursor = PlanCursor{};
    restarted_++;
    return Status::Ok();
  }
  Result<PreflightReport> Preflight(const Plan& plan, bool dry_run, const StatementLimits&) override {
    PreflightReport r;
    r.database = plan.database;
    r.dry_run = dry_run;
    r.statements = PlannedStatements(plan);
    r.problems = preflight_problems_;
    return r;
  }
  Result<TableInfo> DescribeTable(const QualifiedName&, const std::vector<std::string>&) override {
    TableInfo t;
    t.exists = true;
    t.has_primary_key = true;
    t.key = {{"id", "bigint"}};
    t.estimated_rows = static_cast<int64_t>(filled_.size() - 1);
    return t;
  }
  Result<std::vector<std::vector<std::string>>> SampleKeys(const QualifiedName&,
                                                           const std::vector<KeyColumn>&,
                                                           double) override {
    return std::vector<std::vector<std::string>>{};  // the fake's key is an integer
  }
  Result<SwitchFacts> ReadSwitchFacts(const Step&) override { return SwitchFacts{}; }
  Result<LintFacts> ReadLintFacts(const LintQuestions&) override { return LintFacts{}; }
  Result<std::pair<std::optional<int64_t>, std::optional<int64_t>>> IntegerKeyBounds(
      const QualifiedName&, const std::string&) override {
    std::lock_guard<std::mutex> l(mu_);
    if (filled_.size() <= 1) return std::make_pair(std::optional<int64_t>(), std::optional<int64_t>());
    return std::make_pair(std::optional<int64_t>(1),
                          std::optional<int64_t>(static_cast<int64_t>(filled_.size() - 1)));
  }
  Result<std::vector<TaskCheckpoint>> LoadRanges(const std::string&, int task, int pass) override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<TaskCheckpoint> out;
    for (auto& [key, cp] : checkpoints_) {
      if (key.first != task) continue;
      if (cp.pass < pass) cp.pass = pass, cp.last_key.clear(), cp.done = false;
      out.push_back(cp);
    }
    return out;
  }
  Status ReopenTail(const std::string&, int task) override {
    std::lock_guard<std::mutex> l(mu_);
    int last = -1;
    for (auto& [key, cp] : checkpoints_) {
      if (key.first == task) last = std::max(last, key.second);
    }
    if (last >= 0) checkpoints_[{task, last}].done = false;
    ++tails_reopened_;
    return Status::Ok();
  }
  Result<std::vector<TaskCheckpoint>> CreateRanges(const std::string& plan, int task,
                                                   const std::string&, int pass,
                                                   const std::vector<RangeBounds>& bounds) override {
    {
      std::lock_guard<std::mutex> l(mu_);
      for (size_t i = 0; i < bounds.size(); ++i) {
        TaskCheckpoint cp;
        cp.range = static_cast<int>(i);
        cp.lower = bounds[i].lower;
        cp.upper = bounds[i].upper;
        cp.unit = bounds[i].unit;
        cp.pass = pass;
        cp.rows_estimated = bounds[i].rows_estimated;
        checkpoints_.emplace(std::make_pair(task, cp.range), cp);
      }
      ranges_created_ = bounds.size();
    }
    return LoadRanges(plan, task, pass);
  }
  Result<BatchResult> RunBatch(const std::string&, int task, const BatchStatement&,
                               const TaskCheckpoint& from, int64_t size,
                               const StatementLimits&) override {
    std::lock_guard<std::mutex> l(mu_);
    if (batch_errors_ > 0) {
      --batch_errors_;
      return batch_error_;
    }
    auto& stored = checkpoints_[{task, from.range}];
    if (stored.batches != from.batches) return Status::Retryable("checkpoint moved");
    const auto& lower = from.last_key.empty() ? from.lower : from.last_key;
    int64_t key = lower.empty() ? 0 : std::stoll(lower[0]);
    const int64_t upper = from.upper.empty() ? INT64_MAX : std::stoll(from.upper[0]);
    BatchResult b;
    for (int64_t k = key + 1; k < static_cast<int64_t>(filled_.size()) && k <= upper && b.scanned < size; ++k) {
      ++b.scanned;
      if (!filled_[k]) ++b.updated;
      ++filled_[k];
      b.last_key = {std::to_string(k)};
    }
    stored = AdvanceCheckpoint(from, b, size);
    ++batches_;
    sizes_.push_back(size);
    return b;
  }
  Result<BatchResult> RunSweep(const BatchStatement&, int64_t size, const StatementLimits&) override {
    std::lock_guard<std::mutex> l(mu_);
    BatchResult b;
    for (size_t k = 1; k < filled_.size() && b.scanned < size; ++k) {
      if (filled_[k]) continue;
      ++b.scanned, ++b.updated, ++filled_[k];
    }
    ++sweeps_;
    return b;
  }
  // For the tests, while the pool runs: under the lock.
  PlanState StateOf(const std::string& plan) {
    std::lock_guard<std::mutex> l(mu_);
    return plans_[plan].cursor.state;
  }
  void SetGateValues(std::deque<int64_t> values) {
    std::lock_guard<std::mutex> l(mu_);
    gate_values_ = std::move(values);
  }
  Result<UnfillableRows> CountUnfillable(const BatchStatement&, const StatementLimits&) override {
    return UnfillableRows{unfillable_, unfillable_ ? "{7}" : "{}"};
  }
  Status SaveWaitReason(const std::string& plan, const std::string& reason) override {
    std::lock_guard<std::mutex> l(mu_);
    wait_reasons_[plan] = reason;
    return Status::Ok();
  }
  Result<int64_t> BackendPid() override { return ++pids_; }
  using HealthProbe::ReadHealth;
  Result<HealthReading> ReadHealth(const HealthQuestions&, const StatementLimits&) override {
    std::lock_guard<std::mutex> l(mu_);
    if (health_broken_) return Status::Fatal("throttle_query: division by zero", "22012");
    HealthReading h;
    h.throttle_query_true = throttle_;
    return h;
  }
  Status SaveTaskStatus(const std::string&, int, const TaskLiveStatus&) override {
    return Status::Ok();
  }
  Status SavePause(const Pause& p) override {
    std::lock_guard<std::mutex> l(mu_);
    pauses_.push_back(p);
    return Status::Ok();
  }
  Status DeletePauses(const std::string& plan, const std::string& phase) override {
    std::lock_guard<std::mutex> l(mu_);
    pauses_.erase(std::remove_if(pauses_.begin(), pauses_.end(), [&](const Pause& p) {
      return p.plan == plan && (phase.empty() || p.phase == phase);
    }), pauses_.end());
    return Status::Ok();
  }
  Result<std::vector<Pause>> ListPauses() override {
    std::lock_guard<std::mutex> l(mu_);
    return pauses_;
  }
  Result<std::vector<RetainedColumn>> ListRetained(const std::string&) override {
    return std::vector<RetainedColumn>{};
  }
  Result<std::optional<LiveSettingsRecord>> ChangeLiveSettings(const std::string& plan,
                                                               const std::string& change,
                                                               const std::string& actor) override {
    std::lock_guard<std::mutex> l(mu_);
    if (!plans_.count(plan) || plans_[plan].cursor.state == PlanState::kDone) {
      return std::optional<LiveSettingsRecord>();
    }
    auto parsed = ParseLiveChange(change);
    if (!parsed.ok()) return parsed.status();
    LiveSettingsRecord& r = live_[plan];
    r.plan = plan;
    r.settings = FormatLiveSettings(ApplyChange(*ParseLiveSettings(r.settings), *parsed));
    r.actor = actor;
    ++r.version;
    return std::optional<LiveSettingsRecord>(r);
  }
  Result<std::vector<LiveSettingsRecord>> ListLiveSettings() override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<LiveSettingsRecord> out;
    for (const auto& kv : live_) out.push_back(kv.second);
    return out;
  }
  Result<std::vector<SessionFacts>> DescribeSessions(const std::vector<int64_t>& pids,
                                                     const std::vector<std::string>&) override {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<SessionFacts> out;
    for (const auto& s : sessions_) {
      if (std::find(pids.begin(), pids.end(), s.pid) != pids.end()) out.push_back(s);
    }
    return out;
  }
  Result<EndOutcome> EndSession(const std::string&, const SessionFacts& s, bool terminate,
                                int64_t max_per_plan) override {
    std::lock_guard<std::mutex> l(mu_);
    if (static_cast<int64_t>(ended_.size()) >= max_per_plan) return EndOutcome::kBudgetSpent;
    auto it = std::find_if(sessions_.begin(), sessions_.end(),
                           [&](const SessionFacts& x) { return x.pid == s.pid; });
    if (it == sessions_.end()) return EndOutcome::kGone;
    ended_.push_back(std::string(terminate ? "terminate " : "cancel ") + std::to_string(s.pid));
    sessions_.erase(it);
    return EndOutcome::kEnded;
  }
  Result<int64_t> SessionsEnded(const std::string&) override {
    std::lock_guard<std::mutex> l(mu_);
    return static_cast<int64_t>(ended_.size());
  }
  Result<DeadTuples> ReadDeadTuples(const QualifiedName&) override {
    std::lock_guard<std::mutex> l(mu_);
    return dead_;
  }
  Status Vacuum(const QualifiedName& t, const StatementLimits&, Millis) override {
    std::lock_guard<std::mutex> l(mu_);
    executed_.push_back("VACUUM " + t.Display());
    dead_.dead = 0;
    return Status::Ok();
  }
  Result<BatchResult> RunVerify(const BatchStatement&, const std::vector<std::string>& after,
                                 int64_t batch_size, const StatementLimits&) override {
    std::lock_guard<std::mutex> l(mu_);
    BatchResult v;
    const int64_t from = after.empty() ? 1 : std::stoll(after[0]) + 1;
    const int64_t rows = static_cast<int64_t>(filled_.size()) - 1;
    for (int64_t k = from; k <= rows && v.scanned < batch_size; ++k) {
      ++v.scanned;
      if (differing_.count(k)) {
        ++v.differing;
        if (v.differing_keys.size() < 5) v.differing_keys.push_back(std::to_string(k));
      }
      v.last_key = {std::to_string(k)};
    }
    ++verify_batches_;
    return v;
  }
  Status Execute(const std::string& sql, const StatementLimits&) override {
    std::lock_guard<std::mutex> l(mu_);
    executed_.push_back(sql);
    return Status::Ok();
  }
  Result<int64_t> QueryNumber(const std::string& sql, const StatementLimits&) override {
    std::lock_guard<std::mutex> l(mu_);
    order_.push_back("gate: " + sql);
    if (!gate_values_.empty()) {
      int64_t v = gate_values_.front();
      gate_values_.pop_front();
      return v;
    }
    int64_t nulls = 0;
    for (size_t k = 1; k < filled_.size(); ++k) nulls += filled_[k] == 0;
    return nulls;
  }

  std::mutex mu_;
  std::map<std::string, PlanRecord> plans_;
  std::map<std::pair<int, int>, TaskCheckpoint> checkpoints_;  // (task, range)
  size_t ranges_created_ = 0;
  int tails_reopened_ = 0;
  std::vector<std::string> executed_;
  std::vector<Pause> pauses_;
  std::map<std::string, LiveSettingsRecord> live_;
  std::vector<SessionFacts> sessions_;  // what DescribeSessions finds
  std::vector<std::string> ended_;      // "terminate 42"
  DeadTuples dead_;
  std::set<int64_t> differing_;  // keys whose stored value RunVerify finds differing
  int verify_batches_ = 0;
  std::vector<int64_t> sizes_;
  std::atomic<int64_t> pids_{0};
  std::atomic<bool> throttle_{false};
  std::atomic<bool> health_broken_{false};
  int64_t unfillable_ = 0;
  std::map<std::string, std::string> wait_reasons_;
  std::vector<int> filled_;  // times each key was updated
  std::vector<std::string> steps_;
  std::vector<std::string> order_;  // statements and gate queries, in the order they ran
  // A copy of order_, taken under the lock: the pool may still be running gate queries.
  std::vector<std::string> Order() {
    std::lock_guard<std::mutex> l(mu_);
    return order_;
  }
  std::deque<std::pair<std::string, Status>> step_errors_;
  std::deque<int64_t> gate_values_;
  std::vector<std::string> preflight_problems_;
  int restarted_ = 0;
  int sweeps_ = 0;
  int batch_errors_ = 0;
  Status batch_error_ = Status::Retryable("connection lost", "08006");
  std::atomic<int> batches_{0};  // polled by the tests while workers run
  StatementLimits last_limits_{};
};

// Hands out sessions that all share one FakeDatabase.
class FakeConnector : public DatabaseConnector {
 public:
  explicit FakeConnector(FakeDatabase* db) : db_(db) {}
  Result<std::unique_ptr<PlanDatabase>> Connect(const std::string&) override {
    return std::unique_ptr<PlanDatabase>(new Session(db_));
  }

 private:
  struct Session : PlanDatabase {
    explicit Session(FakeDatabase* d) : d(d) {}
    FakeDatabase* d;
    Status EnsureSchema() override { return d->EnsureSchema(); }
    Result<std::optional<PlanRecord>> FindPlan(const std::string& n) override { return d->FindPlan(n); }
    Result<std::vector<PlanRecord>> ListPlans() override { return d->ListPlans(); }
    Status InsertPlan(const PlanRecord& r) override { return d->InsertPlan(r); }
    Status SaveCursor(const std::string& p, const PlanCursor& c) override {
      return d->SaveCursor(p, c);
    }
    Status SaveFailure(const std::string& p, const PlanCursor& c, const std::string& e) override {
      return d->SaveFailure(p, c, e);
    }
    Result<std::vector<StatementOutcome>> RunStatements(
        const std::string& p, const std::vector<DdlStatement>& s, const StatementLimits& l,
        const std::optional<PlanCursor>& a) override {
      return d->RunStatements(p, s, l, a);
    }
    Status RestartPlan(const std::string& p) override { return d->RestartPlan(p); }
    Result<bool> AcquireLease(const std::string& p, const std::string& o, Millis t) override {
      return d->AcquireLease(p, o, t);
    }
    Result<std::vector<std::string>> RenewLeases(const std::string& o, const std::vector<std::string>& p,
                                                 Millis t) override {
      return d->RenewLeases(o, p, t);
    }
    Status ReleaseLease(const std::string& p, const std::string& o) override { return d->ReleaseLease(p, o); }
    Result<int64_t> ReclaimLeases(const std::string& p, const std::string& o) override {
      return d->ReclaimLeases(p, o);
    }
    Result<PreflightReport> Preflight(const Plan& p, bool dry, const StatementLimits& l) override {
      return d->Preflight(p, dry, l);
    }
    Result<TableInfo> DescribeTable(const QualifiedName& t, const std::vector<std::string>& k) override {
      return d->DescribeTable(t, k);
    }
    Result<std::pair<std::optional<int64_t>, std::optional<int64_t>>> IntegerKeyBounds(
        const QualifiedName& t, const std::string& c) override {
      return d->IntegerKeyBounds(t, c);
    }
    Result<std::vector<std::vector<std::string>>> SampleKeys(const QualifiedName& t,
                                                             const std::vector<KeyColumn>& k,
                                                             double n) override {
      return d->SampleKeys(t, k, n);
    }
    Result<SwitchFacts> ReadSwitchFacts(const Step& s) override { return d->ReadSwitchFacts(s); }
    Result<LintFacts> ReadLintFacts(const LintQuestions& q) override { return d->ReadLintFacts(q); }
    Result<std::vector<TaskCheckpoint>> LoadRanges(const std::string& p, int t, int pass) override {
      return d->LoadRanges(p, t, pass);
    }
    Status ReopenTail(const std::string& p, int t) override { return d->ReopenTail(p, t); }
    Result<std::vector<TaskCheckpoint>> CreateRanges(const std::string& p, int t,
                                                     const std::string& n, int pass,
                                                     const std::vector<RangeBounds>& b) override {
      return d->CreateRanges(p, t, n, pass, b);
    }
    Result<BatchResult> RunBatch(const std::string& p, int t, const BatchStatement& s,
                                 const TaskCheckpoint& f, int64_t n, const StatementLimits& l) override {
      return d->RunBatch(p, t, s, f, n, l);
    }
    Result<BatchResult> RunSweep(const BatchStatement& s, int64_t n, const StatementLimits& l) override {
      return d->RunSweep(s, n, l);
    }
    Result<UnfillableRows> CountUnfillable(const BatchStatement& s, const StatementLimits& l) override {
      return d->CountUnfillable(s, l);
    }
    Status SaveWaitReason(const std::string& p, const std::string& r) override {
      return d->SaveWaitReason(p, r);
    }
    Result<int64_t> BackendPid() override { return d->BackendPid(); }
    using HealthProbe::ReadHealth;
    Result<HealthReading> ReadHealth(const HealthQuestions& q, const StatementLimits& l) override {
      return d->ReadHealth(q, l);
    }
    Status SaveTaskStatus(const std::string& p, int t, const TaskLiveStatus& s) override {
      return d->SaveTaskStatus(p, t, s);
    }
    Result<int64_t> QueryNumber(const std::string& s, const StatementLimits& l) override {
      return d->QueryNumber(s, l);
    }
    Status Execute(const std::string& s, const StatementLimits& l) override { return d->Execute(s, l); }
    Status SavePause(const Pause& p) override { return d->SavePause(p); }
    Status DeletePauses(const std::string& p, const std::string& ph) override {
      return d->DeletePauses(p, ph);
    }
    Result<std::vector<Pause>> ListPauses() override { return d->ListPauses(); }
    Result<std::vector<RetainedColumn>> ListRetained(const std::string& p) override {
      return d->ListRetained(p);
    }
    Result<std::optional<LiveSettingsRecord>> ChangeLiveSettings(const std::string& p, const std::string& c,
                                                                 const std::string& a) override {
      return d->ChangeLiveSettings(p, c, a);
    }
    Result<std::vector<LiveSettingsRecord>> ListLiveSettings() override { return d->ListLiveSettings(); }
    Result<std::vector<SessionFacts>> DescribeSessions(const std::vector<int64_t>& p,
                                                       const std::vector<std::string>& r) override {
      return d->DescribeSessions(p, r);
    }
    Result<EndOutcome> EndSession(const std::string& p, const SessionFacts& s, bool t,
                                  int64_t m) override {
      return d->EndSession(p, s, t, m);
    }
    Result<int64_t> SessionsEnded(const std::string& p) override { return d->SessionsEnded(p); }
    Result<DeadTuples> ReadDeadTuples(const QualifiedName& t) override { return d->ReadDeadTuples(t); }
    Status Vacuum(const QualifiedName& t, const StatementLimits& l, Millis c) override {
      return d->Vacuum(t, l, c);
    }
    Result<BatchResult> RunVerify(const BatchStatement& s, const std::vector<std::string>& a,
                                   int64_t n, const StatementLimits& l) override {
      return d->RunVerify(s, a, n, l);
    }
  };
  FakeDatabase* db_;
};

struct FakeSpool : SpoolPort {
  std::vector<std::string> accepted, done, failed, rejected;
  std::string last_error;
  Status Accept(const std::string& n) override { return accepted.push_back(n), Status::Ok(); }
  Status Finish(const std::string& n, bool ok, const std::string& e) override {
    (ok ? done : failed).push_back(n);
    last_error = e;
    return Status::Ok();
  }
  Status Reject(const std::string& n, const std::string& e) override {
    rejected.push_back(n);
    last_error = e;
    return Status::Ok();
  }
};

struct RecordingAudit : AuditSink {
  std::mutex mu;
  std::vector<AuditEvent> events;
  std::atomic<bool> broken{false};  // while true, every write fails (a full disk)
  Status Check() override {
    return broken ? Status::Io("audit.jsonl: No space left on device") : Status::Ok();
  }
  Status Write(const AuditEvent& e) override {
    if (broken) return Check();
    std::lock_guard<std::mutex> l(mu);
    events.push_back(e);
    return Status::Ok();
  }
  int Count(const std::string& name) {
    std::lock_guard<std::mutex> l(mu);
    int n = 0;
    for (auto& e : events) n += e.event == name;
    return n;
  }
};

const char* kPlan = R"(plan: fill_c
database: app
settings: {lock_timeout: 750ms}
expand:
  - sql: ALTER TABLE t ADD COLUMN c int
  - sql: CREATE INDEX CONCURRENTLY i ON t (c)
backfill:
  - table: t
    set: {c: "1"}
    batch_size: 10
gates:
  - null_count: {table: t, column: c}
contract:
  - sql: ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID
)";

class OrchestratorTest : public ::testing::Test {
 protected:
  OrchestratorTest() : db_(95), connector_(&db_) {
    config_.databases["app"] = DatabaseConfig{"dsn", "", ""};
    config_.defaults.gate_recheck_interval = Millis(20);
    config_.defaults.min_batch_size = 1;
    options_.retry_base = Millis(1);
  }

  std::unique_ptr<Orchestrator> Make() {
    return std::make_unique<Orchestrator>(io_, pool_, config_, &connector_, &spool_, &audit_,
                                          &metrics_, options_);
  }

  // Runs the io_context, one handler at a time, until `until` holds or five seconds pass.
  void RunUntil(const std::function<bool()>& until,
                std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!until() && std::chrono::steady_clock::now() < deadline) {
      io_.restart();
      io_.run_one_for(std::chrono::milliseconds(10));
    }
  }

  // kPlan as a crashed daemon left it, in `state`: to be picked up by ResumeAll.
  void StorePlan(PlanState state) {
    PlanRecord r;
    r.name = "fill_c";
    r.source = kPlan;
    r.file_name = "fill_c.yaml";
    r.cursor = {state, 0, false};
    db_.plans_["fill_c"] = r;
  }

  void Submit(Orchestrator& o, const std::string& text = kPlan) {
    o.Submit(SpoolFile{"fill_c.yaml", text, "alice"});
  }

  boost::asio::io_context io_;
  boost::asio::thread_pool pool_{2};
  Config config_;
  OrchestratorOptions options_;
  FakeDatabase db_;
  FakeConnector connector_;
  FakeSpool spool_;
  RecordingAudit audit_;
  NullMetrics metrics_;
};

TEST_F(OrchestratorTest, RunsEveryPhaseInOrderAndFilesThePlanAsDone) {
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.done.empty(); });
  ASSERT_EQ(spool_.done, std::vector<std::string>{"fill_c.yaml"});
  EXPECT_EQ(db_.steps_, (std::vector<std::string>{"ALTER TABLE t ADD COLUMN c int",
                                                   "CREATE INDEX CONCURRENTLY i ON t (c)",
                                                   "ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID"}));
  EXPECT_EQ(db_.plans_["fill_c"].cursor.state, PlanState::kDone);
  for (size_t k = 1; k < db_.filled_.size(); ++k) EXPECT_EQ(db_.filled_[k], 1) << "key " << k;
  ASSERT_FALSE(db_.sizes_.empty());
  EXPECT_EQ(db_.sizes_.front(), 10) << "the plan's batch_size is the starting size";
  for (size_t i = 1; i < db_.sizes_.size(); ++i) {
    EXPECT_LE(db_.sizes_[i], db_.sizes_[i - 1] * 12 / 10) << "fast batches grow gently";
  }
  EXPECT_GT(db_.sizes_.back(), 10);
  EXPECT_EQ(db_.last_limits_.lock_timeout, Millis(750)) << "the plan's lock_timeout is used";
  EXPECT_EQ(audit_.Count("plan_accepted"), 1);
  EXPECT_EQ(audit_.Count("step_finished"), 3);
  EXPECT_EQ(audit_.Count("plan_done"), 1);
  EXPECT_EQ(audit_.events.front().actor, "alice");
}

TEST_F(OrchestratorTest, ResumesAfterARestartWithoutRedoingFinishedWork) {
  // State as a crashed daemon left it: expand done, backfill half way.
  StorePlan(PlanState::kBackfilling);
  TaskCheckpoint cp;
  cp.last_key = {"50"};
  cp.batches = 5;
  cp.rows_updated = cp.rows_scanned = 50;
  db_.checkpoints_[{0, 0}] = cp;
  for (int k = 1; k <= 50; ++k) db_.filled_[k] = 1;

  auto o = Make();
  o->ResumeAll();
  RunUntil([&] { return !spool_.done.empty(); });
  ASSERT_EQ(db_.plans_["fill_c"].cursor.state, PlanState::kDone);
  EXPECT_EQ(db_.steps_, std::vector<std::string>{"ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID"})
      << "expand steps must not run again";
  for (size_t k = 1; k < db_.filled_.size(); ++k) EXPECT_EQ(db_.filled_[k], 1) << "key " << k;
}

TEST_F(OrchestratorTest, RetriesTransientErrorsFromTheStoredCheckpoint) {
  db_.batch_errors_ = 3;
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.done.empty() || !spool_.failed.empty(); });
  ASSERT_EQ(spool_.done.size(), 1u) << spool_.last_error;
  EXPECT_EQ(audit_.Count("retry"), 3);
  for (size_t k = 1; k < db_.filled_.size(); ++k) EXPECT_EQ(db_.filled_[k], 1) << "key " << k;
}

TEST_F(OrchestratorTest, ALostServerIsWaitedForBeyondTheRetryBudget) {
  db_.batch_errors_ = options_.max_retries * 3;
  options_.retry_cap = Millis(20);
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.done.empty() || !spool_.failed.empty(); }, std::chrono::seconds(20));
  ASSERT_EQ(spool_.done.size(), 1u) << spool_.last_error;
  EXPECT_EQ(audit_.Count("retry"), options_.max_retries * 3);
}

TEST_F(OrchestratorTest, GivesUpAfterTheRetryLimitAndRecordsTheError) {
  db_.batch_errors_ = 100;
  db_.batch_error_ = Status::Retryable("could not serialize access", "40001");
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.failed.empty(); });
  ASSERT_EQ(spool_.failed.size(), 1u);
  EXPECT_EQ(audit_.Count("retry"), options_.max_retries);
  EXPECT_EQ(db_.plans_["fill_c"].cursor.state, PlanState::kFailed);
  EXPECT_NE(db_.plans_["fill_c"].last_error.find("SQLSTATE 40001"), std::string::npos);
}

TEST_F(OrchestratorTest, AFailingStepFailsThePlanWithTheServerError) {
  db_.step_errors_.push_back({"CREATE INDEX CONCURRENTLY i ON t (c)",
                              Status::Fatal("relation \"t\" does not exist", "42P01")});
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.failed.empty(); });
  ASSERT_EQ(spool_.failed.size(), 1u);
  EXPECT_NE(spool_.last_error.find("expand step 2"), std::string::npos) << spool_.last_error;
  EXPECT_NE(spool_.last_error.find("SQLSTATE 42P01"), std::string::npos) << spool_.last_error;
  const PlanRecord& r = db_.plans_["fill_c"];
  EXPECT_EQ(r.cursor.state, PlanState::kFailed);
  EXPECT_EQ(r.cursor.step, 1) << "the failed step is kept for a retry";
  EXPECT_EQ(r.failed_in, PlanState::kExpanding);
  EXPECT_EQ(db_.batches_, 0) << "nothing after the failed step ran";
}

TEST_F(OrchestratorTest, AFailingGateBackfillsAgainThenHoldsContract) {
  db_.gate_values_ = {7, 7, 7, 7};  // rows that stay NULL for four checks
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return audit_.Count("gate_waiting") > 0; });
  EXPECT_EQ(audit_.Count("gate_failed"), 1) << "one catch-up pass";
  EXPECT_EQ((db_.checkpoints_[{0, 0}].pass), 2);
  EXPECT_EQ(db_.steps_.size(), 2u) << "contract must not start while a gate fails";
  RunUntil([&] { return !spool_.done.empty(); });
  EXPECT_EQ(spool_.done.size(), 1u) << "once the gate passes, contract runs";
  EXPECT_GE(db_.tails_reopened_, 1) << "rows inserted meanwhile are filled before each re-check";
  EXPECT_EQ(db_.steps_.size(), 3u);
}

TEST_F(OrchestratorTest, RowsWrittenBehindThePassesAreSweptWhileTheGatesWait) {
  db_.gate_values_ = {7, 7};  // the first pass and the catch-up pass leave rows behind
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return audit_.Count("gate_waiting") > 0; });
  {
    // The application writes NULLs into rows the passes already filled (random keys).
    std::lock_guard<std::mutex> l(db_.mu_);
    for (int k : {5, 17, 33}) db_.filled_[k] = 0;
  }
  RunUntil([&] { return !spool_.done.empty(); });
  EXPECT_EQ(spool_.done.size(), 1u);
  EXPECT_GE(db_.sweeps_, 1);
  EXPECT_EQ(audit_.Count("backfill_swept"), 1);
  for (size_t k = 1; k < db_.filled_.size(); ++k) EXPECT_GE(db_.filled_[k], 1) << "key " << k;
  EXPECT_EQ(db_.filled_[17], 1) << "filled again once";
}

TEST_F(OrchestratorTest, RejectsAnInvalidPlanWithEveryError) {
  auto o = Make();
  o->Submit(SpoolFile{"bad.yaml", "plan: Bad\ndatabase: nope\n", "bob"});
  ASSERT_EQ(spool_.rejected, std::vector<std::string>{"bad.yaml"});
  EXPECT_NE(spool_.last_error.find("bad.yaml:1:7: plan name `Bad` is not allowed"),
            std::string::npos)
      << spool_.last_error;
  EXPECT_EQ(audit_.Count("plan_rejected"), 1);
}

TEST_F(OrchestratorTest, RejectsAPlanWhoseBlockerPolicyCouldNeverAct) {
  auto o = Make();
  o->Submit(SpoolFile{"b.yaml",
                      "plan: b\ndatabase: app\nsettings:\n  ddl_retries: 2\n  blockers:\n"
                      "    after_lock_timeouts: 4\n    terminate_idle_in_transaction: 10s\n"
                      "expand:\n  - add_column: {table: t, column: c, type: int}\n",
                      "bob"});
  ASSERT_EQ(spool_.rejected, std::vector<std::string>{"b.yaml"}) << spool_.last_error;
  EXPECT_NE(spool_.last_error.find("`blockers.after_lock_timeouts` is 4, above `ddl_retries` (2)"),
            std::string::npos)
      << spool_.last_error;
  EXPECT_EQ(audit_.Count("plan_rejected"), 1);
}

TEST_F(OrchestratorTest, RejectsAPlanWhoseStepsWouldLockUpProduction) {
  auto o = Make();
  o->Submit(SpoolFile{"x.yaml", "plan: x\ndatabase: app\nexpand:\n  - sql: CREATE INDEX i ON t (c)\n", "bob"});
  ASSERT_EQ(spool_.rejected.size(), 1u);
  EXPECT_NE(spool_.last_error.find("x.yaml:4:5: expand step 1: require-concurrent-index-creation"),
            std::string::npos) << spool_.last_error;
}

TEST_F(OrchestratorTest, RecordsTheReasonOfAStepMarkedUnsafe) {
  auto o = Make();
  o->Submit(SpoolFile{"x.yaml", "plan: x\ndatabase: app\nexpand:\n  - sql: CREATE INDEX i ON t (c)\n"
                                "    unsafe: forty rows\n", "bob"});
  RunUntil([&] { return !spool_.done.empty(); });
  ASSERT_EQ(spool_.done.size(), 1u) << spool_.last_error;
  bool recorded = false;
  for (const auto& e : audit_.events) {
    if (e.event == "plan_accepted") recorded = e.details.ToString().find("forty rows") != std::string::npos;
  }
  EXPECT_TRUE(recorded);
}

TEST_F(OrchestratorTest, RejectsADatabaseNotInTheConfig) {
  auto o = Make();
  o->Submit(SpoolFile{"x.yaml", "plan: x\ndatabase: billing\n", "bob"});
  ASSERT_EQ(spool_.rejected.size(), 1u);
  EXPECT_NE(spool_.last_error.find("database `billing` is not in the daemon's config"),
            std::string::npos);
}

TEST_F(OrchestratorTest, RejectsAResubmittedDonePlanAndADifferentPlanWithTheSameName) {
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.done.empty(); });
  Submit(*o);
  RunUntil([&] { return !spool_.rejected.empty(); });
  ASSERT_EQ(spool_.rejected.size(), 1u);
  EXPECT_NE(spool_.last_error.find("already applied"), std::string::npos) << spool_.last_error;

  std::string changed = std::string(kPlan) + "description: changed\n";
  Submit(*o, changed);
  RunUntil([&] { return spool_.rejected.size() == 2; });
  EXPECT_NE(spool_.last_error.find("a different plan named `fill_c`"), std::string::npos)
      << spool_.last_error;
}

TEST_F(OrchestratorTest, ShutdownLetsTheBatchInFlightFinishThenGoesIdle) {
  auto o = Make();
  std::string one_row_batches = kPlan;
  one_row_batches.replace(one_row_batches.find("batch_size: 10"), 14, "batch_size: 1");
  Submit(*o, one_row_batches);
  RunUntil([&] { return db_.batches_ >= 2; });
  bool idle = false;
  o->Shutdown([&] { idle = true; });
  RunUntil([&] { return idle; });
  ASSERT_TRUE(idle);
  const int batches = db_.batches_;
  RunUntil([&] { return db_.batches_ > batches; }, std::chrono::milliseconds(300));
  EXPECT_EQ(db_.batches_, batches) << "no batch starts after shutdown";
  EXPECT_NE(db_.plans_["fill_c"].cursor.state, PlanState::kDone);
}

TEST_F(OrchestratorTest, SeveralWorkersFillDisjointRangesExactlyOnce) {
  std::string plan = kPlan;
  plan.replace(plan.find("batch_size: 10"), 14, "batch_size: 7\n    workers: 3");
  auto o = Make();
  Submit(*o, plan);
  RunUntil([&] { return !spool_.done.empty() || !spool_.failed.empty(); });
  ASSERT_EQ(spool_.done.size(), 1u) << spool_.last_error;
  EXPECT_EQ(db_.ranges_created_, 3u);
  for (size_t k = 1; k < db_.filled_.size(); ++k) EXPECT_EQ(db_.filled_[k], 1) << "key " << k;
}

TEST_F(OrchestratorTest, ASyncTriggerLivesFromTheBackfillToTheContract) {
  std::string plan = kPlan;
  plan.replace(plan.find("batch_size: 10"), 14, "batch_size: 10\n    sync_trigger: true");
  auto o = Make();
  Submit(*o, plan);
  RunUntil([&] { return !spool_.done.empty() || !spool_.failed.empty(); });
  ASSERT_EQ(spool_.done.size(), 1u) << spool_.last_error;
  ASSERT_EQ(db_.executed_.size(), 3u);
  const std::string trigger = SyncTriggerName("fill_c", 0);
  EXPECT_EQ(db_.executed_[1], "ANALYZE \"t\"") << "the planner learns the new column once it is filled";
  db_.executed_.erase(db_.executed_.begin() + 1);
  EXPECT_NE(db_.executed_[0].find("CREATE OR REPLACE FUNCTION tide.\"" + trigger + "\""), std::string::npos);
  EXPECT_EQ(db_.executed_[1].rfind("DROP TRIGGER IF EXISTS \"" + trigger + "\"", 0), 0u);
  EXPECT_EQ(audit_.Count("sync_triggers_dropped"), 1);
}

TEST_F(OrchestratorTest, APauseStopsNewBatchesAndAResumeContinues) {
  std::string plan = kPlan;
  plan.replace(plan.find("batch_size: 10"), 14, "batch_size: 1");
  auto o = Make();
  Submit(*o, plan);
  RunUntil([&] { return db_.batches_ >= 3; });
  o->Pause(Pause{"*", "", "alice (uid 1000)", "kill", ""});
  RunUntil([] { return false; }, std::chrono::milliseconds(300));
  const int held = db_.batches_;
  RunUntil([] { return false; }, std::chrono::milliseconds(700));
  EXPECT_LE(db_.batches_, held + 1) << "no new batch while paused";
  EXPECT_EQ(db_.ListPauses()->size(), 1u) << "stored, to outlive a restart";
  o->Resume("*", "", "alice (uid 1000)", "kill");
  RunUntil([&] { return !spool_.done.empty(); });
  EXPECT_EQ(spool_.done.size(), 1u);
  EXPECT_TRUE(db_.ListPauses()->empty());
  EXPECT_EQ(audit_.Count("paused"), 1);
  EXPECT_EQ(audit_.Count("resumed"), 1);
}

TEST_F(OrchestratorTest, AContractHoldLetsTheBackfillRunAndStopsBeforeTheFirstConstraint) {
  auto o = Make();
  o->Pause(Pause{"fill_c", "contract", "bob", "tidectl", ""});
  Submit(*o);
  RunUntil([&] { return audit_.Count("plan_held") > 0; });
  EXPECT_EQ(db_.plans_["fill_c"].cursor.state, PlanState::kContracting);
  EXPECT_EQ(db_.steps_.size(), 2u) << "expand ran, contract did not";
  for (size_t k = 1; k < db_.filled_.size(); ++k) ASSERT_EQ(db_.filled_[k], 1);
  o->Resume("fill_c", "contract", "bob", "tidectl");
  RunUntil([&] { return !spool_.done.empty(); });
  EXPECT_EQ(db_.steps_.size(), 3u);
}

TEST_F(OrchestratorTest, PausesStoredInTheDatabaseHoldAfterARestart) {
  db_.pauses_.push_back(Pause{"fill_c", "", "alice", "tidectl", "t"});
  StorePlan(PlanState::kExpanding);
  auto o = Make();
  o->ResumeAll();
  RunUntil([&] { return audit_.Count("plan_held") > 0; });
  EXPECT_TRUE(db_.steps_.empty());
  ASSERT_NE(o->PausedBy("fill_c", "expand"), nullptr);
  EXPECT_EQ(o->PausedBy("fill_c", "expand")->actor, "alice");
}

TEST_F(OrchestratorTest, WorkersAcrossPlansStayWithinMaxWorkers) {
  config_.max_workers = 1;
  std::string plan = kPlan;
  plan.replace(plan.find("batch_size: 10"), 14, "batch_size: 7\n    workers: 3");
  auto o = Make();
  Submit(*o, plan);
  RunUntil([&] { return !spool_.done.empty(); });
  ASSERT_EQ(spool_.done.size(), 1u) << "one worker still finishes every range";
  for (size_t k = 1; k < db_.filled_.size(); ++k) EXPECT_EQ(db_.filled_[k], 1) << "key " << k;
}

TEST_F(OrchestratorTest, AThrottleQueryHoldsTheBackfillUntilItTurnsFalse) {
  db_.throttle_ = true;
  std::string plan = kPlan;
  plan.replace(plan.find("batch_size: 10"), 14, "batch_size: 1");
  auto o = Make();
  Submit(*o, plan);
  RunUntil([&] { return audit_.Count("throttle_started") > 0; });
  ASSERT_EQ(audit_.Count("throttle_started"), 1);
  const int batches = db_.batches_;
  RunUntil([] { return false; }, std::chrono::milliseconds(1500));
  EXPECT_LE(db_.batches_, batches + 2) << "at most the batches already in flight";
  {
    std::lock_guard<std::mutex> l(db_.mu_);
    db_.throttle_ = false;
  }
  RunUntil([&] { return !spool_.done.empty(); }, std::chrono::seconds(10));
  EXPECT_EQ(spool_.done.size(), 1u);
  EXPECT_EQ(audit_.Count("throttle_ended"), 1);
}


TEST_F(OrchestratorTest, NoNewWorkStartsWhileTheAuditLogCannotBeWritten) {
  auto o = Make();
  audit_.broken = true;
  Submit(*o);
  RunUntil([&] { return !o->audit_blocked().empty(); });
  RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_NE(o->audit_blocked().find("No space left"), std::string::npos);
  EXPECT_TRUE(db_.steps_.empty()) << "no step ran without its record";
  EXPECT_TRUE(spool_.done.empty());
  audit_.broken = false;
  RunUntil([&] { return !spool_.done.empty(); }, std::chrono::seconds(10));
  ASSERT_EQ(spool_.done, std::vector<std::string>{"fill_c.yaml"});
  EXPECT_TRUE(o->audit_blocked().empty());
  // Nothing was lost: the events that waited came first, in order.
  EXPECT_EQ(audit_.Count("audit_log_recovered"), 1);
  std::vector<AuditEvent> events;
  {
    std::lock_guard<std::mutex> l(audit_.mu);
    events = audit_.events;
  }
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0].event, "plan_submitted");
}

const char* kAbortPlan = R"(plan: fill_c
database: app
expand:
  - sql: ALTER TABLE t ADD COLUMN c int
backfill:
  - table: t
    set: {c: "1"}
    batch_size: 1
    pause_between_batches: 20ms
gates:
  - null_count: {table: t, column: c}
contract:
  - sql: ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID
rollback:
  - drop_column: {table: t, column: c}
)";

TEST_F(OrchestratorTest, AbortStopsTheBackfillAndRunsTheRollbackSteps) {
  auto o = Make();
  Submit(*o, kAbortPlan);
  RunUntil([&] { return db_.batches_ >= 5; });
  o->Abort("fill_c", "alice (uid 1000)", "tidectl");
  RunUntil([&] { return audit_.Count("plan_aborted") == 1; });
  EXPECT_EQ(db_.plans_["fill_c"].cursor.state, PlanState::kAborted);
  EXPECT_LT(db_.batches_, 95) << "the backfill stopped";
  EXPECT_EQ(db_.steps_.back(), "ALTER TABLE \"t\" DROP COLUMN IF EXISTS \"c\"");
  EXPECT_EQ(audit_.Count("plan_aborted"), 1);
  ASSERT_EQ(spool_.failed.size(), 1u);
  EXPECT_NE(spool_.last_error.find("aborted by alice (uid 1000)"), std::string::npos);
  // Once done, abort is refused.
  o->Abort("fill_c", "bob", "tidectl");
  RunUntil([&] { return audit_.Count("abort_refused") == 1; });
  EXPECT_EQ(audit_.Count("abort_refused"), 1);
}

TEST_F(OrchestratorTest, AFailedPlanCanBeAbortedAndRunsItsRollback) {
  db_.step_errors_.push_back({"ALTER TABLE t ADD COLUMN c int",
                              Status::Fatal("permission denied for table t", "42501")});
  auto o = Make();
  Submit(*o, kAbortPlan);
  RunUntil([&] { return !spool_.failed.empty(); });
  ASSERT_EQ(spool_.failed.size(), 1u);
  o->Abort("fill_c", "alice (uid 1000)", "tidectl");
  RunUntil([&] { return audit_.Count("plan_aborted") == 1; });
  EXPECT_EQ(audit_.Count("plan_aborted"), 1);
  EXPECT_EQ(db_.steps_.back(), "ALTER TABLE \"t\" DROP COLUMN IF EXISTS \"c\"");
  EXPECT_EQ(spool_.failed.size(), 1u) << "its file stays where the failure put it";
  EXPECT_EQ(o->running_plans(), 0u);
}

struct FailingCommands : CommandRunner {
  std::vector<std::string> env_seen;
  Result<CommandResult> Run(const std::string&,
                            const std::vector<std::pair<std::string, std::string>>& env) override {
    for (const auto& [k, v] : env) env_seen.push_back(k + "=" + v);
    return CommandResult{3, "pg_dump: error: disk full"};
  }
};

TEST_F(OrchestratorTest, AFailedBackupFailsThePlanBeforeItsFirstStep) {
  FailingCommands commands;
  options_.commands = &commands;
  config_.backup_command = "backup.sh";
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.failed.empty(); });
  EXPECT_TRUE(db_.steps_.empty());
  EXPECT_NE(spool_.last_error.find("backup_command exited with 3"), std::string::npos) << spool_.last_error;
  EXPECT_EQ(audit_.Count("backup_failed"), 1);
  EXPECT_EQ(commands.env_seen, (std::vector<std::string>{"TIDE_PLAN=fill_c", "TIDE_DATABASE=app"}));
}

TEST_F(OrchestratorTest, APreflightProblemRejectsThePlan) {
  db_.preflight_problems_ = {"backfill t: column `c` does not exist and no expand step adds it"};
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.rejected.empty(); });
  ASSERT_EQ(spool_.rejected.size(), 1u);
  EXPECT_NE(spool_.last_error.find("column `c` does not exist"), std::string::npos);
  EXPECT_TRUE(db_.plans_.empty()) << "nothing recorded, nothing run";
}

const char* kNotNullPlan = R"(plan: fill_c
database: app
backfill:
  - table: t
    set: {c: "1"}
    batch_size: 10
gates:
  - null_count: {table: t, column: c}
contract:
  - set_not_null: {table: t, column: c}
)";

size_t IndexOf(const std::vector<std::string>& v, const std::string& prefix, size_t from = 0) {
  for (size_t i = from; i < v.size(); ++i) {
    if (v[i].rfind(prefix, 0) == 0) return i;
  }
  return std::string::npos;
}

TEST_F(OrchestratorTest, TheNotValidCheckGoesInOnlyOnceTheGatesPassThenTheGatesAreReadAgain) {
  // The gate fails twice (the old application still writes NULLs), then passes, and passes
  // again under the check.
  db_.gate_values_ = {5, 3, 0, 0};
  auto o = Make();
  Submit(*o, kNotNullPlan);
  RunUntil([&] { return !spool_.done.empty(); });
  ASSERT_EQ(db_.StateOf("fill_c"), PlanState::kDone);
  const auto order = db_.Order();
  const size_t add = IndexOf(order, "ALTER TABLE \"t\" ADD CONSTRAINT");
  ASSERT_NE(add, std::string::npos);
  size_t gates_before = 0;
  for (size_t i = 0; i < add; ++i) gates_before += order[i].rfind("gate: ", 0) == 0;
  EXPECT_EQ(gates_before, 3u) << "no check while a gate fails: the old application's writes "
                                 "of NULL would fail";
  EXPECT_NE(IndexOf(order, "gate: ", add), std::string::npos) << "the gates are read again under the check";
  EXPECT_EQ(audit_.Count("gate_checks_added"), 1);
}

TEST_F(OrchestratorTest, ANullThatArrivesBetweenTheGateAndTheCheckTakesTheCheckOutAgain) {
  db_.gate_values_ = {0, 1, 1, 0, 0};  // passes; fails under the check; fails; passes twice
  auto o = Make();
  Submit(*o, kNotNullPlan);
  RunUntil([&] { return !spool_.done.empty(); });
  ASSERT_EQ(db_.StateOf("fill_c"), PlanState::kDone);
  const auto order = db_.Order();
  const size_t add = IndexOf(order, "ALTER TABLE \"t\" ADD CONSTRAINT");
  const size_t drop = IndexOf(order, "ALTER TABLE \"t\" DROP CONSTRAINT IF EXISTS", add);
  ASSERT_NE(drop, std::string::npos) << "the check must come out while the gate fails";
  EXPECT_NE(IndexOf(order, "ALTER TABLE \"t\" ADD CONSTRAINT", drop), std::string::npos);
  EXPECT_GE(audit_.Count("gate_checks_removed"), 1);
}

TEST_F(OrchestratorTest, AHoldOfContractKeepsTheChecksOutWhileTheGatesPass) {
  auto o = Make();
  o->Pause(Pause{"fill_c", "contract", "alice", "tidectl", ""});
  Submit(*o, kNotNullPlan);
  RunUntil([&] { return audit_.Count("plan_held") > 0; });
  RunUntil([] { return false; }, std::chrono::milliseconds(300));
  EXPECT_EQ(db_.StateOf("fill_c"), PlanState::kGating);
  EXPECT_EQ(IndexOf(db_.Order(), "ALTER TABLE \"t\" ADD CONSTRAINT"), std::string::npos);
  o->Resume("fill_c", "contract", "alice", "tidectl");
  RunUntil([&] { return !spool_.done.empty(); });
  EXPECT_EQ(db_.StateOf("fill_c"), PlanState::kDone);
}

TEST_F(OrchestratorTest, AnAbortWhileTheGatesWaitRemovesTheChecksTideAdded) {
  db_.gate_values_ = {0, 1};  // passes, then fails under the check; then waits (all NULL)
  db_.filled_.assign(db_.filled_.size(), 0);
  auto o = Make();
  Submit(*o, kNotNullPlan);
  RunUntil([&] { return audit_.Count("gate_checks_removed") > 0; });
  db_.SetGateValues({7, 7, 7, 7, 7, 7, 7, 7});
  o->Abort("fill_c", "alice", "tidectl");
  RunUntil([&] { return db_.StateOf("fill_c") == PlanState::kAborted; });
  EXPECT_EQ(db_.StateOf("fill_c"), PlanState::kAborted);
  std::lock_guard<std::mutex> l(db_.mu_);
  EXPECT_EQ(db_.steps_.back().rfind("ALTER TABLE \"t\" DROP CONSTRAINT IF EXISTS", 0), 0u);
}

TEST_F(OrchestratorTest, AnUnreadableHealthHoldsTheBackfill) {
  db_.health_broken_ = true;
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return audit_.Count("throttle_started") > 0; });
  const int batches = db_.batches_;
  RunUntil([] { return false; }, std::chrono::milliseconds(1500));
  EXPECT_LE(db_.batches_ - batches, 2) << "batches go on while tide cannot see the health";
  EXPECT_EQ(db_.StateOf("fill_c"), PlanState::kBackfilling);
  db_.health_broken_ = false;
  RunUntil([&] { return !spool_.done.empty(); }, std::chrono::seconds(10));
  EXPECT_EQ(db_.StateOf("fill_c"), PlanState::kDone);
}

TEST_F(OrchestratorTest, UnfillableRowsAreTheReasonTheGatesWait) {
  db_.unfillable_ = 3;
  db_.gate_values_ = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return audit_.Count("backfill_unfillable") > 0; });
  EXPECT_EQ(audit_.Count("backfill_unfillable"), 1);
  RunUntil([&] {
    std::lock_guard<std::mutex> l(db_.mu_);
    return db_.wait_reasons_["fill_c"].find("3 rows of t: the expression yields NULL") != std::string::npos;
  });
  std::lock_guard<std::mutex> l(db_.mu_);
  EXPECT_NE(db_.wait_reasons_["fill_c"].find("3 rows of t: the expression yields NULL"), std::string::npos)
      << db_.wait_reasons_["fill_c"];
}

TEST_F(OrchestratorTest, APauseOfTheGatesHoldsTheirRecheckLoopAndItsCatchUp) {
  db_.gate_values_.assign(1000, 5);  // the gate keeps failing
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return audit_.Count("gate_waiting") > 0; });
  o->Pause(Pause{"fill_c", "gate", "bob", "tidectl", ""});
  RunUntil([&] { return audit_.Count("plan_held") > 0; });
  size_t gates = 0;
  int sweeps = 0;
  {
    std::lock_guard<std::mutex> l(db_.mu_);
    gates = db_.order_.size();
    sweeps = db_.sweeps_;
  }
  RunUntil([] { return false; }, std::chrono::milliseconds(400));  // 20 re-check intervals
  std::lock_guard<std::mutex> l(db_.mu_);
  EXPECT_LE(db_.order_.size(), gates + 1) << "gate queries ran while the gates were paused";
  EXPECT_EQ(db_.sweeps_, sweeps) << "catch-up batches ran while the gates were paused";
}

TEST_F(OrchestratorTest, LiveSettingsChangeARunningBackfillWithinOneBatchAndAreStored) {
  std::string plan = kPlan;
  plan.replace(plan.find("batch_size: 10"), 14, "batch_size: 10\n    max_rows_per_second: 10");
  auto o = Make();
  Submit(*o, plan);
  RunUntil([&] { return db_.batches_ >= 2; });
  const int before = db_.batches_;
  ASSERT_LT(before, 9) << "the cap of 10 rows/s holds 95 rows for about 9 s";
  auto change = ParseLiveChange(std::string("max_rows_per_second=0 batch_size=40"));
  ASSERT_TRUE(change.ok());
  const auto set_at = std::chrono::steady_clock::now();
  o->Set("fill_c", *change, "alice (uid 1000) via tidectl", "tidectl");
  RunUntil([&] { return !spool_.done.empty(); }, std::chrono::seconds(3));
  ASSERT_EQ(spool_.done.size(), 1u) << "the lane waiting on the old cap started over";
  EXPECT_LT(std::chrono::steady_clock::now() - set_at, std::chrono::seconds(2));
  {
    std::lock_guard<std::mutex> l(db_.mu_);
    ASSERT_GT(db_.sizes_.size(), static_cast<size_t>(before));
    EXPECT_EQ(db_.sizes_.back() <= 40, true);
    EXPECT_EQ(db_.sizes_[before], 40) << "the next batch after the change has the new size";
    ASSERT_EQ(db_.live_.count("fill_c"), 1u) << "stored, to outlive a restart";
    EXPECT_EQ(db_.live_["fill_c"].settings, "max_rows_per_second=0 batch_size=40");
    EXPECT_EQ(db_.live_["fill_c"].actor, "alice (uid 1000) via tidectl");
  }
  EXPECT_EQ(audit_.Count("settings_changed"), 1);
  std::lock_guard<std::mutex> l(audit_.mu);
  for (const auto& e : audit_.events) {
    if (e.event != "settings_changed") continue;
    EXPECT_EQ(e.actor, "alice (uid 1000) via tidectl");
    EXPECT_NE(e.details.ToString().find("max_rows_per_second=0"), std::string::npos);
  }
}

TEST_F(OrchestratorTest, StoredLiveSettingsApplyWhenThePlanResumes) {
  db_.live_["fill_c"] = LiveSettingsRecord{"fill_c", "batch_size=7", "bob", "t", 1};
  StorePlan(PlanState::kBackfilling);
  auto o = Make();
  o->ResumeAll();
  RunUntil([&] { return !spool_.done.empty() || db_.StateOf("fill_c") == PlanState::kDone; });
  std::lock_guard<std::mutex> l(db_.mu_);
  ASSERT_FALSE(db_.sizes_.empty());
  EXPECT_EQ(db_.sizes_.front(), 7);
  for (int64_t n : db_.sizes_) EXPECT_LE(n, 7);
  EXPECT_EQ(o->LiveFor("app", "fill_c").batch_size.value_or(0), 7);
}

TEST_F(OrchestratorTest, TheBlockerPolicyEndsAnIdleTransactionAndLeavesASuperuserAlone) {
  std::string plan = kPlan;
  plan.replace(plan.find("settings: {lock_timeout: 750ms}"), 31,
               "settings:\n  lock_timeout: 750ms\n  blockers:\n    after_lock_timeouts: 2\n"
               "    terminate_idle_in_transaction: 10s\n    max_per_plan: 5");
  const std::string contract = "ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID";
  const Status timeout = Status::Retryable("canceling statement due to lock timeout", "55P03")
                             .WithDetail(R"([{"pid":42,"user":"app"},{"pid":43,"user":"postgres"}])");
  SessionFacts idle;
  idle.pid = 42;
  idle.user = "app";
  idle.backend_type = "client backend";
  idle.state = "idle in transaction";
  idle.state_age_ms = 60000;
  SessionFacts root = idle;
  root.pid = 43;
  root.user = "postgres";
  root.superuser = true;
  {
    std::lock_guard<std::mutex> l(db_.mu_);
    db_.step_errors_.push_back({contract, timeout});
    db_.step_errors_.push_back({contract, timeout});
    db_.sessions_ = {idle, root};
  }
  auto o = Make();
  Submit(*o, plan);
  RunUntil([&] { return !spool_.done.empty() || !spool_.failed.empty(); });
  ASSERT_EQ(spool_.done.size(), 1u) << spool_.last_error;
  std::lock_guard<std::mutex> l(db_.mu_);
  EXPECT_EQ(db_.ended_, std::vector<std::string>{"terminate 42"})
      << "after the second lock timeout, not the first; never the superuser";
  EXPECT_EQ(audit_.Count("lock_timeout"), 2);
  EXPECT_EQ(audit_.Count("blocker_ended"), 1);
  EXPECT_EQ(audit_.Count("blocker_left"), 1);
}

TEST_F(OrchestratorTest, WithoutABlockerPolicyNoSessionIsEverEnded) {
  const std::string contract = "ALTER TABLE t ADD CONSTRAINT c_nn CHECK (c IS NOT NULL) NOT VALID";
  const Status timeout = Status::Retryable("canceling statement due to lock timeout", "55P03")
                             .WithDetail(R"([{"pid":42}])");
  SessionFacts idle;
  idle.pid = 42;
  idle.backend_type = "client backend";
  idle.state = "idle in transaction";
  idle.state_age_ms = 3600000;
  {
    std::lock_guard<std::mutex> l(db_.mu_);
    for (int i = 0; i < 4; ++i) db_.step_errors_.push_back({contract, timeout});
    db_.sessions_ = {idle};
  }
  auto o = Make();
  Submit(*o);
  RunUntil([&] { return !spool_.done.empty() || !spool_.failed.empty(); }, std::chrono::seconds(10));
  ASSERT_EQ(spool_.done.size(), 1u);
  std::lock_guard<std::mutex> l(db_.mu_);
  EXPECT_TRUE(db_.ended_.empty());
}

TEST_F(OrchestratorTest, AVerificationThatFindsDifferingRowsHoldsContractUntilTheyAgree) {
  std::string plan = kPlan;
  plan.replace(plan.find("batch_size: 10"), 14, "batch_size: 10\n    verify: true");
  {
    std::lock_guard<std::mutex> l(db_.mu_);
    db_.differing_ = {7, 64};
  }
  auto o = Make();
  Submit(*o, plan);
  RunUntil([&] {
    std::lock_guard<std::mutex> l(db_.mu_);
    return !db_.wait_reasons_["fill_c"].empty();
  });
  ASSERT_EQ(audit_.Count("verify_failed"), 1);
  {
    std::lock_guard<std::mutex> l(db_.mu_);
    EXPECT_EQ(db_.steps_.size(), 2u) << "contract waits";
    const std::string why = db_.wait_reasons_["fill_c"];
    EXPECT_NE(why.find("2 rows"), std::string::npos) << why;
    EXPECT_NE(why.find("(7); (64)"), std::string::npos) << why;
    db_.differing_.clear();  // the operator fixed them
  }
  RunUntil([&] { return !spool_.done.empty(); });
  ASSERT_EQ(spool_.done.size(), 1u);
  EXPECT_EQ(audit_.Count("verified"), 1);
  std::lock_guard<std::mutex> l(db_.mu_);
  EXPECT_EQ(db_.steps_.size(), 3u);
}

}  // namespace
}  // namespace tide
