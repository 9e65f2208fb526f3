// PgPlanDatabase's sessions and maintenance: the sessions that block tide (the blocker policy's
// cancel and terminate, counted per plan) and the VACUUM between a backfill's batches.
#include <pqxx/pqxx>

#include "engine/sql_text.h"
#include "pg/pg_database.h"
#include "pg/pg_internal.h"

namespace tide {

using pg_internal::LimitsSql;

namespace {

// The table and its partitions, from pg_inherits (which takes no lock).
const char* kTreeSql =
    "WITH RECURSIVE tree(oid) AS (SELECT $1::regclass::oid UNION "
    " SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid) ";

}  // namespace

Result<std::vector<SessionFacts>> PgPlanDatabase::DescribeSessions(const std::vector<int64_t>& pids,
                                                                   const std::vector<std::string>& roles) {
  TIDE_CONNECTED();
  try {
    std::vector<std::string> text;
    for (int64_t p : pids) text.push_back(std::to_string(p));
    pg_internal::Work n(*conn_, TxLocals());
    auto r = n.exec_params(
        "SELECT a.pid, a.backend_start::text, COALESCE(a.usename, ''), "
        "COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), ''), "
        "COALESCE(a.backend_type, ''), COALESCE(a.state, ''), COALESCE(r.rolsuper, false), "
        "COALESCE((EXTRACT(epoch FROM clock_timestamp() - a.state_change) * 1000)::bigint, 0), "
        "CASE WHEN a.state = 'active' THEN COALESCE((EXTRACT(epoch FROM clock_timestamp() - "
        "a.query_start) * 1000)::bigint, -1) ELSE -1 END, "
        "COALESCE((EXTRACT(epoch FROM clock_timestamp() - a.xact_start) * 1000)::bigint, -1), "
        "COALESCE(a.xact_start = a.query_start, false), COALESCE(a.state_change::text, ''), "
        // A role named in `never`, or a member of one (a group role); unknown names match nothing.
        "a.usesysid IS NOT NULL AND EXISTS (SELECT 1 FROM pg_roles n WHERE n.rolname = ANY ($2::text[]) "
        "AND pg_has_role(a.usesysid, n.oid, 'MEMBER')) "
        "FROM pg_stat_activity a LEFT JOIN pg_roles r ON r.oid = a.usesysid "
        "WHERE a.pid = ANY ($1::int[]) AND a.pid <> pg_backend_pid() ORDER BY a.pid",
        TextArrayLiteral(text), TextArrayLiteral(roles));
    std::vector<SessionFacts> out;
    for (const auto& row : r) {
      SessionFacts s;
      s.pid = row[0].as<int64_t>();
      s.backend_start = row[1].is_null() ? "" : row[1].c_str();
      s.user = row[2].c_str();
      s.application_name = row[3].c_str();
      s.client_addr = row[4].c_str();
      s.backend_type = row[5].c_str();
      s.state = row[6].c_str();
      s.superuser = row[7].as<bool>();
      s.state_age_ms = row[8].as<int64_t>();
      s.query_age_ms = row[9].as<int64_t>();
      s.transaction_age_ms = row[10].as<int64_t>();
      s.query_began_transaction = row[11].as<bool>();
      s.state_change = row[12].c_str();
      s.protected_role = row[13].as<bool>();
      out.push_back(s);
    }
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<EndOutcome> PgPlanDatabase::EndSession(const std::string& plan, const SessionFacts& s,
                                              bool terminate, int64_t max_per_plan) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec0(LimitsSql(StatementLimits{defaults_.lock_timeout, defaults_.statement_timeout}));
    auto counted = w.exec_params(
        "UPDATE tide.plans SET sessions_ended = sessions_ended + 1 "
        "WHERE name = $1 AND sessions_ended < $2 RETURNING sessions_ended",
        plan, max_per_plan);
    if (counted.empty()) return EndOutcome::kBudgetSpent;
    // Only the session described (a pid is reused once its session ends), still doing what was
    // described: an idle transaction that ended, and the next one begun, is another's business.
    auto ended = w.exec_params(
        std::string("SELECT ") + (terminate ? "pg_terminate_backend" : "pg_cancel_backend") +
            "(pid) FROM pg_stat_activity WHERE pid = $1 AND backend_start = $2::timestamptz "
            "AND state = $3 AND state_change::text = $4",
        s.pid, s.backend_start, s.state, s.state_change);
    if (ended.empty() || !ended[0][0].as<bool>()) return EndOutcome::kGone;  // rolled back
    w.commit();
    return EndOutcome::kEnded;
  } catch (...) {
    return FromCurrentException();
  }
}

Result<int64_t> PgPlanDatabase::SessionsEnded(const std::string& plan) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    auto r = w.exec_params("SELECT COALESCE((SELECT sessions_ended FROM tide.plans WHERE name = $1), 0)",
                           plan);
    return r[0][0].as<int64_t>();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<DeadTuples> PgPlanDatabase::ReadDeadTuples(const QualifiedName& table) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work n(*conn_, TxLocals());
    auto r = n.exec_params1(
        std::string(kTreeSql) +
            "SELECT COALESCE(sum(s.n_live_tup), 0)::bigint, COALESCE(sum(s.n_dead_tup), 0)::bigint, "
            "EXISTS (SELECT 1 FROM pg_stat_progress_vacuum v WHERE v.relid IN (SELECT oid FROM tree) "
            "AND v.datid = (SELECT oid FROM pg_database WHERE datname = current_database())) "
            "FROM pg_stat_user_tables s WHERE s.relid IN (SELECT oid FROM tree)",
        QuoteName(table));
    DeadTuples d;
    d.live = r[0].as<int64_t>();
    d.dead = r[1].as<int64_t>();
    d.vacuum_running = r[2].as<bool>();
    return d;
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::Vacuum(const QualifiedName& table, const StatementLimits& limits,
                              Millis cost_delay) {
  TIDE_CONNECTED();
  try {
    // On the plan's own session unless it is pooled (the caller knows this session's pid).
    pqxx::nontransaction n(pooled_ ? OwnSession("VACUUM") : *conn_);
    // SKIP_LOCKED: never waits for its lock (DDL on the table holds it: the vacuum is skipped);
    // TRUNCATE false: never takes the ACCESS EXCLUSIVE lock that giving back the table's empty
    // end needs.
    n.exec0(SetTimeoutSql("lock_timeout", limits.lock_timeout, false) + "; " +
            SetTimeoutSql("statement_timeout", limits.statement_timeout, false) +
            "; SET vacuum_cost_delay = '" + std::to_string(cost_delay.count()) +
            "ms'; SET application_name = 'tided vacuum'");
    n.exec0(VacuumSql(table));
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

}  // namespace tide
