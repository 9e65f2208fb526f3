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
using pg_internal::TextArray;
using pg_internal::Trim;

namespace {

ColumnFacts ReadColumnFactsIn(pqxx::dbtransaction& w, const Step& a);

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
  // A heap (TID range scans are the heap's); relhassubclass can stay true after the last child is gone (until a VACUUM clears it): such a
  // table is taken as having children, which only costs it the page batches.
  auto heap = w.exec_params1(
      "SELECT relkind = 'r' AND NOT relhassubclass AND "
      "relam = (SELECT oid FROM pg_am WHERE amname = 'heap'), "
      "pg_relation_size(oid) / current_setting('block_size')::bigint FROM pg_class WHERE oid = $1",
      relid);
  info.plain_heap = heap[0].as<bool>();
  info.pages = heap[1].as<int64_t>();
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
  for (const auto& step : q.alter_steps) f.altered[step.column] = ReadColumnFactsIn(w, step);
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
    pg_internal::Work w(*conn_, TxLocals());
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
    pg_internal::Work w(*conn_, TxLocals());
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
    r.notes.insert(r.notes.end(), dry.notes.begin(), dry.notes.end());
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
    pg_internal::Work w(*conn_, TxLocals());
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
    pg_internal::Work w(*conn_, TxLocals());
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

namespace tide {
namespace {

std::string Action(const std::string& code, const char* on) {
  if (code == "r") return std::string(" ON ") + on + " RESTRICT";
  if (code == "c") return std::string(" ON ") + on + " CASCADE";
  if (code == "n") return std::string(" ON ") + on + " SET NULL";
  if (code == "d") return std::string(" ON ") + on + " SET DEFAULT";
  return "";
}

// The catalog's facts about one altered column (see ColumnFacts), read in `w`.
ColumnFacts ReadColumnFactsIn(pqxx::dbtransaction& w, const Step& a) {
  ColumnFacts f;
  auto rel = w.exec_params(
      "SELECT c.oid, n.nspname, c.relkind, c.relispartition, "
      "EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = c.oid OR inhparent = c.oid) "
      "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)",
      QuoteName(a.table));
  if (rel.empty()) return f;
  const int64_t relid = rel[0][0].as<int64_t>();
  f.schema = rel[0][1].c_str();
  const std::string relkind = rel[0][2].c_str();
  auto col = w.exec_params(
      "SELECT a.attnum, format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity::text, "
      "a.attgenerated::text, COALESCE(pg_get_expr(d.adbin, d.adrelid), '') FROM pg_attribute a "
      "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
      "WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
      relid, a.column);
  if (col.empty()) return f;
  f.exists = true;
  const int attnum = col[0][0].as<int>();
  f.type = col[0][1].c_str();
  f.not_null = col[0][2].as<bool>();
  f.default_expr = col[0][5].c_str();
  auto block = [&](const std::string& why) { f.blockers.push_back(why); };
  const std::string identity = col[0][3].c_str();
  if (!identity.empty()) f.identity = identity[0];
  if (!std::string(col[0][4].c_str()).empty()) block("it is a generated column; change its expression instead");
  if (relkind == "p") block("the table is partitioned; alter_column does not handle partitioned tables yet");
  if (rel[0][3].as<bool>()) block("the table is a partition; alter the partitioned table instead");
  if (rel[0][4].as<bool>()) block("the table has inheritance parents or children, whose columns would not follow");
  if (a.shadow.empty()) {
    // An earlier plan's switch still keeps this column's old values for its revert.
    auto kept = w.exec_params(
        "SELECT COALESCE(col_description($1, attnum), '') FROM pg_attribute WHERE attrelid = $1 AND "
        "attname = $2 AND attnum > 0 AND NOT attisdropped",
        relid, KeptColumn(a.column));
    if (!kept.empty()) {
      block("an earlier plan's switch still keeps the old " + a.column + " as " + KeptColumn(a.column) +
            " (" + kept[0][0].c_str() + "); `tidectl finalize` that plan first");
    }
  }
  f.shadow_exists = !w.exec_params(
                         "SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND "
                         "attnum > 0 AND NOT attisdropped",
                         relid, a.shadow.empty() ? ShadowColumn(a.column) : a.shadow).empty();
  auto seq = w.exec_params1(
      "SELECT COALESCE(pg_get_serial_sequence($1, $2), ''), COALESCE((SELECT format_type(seqtypid, "
      "NULL) FROM pg_sequence WHERE seqrelid = to_regclass(pg_get_serial_sequence($1, $2))), '')",
      QuoteName(QualifiedName{f.schema, a.table.name}), a.column);
  auto props = w.exec_params1(
      "SELECT COALESCE(col_description($1, $2), ''), a.attstattarget, ARRAY(SELECT x.privilege_type || "
      "' TO ' || CASE WHEN x.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(r.rolname) END || CASE "
      "WHEN x.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END FROM aclexplode(a.attacl) x LEFT "
      "JOIN pg_roles r ON r.oid = x.grantee ORDER BY 1)::text[] FROM pg_attribute a WHERE "
      "a.attrelid = $1 AND a.attnum = $2",
      relid, attnum);
  f.comment = props[0].c_str();
  f.statistics = props[1].as<int>();
  f.grants = TextArray(props[2]);
  f.owned_sequence = seq[0].c_str();  // a serial's or an identity's; quoted where it needs it
  f.sequence_type = seq[1].c_str();
  for (const auto& row : w.exec_params(
           "SELECT ic.relname, i.indisunique, am.amname, i.indexprs IS NOT NULL, "
           "COALESCE(pg_get_expr(i.indpred, i.indrelid), ''), "
           "ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) "
           "  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n "
           "  WHERE k.o <= i.indnkeyatts ORDER BY k.o)::text[], "
           "ARRAY(SELECT CASE WHEN o & 1 = 1 THEN 'DESC' || CASE WHEN o & 2 = 0 THEN ' NULLS LAST' ELSE '' END "
           "  ELSE CASE WHEN o & 2 = 2 THEN 'NULLS FIRST' ELSE '' END END "
           "  FROM unnest(i.indoption::int2[]) WITH ORDINALITY x(o, ord) ORDER BY ord)::text[], "
           "COALESCE(con.contype::text, ''), COALESCE(con.conname::text, ''), "
           "i.indnatts <> i.indnkeyatts, i.indisvalid, "
           "ARRAY(SELECT CASE WHEN opc.opcdefault THEN '' ELSE quote_ident(opn.nspname) || '.' || "
           "  quote_ident(opc.opcname) END FROM unnest(i.indclass::oid[]) WITH ORDINALITY x(c, o) "
           "  JOIN pg_opclass opc ON opc.oid = x.c JOIN pg_namespace opn ON opn.oid = opc.opcnamespace "
           "  WHERE x.o <= i.indnkeyatts ORDER BY x.o)::text[], "
           "i.indnullsnotdistinct, COALESCE(con.condeferrable, false), COALESCE(con.condeferred, false), "
           "EXISTS (SELECT 1 FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) JOIN "
           "  unnest(i.indclass::oid[]) WITH ORDINALITY x(c, o2) ON x.o2 = k.o JOIN pg_opclass opc ON "
           "  opc.oid = x.c WHERE k.n = $2 AND NOT opc.opcdefault AND opc.opcintype <> $3::regtype) "
           "FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam "
           "LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid "
           "  AND con.contype IN ('p', 'u', 'x') "
           "WHERE i.indrelid = $1 AND ($2::int2 = ANY (i.indkey::int2[]) OR EXISTS (SELECT 1 FROM "
           "  pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND "
           "  d.refobjid = $1 AND d.refobjsubid = $2)) ORDER BY ic.relname",
           relid, attnum, a.type.empty() ? f.type : a.type)) {
    const std::string name = row[0].c_str();
    if (!row[10].as<bool>()) {
      block("index " + name + " on it is INVALID (a failed build's leftover); drop it first");
      continue;
    }
    if (row[3].as<bool>()) {
      block("index " + name + " uses an expression over it, which tide does not rebuild; drop "
            "it and build it again after the plan");
      continue;
    }
    if (row[9].as<bool>()) {
      block("index " + name + " has INCLUDE columns, which tide does not rebuild yet");
      continue;
    }
    const std::string contype = row[7].c_str();
    if (contype == "x") {
      block("exclusion constraint " + std::string(row[8].c_str()) + " covers it, which tide does "
            "not rebuild");
      continue;
    }
    IndexFacts idx;
    idx.name = name;
    idx.unique = row[1].as<bool>();
    idx.method = row[2].c_str();
    idx.predicate = row[4].c_str();
    idx.columns = TextArray(row[5]);
    idx.options = TextArray(row[6]);
    idx.constraint_type = contype.empty() ? 0 : contype[0];
    idx.constraint_name = row[8].c_str();
    idx.opclasses = TextArray(row[11]);
    idx.nulls_not_distinct = row[12].as<bool>();
    if (row[13].as<bool>()) idx.deferrable = row[14].as<bool>() ? " DEFERRABLE INITIALLY DEFERRED" : " DEFERRABLE";
    if (row[15].as<bool>()) {
      block("index " + name + " uses an operator class for the old type on it, which does not "
            "apply to the new type; drop it, and build it again after the plan");
      continue;
    }
    f.indexes.push_back(idx);
  }
  for (const auto& row : w.exec_params(
           "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
           "WHERE conrelid = $1 AND contype = 'c' AND $2::int2 = ANY (conkey) ORDER BY conname",
           relid, attnum)) {
    if (!row[2].as<bool>()) {
      block("check " + std::string(row[0].c_str()) + " on it is NOT VALID; validate or drop it first");
      continue;
    }
    f.checks.push_back({row[0].c_str(), row[1].c_str()});
  }
  for (const auto& row : w.exec_params(
           "SELECT con.conname, cn.nspname, cc.relname, "
           "ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) JOIN "
           "  pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o)::text[], "
           "rn.nspname, rc.relname, "
           "ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) JOIN "
           "  pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o)::text[], "
           "con.confupdtype::text, con.confdeltype::text, con.confmatchtype::text, con.condeferrable, "
           "con.condeferred, con.convalidated, cc.relkind::text "
           "FROM pg_constraint con JOIN pg_class cc ON cc.oid = con.conrelid JOIN pg_namespace cn ON "
           "cn.oid = cc.relnamespace JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn "
           "ON rn.oid = rc.relnamespace WHERE con.contype = 'f' AND con.conparentid = 0 AND "
           "((con.conrelid = $1 AND $2::int2 = ANY (con.conkey)) OR (con.confrelid = $1 AND "
           "$2::int2 = ANY (con.confkey))) ORDER BY cn.nspname, cc.relname, con.conname",
           relid, attnum)) {
    const std::string name = row[0].c_str();
    if (!row[12].as<bool>()) {
      block("foreign key " + name + " is NOT VALID; validate or drop it first");
      continue;
    }
    if (std::string(row[13].c_str()) == "p") {
      block("foreign key " + name + " is on a partitioned table, which tide cannot add NOT VALID");
      continue;
    }
    ForeignKeyFacts fk;
    fk.name = name;
    fk.table = {row[1].c_str(), row[2].c_str()};
    fk.columns = TextArray(row[3]);
    fk.ref_table = {row[4].c_str(), row[5].c_str()};
    fk.ref_columns = TextArray(row[6]);
    fk.actions = Action(row[7].c_str(), "UPDATE") + Action(row[8].c_str(), "DELETE");
    if (std::string(row[9].c_str()) == "f") fk.actions += " MATCH FULL";
    if (row[10].as<bool>()) fk.actions += row[11].as<bool>() ? " DEFERRABLE INITIALLY DEFERRED" : " DEFERRABLE";
    f.foreign_keys.push_back(fk);
  }
  // What the switch cannot carry over: views and rules (except this plan's version schema's
  // views; another plan's would stop the switch's DROP COLUMN too), and anything else that
  // depends on the column other than what the switch moves (indexes, constraints, its default,
  // its sequence): triggers (UPDATE OF, WHEN), policies, SQL functions with BEGIN ATOMIC
  // bodies, generated columns. PostgreSQL would refuse the switch's DROP COLUMN.
  for (const auto& row : w.exec_params(
           "SELECT DISTINCT v.oid::regclass::text, v.relkind::text, rw.rulename::text FROM pg_depend d "
           "JOIN pg_rewrite rw ON rw.oid = d.objid JOIN pg_class v ON v.oid = rw.ev_class "
           "WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = $1 AND d.refobjsubid = $2 "
           "AND v.relnamespace <> COALESCE(to_regnamespace($3), 0) ORDER BY 1",
           relid, attnum, VersionSchema(a.plan))) {
    const std::string relkind = row[1].c_str();
    const std::string what = relkind == "m"   ? std::string("materialized view ") + row[0].c_str()
                             : relkind == "v" ? std::string("view ") + row[0].c_str()
                                              : "rule " + std::string(row[2].c_str()) + " on " + row[0].c_str();
    block(what + " depends on it; drop it and create it again after the plan (tide never drops "
          "with CASCADE)");
  }
  for (const auto& row : w.exec_params(
           "SELECT DISTINCT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d "
           "WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = $1 AND d.refobjsubid = $2 "
           "AND d.deptype IN ('n', 'a') AND d.classid NOT IN ('pg_constraint'::regclass, "
           "'pg_attrdef'::regclass, 'pg_rewrite'::regclass, 'pg_statistic_ext'::regclass) "
           "AND NOT (d.classid = 'pg_class'::regclass AND EXISTS (SELECT 1 FROM pg_class c WHERE "
           "c.oid = d.objid AND c.relkind IN ('i', 'I', 'S'))) "
           "AND NOT (d.classid = 'pg_class'::regclass AND d.objid = $1 AND d.objsubid = $2) ORDER BY 1",
           relid, attnum)) {
    block(std::string(row[0].c_str()) + " depends on it, and the switch's DROP COLUMN would fail; "
          "drop it, and create it again on the new column after the plan");
  }
  for (const auto& row : w.exec_params(
           "SELECT tgname FROM pg_trigger WHERE tgrelid = $1 AND NOT tgisinternal AND "
           "$2::int2 = ANY (tgattr::int2[])",
           relid, attnum)) {
    block("trigger " + std::string(row[0].c_str()) + " fires on UPDATE OF it, and would not "
          "follow the new column");
  }
  // Another plan changing the same table: its shadows, triggers and views would meet these.
  for (const auto& row : w.exec_params(
           "SELECT attname, COALESCE(col_description(attrelid, attnum), '') FROM pg_attribute "
           "WHERE attrelid = $1 AND attname LIKE '\\_tide\\_new\\_%' AND NOT attisdropped",
           relid)) {
    const std::string mark = row[1].c_str();
    if (mark.size() < a.plan.size() + 10 || mark.substr(mark.size() - a.plan.size() - 10) != " for plan " + a.plan) {
      block("the table has " + std::string(row[0].c_str()) + ", a shadow of another plan (" + mark +
            "); finish or abort that plan first");
    }
  }
  // A domain with constraints: PostgreSQL adds a column of it by rewriting the table under
  // ACCESS EXCLUSIVE (it checks the domain on every row).
  try {
    pqxx::subtransaction sub(w);
    if (sub.exec_params1("SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE contypid = $1::regtype)",
                         a.type.empty() ? f.type : a.type)[0].as<bool>()) {
      block("its new type is a domain with constraints, and PostgreSQL adds the shadow of such a "
            "type by rewriting the table under ACCESS EXCLUSIVE; alter it to the domain's base "
            "type and add the domain's rule with `check`");
    }
    sub.commit();
  } catch (const pqxx::sql_error&) {
    // Not a type PostgreSQL knows: the `up` check below says so.
  }
  for (const auto& row : w.exec_params(
           "SELECT p.pubname FROM pg_publication_rel r JOIN pg_publication p ON p.oid = r.prpubid "
           "WHERE r.prrelid = $1 UNION SELECT pubname FROM pg_publication WHERE puballtables",
           relid)) {
    block("the table is in publication " + std::string(row[0].c_str()) + ", whose subscribers' "
          "tables would not change with it");
  }
  if (!w.exec_params("SELECT 1 FROM pg_partitioned_table WHERE partrelid = $1 AND $2::int2 = ANY "
                     "(partattrs::int2[])",
                     relid, attnum).empty()) {
    block("it is the table's partition key");
  }
  // `up` and `down` must type-check on this table (a type with no cast, a typo).
  const std::string cast_up = a.type.empty() ? "(" + UpExpression(a) + ")"
                                             : "CAST((" + UpExpression(a) + ") AS " + a.type + ")";
  try {
    pqxx::subtransaction sub(w);
    sub.exec("EXPLAIN SELECT " + cast_up + " FROM " + QuoteName(a.table));
    if (!a.down.empty()) {
      sub.exec("EXPLAIN SELECT CAST((SELECT (" + a.down + ") FROM (SELECT CAST(NULL AS " +
               (a.type.empty() ? f.type : a.type) + ") AS " + QuoteIdent(a.column) +
               ") AS tide_new) AS " + f.type + ") FROM " + QuoteName(a.table) + " AS " +
               QuoteIdent(a.table.name));
    }
    sub.abort();
  } catch (const pqxx::sql_error& e) {
    block("its `up` or `down` does not work on this table: SQLSTATE " + e.sqlstate() + ": " +
          WithoutRowData(pg_internal::Trim(e.what())) +
          (a.up.empty() ? "; there may be no cast from " + f.type + " to " + a.type + ": give `up`" : ""));
  }
  return f;
}

}  // namespace

Result<SwitchFacts> PgPlanDatabase::ReadSwitchFacts(const Step& step) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    SwitchFacts out;
    for (const auto& a : step.alterations) {
      if (a.kind == OpKind::kAlterColumn) out[FactsKey(a.table, a.column)] = ReadColumnFactsIn(w, a);
    }
    w.abort();
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

namespace {

// "users" or "core.users" (as a statement names it) quoted for to_regclass: the parser has
// already folded unquoted names to lower case.
std::string RegclassText(const std::string& written) {
  const size_t dot = written.rfind('.');
  if (dot == std::string::npos) return QuoteIdent(written);
  return QuoteIdent(written.substr(0, dot)) + "." + QuoteIdent(written.substr(dot + 1));
}

// "core.users.email" -> {"core.users", "email"}.
std::pair<std::string, std::string> SplitLast(const std::string& key) {
  const size_t dot = key.rfind('.');
  if (dot == std::string::npos) return {"", key};
  return {key.substr(0, dot), key.substr(dot + 1)};
}

}  // namespace

Result<LintFacts> PgPlanDatabase::ReadLintFacts(const LintQuestions& q) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    LintFacts out;
    for (const auto& f : q.functions) {
      // Of a name's overloads, the most volatile ('i' < 's' < 'v'); "app.f" in schema app only.
      const size_t dot = f.rfind('.');
      auto r = w.exec_params(
          "SELECT max(p.provolatile::text) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
          "WHERE lower(p.proname) = $1 AND ($2 = '' OR lower(n.nspname) = $2)",
          dot == std::string::npos ? f : f.substr(dot + 1), dot == std::string::npos ? "" : f.substr(0, dot));
      if (!r.empty() && !r[0][0].is_null()) out.volatility[f] = r[0][0].c_str()[0];
    }
    for (const auto& t : q.tables) {
      auto r = w.exec_params(
          "SELECT 'about ' || to_char(greatest(c.reltuples, 0)::bigint, 'FM999,999,999,999') || ' rows, ' || "
          "pg_size_pretty(pg_total_relation_size(c.oid)), greatest(c.reltuples, 0)::bigint FROM pg_class c "
          "WHERE c.oid = to_regclass($1)",
          RegclassText(t));
      if (!r.empty()) {
        out.table_sizes[t] = r[0][0].c_str();
        out.table_rows[t] = r[0][1].as<int64_t>();
      }
    }
    for (const auto& key : q.columns) {
      const auto [table, column] = SplitLast(key);
      // Whether the column has expression or partial indexes or CHECKs (which a type change
      // rebuilds or checks again: the lint decides what that means).
      auto r = w.exec_params(
          "SELECT format_type(a.atttypid, a.atttypmod), EXISTS (SELECT 1 FROM pg_index i JOIN pg_depend d "
          "ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND d.refobjid = a.attrelid AND "
          "d.refobjsubid = a.attnum WHERE i.indrelid = a.attrelid AND (i.indexprs IS NOT NULL OR i.indpred "
          "IS NOT NULL)) OR EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conrelid = a.attrelid AND "
          "c.contype IN ('c', 'x') AND a.attnum = ANY (c.conkey)) FROM pg_attribute a WHERE a.attrelid = "
          "to_regclass($1) AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped",
          RegclassText(table), column);
      if (r.empty()) continue;
      out.column_types[key] = r[0][0].c_str();
      if (r[0][1].as<bool>()) out.columns_with_dependents.insert(key);
    }
    for (const auto& key : q.constraints) {
      const auto [table, name] = SplitLast(key);
      auto r = w.exec_params("SELECT contype::text FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2",
                             RegclassText(table), name);
      if (!r.empty()) out.constraint_types[key] = r[0][0].c_str()[0];
    }
    w.abort();
    return out;
  } catch (...) {
    return FromCurrentException();
  }
}

}  // namespace tide
