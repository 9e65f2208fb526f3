// PlanDatabase on libpqxx: the tide schema, steps, batches and gates on a real PostgreSQL.
//
// Every session sets application_name = 'tided' and a session-wide lock_timeout and
// statement_timeout (the daemon defaults), so no statement of tide's can wait on a lock without
// a bound; steps, batches and gates override them with SET LOCAL. Through a transaction pooler
// (PgBouncer's pool_mode = transaction; see DatabaseConfig::pooler) no session setting is made,
// since it would hold for whichever client gets that server connection next: every transaction
// begins with its own SET LOCALs instead, and what cannot run in a transaction (CONCURRENTLY,
// VACUUM) runs on `ddl_dsn`'s direct session, or is refused naming `ddl_dsn`. libpqxx exceptions never leave
// src/pg: they become Status values (see ClassifySqlstate). A lost connection is re-opened on
// the next call. Not thread-safe: one instance per plan runner.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tide/config.h"
#include "tide/ports.h"

#include <pqxx/connection>
#include <pqxx/dbtransaction>

namespace tide {

// Per-task progress, for `tidectl status`.
struct TaskProgress {
  std::string plan;
  int task = 0;
  std::string table;
  int pass = 1;
  bool done = false;
  int64_t rows_updated = 0;
  int64_t rows_scanned = 0;
  int64_t rows_estimated = 0;
  int64_t batches = 0;
  std::string updated_at;
  int ranges = 1;
  double rows_per_second = 0;
  int64_t eta_seconds = -1;
  std::string throttle_reason;
  int64_t yield_sessions = 0;
  double yield_rest = 0;
};

class PgPlanDatabase : public PlanDatabase {
 public:
  // `lease_owner`, when set, fences every cursor this session stores: it is stored only while
  // no other daemon holds the plan's lease, in the transaction of the step it records, so a
  // step that finishes after the lease went elsewhere rolls back instead of committing.
  PgPlanDatabase(std::string dsn, Defaults defaults, std::string lease_owner = "",
                 DatabaseConfig config = {}, std::string name = "");
  ~PgPlanDatabase() override;

  // Opens the session now (else the first call does). The error never contains the DSN.
  Status Open();

  // PlanStore (pg_plan_store.cc).
  Status EnsureSchema() override;
  Result<std::optional<PlanRecord>> FindPlan(const std::string& name) override;
  Result<std::vector<PlanRecord>> ListPlans() override;
  Status InsertPlan(const PlanRecord& record) override;
  // `tidectl import --history`: the migrations the application's own tool applied
  // (schema_migrations.version, or _prisma_migrations.migration_name of finished, not rolled
  // back ones) with when; `source` says which table. Empty when neither table is there.
  Result<std::vector<std::pair<std::string, std::string>>> AppliedMigrations(std::string* source);
  // Records a plan as done before tide (at `applied_at`); false when the name is known already.
  Result<bool> RecordAppliedBefore(const PlanRecord& record, const std::string& applied_at);
  Status SaveCursor(const std::string& plan, const PlanCursor& cursor) override;
  Status SaveFailure(const std::string& plan, const PlanCursor& at,
                     const std::string& error) override;
  Status RestartPlan(const std::string& plan) override;
  Status SaveTaskStatus(const std::string& plan, int task, const TaskLiveStatus& status) override;
  Status SaveWaitReason(const std::string& plan, const std::string& reason) override;
  Result<std::vector<TaskProgress>> ListTaskProgress();

  // LeaseStore (pg_plan_store.cc).
  Result<bool> AcquireLease(const std::string& plan, const std::string& owner, Millis ttl) override;
  Result<std::vector<std::string>> RenewLeases(const std::string& owner,
                                               const std::vector<std::string>& plans,
                                               Millis ttl) override;
  Status ReleaseLease(const std::string& plan, const std::string& owner) override;
  Result<int64_t> ReclaimLeases(const std::string& prefix, const std::string& owner) override;

  // PauseStore (pg_plan_store.cc).
  Status SavePause(const Pause& pause) override;
  Status DeletePauses(const std::string& plan, const std::string& phase) override;
  Result<std::vector<Pause>> ListPauses() override;
  Result<std::vector<RetainedColumn>> ListRetained(const std::string& plan) override;

  // LiveSettingsStore (pg_plan_store.cc).
  Result<std::optional<LiveSettingsRecord>> ChangeLiveSettings(const std::string& plan,
                                                               const std::string& change,
                                                               const std::string& actor) override;
  Result<std::vector<LiveSettingsRecord>> ListLiveSettings() override;

  // SessionControl and TableMaintenance (pg_sessions.cc).
  Result<std::vector<SessionFacts>> DescribeSessions(const std::vector<int64_t>& pids,
                                                     const std::vector<std::string>& roles) override;
  Result<EndOutcome> EndSession(const std::string& plan, const SessionFacts& session,
                                bool terminate, int64_t max_per_plan) override;
  Result<int64_t> SessionsEnded(const std::string& plan) override;
  Result<DeadTuples> ReadDeadTuples(const QualifiedName& table) override;
  Status Vacuum(const QualifiedName& table, const StatementLimits& limits,
                Millis cost_delay) override;

  // StepRunner (pg_step_runner.cc).
  Result<std::vector<StatementOutcome>> RunStatements(
      const std::string& plan, const std::vector<DdlStatement>& statements,
      const StatementLimits& limits, const std::optional<PlanCursor>& after) override;
  Status Execute(const std::string& sql, const StatementLimits& limits) override;

  // CatalogReader (pg_catalog.cc).
  Result<PreflightReport> Preflight(const Plan& plan, bool dry_run,
                                    const StatementLimits& limits) override;
  Result<TableInfo> DescribeTable(const QualifiedName& table,
                                  const std::vector<std::string>& key) override;
  Result<std::pair<std::optional<int64_t>, std::optional<int64_t>>> IntegerKeyBounds(
      const QualifiedName& table, const std::string& column) override;
  Result<std::vector<std::vector<std::string>>> SampleKeys(const QualifiedName& table,
                                                           const std::vector<KeyColumn>& key,
                                                           double percent) override;
  Result<SwitchFacts> ReadSwitchFacts(const Step& step) override;
  Result<LintFacts> ReadLintFacts(const LintQuestions& questions) override;

  // BatchRunner (pg_batches.cc).
  Result<std::vector<TaskCheckpoint>> LoadRanges(const std::string& plan, int task,
                                                 int pass) override;
  Status ReopenTail(const std::string& plan, int task) override;
  Result<std::vector<TaskCheckpoint>> CreateRanges(const std::string& plan, int task,
                                                   const std::string& table_name, int pass,
                                                   const std::vector<RangeBounds>& ranges) override;
  Result<BatchResult> RunBatch(const std::string& plan, int task, const BatchStatement& statement,
                               const TaskCheckpoint& from, int64_t batch_size,
                               const StatementLimits& limits) override;
  Result<BatchResult> RunSweep(const BatchStatement& statement, int64_t batch_size,
                               const StatementLimits& limits) override;
  Result<UnfillableRows> CountUnfillable(const BatchStatement& statement,
                                         const StatementLimits& limits) override;
  Result<BatchResult> RunVerify(const BatchStatement& statement,
                                 const std::vector<std::string>& after, int64_t batch_size,
                                 const StatementLimits& limits) override;

  // HealthProbe (pg_health.cc; BackendPid in pg_session.cc).
  Result<int64_t> QueryNumber(const std::string& sql, const StatementLimits& limits) override;
  Result<int64_t> BackendPid() override;
  bool ThroughPooler() const override { return pooled_; }
  Result<HealthReading> ReadHealth(const HealthQuestions& questions,
                                   const StatementLimits& limits) override;
  using HealthProbe::ReadHealth;

 private:
  Status Connected();
  Status FromCurrentException();
  std::vector<PlanRecord> SelectPlans(const std::string& where, const std::string& name);

  // Runs `work` while a second session records who blocks the session `pid`
  // (pg_blocking_pids), every 100 ms; *out gets the last sessions seen, as a JSON array, also
  // when `work` throws.
  void WatchBlockers(int64_t pid, const std::function<void()>& work, std::string* out);
  // Whether `dsn` reaches PostgreSQL through a transaction pooler (known once connected).
  bool pooled() const { return pooled_; }
  // The SET LOCALs every transaction begins with: the session's settings, through a pooler;
  // else none (the session has them).
  std::string TxLocals() const;
  // The session for statements that cannot run in a transaction: `ddl_dsn`'s, or the main one
  // when it is not pooled. Throws, naming `ddl_dsn`, when neither can; `what` is the statement
  // in words.
  pqxx::connection& OwnSession(const std::string& what);
  int64_t OwnSessionPid() const;
  // One statement of RunStatements; throws libpqxx's exceptions, with the blockers seen in
  // *blockers.
  StatementOutcome RunStatement(const std::string& plan, const DdlStatement& st,
                                const StatementLimits& limits,
                                const std::optional<PlanCursor>& after, std::string* blockers);
  // Runs `sql` outside a transaction with `limits` set on the session, then the defaults again.
  void ExecOnSession(const std::string& sql, const StatementLimits& limits, std::string* blockers);
  // Waits while another session builds `index` (quoted): an earlier tided's build that outlived
  // its client goes on to the end, and its index is no leftover. Retryable when it has not ended
  // within min(statement_timeout, 30 s), and the step is retried.
  Status AwaitEarlierBuild(const std::string& index, const StatementLimits& limits);
  // Drops `index` (quoted) when it is an INVALID leftover of a failed build; true when it did.
  bool DropInvalidIndex(const std::string& index, const StatementLimits& limits);
  // The dry run of Preflight; throws libpqxx's exceptions.
  void DryRun(pqxx::dbtransaction& w, const Plan& plan, const CatalogFacts& facts,
              PreflightReport* dry);

  std::string dsn_;
  Defaults defaults_;
  std::string lease_owner_;
  DatabaseConfig config_;  // ddl_dsn (resolved) and pooler
  std::string name_;       // the database's name in the config, for messages
  std::unique_ptr<pqxx::connection> conn_;
  int64_t backend_pid_ = 0;
  bool pooled_ = false;
  std::unique_ptr<pqxx::connection> ddl_conn_;
  int64_t ddl_pid_ = 0;
};

class PgConnector : public DatabaseConnector {
 public:
  PgConnector(std::map<std::string, DatabaseConfig> databases, Defaults defaults,
              std::string lease_owner = "")
      : databases_(std::move(databases)), defaults_(defaults), lease_owner_(std::move(lease_owner)) {}
  Result<std::unique_ptr<PlanDatabase>> Connect(const std::string& database) override;
  std::string ServerOf(const std::string& database) override;
  Result<std::unique_ptr<PgPlanDatabase>> ConnectPg(const std::string& database);

 private:
  std::map<std::string, DatabaseConfig> databases_;
  Defaults defaults_;
  std::string lease_owner_;
};

// The DSN a database config stands for: `dsn` itself, the contents of `dsn_file` (which must
// not be readable by group or others), or the value of the environment variable `dsn_env`.
// Errors name the source, never the DSN.
Result<std::string> ResolveDsn(const std::string& name, const DatabaseConfig& config);

}  // namespace tide
