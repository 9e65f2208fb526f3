// PgPlanDatabase's read-only probes: gate queries and the throttle's health readings.
#include <pqxx/pqxx>

#include <algorithm>

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

Result<HealthReading> PgPlanDatabase::ReadHealth(const HealthQuestions& q,
                                                 const StatementLimits& limits) {
  TIDE_CONNECTED();
  // What a signal needs and tide's role may lack: said, so that the operator can grant it or
  // turn the signal off. Until then the backfill holds (health_unknown).
  std::string reading = "the health readings";
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec0("SET TRANSACTION READ ONLY");
    w.exec0(LimitsSql(limits));
    // Through a pooler a batch runs on whichever server session the pooler gives it: tide's
    // are those inside a transaction of tide's now (they name themselves in TxLocals).
    auto Ours = [&](const std::vector<int64_t>& pids) {
      std::vector<std::string> text;
      for (int64_t p : pids) text.push_back(std::to_string(p));
      std::string ours = TextArrayLiteral(text);
      if (!pooled_) return ours;
      return std::string(w.exec_params1("SELECT coalesce(array_agg(pid), '{}')::text FROM pg_stat_activity "
                                        "WHERE pid = ANY ($1::int[]) OR application_name = 'tided'",
                                        ours)[0].c_str());
    };
    const std::string ours = Ours(q.our_pids);
    const std::string tide = q.tide_pids.empty() ? ours : Ours(q.tide_pids);
    HealthReading h;
    h.blocked_by_us = w.exec_params1(BlockedBySql("$1::int[]"), ours)[0].as<int64_t>();
    if (q.server) {
      auto r = w.exec_params1(
          "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
          "(SELECT min(pg_wal_lsn_diff(replay_lsn, '0/0'))::bigint FROM pg_stat_replication "
          " WHERE replay_lsn IS NOT NULL), "
          "(SELECT count(*) FROM pg_stat_activity WHERE state IN ('active', 'idle in transaction') "
          " AND backend_type = 'client backend' AND pid <> pg_backend_pid() "
          " AND pid <> ALL ($1::int[]) AND application_name NOT LIKE 'tided%')",
          tide);
      h.current_lsn = r[0].as<int64_t>();
      if (!r[1].is_null()) h.replay_lsn = r[1].as<int64_t>();
      h.active_sessions = r[2].as<int64_t>();
    }
    if (q.autovacuum && !q.table.name.empty()) {
      reading = "autovacuum's progress (pg_stat_progress_vacuum; grant pg_read_all_stats to "
                "tide's role, or set hold_on_autovacuum: false)";
      // Another role's vacuum shows no table without pg_read_all_stats: not seen is not absent.
      // The table and its partitions from pg_inherits, which takes no lock (pg_partition_tree
      // locks every partition until the reading's transaction ends).
      auto a = w.exec_params1(
          "WITH RECURSIVE tree(oid) AS (SELECT $1::regclass::oid UNION "
          " SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid) "
          "SELECT count(*) FILTER (WHERE v.relid IN (SELECT oid FROM tree)), "
          "count(*) FILTER (WHERE v.relid IS NULL) "
          "FROM pg_stat_progress_vacuum v WHERE v.pid <> pg_backend_pid() "
          "AND NOT v.pid = ANY ($2::int[]) AND v.datid = "
          "(SELECT oid FROM pg_database WHERE datname = current_database())",
          QuoteName(q.table), tide);
      if (a[1].as<int64_t>() > 0) {
        return Status::Fatal("cannot see which table autovacuum works on: grant "
                             "pg_read_all_stats to tide's role, or set hold_on_autovacuum: false");
      }
      h.autovacuum = a[0].as<int64_t>() > 0;
    }
    if (q.server && q.archive) {
      reading = "the WAL archive status (pg_ls_archive_statusdir; grant pg_monitor to tide's "
                "role, or set max_archive_backlog: 0)";
      if (w.exec1("SELECT current_setting('archive_mode') <> 'off'")[0].as<bool>()) {
        h.archive_backlog = w.exec1("SELECT count(*) FROM pg_ls_archive_statusdir() "
                                    "WHERE name LIKE '%.ready'")[0].as<int64_t>();
      }
    }
    if (q.server && q.slots) {
      reading = "the replication slots (pg_replication_slots)";
      auto s = w.exec(
          "SELECT slot_name, active, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
          "FROM pg_replication_slots WHERE restart_lsn IS NOT NULL ORDER BY 3 DESC LIMIT 1");
      if (!s.empty()) {
        h.slot_name = s[0][0].c_str();
        h.slot_active = s[0][1].as<bool>();
        h.slot_retained_wal = std::max<int64_t>(0, s[0][2].as<int64_t>());
      }
    }
    if (q.server && q.xmin) {
      reading = "the oldest transaction (pg_stat_activity, pg_prepared_xacts; grant "
                "pg_read_all_stats to tide's role, or set max_xmin_age: 0)";
      // A transaction holds vacuum back by its snapshot (backend_xmin) or, a writer idle under
      // READ COMMITTED, by its own xid. Sessions of other roles show both to everyone but their
      // transaction's start only with pg_read_all_stats: not seen is not young.
      const int64_t masked = w.exec_params1(
          "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
          "AND (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) AND xact_start IS NULL "
          "AND backend_type IS NULL AND pid <> pg_backend_pid() AND pid <> ALL ($1::int[])",
          tide)[0].as<int64_t>();
      if (masked > 0) {
        return Status::Fatal("cannot see how old " + std::to_string(masked) +
                             " transactions of other roles are: grant pg_read_all_stats to "
                             "tide's role, or set max_xmin_age: 0");
      }
      auto x = w.exec_params(
          "SELECT pid, (EXTRACT(epoch FROM now() - xact_start) * 1000)::bigint FROM pg_stat_activity "
          "WHERE (backend_xmin IS NOT NULL OR backend_xid IS NOT NULL) AND xact_start IS NOT NULL "
          "AND backend_type = 'client backend' "
          "AND pid <> pg_backend_pid() AND pid <> ALL ($1::int[]) "
          "UNION ALL SELECT 0, (EXTRACT(epoch FROM now() - prepared) * 1000)::bigint FROM pg_prepared_xacts "
          "ORDER BY 2 DESC LIMIT 1",
          tide);
      if (!x.empty()) {
        h.xmin_pid = x[0][0].as<int64_t>();
        h.xmin_age_ms = std::max<int64_t>(0, x[0][1].as<int64_t>());
      }
    }
    if (q.server && q.checkpoints) {
      reading = "the checkpoints (pg_stat_bgwriter)";
      h.checkpoints_requested = w.exec1("SELECT checkpoints_req FROM pg_stat_bgwriter")[0].as<int64_t>();
    }
    if (!q.throttle_query.empty()) {
      reading = "the throttle_query";
      auto t = w.exec(q.throttle_query);
      std::string why = ThrottleAnswerProblem(t);
      if (!why.empty()) return Status::Fatal("throttle_query " + why);
      h.throttle_query_true = t[0][0].as<bool>();
    }
    return h;
  } catch (const pqxx::insufficient_privilege& e) {
    return Status::Fatal("cannot read " + reading + ": " + e.what());
  } catch (...) {
    return FromCurrentException();
  }
}

Result<int64_t> PgPlanDatabase::QueryNumber(const std::string& sql, const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec0("SET TRANSACTION READ ONLY");
    w.exec0(LimitsSql(limits) + "; SET LOCAL max_parallel_workers_per_gather = 0");
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
