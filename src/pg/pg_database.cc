#include "pg/pg_database.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <set>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "engine/key_ranges.h"
#include "engine/sqlstate.h"
#include "engine/backfill.h"
#include "engine/operations.h"

namespace tide {
namespace {

constexpr int kSchemaVersion = 2;  // 2: tide.leases

const char* kSchemaSql = R"SQL(
CREATE SCHEMA IF NOT EXISTS tide;
CREATE TABLE IF NOT EXISTS tide.schema_version (
  version    int PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tide.plans (
  name         text PRIMARY KEY,
  checksum     text NOT NULL,
  file_name    text NOT NULL,
  source       text NOT NULL,
  submitted_by text NOT NULL DEFAULT '',
  state        text NOT NULL,
  step         int NOT NULL DEFAULT 0,
  catch_up     boolean NOT NULL DEFAULT false,
  failed_in    text,
  last_error   text,
  submitted_at timestamptz NOT NULL DEFAULT now(),
  started_at   timestamptz,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
);
CREATE TABLE IF NOT EXISTS tide.backfill (
  plan           text NOT NULL REFERENCES tide.plans (name) ON DELETE CASCADE,
  task           int NOT NULL,
  range          int NOT NULL DEFAULT 0,
  range_lower    text[] NOT NULL DEFAULT '{}',
  range_upper    text[] NOT NULL DEFAULT '{}',
  table_name     text NOT NULL,
  pass           int NOT NULL DEFAULT 1,
  last_key       text[] NOT NULL DEFAULT '{}',
  done           boolean NOT NULL DEFAULT false,
  rows_updated   bigint NOT NULL DEFAULT 0,
  rows_scanned   bigint NOT NULL DEFAULT 0,
  rows_estimated bigint NOT NULL DEFAULT 0,
  batches        bigint NOT NULL DEFAULT 0,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan, task, range)
);
-- Operators' pauses; plan '*' pauses every plan, phase '' every phase.
CREATE TABLE IF NOT EXISTS tide.pauses (
  plan      text NOT NULL,
  phase     text NOT NULL DEFAULT '',
  actor     text NOT NULL,
  via       text NOT NULL,
  paused_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan, phase)
);
-- Which tided runs a plan, until when: several daemons on one database run each plan once.
CREATE TABLE IF NOT EXISTS tide.leases (
  plan       text PRIMARY KEY,
  owner      text NOT NULL,
  expires_at timestamptz NOT NULL
);
-- Live figures of a running task, written by its monitor once a second. Apart from
-- tide.backfill so that the monitor never waits on a row a batch has locked.
CREATE TABLE IF NOT EXISTS tide.task_status (
  plan            text NOT NULL REFERENCES tide.plans (name) ON DELETE CASCADE,
  task            int NOT NULL,
  rows_per_second double precision NOT NULL DEFAULT 0,
  eta_seconds     bigint NOT NULL DEFAULT -1,
  throttle_reason text NOT NULL DEFAULT '',
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan, task)
);
)SQL";

// RFC 3339 in UTC, or '' for NULL.
std::string Ts(const std::string& column) {
  return "COALESCE(to_char(" + column +
         " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')";
}

const std::string kPlanColumns =
    "name, checksum, file_name, source, submitted_by, state, step, catch_up, "
    "COALESCE(failed_in, 'accepted'), COALESCE(last_error, ''), " +
    Ts("submitted_at") + ", " + Ts("started_at") + ", " + Ts("finished_at") + ", " +
    Ts("updated_at");

PlanRecord RecordFromRow(const pqxx::row& r) {
  PlanRecord p;
  p.name = r[0].c_str();
  p.checksum = r[1].c_str();
  p.file_name = r[2].c_str();
  p.source = r[3].c_str();
  p.submitted_by = r[4].c_str();
  p.cursor.state = PlanStateFromString(r[5].c_str()).value_or(PlanState::kFailed);
  p.cursor.step = r[6].as<int>();
  p.cursor.catch_up = r[7].as<bool>();
  p.failed_in = PlanStateFromString(r[8].c_str()).value_or(PlanState::kAccepted);
  p.last_error = r[9].c_str();
  p.submitted_at = r[10].c_str();
  p.started_at = r[11].c_str();
  p.finished_at = r[12].c_str();
  p.updated_at = r[13].c_str();
  return p;
}

std::string LimitsSql(const StatementLimits& l) {
  return SetTimeoutSql("lock_timeout", l.lock_timeout, true) + "; " +
         SetTimeoutSql("statement_timeout", l.statement_timeout, true);
}

// A row's fields as text (a key's values).
std::vector<std::string> RowText(const pqxx::row& row) {
  std::vector<std::string> out;
  for (const auto& f : row) out.push_back(f.c_str());
  return out;
}

// Batch transactions also turn JIT off: a batch statement runs thousands of times, each
// execution would compile its expressions again, and past jit_optimize_above_cost (a large batch
// of an index range scan) the compile alone takes a third of the batch.
std::string BatchLimitsSql(const StatementLimits& l) { return LimitsSql(l) + "; SET LOCAL jit = off"; }

// Stores the cursor inside `txn`. For a failure, `c` is where the plan stood when it failed.
void WriteCursor(pqxx::transaction_base& txn, const std::string& plan, const PlanCursor& c,
                 const std::string& error = "", bool failed = false) {
  txn.exec_params0(
      "UPDATE tide.plans SET "
      "state = CASE WHEN $6 THEN 'failed' ELSE $2 END, "
      "failed_in = CASE WHEN $6 THEN $2 END, step = $3, catch_up = $4, "
      "last_error = CASE WHEN $6 THEN $5 END, "
      "started_at = COALESCE(started_at, now()), "
      "finished_at = CASE WHEN $6 OR $2 IN ('done', 'aborted') THEN now() END, "
      "updated_at = now() WHERE name = $1",
      plan, ToString(c.state), c.step, c.catch_up, error, failed);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

}  // namespace

PgPlanDatabase::PgPlanDatabase(std::string dsn, Defaults defaults)
    : dsn_(std::move(dsn)), defaults_(defaults) {}

PgPlanDatabase::~PgPlanDatabase() = default;

Status PgPlanDatabase::Open() { return Connected(); }

Status PgPlanDatabase::Connected() {
  if (conn_ && conn_->is_open()) return Status::Ok();
  conn_.reset();
  try {
    auto c = std::make_unique<pqxx::connection>(dsn_);
    pqxx::nontransaction n(*c);
    n.exec0("SET application_name = 'tided'; SET standard_conforming_strings = on; " +
            SetTimeoutSql("lock_timeout", defaults_.lock_timeout, false) + "; " +
            SetTimeoutSql("statement_timeout", defaults_.statement_timeout, false));
    backend_pid_ = n.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
    conn_ = std::move(c);
    return Status::Ok();
  } catch (const pqxx::broken_connection& e) {
    return Status::Retryable("cannot connect: " + Trim(e.what()), "08001");
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::FromCurrentException() {
  try {
    throw;
  } catch (const pqxx::in_doubt_error& e) {
    conn_.reset();
    return Status::InDoubt(Trim(e.what()));
  } catch (const pqxx::broken_connection& e) {
    conn_.reset();
    return Status::Retryable("connection lost: " + Trim(e.what()), "08006");
  } catch (const pqxx::sql_error& e) {
    return StatusFromSqlstate(e.sqlstate(), Trim(e.what()));
  } catch (const pqxx::deadlock_detected& e) {
    // libpqxx 6 throws these outside sql_error and without their SQLSTATE.
    return StatusFromSqlstate("40P01", Trim(e.what()));
  } catch (const pqxx::serialization_failure& e) {
    return StatusFromSqlstate("40001", Trim(e.what()));
  } catch (const pqxx::statement_completion_unknown& e) {
    conn_.reset();
    return Status::InDoubt(Trim(e.what()));
  } catch (const std::exception& e) {
    if (conn_ && !conn_->is_open()) conn_.reset();
    return Status::Fatal(Trim(e.what()));
  }
}

#define TIDE_CONNECTED()          \
  do {                            \
    Status s_ = Connected();      \
    if (!s_.ok()) return s_;      \
  } while (0)

Status PgPlanDatabase::EnsureSchema() {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    auto r = w.exec1("SELECT to_regclass('tide.schema_version') IS NOT NULL");
    if (r[0].as<bool>()) {
      auto v = w.exec1("SELECT COALESCE(max(version), 0) FROM tide.schema_version");
      if (v[0].as<int>() >= kSchemaVersion) return Status::Ok();
    }
    // Two daemons starting at once: the second waits here, then finds the schema made.
    w.exec("SELECT pg_advisory_xact_lock(hashtext('tide.schema'))");
    w.exec0(kSchemaSql);
    w.exec_params0("INSERT INTO tide.schema_version (version) VALUES ($1) ON CONFLICT DO NOTHING",
                   kSchemaVersion);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

std::vector<PlanRecord> PgPlanDatabase::SelectPlans(const std::string& where,
                                                    const std::string& name) {
  pqxx::work w(*conn_);
  pqxx::result r = name.empty()
                       ? w.exec("SELECT " + kPlanColumns + " FROM tide.plans " + where)
                       : w.exec_params("SELECT " + kPlanColumns + " FROM tide.plans " + where, name);
  std::vector<PlanRecord> out;
  for (const auto& row : r) out.push_back(RecordFromRow(row));
  return out;
}

Result<std::optional<PlanRecord>> PgPlanDatabase::FindPlan(const std::string& name) {
  TIDE_CONNECTED();
  try {
    auto rows = SelectPlans("WHERE name = $1", name);
    if (rows.empty()) return std::optional<PlanRecord>();
    return std::optional<PlanRecord>(rows.front());
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<PlanRecord>> PgPlanDatabase::ListPlans() {
  TIDE_CONNECTED();
  try {
    return SelectPlans("ORDER BY submitted_at, name", "");
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::InsertPlan(const PlanRecord& p) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec_params0(
        "INSERT INTO tide.plans (name, checksum, file_name, source, submitted_by, state) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        p.name, p.checksum, p.file_name, p.source, p.submitted_by, ToString(p.cursor.state));
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::SaveCursor(const std::string& plan, const PlanCursor& cursor) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    WriteCursor(w, plan, cursor);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::SaveFailure(const std::string& plan, const PlanCursor& at,
                                   const std::string& error) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    WriteCursor(w, plan, at, error, true);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

void PgPlanDatabase::WatchBlockers(const std::function<void()>& work, std::string* out) {
  std::atomic<bool> done{false};
  std::mutex mu;
  std::string seen = "[]";
  const int64_t pid = backend_pid_;
  std::thread watcher([&] {
    try {
      pqxx::connection c(dsn_);
      pqxx::nontransaction n(c);
      n.exec0("SET application_name = 'tided watcher'; SET statement_timeout = '1s'");
      while (!done) {
        auto r = n.exec_params(
            "SELECT a.pid, COALESCE(a.usename, ''), COALESCE(a.application_name, ''), "
            "COALESCE(a.state, ''), COALESCE(EXTRACT(epoch FROM now() - a.xact_start), 0)::bigint, "
            "left(COALESCE(a.query, ''), 200) FROM pg_stat_activity a "
            "WHERE a.pid = ANY (pg_blocking_pids($1))",
            pid);
        if (!r.empty()) {
          std::string json = "[";
          for (const auto& row : r) {
            json += (json.size() > 1 ? "," : "") +
                    JsonObject()
                        .Int("pid", row[0].as<int64_t>())
                        .Str("user", row[1].c_str())
                        .Str("application_name", row[2].c_str())
                        .Str("state", row[3].c_str())
                        .Int("transaction_age_s", row[4].as<int64_t>())
                        .Str("query", row[5].c_str())
                        .ToString();
          }
          std::lock_guard<std::mutex> l(mu);
          seen = json + "]";
        }
        for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } catch (const std::exception&) {
      // Naming the blocker is best effort; the step's own error is what counts.
    }
  });
  auto finish = [&] {
    done = true;
    watcher.join();
    std::lock_guard<std::mutex> l(mu);
    *out = seen;
  };
  try {
    work();
  } catch (...) {
    finish();
    throw;
  }
  finish();
}

Result<std::vector<StatementOutcome>> PgPlanDatabase::RunStatements(
    const std::string& plan, const std::vector<DdlStatement>& statements,
    const StatementLimits& limits, const std::optional<PlanCursor>& after) {
  TIDE_CONNECTED();
  std::string blockers;
  try {
    std::vector<StatementOutcome> out;
    for (size_t i = 0; i < statements.size(); ++i) {
      const bool last = i + 1 == statements.size();
      out.push_back(RunStatement(plan, statements[i], limits, last ? after : std::nullopt,
                                 &blockers));
    }
    if (statements.empty() && after) {
      pqxx::work w(*conn_);
      WriteCursor(w, plan, *after);
      w.commit();
    }
    return out;
  } catch (...) {
    Status s = FromCurrentException();
    if (s.sqlstate() == "55P03") return s.WithDetail(blockers);
    return s;
  }
}

StatementOutcome PgPlanDatabase::RunStatement(const std::string& plan, const DdlStatement& st,
                                              const StatementLimits& limits,
                                              const std::optional<PlanCursor>& after,
                                              std::string* blockers) {
  StatementOutcome out;
  out.sql = st.sql;
  const auto start = std::chrono::steady_clock::now();
  auto finish = [&] {
    out.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - start).count();
  };
  if (st.transactional) {
    pqxx::work w(*conn_);
    w.exec0(LimitsSql(limits));
    out.skipped = !st.skip_if.empty() && w.exec1(st.skip_if)[0].as<bool>();
    if (!out.skipped) WatchBlockers([&] { w.exec(st.sql); }, blockers);
    if (after) WriteCursor(w, plan, *after);
    w.commit();
    return finish(), out;
  }
  {
    pqxx::nontransaction n(*conn_);
    out.skipped = !st.skip_if.empty() && n.exec1(st.skip_if)[0].as<bool>();
  }
  if (!out.skipped) {
    if (!st.invalid_index.empty()) out.dropped_invalid_index = DropInvalidIndex(st.invalid_index, limits);
    try {
      ExecOnSession(st.sql, limits, blockers);
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (...) {
      // A failed CONCURRENTLY build leaves an INVALID index that would make the next
      // `IF NOT EXISTS` skip the build; drop it now (and again before the retry, if this fails).
      if (!st.invalid_index.empty()) {
        try {
          DropInvalidIndex(st.invalid_index, limits);
        } catch (const std::exception&) {
        }
      }
      throw;
    }
  }
  if (after) {
    pqxx::work w(*conn_);
    WriteCursor(w, plan, *after);
    w.commit();
  }
  return finish(), out;
}

bool PgPlanDatabase::DropInvalidIndex(const std::string& index, const StatementLimits& limits) {
  {
    pqxx::nontransaction n(*conn_);
    if (!n.exec1(IndexIsInvalidSql(index))[0].as<bool>()) return false;
  }
  std::string ignored;
  ExecOnSession(DropIndexSql(index), limits, &ignored);
  return true;
}

void PgPlanDatabase::ExecOnSession(const std::string& sql, const StatementLimits& limits,
                                   std::string* blockers) {
  const std::string restore =
      SetTimeoutSql("lock_timeout", defaults_.lock_timeout, false) + "; " +
      SetTimeoutSql("statement_timeout", defaults_.statement_timeout, false);
  pqxx::nontransaction n(*conn_);
  n.exec0(SetTimeoutSql("lock_timeout", limits.lock_timeout, false) + "; " +
          SetTimeoutSql("statement_timeout", limits.statement_timeout, false));
  try {
    WatchBlockers([&] { n.exec(sql); }, blockers);
  } catch (const pqxx::broken_connection&) {
    throw;
  } catch (...) {
    n.exec0(restore);
    throw;
  }
  n.exec0(restore);
}

Result<bool> PgPlanDatabase::AcquireLease(const std::string& plan, const std::string& owner,
                                          Millis ttl) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    auto r = w.exec_params(
        "INSERT INTO tide.leases AS l (plan, owner, expires_at) "
        "VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond') "
        "ON CONFLICT (plan) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at "
        "WHERE l.expires_at < clock_timestamp() OR l.owner = EXCLUDED.owner RETURNING owner",
        plan, owner, static_cast<int64_t>(ttl.count()));
    w.commit();
    return !r.empty();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<std::string>> PgPlanDatabase::RenewLeases(const std::string& owner,
                                                             const std::vector<std::string>& plans,
                                                             Millis ttl) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    auto r = w.exec_params(
        "UPDATE tide.leases SET expires_at = clock_timestamp() + $3 * interval '1 millisecond' "
        "WHERE owner = $1 AND plan = ANY ($2::text[]) RETURNING plan",
        owner, TextArrayLiteral(plans), static_cast<int64_t>(ttl.count()));
    w.commit();
    std::vector<std::string> held;
    for (const auto& row : r) held.push_back(row[0].c_str());
    return held;
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::ReleaseLease(const std::string& plan, const std::string& owner) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec_params0("DELETE FROM tide.leases WHERE plan = $1 AND owner = $2", plan, owner);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::RestartPlan(const std::string& plan) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec_params0("DELETE FROM tide.backfill WHERE plan = $1", plan);
    w.exec_params0("DELETE FROM tide.task_status WHERE plan = $1", plan);
    w.exec_params0(
        "UPDATE tide.plans SET state = 'accepted', step = 0, catch_up = false, failed_in = NULL, "
        "last_error = NULL, started_at = NULL, finished_at = NULL, submitted_at = now(), "
        "updated_at = now() WHERE name = $1",
        plan);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

namespace {

// The table, its key (the plan's `key`, else the primary key) and its size estimate, read in
// `w`. *error names a key column that does not exist.
TableInfo DescribeTableIn(pqxx::dbtransaction& w, const QualifiedName& table,
                          const std::vector<std::string>& key, std::string* error) {
  TableInfo info;
  auto oid = w.exec_params1("SELECT to_regclass($1)::oid", QuoteName(table));
  if (oid[0].is_null()) return info;
  info.exists = true;
  const auto relid = oid[0].as<int64_t>();
  // The leaf partitions of a partitioned table (its own pg_class row holds no estimate), else
  // the table itself.
  std::vector<StoredSize> parts;
  for (const auto& row : w.exec_params(
           "SELECT reltuples, pg_relation_size(oid) FROM pg_class WHERE oid IN "
           "(SELECT relid FROM pg_partition_tree($1::regclass) WHERE isleaf) "
           "OR (oid = $1 AND relkind <> 'p')",
           relid)) {
    parts.push_back(StoredSize{row[0].as<double>(), row[1].as<int64_t>()});
  }
  info.estimated_rows = EstimateRows(parts);
  auto pk = w.exec_params(
      "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_index i "
      "CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) "
      "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
      "WHERE i.indrelid = $1 AND i.indisprimary ORDER BY k.ord",
      relid);
  info.has_primary_key = !pk.empty();
  if (key.empty()) {
    for (const auto& row : pk) info.key.push_back({row[0].c_str(), row[1].c_str()});
    return info;
  }
  for (const auto& column : key) {
    auto t = w.exec_params(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped",
        relid, column);
    if (t.empty()) {
      *error = "key column `" + column + "` does not exist in `" + table.Display() + "`";
      return info;
    }
    info.key.push_back({column, t[0][0].c_str()});
  }
  return info;
}

std::set<std::string> ColumnsOf(pqxx::dbtransaction& w, const QualifiedName& table) {
  std::set<std::string> out;
  auto r = w.exec_params(
      "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 "
      "AND NOT attisdropped",
      QuoteName(table));
  for (const auto& row : r) out.insert(row[0].c_str());
  return out;
}

// What the preflight needs to know about one table.
TableFacts ReadTableFacts(pqxx::dbtransaction& w, const TableQuery& q) {
  TableFacts f;
  const TableInfo info = DescribeTableIn(w, q.table, q.key, &f.key_error);
  f.exists = info.exists;
  if (!f.exists) return f;
  f.key = info.key;
  f.estimated_rows = info.estimated_rows;
  f.total_bytes = w.exec_params1("SELECT pg_total_relation_size(to_regclass($1))",
                                 QuoteName(q.table))[0].as<int64_t>();
  f.columns = ColumnsOf(w, q.table);
  if (q.needs_rows) f.has_rows = !w.exec("SELECT 1 FROM " + QuoteName(q.table) + " LIMIT 1").empty();
  return f;
}

// EXPLAIN ANALYZE of the task's first batch, inside a subtransaction that is rolled back: the
// plan PostgreSQL picks and, for a full batch, the rows per second it reached.
void ExplainFirstBatch(pqxx::dbtransaction& w, const BackfillTask& task,
                       const std::vector<KeyColumn>& key, int64_t batch_size, PreflightTask* t,
                       std::vector<std::string>* problems) {
  const BatchStatement b = MakeBatchStatement(task, key);
  try {
    pqxx::subtransaction sub(w);
    sub.exec0("SET LOCAL jit = off");  // as the batches run
    auto bound = sub.exec_params(BatchBoundSql(b, false, false, false),
                                 pqxx::prepare::make_dynamic_params(
                                     std::vector<std::string>{std::to_string(batch_size - 1)}));
    const bool full = !bound.empty();
    if (!full) bound = sub.exec(BatchBoundSql(b, false, false, true));
    if (bound.empty()) {
      t->explain = "(the table is empty)";
      return;
    }
    const std::vector<std::string> last = RowText(bound[0]);
    const auto start = std::chrono::steady_clock::now();
    auto rows = sub.exec_params("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " +
                                    BatchUpdateSql(b, false),
                                pqxx::prepare::make_dynamic_params(last));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const auto& row : rows) t->explain += std::string(row[0].c_str()) + "\n";
    t->explain = Trim(t->explain);
    // A short batch (a small table) says little about the rate.
    if (full && seconds > 0) t->measured_rows_per_second = batch_size / seconds;
    sub.abort();
  } catch (const pqxx::sql_error& e) {
    problems->push_back("backfill " + task.table.Display() + ": the first batch fails: SQLSTATE " +
                        e.sqlstate() + ": " + Trim(e.what()));
  }
}

}  // namespace

Result<TableInfo> PgPlanDatabase::DescribeTable(const QualifiedName& table,
                                                const std::vector<std::string>& key) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    std::string error;
    TableInfo info = DescribeTableIn(w, table, key, &error);
    if (!error.empty()) return Status::Fatal(error);
    return info;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<PreflightReport> PgPlanDatabase::Preflight(const Plan& plan, bool dry_run,
                                                  const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec0(LimitsSql(limits));
    CatalogFacts facts;
    for (const auto& q : TablesToDescribe(plan)) facts[q.table.Display()] = ReadTableFacts(w, q);
    PreflightReport dry;  // what the dry run found: notes, problems, plans, each first batch
    dry.tasks.resize(plan.backfill.size());
    if (dry_run) DryRun(w, plan, facts, &dry);
    std::vector<double> rates;
    for (const auto& t : dry.tasks) rates.push_back(t.measured_rows_per_second);
    PreflightReport r = AssessPlan(plan, facts, defaults_.max_rows_per_second, rates);
    r.dry_run = dry_run;
    for (size_t i = 0; i < r.tasks.size(); ++i) r.tasks[i].explain = dry.tasks[i].explain;
    r.notes = std::move(dry.notes);
    r.gate_explains = std::move(dry.gate_explains);
    r.problems.insert(r.problems.end(), dry.problems.begin(), dry.problems.end());
    w.abort();  // a preflight never changes anything
    return r;
  } catch (...) {
    return FromCurrentException();
  }
}

// Runs the transactional expand statements inside `w` (rolled back by the caller), then
// EXPLAINs the first batch of each task (ANALYZE: it runs, and is rolled back too, which gives
// the rate) and each gate. Findings go into *dry (its tasks sized to the plan's).
void PgPlanDatabase::DryRun(pqxx::dbtransaction& w, const Plan& plan, const CatalogFacts& facts,
                            PreflightReport* dry) {
  for (size_t i = 0; i < plan.expand.size(); ++i) {
    for (const auto& st : CompileStep(plan.expand[i])) {
      const std::string what = "expand step " + std::to_string(i + 1);
      if (!st.transactional) {
        dry->notes.push_back(what + ": not tried (runs outside a transaction): " + st.sql);
        continue;
      }
      try {
        pqxx::subtransaction sub(w);
        sub.exec(st.sql);
        sub.commit();
        dry->notes.push_back(what + ": ran, then rolled back: " + st.sql);
      } catch (const pqxx::sql_error& e) {
        dry->problems.push_back(what + " fails: SQLSTATE " + e.sqlstate() + ": " + Trim(e.what()));
      }
    }
  }
  for (size_t i = 0; i < plan.backfill.size(); ++i) {
    const BackfillTask& task = plan.backfill[i];
    std::vector<KeyColumn> key;
    auto it = facts.find(task.table.Display());
    if (it != facts.end()) key = it->second.key;
    if (key.empty()) {
      // A table the dry run's expand created only now.
      std::string error;
      key = DescribeTableIn(w, task.table, task.key, &error).key;
    }
    if (key.empty()) continue;
    ExplainFirstBatch(w, task, key, BatchSizeFor(plan, task, defaults_), &dry->tasks[i],
                      &dry->problems);
  }
  for (size_t i = 0; i < plan.gates.size(); ++i) {
    const Gate& g = plan.gates[i];
    const std::string sql = g.kind == Gate::Kind::kNullCount ? NullCountSql(g.table, g.column) : g.sql;
    try {
      pqxx::subtransaction sub(w);
      std::string text;
      for (const auto& row : sub.exec("EXPLAIN " + sql)) text += std::string(row[0].c_str()) + "\n";
      dry->gate_explains.push_back(Trim(text));
      sub.commit();
    } catch (const pqxx::sql_error& e) {
      dry->problems.push_back("gate " + std::to_string(i + 1) + " fails: SQLSTATE " + e.sqlstate() +
                              ": " + Trim(e.what()));
    }
  }
}

namespace {

const char* kRangeColumns =
    "range, range_lower, range_upper, pass, done, rows_updated, rows_scanned, batches, "
    "rows_estimated, last_key";

std::vector<std::string> TextArray(const pqxx::field& f) {
  std::vector<std::string> out;
  auto parser = f.as_array();
  for (auto item = parser.get_next(); item.first != pqxx::array_parser::done;
       item = parser.get_next()) {
    if (item.first == pqxx::array_parser::string_value) out.push_back(item.second);
  }
  return out;
}

std::vector<TaskCheckpoint> RangesFromRows(const pqxx::result& r) {
  std::vector<TaskCheckpoint> out;
  for (const auto& row : r) {
    TaskCheckpoint cp;
    cp.range = row[0].as<int>();
    cp.lower = TextArray(row[1]);
    cp.upper = TextArray(row[2]);
    cp.pass = row[3].as<int>();
    cp.done = row[4].as<bool>();
    cp.rows_updated = row[5].as<int64_t>();
    cp.rows_scanned = row[6].as<int64_t>();
    cp.batches = row[7].as<int64_t>();
    cp.rows_estimated = row[8].as<int64_t>();
    cp.last_key = TextArray(row[9]);
    out.push_back(cp);
  }
  return out;
}

std::vector<TaskCheckpoint> SelectRanges(pqxx::dbtransaction& w, const std::string& plan,
                                         int task) {
  return RangesFromRows(w.exec_params(std::string("SELECT ") + kRangeColumns +
                                          " FROM tide.backfill WHERE plan = $1 AND task = $2 "
                                          "ORDER BY range",
                                      plan, task));
}

}  // namespace

Result<std::pair<std::optional<int64_t>, std::optional<int64_t>>> PgPlanDatabase::IntegerKeyBounds(
    const QualifiedName& table, const std::string& column) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    const std::string c = QuoteIdent(column);
    auto r = w.exec1("SELECT min(" + c + ")::bigint, max(" + c + ")::bigint FROM " + QuoteName(table));
    std::pair<std::optional<int64_t>, std::optional<int64_t>> out;
    if (!r[0].is_null()) out.first = r[0].as<int64_t>();
    if (!r[1].is_null()) out.second = r[1].as<int64_t>();
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<std::vector<std::string>>> PgPlanDatabase::SampleKeys(
    const QualifiedName& table, const std::vector<KeyColumn>& key, double percent) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    std::vector<std::vector<std::string>> out;
    for (const auto& row : w.exec_params(SampleKeysSql(table, key), percent)) {
      out.push_back(RowText(row));
    }
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<TaskCheckpoint>> PgPlanDatabase::LoadRanges(const std::string& plan, int task,
                                                               int pass) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    // A new pass starts every range from its first key again; the row counters keep adding up.
    w.exec_params0(
        "UPDATE tide.backfill SET pass = $3, last_key = '{}', done = false, updated_at = now() "
        "WHERE plan = $1 AND task = $2 AND pass < $3",
        plan, task, pass);
    auto ranges = SelectRanges(w, plan, task);
    w.commit();
    return ranges;
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::ReopenTail(const std::string& plan, int task) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec_params0(
        "UPDATE tide.backfill SET done = false, updated_at = now() WHERE plan = $1 AND task = $2 "
        "AND range = (SELECT max(range) FROM tide.backfill WHERE plan = $1 AND task = $2)",
        plan, task);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<TaskCheckpoint>> PgPlanDatabase::CreateRanges(
    const std::string& plan, int task, const std::string& table_name, int pass,
    const std::vector<std::pair<std::vector<std::string>, std::vector<std::string>>>& bounds,
    int64_t rows_estimated) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    // One task's ranges are created together or not at all.
    w.exec_params("SELECT pg_advisory_xact_lock(hashtext($1), $2)", plan, task);
    if (SelectRanges(w, plan, task).empty()) {
      const int64_t share = rows_estimated / static_cast<int64_t>(std::max<size_t>(1, bounds.size()));
      for (size_t i = 0; i < bounds.size(); ++i) {
        w.exec_params0(
            "INSERT INTO tide.backfill (plan, task, range, range_lower, range_upper, table_name, "
            "pass, rows_estimated) VALUES ($1, $2, $3, $4::text[], $5::text[], $6, $7, $8)",
            plan, task, static_cast<int>(i), TextArrayLiteral(bounds[i].first),
            TextArrayLiteral(bounds[i].second), table_name, pass, share);
      }
    }
    auto ranges = SelectRanges(w, plan, task);
    w.commit();
    return ranges;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<int64_t> PgPlanDatabase::BackendPid() {
  TIDE_CONNECTED();
  try {
    pqxx::nontransaction n(*conn_);
    return n.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<HealthReading> PgPlanDatabase::ReadHealth(const std::vector<int64_t>& our_pids,
                                                 const std::string& throttle_query,
                                                 const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec0("SET TRANSACTION READ ONLY");
    w.exec0(LimitsSql(limits));
    std::vector<std::string> pids;
    for (int64_t p : our_pids) pids.push_back(std::to_string(p));
    auto r = w.exec_params1(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
        "(SELECT min(pg_wal_lsn_diff(replay_lsn, '0/0'))::bigint FROM pg_stat_replication "
        " WHERE replay_lsn IS NOT NULL), "
        "(SELECT count(*) FROM pg_stat_activity WHERE state IN ('active', 'idle in transaction') "
        " AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
        " AND pid <> ALL ($1::int[])), "
        "(SELECT count(*) FROM pg_stat_activity WHERE pg_blocking_pids(pid) && $1::int[])",
        TextArrayLiteral(pids));
    HealthReading h;
    h.current_lsn = r[0].as<int64_t>();
    if (!r[1].is_null()) h.replay_lsn = r[1].as<int64_t>();
    h.active_sessions = r[2].as<int64_t>();
    h.blocked_by_us = r[3].as<int64_t>();
    if (!throttle_query.empty()) {
      auto t = w.exec(throttle_query);
      h.throttle_query_true = !t.empty() && !t[0][0].is_null() && t[0][0].as<bool>();
    }
    return h;
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::SaveTaskStatus(const std::string& plan, int task, double rows_per_second,
                                      int64_t eta_seconds, const std::string& throttle_reason) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec_params0(
        "INSERT INTO tide.task_status (plan, task, rows_per_second, eta_seconds, throttle_reason) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (plan, task) DO UPDATE SET "
        "rows_per_second = excluded.rows_per_second, eta_seconds = excluded.eta_seconds, "
        "throttle_reason = excluded.throttle_reason, updated_at = now()",
        plan, task, rows_per_second, eta_seconds, throttle_reason);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<BatchResult> PgPlanDatabase::RunBatch(const std::string& plan, int task,
                                             const BatchStatement& statement,
                                             const TaskCheckpoint& from, int64_t batch_size,
                                             const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec0(BatchLimitsSql(limits));
    const std::vector<std::string>& lower = from.last_key.empty() ? from.lower : from.last_key;
    const bool has_lower = !lower.empty(), has_upper = !from.upper.empty();
    std::vector<std::string> params = lower;
    params.insert(params.end(), from.upper.begin(), from.upper.end());
    BatchResult b;
    std::vector<std::string> bound_params = params;
    bound_params.push_back(std::to_string(batch_size - 1));
    auto full = w.exec_params(BatchBoundSql(statement, has_lower, has_upper, false),
                              pqxx::prepare::make_dynamic_params(bound_params));
    if (!full.empty()) {
      b.last_key = RowText(full[0]);
      b.scanned = batch_size;
    } else {
      auto last = w.exec_params(BatchBoundSql(statement, has_lower, has_upper, true),
                                pqxx::prepare::make_dynamic_params(params));
      if (!last.empty()) b.last_key = RowText(last[0]);
    }
    if (!b.last_key.empty()) {
      std::vector<std::string> span = lower;
      span.insert(span.end(), b.last_key.begin(), b.last_key.end());
      auto updated = w.exec_params(BatchUpdateSql(statement, has_lower),
                                   pqxx::prepare::make_dynamic_params(span));
      b.updated = updated.affected_rows();
      if (full.empty()) {
        b.scanned = w.exec_params1(BatchCountSql(statement, has_lower),
                                   pqxx::prepare::make_dynamic_params(span))[0]
                        .as<int64_t>();
      }
    }
    const TaskCheckpoint next = AdvanceCheckpoint(from, b, batch_size);
    // Guarded by the batch count this batch started from: if anything else moved the
    // checkpoint, this batch rolls back instead of doing the same rows twice.
    auto moved = w.exec_params(
        "UPDATE tide.backfill SET last_key = $3::text[], done = $4, rows_updated = $5, "
        "rows_scanned = $6, batches = $7, updated_at = now() "
        "WHERE plan = $1 AND task = $2 AND range = $10 AND batches = $8 AND pass = $9",
        plan, task, TextArrayLiteral(next.last_key), next.done, next.rows_updated,
        next.rows_scanned, next.batches, from.batches, from.pass, from.range);
    if (moved.affected_rows() != 1) {
      return Status::Retryable("the checkpoint of task " + std::to_string(task) + " range " +
                               std::to_string(from.range) + " moved during the batch; re-reading it");
    }
    w.commit();
    return b;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<BatchResult> PgPlanDatabase::RunSweep(const BatchStatement& statement, int64_t batch_size,
                                             const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec0(BatchLimitsSql(limits));
    auto r = w.exec_params1(SweepSql(statement), batch_size);
    BatchResult b;
    b.scanned = r[0].as<int64_t>();
    b.updated = r[1].as<int64_t>();
    w.commit();
    return b;
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::Execute(const std::string& sql, const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec0(LimitsSql(limits));
    w.exec(sql);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::SavePause(const Pause& p) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec_params0(
        "INSERT INTO tide.pauses (plan, phase, actor, via) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (plan, phase) DO UPDATE SET actor = excluded.actor, via = excluded.via, "
        "paused_at = now()",
        p.plan, p.phase, p.actor, p.via);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::DeletePauses(const std::string& plan, const std::string& phase) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec_params0("DELETE FROM tide.pauses WHERE plan = $1 AND ($2 = '' OR phase = $2)", plan,
                   phase);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<Pause>> PgPlanDatabase::ListPauses() {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    auto r = w.exec("SELECT plan, phase, actor, via, " + Ts("paused_at") +
                    " FROM tide.pauses ORDER BY paused_at");
    std::vector<Pause> out;
    for (const auto& row : r) {
      out.push_back(Pause{row[0].c_str(), row[1].c_str(), row[2].c_str(), row[3].c_str(),
                          row[4].c_str()});
    }
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<int64_t> PgPlanDatabase::QueryNumber(const std::string& sql, const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    w.exec0("SET TRANSACTION READ ONLY");
    w.exec0(LimitsSql(limits));
    auto r = w.exec(sql);
    if (r.size() != 1 || r.columns() != 1 || r[0][0].is_null()) {
      return Status::Fatal("the query must return one number; it returned " +
                           std::to_string(r.size()) + " rows of " + std::to_string(r.columns()) +
                           " columns");
    }
    int64_t v = 0;
    if (!r[0][0].to(v)) return Status::Fatal("the query's result is not a whole number");
    return v;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<TaskProgress>> PgPlanDatabase::ListTaskProgress() {
  TIDE_CONNECTED();
  try {
    pqxx::work w(*conn_);
    auto r = w.exec("SELECT b.plan, b.task, min(table_name), max(pass), bool_and(done), "
                    "sum(rows_updated)::bigint, sum(rows_scanned)::bigint, "
                    "sum(rows_estimated)::bigint, sum(batches)::bigint, " +
                    Ts("max(b.updated_at)") +
                    ", count(*)::int, COALESCE(max(s.rows_per_second), 0), "
                    "COALESCE(max(s.eta_seconds), -1), COALESCE(max(s.throttle_reason), '') "
                    "FROM tide.backfill b LEFT JOIN tide.task_status s "
                    "ON s.plan = b.plan AND s.task = b.task GROUP BY b.plan, b.task "
                    "ORDER BY b.plan, b.task");
    std::vector<TaskProgress> out;
    for (const auto& row : r) {
      TaskProgress t;
      t.plan = row[0].c_str();
      t.task = row[1].as<int>();
      t.table = row[2].c_str();
      t.pass = row[3].as<int>();
      t.done = row[4].as<bool>();
      t.rows_updated = row[5].as<int64_t>();
      t.rows_scanned = row[6].as<int64_t>();
      t.rows_estimated = row[7].as<int64_t>();
      t.batches = row[8].as<int64_t>();
      t.updated_at = row[9].c_str();
      t.ranges = row[10].as<int>();
      t.rows_per_second = row[11].as<double>();
      t.eta_seconds = row[12].as<int64_t>();
      t.throttle_reason = row[13].c_str();
      out.push_back(t);
    }
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::string> ResolveDsn(const std::string& name, const DatabaseConfig& c) {
  if (!c.dsn.empty()) return c.dsn;
  if (!c.dsn_env.empty()) {
    const char* v = std::getenv(c.dsn_env.c_str());
    if (!v || !*v) {
      return Status::Invalid("database `" + name + "`: environment variable " + c.dsn_env +
                             " is not set");
    }
    return std::string(v);
  }
  struct stat st;
  if (::stat(c.dsn_file.c_str(), &st) != 0) {
    return Status::Invalid("database `" + name + "`: cannot read dsn_file " + c.dsn_file);
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    return Status::Invalid("database `" + name + "`: dsn_file " + c.dsn_file +
                           " is readable by group or others; run `chmod 600 " + c.dsn_file + "`");
  }
  std::ifstream in(c.dsn_file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string dsn = Trim(ss.str());
  if (dsn.empty()) return Status::Invalid("database `" + name + "`: dsn_file " + c.dsn_file + " is empty");
  return dsn;
}

Result<std::unique_ptr<PgPlanDatabase>> PgConnector::ConnectPg(const std::string& database) {
  auto it = databases_.find(database);
  if (it == databases_.end()) return Status::Invalid("database `" + database + "` is not in the config");
  auto dsn = ResolveDsn(database, it->second);
  if (!dsn.ok()) return dsn.status();
  auto db = std::make_unique<PgPlanDatabase>(*dsn, defaults_);
  Status s = db->Open();
  if (!s.ok()) return s;
  return db;
}

Result<std::unique_ptr<PlanDatabase>> PgConnector::Connect(const std::string& database) {
  auto db = ConnectPg(database);
  if (!db.ok()) return db.status();
  return std::unique_ptr<PlanDatabase>(std::move(db).value());
}

}  // namespace tide
