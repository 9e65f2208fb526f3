// PgPlanDatabase's catalog reads: tables and their keys, the preflight and its dry run, and the
// key values a backfill is split by.
#include <chrono>
#include <pqxx/pqxx>
#include <set>

#include "engine/backfill.h"
#include "engine/key_ranges.h"
#include "engine/operations.h"
#include "engine/preflight.h"
#include "engine/sql_text.h"
#include "engine/sqlstate.h"
#include "pg/pg_database.h"
#include "pg/pg_internal.h"

namespace tide {

using pg_internal::LimitsSql;
using pg_internal::RowText;
using pg_internal::Trim;

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
  for (const auto& row : w.exec_params(
           "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
           "WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped",
           relid)) {
    info.column_types[row[0].c_str()] = row[1].c_str();
  }
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
  std::vector<std::string> key;
  for (const auto& k : f.key) key.push_back(k.name);
  // A unique, valid, non-partial index on the key's columns (or some of them), and every key
  // column NOT NULL; row-level security as it applies to the session's role.
  auto r = w.exec_params1(
      "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisunique "
      "  AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL "
      "  AND (SELECT array_agg(a.attname::text) FROM unnest(i.indkey) k "
      "       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k) <@ $2::text[]) "
      "AND NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid "
      "  AND attname = ANY ($2::text[]) AND NOT attnotnull), "
      "c.relkind = 'p', c.relrowsecurity, c.relforcerowsecurity, current_user::text, "
      "pg_has_role(current_user, c.relowner, 'USAGE'), "
      "(SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user) "
      "FROM pg_class c WHERE c.oid = to_regclass($1)",
      QuoteName(q.table), TextArrayLiteral(key));
  f.key_unique = !key.empty() && r[0].as<bool>();
  f.partitioned = r[1].as<bool>();
  f.rls_enabled = r[2].as<bool>();
  f.rls_forced = r[3].as<bool>();
  f.role = r[4].c_str();
  f.role_is_owner = r[5].as<bool>();
  f.role_bypasses_rls = r[6].as<bool>();
  for (const auto& column : q.drop_columns) {
    for (const auto& row : w.exec_params(
             "SELECT DISTINCT v.oid::regclass::text FROM pg_depend d "
             "JOIN pg_rewrite rw ON rw.oid = d.objid JOIN pg_class v ON v.oid = rw.ev_class "
             "JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid "
             "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = to_regclass($1) "
             "AND a.attname = $2 AND v.oid <> d.refobjid ORDER BY 1",
             QuoteName(q.table), column)) {
      f.dependents[column].push_back(row[0].c_str());
    }
  }
  for (const auto& type : q.add_types) {
    try {
      pqxx::subtransaction sub(w);
      auto t = sub.exec_params1(
          "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contypid = $1::regtype)", type);
      if (t[0].as<bool>()) f.rewriting_types.insert(type);
      sub.commit();
    } catch (const pqxx::sql_error&) {
      // Not a type name PostgreSQL knows (yet): the expand step says so when it runs.
    }
  }
  return f;
}

// A backfill throttles on other sessions and on the standbys' replay, which a role without
// pg_read_all_stats (pg_monitor) cannot see: it would read an idle primary with no lag.
void CheckHealthVisible(pqxx::dbtransaction& w, const Plan& plan,
                        std::vector<std::string>* problems) {
  if (plan.backfill.empty()) return;
  auto r = w.exec1(
      "SELECT current_user::text, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
      "OR pg_has_role(current_user, 'pg_read_all_stats', 'USAGE')");
  if (r[1].as<bool>()) return;
  const std::string role = r[0].c_str();
  problems->push_back("tide's role `" + role + "` cannot see other sessions' queries or the "
                      "standbys' replay (pg_stat_activity, pg_stat_replication), so the "
                      "backfill could not throttle on them; GRANT pg_monitor TO " + role);
}

// The plan's throttle_query, run once: it must return one boolean.
void CheckThrottleQuery(pqxx::dbtransaction& w, const std::string& query,
                        std::vector<std::string>* problems) {
  if (query.empty()) return;
  try {
    pqxx::subtransaction sub(w);
    const std::string why = pg_internal::ThrottleAnswerProblem(sub.exec(query));
    if (!why.empty()) problems->push_back("throttle_query " + why + ": " + query);
    sub.abort();
  } catch (const pqxx::sql_error& e) {
    problems->push_back("throttle_query fails: SQLSTATE " + e.sqlstate() + ": " +
                        WithoutRowData(Trim(e.what())));
  }
}

// EXPLAIN ANALYZE of the task's first batch, inside a subtransaction that is rolled back: the
// plan PostgreSQL picks and, for a full batch, the rows per second it reached.
void ExplainFirstBatch(pqxx::dbtransaction& w, const BackfillTask& task,
                       const std::vector<KeyColumn>& key, int64_t batch_size, bool analyze,
                       PreflightTask* t, std::vector<std::string>* problems) {
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
    auto rows = sub.exec_params(std::string(analyze ? "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) "
                                                    : "EXPLAIN (COSTS OFF) ") +
                                    BatchUpdateSql(b, false),
                                pqxx::prepare::make_dynamic_params(last));
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (const auto& row : rows) t->explain += std::string(row[0].c_str()) + "\n";
    t->explain = Trim(t->explain);
    // A short batch (a small table) says little about the rate.
    if (analyze && full && seconds > 0) t->measured_rows_per_second = batch_size / seconds;
    sub.abort();
  } catch (const pqxx::sql_error& e) {
    problems->push_back("backfill " + task.table.Display() + ": the first batch fails: SQLSTATE " +
                        e.sqlstate() + ": " + WithoutRowData(Trim(e.what())));
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
    std::vector<std::string> throttle_problems;
    CheckThrottleQuery(w, plan.settings.throttle_query.value_or(defaults_.throttle_query),
                       &throttle_problems);
    CheckHealthVisible(w, plan, &throttle_problems);
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
    r.problems.insert(r.problems.end(), throttle_problems.begin(), throttle_problems.end());
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
  // Expand statements keep their locks (ACCESS EXCLUSIVE, most of them) until the dry run rolls
  // back, so once one ran, the first batch is only planned, not run: running it would hold the
  // application up for a whole batch.
  bool holds_locks = false;
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
        holds_locks = true;
        dry->notes.push_back(what + ": ran, then rolled back: " + st.sql);
      } catch (const pqxx::sql_error& e) {
        dry->problems.push_back(what + " fails: SQLSTATE " + e.sqlstate() + ": " +
                                WithoutRowData(Trim(e.what())));
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
    ExplainFirstBatch(w, task, key, BatchSizeFor(plan, task, defaults_), !holds_locks,
                      &dry->tasks[i], &dry->problems);
  }
  if (holds_locks && !plan.backfill.empty()) {
    dry->notes.push_back("first batches: planned, not run (EXPLAIN without ANALYZE), since the "
                         "dry run's expand statements hold their locks until it rolls back; no "
                         "speed measured");
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
                              ": " + WithoutRowData(Trim(e.what())));
    }
  }
}

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

}  // namespace tide
