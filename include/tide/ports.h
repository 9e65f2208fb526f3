// The ports through which the orchestrator reaches the outside world: the target database, the
// audit log and the metrics. Abstract so that the orchestrator can be tested with fakes; the real
// implementations live in src/pg and src/obs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "engine/alterations.h"
#include "engine/operations.h"
#include "engine/phase.h"
#include "engine/preflight.h"
#include "engine/sql_text.h"
#include "plan/lint.h"
#include "tide/json.h"
#include "tide/plan.h"
#include "tide/status.h"

namespace tide {

// One plan's row in tide.plans.
struct PlanRecord {
  std::string name;
  std::string checksum;   // SHA-256 of the plan file, hex
  std::string file_name;  // as it was dropped in the spool
  std::string source;     // the plan file's text, so a restart needs no file
  std::string submitted_by;
  PlanCursor cursor;
  PlanState failed_in = PlanState::kAccepted;  // the state a failed plan was in when it failed
  std::string last_error;
  std::string waiting_reason;  // why it waits (failing gates, unfillable rows); "" when it does not
  std::string submitted_at, started_at, finished_at, updated_at;  // ISO 8601 or empty
};

// What a range of a backfill task spans: keys in the key's order, or heap pages (a TID range
// scan, PostgreSQL 14+), which reads the table in its physical order whatever the key's.
enum class RangeUnit { kKey, kPage };
const char* ToString(RangeUnit unit);  // "key", "page"

// The durable progress of one range of a backfill task (a row of tide.backfill), committed
// with every batch. A task has one range per worker (page ranges add one open tail); each is
// filled by one worker at a time.
//
// Key ranges: keys above `lower` up to `upper` (empty: open), done up to `last_key`.
// Page ranges: pages from `lower` (one number) up to, not including, `upper` (empty: to the
// table's end when the batch runs), done before `last_key`.
struct TaskCheckpoint {
  int range = 0;
  RangeUnit unit = RangeUnit::kKey;
  std::vector<std::string> lower;     // keys above this (empty: from the first key)
  std::vector<std::string> upper;     // keys up to this (empty: to the last key)
  int pass = 1;                       // 2 for the catch-up pass after a failed gate
  std::vector<std::string> last_key;  // empty: nothing done in this pass yet
  bool done = false;
  int64_t rows_updated = 0;
  int64_t rows_scanned = 0;
  int64_t batches = 0;
  int64_t rows_estimated = 0;
};

struct BatchResult {
  int64_t updated = 0;  // rows filled
  int64_t scanned = 0;
  std::vector<std::string> last_key;  // empty when no row was left
  int64_t unfillable = 0;  // rows taken whose expression yields NULL (still pending)
  bool reached_end = false;  // a page batch: it reached its range's end
  // A verification batch: the rows whose stored value differs from their expression's, and the
  // first few of their keys ("10", "7, b").
  int64_t differing = 0;
  std::vector<std::string> differing_keys;
};

// The rows still pending that no update can fill (see UnfillableSql), and a few of their keys
// as a text array literal: '{10,20}'.
struct UnfillableRows {
  int64_t rows = 0;
  std::string keys;
};

struct TableInfo {
  bool exists = false;
  bool has_primary_key = false;
  std::vector<KeyColumn> key;  // resolved: the plan's `key`, else the primary key
  int64_t estimated_rows = 0;  // EstimateRows over the table's leaf partitions (or itself)
  std::map<std::string, std::string> column_types;  // every column's format_type
  // An ordinary table with no partitions or inheritance children: its pages are all its rows,
  // so it can be batched by page.
  bool plain_heap = false;
  int64_t pages = 0;  // its heap's size in pages now
};

// A range to store for a backfill task (see TaskCheckpoint).
struct RangeBounds {
  std::vector<std::string> lower;
  std::vector<std::string> upper;
  RangeUnit unit = RangeUnit::kKey;
  int64_t rows_estimated = 0;
};

struct StatementLimits {
  Millis lock_timeout;
  Millis statement_timeout;
};

// An operator's pause: of one plan or of all ("*"), of one phase or of all (""). A pause of a
// phase the plan has not reached yet is a hold: the plan stops when it gets there.
struct Pause {
  std::string plan;   // "*": every plan
  std::string phase;  // "expand", "backfill", "gate", "contract"; "": every phase
  std::string actor;  // who asked: "alice (uid 1000) pid 4242: kill -USR1 17"
  std::string via;    // "kill", "tidectl"
  std::string at;     // RFC 3339
};

// What a health reading asks besides the WAL positions and sessions.
struct HealthQuestions {
  std::vector<int64_t> our_pids;  // the backfill's sessions: the sessions they block are counted
  // Every session of tide's on the server, not counted as the application's (empty: our_pids).
  std::vector<int64_t> tide_pids;
  // Whether to read the server's signals (WAL positions, sessions, archive, slots, oldest
  // transaction, checkpoints); false: only the sessions our_pids block, autovacuum on `table`
  // and the throttle_query.
  bool server = true;
  std::string throttle_query;
  QualifiedName table;            // for autovacuum; empty name: none
  bool autovacuum = false;        // whether an autovacuum worker is on `table`
  bool archive = false;           // WAL files waiting to be archived
  bool slots = false;             // WAL retained by replication slots
  bool xmin = false;              // the oldest transaction holding back vacuum
  bool checkpoints = false;       // checkpoints requested (forced by WAL volume) so far
};

// What a running backfill task is doing now (tide.task_status), for `tidectl status`.
struct TaskLiveStatus {
  double rows_per_second = 0;
  int64_t eta_seconds = -1;
  std::string throttle_reason;  // "" unless throttled
  // Yielding to the application (not throttled): the other sessions in a transaction it yields
  // to, and the rest after each batch in multiples of the batch's duration (0: full speed).
  int64_t yield_sessions = 0;
  double yield_rest = 0;
};

// The raw health readings of a database, for the throttle.
struct HealthReading {
  int64_t current_lsn = 0;             // the primary's WAL position, bytes
  std::optional<int64_t> replay_lsn;   // the slowest standby's replayed position
  int64_t active_sessions = 0;         // other client sessions running a query or in a transaction
  int64_t blocked_by_us = 0;           // sessions waiting on locks held by `our_pids`
  bool throttle_query_true = false;
  bool autovacuum = false;             // an autovacuum worker is on the table
  int64_t archive_backlog = 0;         // WAL files waiting to be archived (.ready)
  int64_t slot_retained_wal = 0;       // bytes the slot retaining most holds back
  std::string slot_name;               // that slot
  bool slot_active = false;
  int64_t xmin_age_ms = 0;             // the oldest transaction holding back vacuum
  int64_t xmin_pid = 0;                // its session (0: a prepared transaction or none)
  int64_t checkpoints_requested = -1;  // pg_stat_bgwriter.checkpoints_req; -1 not read
};

// What one statement of a step did, for the audit log.
struct StatementOutcome {
  std::string sql;
  bool skipped = false;                // its skip_if said the effect was already in place
  bool dropped_invalid_index = false;  // a failed build's leftover was dropped first
  int64_t duration_ms = 0;
  int64_t lock_held_ms = -1;           // DdlStatement::reports_lock_held: what it reported
};

// The interfaces of a database session, one per concern. Each is implemented by a session to one
// target database (PlanDatabase combines them); a caller that needs one concern may take that
// interface alone. Not thread-safe: a session is one connection. Every statement runs with a
// lock_timeout and a statement_timeout. Errors come back as Status values classified by
// ClassifySqlstate (retryable, in doubt, fatal).

// The tide schema: the plans, their cursors and failures, and the live status of their tasks.
class PlanStore {
 public:
  virtual ~PlanStore() = default;

  // Creates or upgrades the tide schema. Safe to call from several daemons at once.
  virtual Status EnsureSchema() = 0;
  virtual Result<std::optional<PlanRecord>> FindPlan(const std::string& name) = 0;
  virtual Result<std::vector<PlanRecord>> ListPlans() = 0;
  virtual Status InsertPlan(const PlanRecord& record) = 0;
  // Stores the cursor. Sets started_at/finished_at as they apply.
  virtual Status SaveCursor(const std::string& plan, const PlanCursor& cursor) = 0;
  // Marks the plan failed at `at` (kept, so that a retry resumes there) with `error`.
  virtual Status SaveFailure(const std::string& plan, const PlanCursor& at,
                             const std::string& error) = 0;
  // Starts an aborted plan again from the beginning: state accepted, its checkpoints cleared.
  virtual Status RestartPlan(const std::string& plan) = 0;
  // The task's live rate, ETA, throttle reason and yield, for `tidectl status`.
  virtual Status SaveTaskStatus(const std::string& plan, int task, const TaskLiveStatus& status) = 0;
  // Why the plan waits, for `tidectl status`; cleared by the next SaveCursor.
  virtual Status SaveWaitReason(const std::string& plan, const std::string& reason) = 0;
};

// The old columns that switches kept for `tidectl revert` (tide.retained_columns).
class RetentionStore {
 public:
  virtual ~RetentionStore() = default;

  // The kept columns of `plan` ("": of every plan).
  virtual Result<std::vector<RetainedColumn>> ListRetained(const std::string& plan) = 0;
};

// Plan leases, so that of several tided on one database exactly one runs a plan. `owner` names
// a daemon instance.
class LeaseStore {
 public:
  virtual ~LeaseStore() = default;

  // Succeeds when the plan has no lease, an expired one, or one of `owner`'s.
  virtual Result<bool> AcquireLease(const std::string& plan, const std::string& owner, Millis ttl) = 0;
  // Extends `owner`'s leases of `plans` and returns those it still holds.
  virtual Result<std::vector<std::string>> RenewLeases(const std::string& owner,
                                                       const std::vector<std::string>& plans,
                                                       Millis ttl) = 0;
  virtual Status ReleaseLease(const std::string& plan, const std::string& owner) = 0;
  // Hands every lease of an earlier process of the same host and spool (owner `prefix` or
  // `prefix:...`) to `owner`, at once rather than when it expires. Only for a daemon that holds
  // the spool's lock, which proves that earlier process gone. Returns the leases taken.
  virtual Result<int64_t> ReclaimLeases(const std::string& prefix, const std::string& owner) = 0;
};

// Operators' pauses, stored so that they outlive a restart.
class PauseStore {
 public:
  virtual ~PauseStore() = default;

  virtual Status SavePause(const Pause& pause) = 0;
  // Removes the pauses of `plan` ("*": the global ones) for `phase` ("": every phase).
  virtual Status DeletePauses(const std::string& plan, const std::string& phase) = 0;
  virtual Result<std::vector<Pause>> ListPauses() = 0;
};

// An operator's live settings of a plan (`tidectl set`), stored so that they outlive a restart.
struct LiveSettingsRecord {
  std::string plan;
  std::string settings;  // as FormatLiveSettings writes them (engine/live_settings.h)
  std::string actor;     // who changed them last
  std::string at;        // RFC 3339
  int64_t version = 0;   // counts the plan's changes: a newer one is a higher number
};
// Stored with the plan, in its own database; gone when the plan starts over.
class LiveSettingsStore {
 public:
  virtual ~LiveSettingsStore() = default;

  // Applies `change` (key=value items, key=default clears: see ParseLiveChange) to the plan's
  // stored live settings in one transaction, when the plan is here and unfinished. Returns the
  // settings now, or nullopt when there is no such plan here (or it has finished).
  virtual Result<std::optional<LiveSettingsRecord>> ChangeLiveSettings(const std::string& plan,
                                                                       const std::string& change,
                                                                       const std::string& actor) = 0;
  // The live settings of the unfinished plans.
  virtual Result<std::vector<LiveSettingsRecord>> ListLiveSettings() = 0;
};

// A session that held a lock one of tide's statements waited for, as pg_stat_activity shows it
// now: what the blocker policy (engine/blockers.h) judges.
struct SessionFacts {
  int64_t pid = 0;
  std::string backend_start;  // with the pid, names the session (pids are reused)
  std::string user;
  std::string application_name;
  std::string client_addr;
  std::string backend_type;  // "client backend", "autovacuum worker", ...
  std::string state;         // "active", "idle in transaction", ...
  std::string state_change;  // when it entered `state`: with the pid, names what it is doing
  bool superuser = false;
  bool protected_role = false;  // its role is one of the roles asked about, or a member of one
  int64_t state_age_ms = 0;        // since its state last changed
  int64_t query_age_ms = -1;       // while active: since its query started; else -1
  int64_t transaction_age_ms = -1;  // -1: not in a transaction
  // Its running query began its transaction: a cancel ends the transaction and its locks too.
  bool query_began_transaction = false;
};
enum class EndOutcome {
  kEnded,        // cancelled or terminated
  kGone,         // the session had ended already (or is another one now)
  kBudgetSpent,  // the plan ended max_per_plan sessions already
};
// Cancels or ends sessions that block tide (the blocker policy), with a count per plan.
class SessionControl {
 public:
  virtual ~SessionControl() = default;

  // The sessions among `pids` that are still there; protected_role when the session's role is
  // in `roles` or a member of one of them.
  virtual Result<std::vector<SessionFacts>> DescribeSessions(const std::vector<int64_t>& pids,
                                                             const std::vector<std::string>& roles) = 0;
  // pg_cancel_backend (or with `terminate`, pg_terminate_backend) of `session` if it is still
  // the one described, in the state described since the same instant (an idle transaction that
  // ended and a new one that began are left alone), counted for `plan` in the same transaction
  // unless `plan` has ended `max_per_plan` already.
  virtual Result<EndOutcome> EndSession(const std::string& plan, const SessionFacts& session,
                                        bool terminate, int64_t max_per_plan) = 0;
  // How many sessions the blocker policy ended for `plan` so far.
  virtual Result<int64_t> SessionsEnded(const std::string& plan) = 0;
};

// What vacuum left to do on a table (pg_stat_user_tables over its leaf partitions).
struct DeadTuples {
  int64_t live = 0;
  int64_t dead = 0;
  bool vacuum_running = false;  // a VACUUM (autovacuum or another session's) works on it now
};
// Plain VACUUM between a backfill's batches, so that later batches reuse the room earlier ones
// freed instead of growing the table.
class TableMaintenance {
 public:
  virtual ~TableMaintenance() = default;

  virtual Result<DeadTuples> ReadDeadTuples(const QualifiedName& table) = 0;
  // VACUUM (never FULL) of `table`, outside a transaction, under `limits`, with `cost_delay` as
  // its vacuum_cost_delay (0: as fast as it can).
  virtual Status Vacuum(const QualifiedName& table, const StatementLimits& limits,
                        Millis cost_delay) = 0;
};

// Runs the statements of plan steps (DDL) and tide's own statements on the target database.
class StepRunner {
 public:
  virtual ~StepRunner() = default;

  // Runs a step's statements in order, each in its own transaction when it allows one (else on
  // the session, with the timeouts set on it), skipping each whose skip_if is true. An index
  // build first drops the invalid leftover of an earlier failed build, and drops its own when it
  // fails. When `after` is set it is stored as the plan's cursor in the last statement's
  // transaction (or right after it). A lock timeout's Status carries the blocking sessions as
  // its detail (a JSON array).
  virtual Result<std::vector<StatementOutcome>> RunStatements(
      const std::string& plan, const std::vector<DdlStatement>& statements,
      const StatementLimits& limits, const std::optional<PlanCursor>& after) = 0;
  // Runs statements that are not a plan step (tide's own triggers), in one transaction.
  virtual Status Execute(const std::string& sql, const StatementLimits& limits) = 0;
};

// Reads the target database's catalog and data for planning: the preflight, a table's key and
// size, and the key values a backfill is split by.
class CatalogReader {
 public:
  virtual ~CatalogReader() = default;

  // The preflight of a plan against this database (see engine/preflight.h). With `dry_run`,
  // the transactional expand statements run in a transaction that is rolled back, and the first
  // batch of each backfill and each gate query are EXPLAINed there.
  virtual Result<PreflightReport> Preflight(const Plan& plan, bool dry_run,
                                            const StatementLimits& limits) = 0;
  virtual Result<TableInfo> DescribeTable(const QualifiedName& table,
                                          const std::vector<std::string>& key) = 0;
  // The smallest and largest value of an integer key column (nullopt for an empty table).
  virtual Result<std::pair<std::optional<int64_t>, std::optional<int64_t>>> IntegerKeyBounds(
      const QualifiedName& table, const std::string& column) = 0;
  // The keys of `percent` of the table's blocks (TABLESAMPLE SYSTEM), as text, in the key's order.
  virtual Result<std::vector<std::vector<std::string>>> SampleKeys(
      const QualifiedName& table, const std::vector<KeyColumn>& key, double percent) = 0;
  // What the switch of alter_column steps (a kSwitch step) must carry over, for each column.
  virtual Result<SwitchFacts> ReadSwitchFacts(const Step& step) = 0;
  // What the catalog says of the objects the lint asks about (plan/lint.h): functions'
  // volatility, tables' sizes, columns' types, constraints' kinds. Unknown objects are left out.
  virtual Result<LintFacts> ReadLintFacts(const LintQuestions& questions) = 0;
};

// Backfill batches and the key ranges (rows of tide.backfill) whose checkpoints they advance.
class BatchRunner {
 public:
  virtual ~BatchRunner() = default;

  // The task's ranges at `pass`, restarting them when the stored pass is older; empty when the
  // task has none yet.
  virtual Result<std::vector<TaskCheckpoint>> LoadRanges(const std::string& plan, int task,
                                                         int pass) = 0;
  // Opens the task's last range again (the one open above), so that a new pass over it fills
  // rows inserted after it finished, from its last key on.
  virtual Status ReopenTail(const std::string& plan, int task) = 0;
  // Stores the task's ranges unless another session already did; returns the stored ones.
  virtual Result<std::vector<TaskCheckpoint>> CreateRanges(const std::string& plan, int task,
                                                           const std::string& table_name,
                                                           int pass,
                                                           const std::vector<RangeBounds>& ranges) = 0;
  // Runs one batch of `from`'s range after `from.last_key` and advances the range's checkpoint
  // in the same transaction.
  virtual Result<BatchResult> RunBatch(const std::string& plan, int task,
                                       const BatchStatement& statement,
                                       const TaskCheckpoint& from, int64_t batch_size,
                                       const StatementLimits& limits) = 0;
  // One sweep batch (see SweepSql): up to `batch_size` rows still pending, wherever they are.
  // `scanned` is the pending rows found; no checkpoint (a row once filled no longer matches).
  virtual Result<BatchResult> RunSweep(const BatchStatement& statement, int64_t batch_size,
                                       const StatementLimits& limits) = 0;
  // The rows still pending that no update can fill (a scan of the table).
  virtual Result<UnfillableRows> CountUnfillable(const BatchStatement& statement,
                                                 const StatementLimits& limits) = 0;
  // One verification batch (see VerifyBatchSql): up to `batch_size` rows after `after` (empty:
  // from the first key) read in key order, each set column compared with its expression
  // computed again. `scanned` is the rows read, `differing` those that differ; `last_key` the
  // last row read (empty: none was left). Writes nothing.
  virtual Result<BatchResult> RunVerify(const BatchStatement& statement,
                                         const std::vector<std::string>& after,
                                         int64_t batch_size, const StatementLimits& limits) = 0;
};

// Read-only probes of the target database: gate queries and the throttle's health readings.
class HealthProbe {
 public:
  virtual ~HealthProbe() = default;

  // Runs a query that returns one number (a gate), read-only and on this session's process
  // alone (no parallel workers: a count over a big table takes one core, not all of them, from
  // the application).
  virtual Result<int64_t> QueryNumber(const std::string& sql, const StatementLimits& limits) = 0;
  // This session's server process id.
  virtual Result<int64_t> BackendPid() = 0;
  // Whether this session reaches its server through a transaction pooler (known once connected):
  // the server behind it is not known, so its health is not shared with other databases'.
  virtual bool ThroughPooler() const { return false; }
  virtual Result<HealthReading> ReadHealth(const HealthQuestions& questions,
                                           const StatementLimits& limits) = 0;
  // The sessions and the throttle_query only.
  Result<HealthReading> ReadHealth(const std::vector<int64_t>& our_pids,
                                   const std::string& throttle_query, const StatementLimits& limits) {
    HealthQuestions q;
    q.our_pids = our_pids;
    q.throttle_query = throttle_query;
    return ReadHealth(q, limits);
  }
};

// One session to one target database: every concern above on one connection.
class PlanDatabase : public PlanStore,
                     public RetentionStore,
                     public LeaseStore,
                     public PauseStore,
                     public LiveSettingsStore,
                     public SessionControl,
                     public TableMaintenance,
                     public StepRunner,
                     public CatalogReader,
                     public BatchRunner,
                     public HealthProbe {
 public:
  ~PlanDatabase() override = default;
};

// Runs an operator's command (backup_command) and waits for it. Thread-safe implementations only.
struct CommandResult {
  int exit_code = 0;   // 128 + the signal when it was killed
  std::string output;  // stdout and stderr, the last 4 KiB
};
class CommandRunner {
 public:
  virtual ~CommandRunner() = default;
  // Runs `command` with /bin/sh -c, with `env` added to the daemon's environment.
  virtual Result<CommandResult> Run(const std::string& command,
                                    const std::vector<std::pair<std::string, std::string>>& env) = 0;
};

class DatabaseConnector {
 public:
  virtual ~DatabaseConnector() = default;
  // A new session to the database the config names `database`.
  virtual Result<std::unique_ptr<PlanDatabase>> Connect(const std::string& database) = 0;
  // The PostgreSQL server `database` is on ("host:port" as its DSN says), so that databases
  // that share one share its connection budget; "" when unknown.
  virtual std::string ServerOf(const std::string& /*database*/) { return ""; }
};

// One line of the audit log. Thread-safe implementations only.
struct AuditEvent {
  std::string event;  // "plan_accepted", "step_finished", ...
  std::string plan;
  std::string phase;
  std::string actor;
  JsonObject details;
};

class AuditSink {
 public:
  virtual ~AuditSink() = default;
  // Appends the event durably. A failure is returned, never thrown.
  virtual Status Write(const AuditEvent& event) = 0;
  // Whether events can be written now (the file is there and open); reopens it if it can.
  virtual Status Check() { return Status::Ok(); }
};

// Thread-safe implementations only.
class Metrics {
 public:
  virtual ~Metrics() = default;
  virtual void SetPlanState(const std::string& plan, const std::string& database,
                            PlanState state) = 0;
  // A backfill task's series carry its plan, its database (the plan's copies on a database
  // group's databases each have their own) and its table.
  virtual void SetBackfillEstimate(const std::string& plan, const std::string& database,
                                   const std::string& table, int64_t rows) = 0;
  virtual void RecordBatch(const std::string& plan, const std::string& database,
                           const std::string& table, int64_t rows, double seconds,
                           const std::string& outcome) = 0;
  // The task's current batch size, workers and ETA (-1: unknown).
  virtual void SetBackfillShape(const std::string& plan, const std::string& database,
                                const std::string& table, int64_t batch_size, int workers,
                                int64_t eta_seconds) = 0;
  // Whether the plan is held back for `reason`, and for how long it was since the last call.
  virtual void SetThrottled(const std::string& plan, const std::string& reason, bool active,
                            double seconds) = 0;
  // The yield of a plan's backfill: other sessions in a transaction, and the rest after each
  // batch in multiples of its duration (both 0 at full speed).
  virtual void SetYield(const std::string& plan, int64_t sessions, double rest) = 0;
  virtual void SetReplicationLag(const std::string& database, double seconds) = 0;
  virtual void PlanFinished(const std::string& database, const std::string& outcome) = 0;
  // The last value of a gate's query (for null_count: the rows still NULL).
  virtual void SetGateRemaining(const std::string& plan, const std::string& gate, int64_t value) = 0;
  // The rows of a task no update can fill, as the last sweep found them.
  virtual void SetUnfillable(const std::string& plan, const std::string& table, int64_t rows) = 0;
  // The switch of alter_column and rename steps ran, holding its locks this long.
  virtual void RecordSwitch(const std::string& /*plan*/, double /*lock_held_seconds*/) {}
  // The plan's live settings (tidectl set): every one in force, by name (durations in seconds);
  // settings not listed are not set.
  virtual void SetLiveSettings(const std::string& /*plan*/,
                               const std::vector<std::pair<std::string, double>>& /*values*/) {}
  // The blocker policy cancelled (`action` "cancel") or ended ("terminate") a session.
  virtual void CountBlockerEnded(const std::string& /*plan*/, const std::string& /*action*/) {}
  // A VACUUM of the table between batches.
  virtual void CountVacuum(const std::string& /*plan*/, const std::string& /*table*/) {}
  // The rows a verification found differing from their expression (so far in this pass).
  virtual void SetVerifyDiffering(const std::string& /*plan*/, const std::string& /*table*/,
                                  int64_t /*rows*/) {}
  // A DDL step that finished, and one that timed out waiting for a lock.
  virtual void RecordDdl(const std::string& plan, const std::string& phase, double seconds) = 0;
  virtual void CountLockTimeout(const std::string& plan) = 0;
  // A retried error, by kind (see RetryKind).
  virtual void CountRetry(const std::string& plan, const std::string& kind) = 0;
  // A batch committed now.
  virtual void MarkProgress(const std::string& plan) = 0;
  virtual void SetPaused(const std::string& plan, bool paused) = 0;
  // Creates the plan's series at zero, so that dashboards and alerts see 0 rather than nothing.
  virtual void PlanStarted(const std::string& plan) = 0;
  // Whether the audit log can be written; while it cannot, tide starts no new work.
  virtual void SetAuditWritable(bool writable) = 0;
  // A rollout over a database group: its databases by state (RolloutLabel), and whether a
  // failure halted it.
  virtual void SetRollout(const std::string& /*plan*/, const std::string& /*group*/,
                          const std::map<std::string, int>& /*databases*/, bool /*halted*/) {}
  // A reading of a server's health signals, shared by the backfills of its databases.
  virtual void CountHealthReading(const std::string& /*server*/) {}
};

class NullMetrics : public Metrics {
 public:
  void SetPlanState(const std::string&, const std::string&, PlanState) override {}
  void SetBackfillEstimate(const std::string&, const std::string&, const std::string&,
                           int64_t) override {}
  void RecordBatch(const std::string&, const std::string&, const std::string&, int64_t, double,
                   const std::string&) override {}
  void SetBackfillShape(const std::string&, const std::string&, const std::string&, int64_t, int,
                        int64_t) override {}
  void SetThrottled(const std::string&, const std::string&, bool, double) override {}
  void SetYield(const std::string&, int64_t, double) override {}
  void SetReplicationLag(const std::string&, double) override {}
  void SetGateRemaining(const std::string&, const std::string&, int64_t) override {}
  void SetUnfillable(const std::string&, const std::string&, int64_t) override {}
  void RecordDdl(const std::string&, const std::string&, double) override {}
  void CountLockTimeout(const std::string&) override {}
  void CountRetry(const std::string&, const std::string&) override {}
  void MarkProgress(const std::string&) override {}
  void SetPaused(const std::string&, bool) override {}
  void PlanStarted(const std::string&) override {}
  void SetAuditWritable(bool) override {}
  void PlanFinished(const std::string&, const std::string&) override {}
};

}  // namespace tide
