// PgPlanDatabase's tide schema: the plans and their cursors, leases, pauses and task status.
#include <pqxx/pqxx>

#include "engine/live_settings.h"
#include "engine/sql_text.h"
#include "pg/pg_database.h"
#include "pg/pg_internal.h"

namespace tide {

using pg_internal::LimitsSql;
using pg_internal::WriteCursor;

namespace {

// 2: tide.leases; 3: tide.plans.waiting_reason; 4: tide.retained_columns; 5: tide.backfill.unit;
// 6: tide.live_settings, tide.plans.sessions_ended; 7: tide.task_status.yield_sessions, yield_rest
constexpr int kSchemaVersion = 7;

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
ALTER TABLE tide.plans ADD COLUMN IF NOT EXISTS waiting_reason text NOT NULL DEFAULT '';
-- What a backfill range spans: 'key' (keys above range_lower up to range_upper) or 'page'
-- (heap pages from range_lower up to, not including, range_upper; '{}': the table's end).
ALTER TABLE tide.backfill ADD COLUMN IF NOT EXISTS unit text NOT NULL DEFAULT 'key';
-- The old columns a switch kept for `tidectl revert`, until `tidectl finalize` or retain_until.
-- Written by the switch's own transaction; a plan of renames only has one row with no column.
CREATE TABLE IF NOT EXISTS tide.retained_columns (
  plan          text NOT NULL,
  table_name    text NOT NULL,
  table_display text NOT NULL,
  column_name   text NOT NULL,
  kept_column   text NOT NULL,
  trigger_name  text NOT NULL,
  old_type      text NOT NULL,
  old_default   text NOT NULL,
  old_not_null  boolean NOT NULL,
  retain_until  timestamptz,
  kept_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (plan, table_name, column_name)
);
-- Operators' live settings of a plan (tidectl set), laid over the plan's own.
CREATE TABLE IF NOT EXISTS tide.live_settings (
  plan       text PRIMARY KEY,
  settings   text NOT NULL,
  changed_by text NOT NULL,
  changed_at timestamptz NOT NULL DEFAULT now(),
  version    bigint NOT NULL DEFAULT 1
);
-- Sessions the blocker policy cancelled or ended for the plan (bounded by max_per_plan).
ALTER TABLE tide.plans ADD COLUMN IF NOT EXISTS sessions_ended int NOT NULL DEFAULT 0;
-- A backfill yielding to the application: the sessions it yields to, and its rest after each
-- batch in multiples of the batch's duration.
ALTER TABLE tide.task_status ADD COLUMN IF NOT EXISTS yield_sessions int NOT NULL DEFAULT 0;
ALTER TABLE tide.task_status ADD COLUMN IF NOT EXISTS yield_rest double precision NOT NULL DEFAULT 0;
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
    Ts("updated_at") + ", waiting_reason";

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
  p.waiting_reason = r[14].c_str();
  return p;
}

}  // namespace

Status PgPlanDatabase::EnsureSchema() {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    auto r = w.exec1("SELECT to_regclass('tide.schema_version') IS NOT NULL");
    if (r[0].as<bool>()) {
      auto v = w.exec1("SELECT COALESCE(max(version), 0) FROM tide.schema_version");
      if (v[0].as<int>() >= kSchemaVersion) return Status::Ok();
    }
    // Two daemons starting at once: the second waits here, then finds the schema made. An
    // upgrade's ALTER TABLE waits at most lock_timeout behind an older tided's batch.
    w.exec0(LimitsSql(StatementLimits{defaults_.lock_timeout, defaults_.statement_timeout}));
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
  pg_internal::Work w(*conn_, TxLocals());
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
    pg_internal::Work w(*conn_, TxLocals());
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

Result<std::vector<std::pair<std::string, std::string>>> PgPlanDatabase::AppliedMigrations(std::string* source) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    std::vector<std::pair<std::string, std::string>> out;
    source->clear();
    if (!w.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL")[0].as<bool>() &&
        !w.exec1("SELECT to_regclass('_prisma_migrations') IS NOT NULL")[0].as<bool>()) {
      return out;
    }
    const bool prisma = !w.exec1("SELECT to_regclass('schema_migrations') IS NOT NULL")[0].as<bool>();
    *source = prisma ? "_prisma_migrations" : "schema_migrations";
    // golang-migrate keeps one row: the last version applied, and whether it failed half-way.
    if (!prisma && w.exec1("SELECT count(*) FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass "
                           "AND attname = 'dirty' AND NOT attisdropped")[0].as<int>() > 0) {
      *source = "schema_migrations (golang-migrate)";
      for (const auto& r : w.exec("SELECT version::text, dirty::text FROM schema_migrations")) {
        out.emplace_back(r[0].c_str(), std::string(r[1].c_str()) == "true" ? "dirty" : "");
      }
      w.abort();
      return out;
    }
    const auto rows = w.exec(
        prisma ? "SELECT migration_name, COALESCE(finished_at::text, '') FROM _prisma_migrations WHERE "
                 "finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY 1"
               : "SELECT version::text, COALESCE((to_jsonb(m) ->> 'applied_at'), '') FROM schema_migrations m "
                 "ORDER BY 1");
    for (const auto& r : rows) out.emplace_back(r[0].c_str(), r[1].c_str());
    w.abort();
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<bool> PgPlanDatabase::RecordAppliedBefore(const PlanRecord& p, const std::string& applied_at) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    const auto r = w.exec_params(
        "INSERT INTO tide.plans (name, checksum, file_name, source, submitted_by, state, started_at, finished_at) "
        "VALUES ($1, $2, $3, $4, $5, 'done', COALESCE(NULLIF($6, '')::timestamptz, now()), "
        "COALESCE(NULLIF($6, '')::timestamptz, now())) ON CONFLICT (name) DO NOTHING RETURNING 1",
        p.name, p.checksum, p.file_name, p.source, p.submitted_by, applied_at);
    w.commit();
    return !r.empty();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::SaveCursor(const std::string& plan, const PlanCursor& cursor) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    WriteCursor(w, lease_owner_, plan, cursor);
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
    pg_internal::Work w(*conn_, TxLocals());
    WriteCursor(w, lease_owner_, plan, at, error, true);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::RestartPlan(const std::string& plan) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec_params0("DELETE FROM tide.backfill WHERE plan = $1", plan);
    w.exec_params0("DELETE FROM tide.task_status WHERE plan = $1", plan);
    // The plan starts over: with its own settings, and its own budget of ended sessions.
    w.exec_params0("DELETE FROM tide.live_settings WHERE plan = $1", plan);
    w.exec_params0(
        "UPDATE tide.plans SET state = 'accepted', step = 0, catch_up = false, failed_in = NULL, "
        "sessions_ended = 0, "
        "last_error = NULL, started_at = NULL, finished_at = NULL, submitted_at = now(), "
        "updated_at = now() WHERE name = $1",
        plan);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::SaveTaskStatus(const std::string& plan, int task, const TaskLiveStatus& s) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec_params0(
        "INSERT INTO tide.task_status (plan, task, rows_per_second, eta_seconds, throttle_reason, "
        "yield_sessions, yield_rest) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (plan, task) DO UPDATE SET "
        "rows_per_second = excluded.rows_per_second, eta_seconds = excluded.eta_seconds, "
        "throttle_reason = excluded.throttle_reason, yield_sessions = excluded.yield_sessions, "
        "yield_rest = excluded.yield_rest, updated_at = now()",
        plan, task, s.rows_per_second, s.eta_seconds, s.throttle_reason, s.yield_sessions,
        s.yield_rest);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<TaskProgress>> PgPlanDatabase::ListTaskProgress() {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    auto r = w.exec("SELECT b.plan, b.task, min(table_name), max(pass), bool_and(done), "
                    "sum(rows_updated)::bigint, sum(rows_scanned)::bigint, "
                    "sum(rows_estimated)::bigint, sum(batches)::bigint, " +
                    Ts("max(b.updated_at)") +
                    ", count(*)::int, COALESCE(max(s.rows_per_second), 0), "
                    "COALESCE(max(s.eta_seconds), -1), COALESCE(max(s.throttle_reason), ''), "
                    "COALESCE(max((to_jsonb(s) ->> 'yield_sessions')::bigint), 0), "
                    "COALESCE(max((to_jsonb(s) ->> 'yield_rest')::float8), 0) "
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
      t.yield_sessions = row[14].as<int64_t>();
      t.yield_rest = row[15].as<double>();
      out.push_back(t);
    }
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<bool> PgPlanDatabase::AcquireLease(const std::string& plan, const std::string& owner,
                                          Millis ttl) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
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

Result<int64_t> PgPlanDatabase::ReclaimLeases(const std::string& prefix, const std::string& owner) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    auto r = w.exec_params(
        "UPDATE tide.leases SET owner = $2 WHERE (owner = $1 OR starts_with(owner, $1 || ':')) "
        "AND owner <> $2",
        prefix, owner);
    w.commit();
    return static_cast<int64_t>(r.affected_rows());
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::SaveWaitReason(const std::string& plan, const std::string& reason) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec_params0("UPDATE tide.plans SET waiting_reason = $2 WHERE name = $1 AND waiting_reason <> $2",
                   plan, reason);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<std::string>> PgPlanDatabase::RenewLeases(const std::string& owner,
                                                             const std::vector<std::string>& plans,
                                                             Millis ttl) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
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
    pg_internal::Work w(*conn_, TxLocals());
    w.exec_params0("DELETE FROM tide.leases WHERE plan = $1 AND owner = $2", plan, owner);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::SavePause(const Pause& p) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
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
    pg_internal::Work w(*conn_, TxLocals());
    // A plan's resume lifts its databases' pauses too ("plan@database", see PauseTarget).
    w.exec_params0("DELETE FROM tide.pauses WHERE (plan = $1 OR starts_with(plan, $1 || '@')) "
                   "AND ($2 = '' OR phase = $2)",
                   plan, phase);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::optional<LiveSettingsRecord>> PgPlanDatabase::ChangeLiveSettings(
    const std::string& plan, const std::string& change, const std::string& actor) {
  TIDE_CONNECTED();
  auto parsed = ParseLiveChange(change);
  if (!parsed.ok()) return parsed.status();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec0(LimitsSql(StatementLimits{defaults_.lock_timeout, defaults_.statement_timeout}));
    // The plan's row, locked: changes of one plan are applied one after the other.
    // A failed plan takes them (for `tidectl retry`); a finished one does not.
    auto p = w.exec_params("SELECT state FROM tide.plans WHERE name = $1 FOR UPDATE", plan);
    if (p.empty() || IsFinished(PlanStateFromString(p[0][0].c_str()).value_or(PlanState::kDone))) {
      return std::optional<LiveSettingsRecord>();
    }
    auto stored = w.exec_params("SELECT settings, version FROM tide.live_settings WHERE plan = $1", plan);
    LiveSettings now;
    int64_t version = 0;
    if (!stored.empty()) {
      auto before = ParseLiveSettings(stored[0][0].c_str());
      if (before.ok()) now = *before;  // not understood: the change starts from the plan's own
      version = stored[0][1].as<int64_t>();
    }
    now = ApplyChange(now, *parsed);
    const std::string text = FormatLiveSettings(now);
    auto r = w.exec_params1(
        "INSERT INTO tide.live_settings (plan, settings, changed_by, version) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (plan) DO UPDATE SET settings = excluded.settings, "
        "changed_by = excluded.changed_by, changed_at = now(), version = excluded.version "
        "RETURNING " + Ts("changed_at"),
        plan, text, actor, version + 1);
    w.commit();
    return std::optional<LiveSettingsRecord>(LiveSettingsRecord{plan, text, actor, r[0].c_str(), version + 1});
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<LiveSettingsRecord>> PgPlanDatabase::ListLiveSettings() {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    auto r = w.exec("SELECT l.plan, l.settings, l.changed_by, " + Ts("l.changed_at") +
                    ", l.version, p.state FROM tide.live_settings l JOIN tide.plans p ON p.name = l.plan "
                    "ORDER BY l.plan");
    std::vector<LiveSettingsRecord> out;
    for (const auto& row : r) {
      if (IsFinished(PlanStateFromString(row[5].c_str()).value_or(PlanState::kDone))) continue;
      out.push_back(LiveSettingsRecord{row[0].c_str(), row[1].c_str(), row[2].c_str(), row[3].c_str(),
                                       row[4].as<int64_t>()});
    }
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::vector<Pause>> PgPlanDatabase::ListPauses() {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
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

Result<std::vector<RetainedColumn>> PgPlanDatabase::ListRetained(const std::string& plan) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    auto r = w.exec_params(
        "SELECT plan, table_name, table_display, column_name, kept_column, trigger_name, old_type, "
        "old_default, old_not_null, COALESCE(retain_until <= now(), false), " + Ts("retain_until") +
        " FROM tide.retained_columns WHERE $1 = '' OR plan = $1 ORDER BY plan, table_name, column_name",
        plan);
    std::vector<RetainedColumn> out;
    for (const auto& row : r) {
      RetainedColumn c;
      c.plan = row[0].c_str();
      c.table = row[1].c_str();
      c.table_display = row[2].c_str();
      c.column = row[3].c_str();
      c.kept = row[4].c_str();
      c.trigger = row[5].c_str();
      c.old_type = row[6].c_str();
      c.old_default = row[7].c_str();
      c.old_not_null = row[8].as<bool>();
      c.expired = row[9].as<bool>();
      c.retain_until = row[10].c_str();
      out.push_back(c);
    }
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

}  // namespace tide
