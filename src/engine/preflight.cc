#include "engine/preflight.h"

#include <cctype>
#include <cstdio>
#include <regex>

#include "engine/alterations.h"
#include "engine/operations.h"
#include "plan/lint.h"
#include "tide/json.h"

namespace tide {
namespace {

std::string JsonArray(const std::vector<std::string>& items) {
  std::string out = "[";
  for (const auto& i : items) out += (out.size() > 1 ? "," : "") + i;
  return out + "]";
}

std::string Strings(const std::vector<std::string>& items) {
  std::vector<std::string> quoted;
  for (const auto& i : items) quoted.push_back(JsonEscape(i));
  return JsonArray(quoted);
}

// True when `written` ("users", "core.users", as a statement names it) is `table`.
bool Names(const std::string& written, const QualifiedName& table) {
  const size_t dot = written.rfind('.');
  if (dot == std::string::npos) return written == table.name;
  return written.substr(dot + 1) == table.name && (table.schema.empty() || written.substr(0, dot) == table.schema);
}

}  // namespace

std::vector<PlannedStatement> PlannedStatements(const Plan& plan) {
  std::vector<PlannedStatement> out;
  auto list = [&](const std::vector<Step>& steps, const char* phase) {
    for (size_t i = 0; i < steps.size(); ++i) {
      for (const auto& st : CompileStep(steps[i])) out.push_back({phase, i + 1, st.sql, st.lock});
    }
  };
  list(plan.expand, "expand");
  size_t n = 0;
  for (const auto& st : GateChecks(plan)) {
    out.push_back({"gate", ++n, st.sql, st.lock + "; only once the gates pass, then the gates are "
                   "checked again (removed again if a NULL arrived meanwhile)"});
  }
  list(plan.contract, "contract");
  list(plan.rollback, "rollback");
  return out;
}

std::set<std::string> ColumnsAddedByExpand(const Plan& plan, const QualifiedName& table) {
  std::set<std::string> out;
  for (const auto& step : plan.expand) {
    if (step.kind == OpKind::kAddColumn && step.table == table) out.insert(step.column);
    if (step.kind == OpKind::kAlterColumn && step.table == table) out.insert(ShadowColumn(step.column));
  }
  for (const auto& step : plan.expand) {
    if (step.kind != OpKind::kSql) continue;
    for (const auto& [written, column] : ColumnsAddedBy(step.sql)) {
      if (Names(written, table)) out.insert(column);
    }
  }
  return out;
}

bool TableCreatedByExpand(const Plan& plan, const QualifiedName& table) {
  for (const auto& step : plan.expand) {
    if (step.kind != OpKind::kSql) continue;
    for (const auto& written : TablesCreatedBy(step.sql)) {
      if (Names(written, table)) return true;
    }
  }
  return false;
}

std::vector<TableQuery> TablesToDescribe(const Plan& plan) {
  std::vector<TableQuery> out;
  auto query = [&](const QualifiedName& t) -> TableQuery& {
    for (auto& q : out) {
      if (q.table == t) return q;
    }
    out.push_back(TableQuery{t, {}, false});
    return out.back();
  };
  for (const auto& task : plan.backfill) query(task.table).key = task.key;
  for (const auto* steps : {&plan.expand, &plan.contract}) {
    for (const auto& s : *steps) {
      if (s.kind == OpKind::kSql || s.kind == OpKind::kDropIndex || s.alterations.size()) continue;
      if (s.kind == OpKind::kRenameTable) query(QualifiedName{s.table.schema, s.to});
      TableQuery& q = query(s.table);
      if (s.kind == OpKind::kAlterColumn) q.alter_steps.push_back(s);
      q.needs_rows |= s.kind == OpKind::kAddColumn && s.not_null && !s.default_sql;
      if (s.kind == OpKind::kAddColumn) q.add_types.push_back(s.type);
      if (s.kind == OpKind::kDropColumn) q.drop_columns.push_back(s.column);
    }
  }
  return out;
}

namespace {

const TableFacts kNoTable;

const TableFacts& FactsOf(const CatalogFacts& facts, const QualifiedName& table) {
  auto it = facts.find(table.Display());
  return it == facts.end() ? kNoTable : it->second;
}

std::string MissingColumn(const std::string& where, const QualifiedName& table, const std::string& c) {
  return where + ": column `" + c + "` does not exist in `" + table.Display() +
         "` and no expand step adds it";
}

std::string KeyNames(const std::vector<KeyColumn>& key) {
  std::string out;
  for (const auto& k : key) out += (out.empty() ? "" : ", ") + k.name;
  return out;
}

// tide works on whole tables only: its sessions run with row_security = off, so that
// PostgreSQL raises an error rather than showing them a subset of the rows, and a table whose
// policies would apply to tide's role is refused here, before anything changes.
void AssessRowSecurity(const std::string& where, const QualifiedName& table, const TableFacts& f,
                       std::vector<std::string>* problems) {
  if (!f.exists || !f.rls_enabled || f.role_bypasses_rls) return;
  if (f.role_is_owner && !f.rls_forced) return;  // the owner is exempt unless it is forced
  problems->push_back(
      where + ": `" + table.Display() + "` has row-level security enabled" +
      (f.rls_forced ? " and forced" : "") + ", and tide's role `" + f.role + "` " +
      (f.role_is_owner ? "owns it, but FORCE makes its policies apply to the owner too"
                       : "is not its owner") +
      " and has no BYPASSRLS: it would see only the rows the policies allow (the backfill "
      "would miss rows and a gate would count only visible ones). Run tide as a role with "
      "BYPASSRLS (ALTER ROLE " + f.role + " BYPASSRLS), or as the owner after ALTER TABLE " +
      table.Display() + " NO FORCE ROW LEVEL SECURITY");
}

PreflightTask AssessTask(const Plan& plan, const BackfillTask& task, const TableFacts& f,
                         std::vector<std::string>* problems) {
  PreflightTask t;
  t.table = task.table.Display();
  t.exists = f.exists;
  const std::string where = "backfill " + t.table;
  if (!f.exists) {
    if (!TableCreatedByExpand(plan, task.table)) {
      problems->push_back(where + ": the table does not exist and no expand step creates it");
    }
    return t;
  }
  if (!f.key_error.empty()) {
    problems->push_back(where + ": " + f.key_error);
  } else if (f.key.empty()) {
    problems->push_back(where + ": the table has no primary key; add `key: <a unique, not-null "
                        "column>` to the task");
  }
  if (!f.key.empty() && !f.key_unique) {
    problems->push_back(where + ": the key (" + KeyNames(f.key) + ") is not covered by a unique "
                        "index on NOT NULL columns, so batches could skip or repeat rows and "
                        "rows with a NULL key would never be filled; use the primary key or a "
                        "column with a unique index and NOT NULL as `key`");
  }
  AssessRowSecurity(where, task.table, f, problems);
  for (const auto& k : f.key) t.key += (t.key.empty() ? "" : ", ") + k.name + " " + k.type;
  t.estimated_rows = f.estimated_rows;
  t.total_bytes = f.total_bytes;
  const auto added = ColumnsAddedByExpand(plan, task.table);
  for (const auto& [column, expr] : task.set) {
    if (!f.columns.count(column) && !added.count(column)) {
      problems->push_back(where + ": column `" + column + "` does not exist and no expand step "
                          "adds it");
    }
  }
  return t;
}

// The tables and columns that typed operations name must be there (or be added by expand), and
// add_column must not add a NOT NULL column without a default to a table with rows.
void AssessOperations(const Plan& plan, const std::vector<Step>& steps, const std::string& phase,
                      const CatalogFacts& facts, std::vector<std::string>* problems) {
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    if (s.kind == OpKind::kSql || s.kind == OpKind::kDropIndex) continue;
    if (s.kind == OpKind::kCreateVersionSchema || s.kind == OpKind::kSwitch ||
        s.kind == OpKind::kUndoAlterations || s.kind == OpKind::kRevertSwitch) {
      continue;  // derived: their tables are those of the steps they stand for
    }
    const std::string where = phase + " step " + std::to_string(i + 1) + " (" + OpName(s.kind) + ")";
    const TableFacts& f = FactsOf(facts, s.table);
    if (!f.exists) {
      if (!TableCreatedByExpand(plan, s.table)) {
        problems->push_back(where + ": table `" + s.table.Display() + "` does not exist");
      }
      continue;
    }
    const auto added = ColumnsAddedByExpand(plan, s.table);
    auto known = [&](const std::string& c) { return f.columns.count(c) || added.count(c); };
    if ((s.kind == OpKind::kSetNotNull || s.kind == OpKind::kRenameColumn) && !known(s.column)) {
      problems->push_back(MissingColumn(where, s.table, s.column));
    }
    if (s.kind == OpKind::kRenameColumn && known(s.to)) {
      problems->push_back(where + ": `" + s.table.Display() + "` already has a column `" + s.to + "`");
    }
    if (s.kind == OpKind::kRenameTable && FactsOf(facts, QualifiedName{s.table.schema, s.to}).exists) {
      problems->push_back(where + ": a table or view `" + s.to + "` already exists");
    }
    if (s.kind == OpKind::kAlterColumn) {
      auto it = f.altered.find(s.column);
      if (it == f.altered.end() || !it->second.exists) {
        problems->push_back(where + ": column `" + s.column + "` does not exist in `" +
                            s.table.Display() + "`");
      } else {
        for (const auto& why : it->second.blockers) {
          problems->push_back(where + ": " + s.table.Display() + "." + s.column + ": " + why);
        }
      }
      AssessRowSecurity(where, s.table, f, problems);
    }
    for (const auto& c : s.columns) {
      if (!known(c)) problems->push_back(MissingColumn(where, s.table, c));
    }
    if ((s.kind == OpKind::kCreateIndex || s.kind == OpKind::kAddUnique) && f.partitioned) {
      problems->push_back(where + ": `" + s.table.Display() + "` is partitioned, and PostgreSQL "
                          "15 cannot build an index CONCURRENTLY on a partitioned table; build "
                          "it on each partition CONCURRENTLY, then attach them to an index "
                          "created ON ONLY the parent");
    }
    if (s.kind == OpKind::kAddForeignKey && f.partitioned) {
      problems->push_back(where + ": `" + s.table.Display() + "` is partitioned, and PostgreSQL "
                          "15 cannot add a NOT VALID foreign key to a partitioned table (it "
                          "would scan every partition under lock); add the foreign key to each "
                          "partition instead, then to the parent");
    }
    if (s.kind == OpKind::kSetNotNull || s.kind == OpKind::kAddCheck ||
        s.kind == OpKind::kAddForeignKey || s.kind == OpKind::kAddUnique) {
      AssessRowSecurity(where, s.table, f, problems);
    }
    if (s.kind == OpKind::kAddColumn && f.rewriting_types.count(s.type)) {
      problems->push_back(where + ": `" + s.type + "` is a domain with constraints, and PostgreSQL "
                          "adds a column of such a type by rewriting all of `" + s.table.Display() +
                          "` under ACCESS EXCLUSIVE (it checks the domain on every row); add the "
                          "column with the domain's base type, backfill it, and add the domain's "
                          "rule with `add_check`");
    }
    if (s.kind == OpKind::kDropColumn) {
      auto it = f.dependents.find(s.column);
      if (it != f.dependents.end() && !it->second.empty()) {
        std::string names;
        for (const auto& d : it->second) names += (names.empty() ? "" : ", ") + d;
        problems->push_back(where + ": " + names + " depend" + (it->second.size() == 1 ? "s" : "") +
                            " on column `" + s.column + "` of `" + s.table.Display() +
                            "`, so the drop would fail after the whole backfill; change or drop "
                            "them first (tide never drops with CASCADE)");
      }
    }
    if (s.kind == OpKind::kAddColumn && s.not_null && !s.default_sql && f.has_rows) {
      problems->push_back(where + ": `" + s.table.Display() + "` has rows, so a NOT NULL column "
                          "without a default cannot be added; add it nullable, backfill it, then "
                          "`set_not_null` in contract");
    }
  }
}

}  // namespace

namespace {
// With the catalog at hand, the switch of alter_column steps is listed as it would run now
// (every index and constraint it builds again), in place of its description.
void ListSwitchFromCatalog(const Plan& plan, const CatalogFacts& facts,
                           std::vector<PlannedStatement>* statements) {
  for (size_t i = 0; i < plan.contract.size(); ++i) {
    const Step& step = plan.contract[i];
    if (step.kind != OpKind::kSwitch) continue;
    SwitchFacts sf;
    for (const auto& a : step.alterations) {
      if (a.kind != OpKind::kAlterColumn) continue;
      auto t = facts.find(a.table.Display());
      if (t == facts.end()) return;
      auto c = t->second.altered.find(a.column);
      if (c == t->second.altered.end()) return;
      ColumnFacts f = c->second;
      f.shadow_exists = true;  // as it will be once expand ran
      sf[FactsKey(a.table, a.column)] = f;
    }
    std::string problem;
    const std::vector<DdlStatement> compiled =
        CompileSwitch(step, sf, &problem, plan.settings.lock_timeout.value_or(Millis(2000)),
                      plan.settings.statement_timeout.value_or(Millis(30000)));
    if (!problem.empty()) return;  // the preflight's problems say why
    std::vector<PlannedStatement> out;
    for (const auto& ps : *statements) {
      if (ps.phase == "contract" && ps.step == i + 1) continue;
      out.push_back(ps);
    }
    auto at = out.begin();
    while (at != out.end() && !(at->phase == "contract" && at->step > i + 1) && at->phase != "rollback") ++at;
    std::vector<PlannedStatement> listed;
    for (const auto& st : compiled) listed.push_back({"contract", i + 1, st.sql, st.lock});
    out.insert(at, listed.begin(), listed.end());
    *statements = std::move(out);
  }
}
}  // namespace

PreflightReport AssessPlan(const Plan& plan, const CatalogFacts& facts, int64_t default_rate_cap,
                           const std::vector<double>& measured) {
  PreflightReport r;
  r.database = plan.database;
  r.statements = PlannedStatements(plan);
  ListSwitchFromCatalog(plan, facts, &r.statements);
  for (const auto& s : plan.expand) {
    if (s.kind != OpKind::kCreateVersionSchema) continue;
    r.notes.push_back("the new version of the application can run before contract with `SET "
                      "search_path TO " + VersionSchema(plan.name) + ", <its schemas>`; deploy it "
                      "once the agree: gates pass (before, rows the backfill has not reached read "
                      "NULL there, and the new columns have no indexes until contract)");
    bool altered = false;
    for (const auto& a : s.alterations) altered |= a.kind == OpKind::kAlterColumn;
    if (altered) {
      r.notes.push_back("after the switch each altered column is the last of its table: an INSERT "
                        "or COPY without a column list would put values in the wrong columns");
    }
  }
  for (size_t i = 0; i < plan.backfill.size(); ++i) {
    const BackfillTask& task = plan.backfill[i];
    PreflightTask t = AssessTask(plan, task, FactsOf(facts, task.table), &r.problems);
    if (i < measured.size()) t.measured_rows_per_second = measured[i];
    t.time = EstimateTime(t.estimated_rows, task.max_rows_per_second.value_or(default_rate_cap),
                          t.measured_rows_per_second);
    r.tasks.push_back(std::move(t));
  }
  AssessOperations(plan, plan.expand, "expand", facts, &r.problems);
  AssessOperations(plan, plan.contract, "contract", facts, &r.problems);
  for (size_t i = 0; i < plan.gates.size(); ++i) {
    const Gate& g = plan.gates[i];
    if (g.kind == Gate::Kind::kNullCount) {
      AssessRowSecurity("gate " + std::to_string(i + 1), g.table, FactsOf(facts, g.table),
                        &r.problems);
    }
  }
  return r;
}

std::string EstimateTime(int64_t rows, int64_t rate_cap, double measured) {
  auto words = [](double seconds) {
    char buf[32];
    if (seconds >= 3600) std::snprintf(buf, sizeof buf, "%.1fh", seconds / 3600);
    else if (seconds >= 60) std::snprintf(buf, sizeof buf, "%.0fm", seconds / 60);
    else std::snprintf(buf, sizeof buf, "%.0fs", seconds < 1 ? 1.0 : seconds);
    return std::string(buf);
  };
  if (rows <= 0) return "no rows to fill (or the table was never analyzed)";
  if (rate_cap > 0 && (measured <= 0 || measured > rate_cap)) {
    return "about " + words(static_cast<double>(rows) / rate_cap) + " at " +
           std::to_string(rate_cap) + " rows/s (max_rows_per_second)";
  }
  if (measured > 0) {
    return "about " + words(rows / measured) + " at " + std::to_string(static_cast<int64_t>(measured)) +
           " rows/s (the first batch's speed, one worker, before throttling)";
  }
  return "no rate cap: as fast as the database allows; --dry-run measures the first batch";
}

std::string FormatBytes(int64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) v /= 1024, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string FormatPreflight(const PreflightReport& r) {
  std::string out = "preflight on database `" + r.database + "`" +
                    (r.dry_run ? " (dry run: everything rolled back)" : "") + "\n";
  for (const auto& t : r.tasks) {
    out += "  backfill " + t.table + ": ";
    if (!t.exists) {
      out += "the table does not exist yet\n";
      continue;
    }
    out += "~" + std::to_string(t.estimated_rows) + " rows, " + FormatBytes(t.total_bytes) +
           ", key " + (t.key.empty() ? "none" : t.key) + "; " + t.time + "\n";
    if (!t.explain.empty()) out += "    first batch:\n      " + std::regex_replace(t.explain, std::regex("\n"), "\n      ") + "\n";
  }
  if (!r.statements.empty()) out += "  statements and the locks they take:\n";
  for (const auto& s : r.statements) {
    out += "    " + s.phase + " " + std::to_string(s.step) + ": " + s.sql + "\n      lock: " + s.lock + "\n";
  }
  for (size_t i = 0; i < r.gate_explains.size(); ++i) {
    out += "  gate " + std::to_string(i + 1) + ":\n      " +
           std::regex_replace(r.gate_explains[i], std::regex("\n"), "\n      ") + "\n";
  }
  for (const auto& n : r.notes) out += "  " + n + "\n";
  for (const auto& p : r.problems) out += "  problem: " + p + "\n";
  out += r.ok() ? "  no problems found\n" : "  " + std::to_string(r.problems.size()) + " problem(s)\n";
  return out;
}

std::string PreflightJson(const PreflightReport& r) {
  std::vector<std::string> tasks, statements;
  for (const auto& t : r.tasks) {
    tasks.push_back(JsonObject()
                        .Str("table", t.table)
                        .Bool("exists", t.exists)
                        .Str("key", t.key)
                        .Int("estimated_rows", t.estimated_rows)
                        .Int("total_bytes", t.total_bytes)
                        .Str("time", t.time)
                        .ToString());
  }
  for (const auto& s : r.statements) {
    statements.push_back(JsonObject()
                             .Str("phase", s.phase)
                             .Int("step", static_cast<int64_t>(s.step))
                             .Str("sql", s.sql)
                             .Str("lock", s.lock)
                             .ToString());
  }
  return JsonObject()
      .Str("database", r.database)
      .Bool("dry_run", r.dry_run)
      .Raw("tasks", JsonArray(tasks))
      .Raw("statements", JsonArray(statements))
      .Raw("problems", Strings(r.problems))
      .ToString();
}

}  // namespace tide
