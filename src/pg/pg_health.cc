// PgPlanDatabase's read-only probes: gate queries and the throttle's health readings.
#include <pqxx/pqxx>

#include "engine/sql_text.h"
#include "pg/pg_database.h"
#include "pg/pg_internal.h"

namespace tide {

using pg_internal::LimitsSql;
using pg_internal::ThrottleAnswerProblem;

std::string pg_internal::ThrottleAnswerProblem(const pqxx::result& r) {
  constexpr pqxx::oid kBoolOid = 16;
  if (r.size() != 1 || r.columns() != 1) {
    return "must return one boolean; it returned " + std::to_string(r.size()) + " rows of " +
           std::to_string(r.columns()) + " columns";
  }
  if (r.column_type(0) != kBoolOid) return "must return a boolean, not another type";
  if (r[0][0].is_null()) return "returned NULL; it must return true or false";
  return "";
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
      std::string why = ThrottleAnswerProblem(t);
      if (!why.empty()) return Status::Fatal("throttle_query " + why);
      h.throttle_query_true = t[0][0].as<bool>();
    }
    return h;
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

}  // namespace tide
