#include "plan/plan_parser.h"

#include <cctype>
#include <cstdio>
#include <map>
#include <set>

#include "engine/alterations.h"
#include "plan/duration_ranges.h"
#include "plan/guards_parser.h"
#include "plan/lint.h"
#include "plan/sql_parse.h"
#include "plan/yaml_reader.h"

namespace tide {
namespace {

constexpr int64_t kMaxBatchSize = 1000000;

class PlanParser {
 public:
  PlanParser(const std::string& file, std::vector<Diagnostic>* diags)
      : file_(file), r_(file, diags) {}

  void Parse(const std::string& text, Plan* plan) {
    YAML::Node root;
    if (!r_.Load(text, &root, kMaxPlanBytes)) return;
    if (!r_.ExpectMap(root, "the plan",
                      {"plan", "database", "description", "settings", "expand", "backfill",
                       "gates", "contract", "rollback", "rollout"}) &&
        !root.IsMap()) {
      return;
    }
    ParseHeader(root, plan);
    if (root["settings"]) ParseSettings(root["settings"], plan);
    if (root["rollout"]) ParseRollout(root["rollout"], plan);
    if (root["expand"]) ParseSteps(root["expand"], "expand", &plan->expand);
    if (root["backfill"]) ParseBackfill(root["backfill"], plan);
    if (root["gates"]) ParseGates(root["gates"], plan);
    if (root["contract"]) ParseSteps(root["contract"], "contract", &plan->contract);
    if (root["rollback"]) ParseSteps(root["rollback"], "rollback", &plan->rollback);
    if (!r_.has_errors()) CheckPhases(root, *plan);
    if (!r_.has_errors()) CheckAlterations(*plan);
    if (!r_.has_errors()) DeriveAlterations(plan);
    if (!r_.has_errors() && plan->retention && plan->revert.empty()) {
      r_.Error(root["settings"]["retention"],
               "`retention` keeps the old columns of alter_column, rename_column and rename_table "
               "steps, and this plan has none",
               "remove `retention`");
    }
  }

 private:
  void ParseHeader(const YAML::Node& root, Plan* plan) {
    if (auto name = r_.String(root, "plan", "the plan", true)) {
      plan->name = *name;
      if (!IsValidPlanName(*name)) {
        r_.Error(root["plan"], "plan name `" + *name + "` is not allowed",
                 "use 1 to 63 lower-case letters, digits and underscores, e.g. add_clinic_id");
      }
    }
    if (auto db = r_.String(root, "database", "the plan", true)) {
      plan->database = *db;
      plan->database_pos = r_.Pos(root["database"]);
    }
    if (auto d = r_.String(root, "description", "the plan", false)) plan->description = *d;
  }

  void ParseRollout(const YAML::Node& node, Plan* plan) {
    const std::string what = "`rollout`";
    Rollout& ro = plan->rollout;
    ro.given = true;
    ro.pos = r_.Pos(node);
    if (!r_.ExpectMap(node, what, {"canary", "max_parallel", "on_failure", "contract"}) &&
        !node.IsMap()) {
      return;
    }
    if (auto v = r_.Int(node, "canary", what, 0, 100000)) ro.canary = *v;
    if (auto v = r_.Int(node, "max_parallel", what, 1, 1000)) ro.max_parallel = *v;
    if (auto v = r_.String(node, "on_failure", what, false)) {
      if (*v == "halt") ro.on_failure = Rollout::OnFailure::kHalt;
      else if (*v == "continue") ro.on_failure = Rollout::OnFailure::kContinue;
      else r_.Error(node["on_failure"], "`on_failure` in `rollout` is `" + *v + "`",
                    "use `halt` (start no new database after a failure) or `continue`");
    }
    if (auto v = r_.String(node, "contract", what, false)) {
      if (*v == "each") ro.contract = Rollout::Contract::kEach;
      else if (*v == "together") ro.contract = Rollout::Contract::kTogether;
      else r_.Error(node["contract"], "`contract` in `rollout` is `" + *v + "`",
                    "use `together` (no database contracts before every database's gates pass) "
                    "or `each`");
    }
  }

  void ParseSettings(const YAML::Node& node, Plan* plan) {
    if (!r_.ExpectMap(node, "`settings`",
                      {"lock_timeout", "statement_timeout", "gate_timeout", "batch_size",
                       "max_replication_lag", "max_active_sessions", "throttle_query",
                       "yield_ratio", "ddl_retries", "retention"}, GuardKeys())) {
      if (!node.IsMap()) return;
    }
    StatementSettings& st = plan->settings;
    st.lock_timeout = r_.Duration(node, "lock_timeout", "`settings`", kLockTimeoutRange);
    st.statement_timeout =
        r_.Duration(node, "statement_timeout", "`settings`", kStatementTimeoutRange);
    st.gate_timeout = r_.Duration(node, "gate_timeout", "`settings`", kGateTimeoutRange);
    plan->batch_size = r_.Int(node, "batch_size", "`settings`", 1, kMaxBatchSize);
    st.max_replication_lag =
        r_.Duration(node, "max_replication_lag", "`settings`", kMaxReplicationLagRange);
    st.max_active_sessions = r_.Int(node, "max_active_sessions", "`settings`", 0, 100000);
    if (auto q = r_.String(node, "throttle_query", "`settings`", false)) st.throttle_query = *q;
    st.yield_ratio = r_.Ratio(node, "yield_ratio", "`settings`", 10);
    st.ddl_retries = r_.Int(node, "ddl_retries", "`settings`", 0, 1000);
    plan->retention = r_.Duration(node, "retention", "`settings`", kRetentionRange);
    ParseGuards(r_, node, "`settings`", &st.health);
  }

  void ParseSteps(const YAML::Node& node, const std::string& phase, std::vector<Step>* out) {
    if (!r_.ExpectList(node, "`" + phase + "`")) return;
    static const std::vector<std::string> ops = {
        "sql",       "add_column", "create_index", "set_not_null", "add_foreign_key",
        "add_check", "add_unique", "drop_column",  "drop_index", "alter_column",
        "rename_column", "rename_table", "add_primary_key"};
    std::vector<std::string> allowed = ops;
    allowed.push_back("unsafe");
    allowed.push_back("statement_timeout");
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node n = node[i];
      const std::string what = phase + " step " + std::to_string(i + 1);
      if (!r_.ExpectMap(n, what, allowed)) {
        if (!n.IsMap()) continue;
      }
      std::vector<std::string> found;
      for (const auto& op : ops) {
        if (n[op]) found.push_back(op);
      }
      if (found.size() != 1) {
        r_.Error(n, found.empty() ? what + " has no operation" : what + " has more than one operation (`" + found[0] + "` and `" + found[1] + "`)",
                 "give each step exactly one of: sql, add_column, create_index, set_not_null, "
                 "add_foreign_key, add_check, add_unique, drop_column, drop_index, alter_column, "
                 "rename_column, rename_table, add_primary_key");
        continue;
      }
      Step step;
      step.pos = r_.Pos(n);
      step.statement_timeout = r_.Duration(n, "statement_timeout", what, kStatementTimeoutRange);
      if (found[0] == "sql") {
        ParseSqlStep(n, what, &step);
      } else {
        const std::string w = "`" + found[0] + "` in " + what;
        ParseOperation(found[0], n[found[0]], w, &step);
        if (n["unsafe"]) {
          r_.Error(n["unsafe"], "`unsafe` in " + what + " applies to `sql` steps only",
                   "typed operations are always compiled to their safe form; remove `unsafe`");
        }
        if ((step.kind == OpKind::kDropColumn || step.kind == OpKind::kDropIndex) &&
            phase == "expand") {
          r_.Error(n, "`" + found[0] + "` in " + what + " is not backward compatible",
                   "move it to `contract` (or to `rollback`)");
        }
        if ((step.kind == OpKind::kAlterColumn || step.kind == OpKind::kRenameColumn ||
             step.kind == OpKind::kRenameTable) &&
            phase != "expand") {
          r_.Error(n, "`" + found[0] + "` in " + what + " belongs in `expand`",
                   "write it in `expand`: tide derives its backfill, its gate and its switch in "
                   "contract");
        }
      }
      out->push_back(std::move(step));
    }
  }

  void ParseSqlStep(const YAML::Node& n, const std::string& what, Step* step) {
    auto sql = r_.String(n, "sql", what, true);
    if (sql && Trim(*sql).empty()) r_.Error(n["sql"], what + " has an empty `sql`");
    auto unsafe = r_.String(n, "unsafe", what, false);
    if (unsafe && Trim(*unsafe).empty()) {
      r_.Error(n["unsafe"], "`unsafe` in " + what + " is empty", "say why the step is safe here");
    }
    step->sql = sql.value_or("");
    step->unsafe = unsafe.value_or("");
  }

  // One typed operation's map. Field rules per kind are in include/tide/plan.h (OpKind).
  void ParseOperation(const std::string& op, const YAML::Node& m, const std::string& what,
                      Step* step) {
    struct Shape {
      OpKind kind;
      std::vector<std::string> keys;
    };
    static const std::map<std::string, Shape> shapes = {
        {"add_column", {OpKind::kAddColumn, {"table", "column", "type", "default", "not_null"}}},
        {"create_index",
         {OpKind::kCreateIndex,
          {"table", "name", "columns", "expression", "unique", "where", "method"}}},
        {"set_not_null", {OpKind::kSetNotNull, {"table", "column"}}},
        {"add_foreign_key",
         {OpKind::kAddForeignKey, {"table", "columns", "references", "name", "on_delete"}}},
        {"add_check", {OpKind::kAddCheck, {"table", "name", "expression"}}},
        {"add_unique", {OpKind::kAddUnique, {"table", "name", "columns"}}},
        {"drop_column", {OpKind::kDropColumn, {"table", "column"}}},
        {"drop_index", {OpKind::kDropIndex, {"name"}}},
        {"alter_column",
         {OpKind::kAlterColumn,
          {"table", "column", "type", "up", "down", "not_null", "default", "check", "unique"}}},
        {"rename_column", {OpKind::kRenameColumn, {"table", "from", "to"}}},
        {"rename_table", {OpKind::kRenameTable, {"from", "to"}}},
        {"add_primary_key", {OpKind::kAddPrimaryKey, {"table", "columns", "name"}}},
    };
    const Shape& shape = shapes.at(op);
    step->kind = shape.kind;
    if (!r_.ExpectMap(m, what, shape.keys)) {
      if (!m.IsMap()) return;
    }
    if (step->kind == OpKind::kDropIndex) {
      Table(m, "name", what, &step->name);
      return;
    }
    if (step->kind == OpKind::kRenameTable) {
      Table(m, "from", what, &step->table);
      step->to = Name(m, "to", what, true);
      return;
    }
    Table(m, "table", what, &step->table);
    switch (step->kind) {
      case OpKind::kAddColumn: return ParseAddColumn(m, what, step);
      case OpKind::kSetNotNull:
      case OpKind::kDropColumn:
        step->column = Name(m, "column", what, true);
        return;
      case OpKind::kCreateIndex: return ParseCreateIndex(m, what, step);
      case OpKind::kAddForeignKey: return ParseForeignKey(m, what, step);
      case OpKind::kAddCheck:
        step->name.name = Name(m, "name", what, true);
        step->expression = Sql(m, "expression", what, true);
        Expression(m["expression"], "expression", what, step->expression);
        return;
      case OpKind::kAddUnique:
        step->name.name = Name(m, "name", what, true);
        step->columns = Names(m, "columns", what, true);
        return;
      case OpKind::kAlterColumn: return ParseAlterColumn(m, what, step);
      case OpKind::kRenameColumn:
        step->column = Name(m, "from", what, true);
        step->to = Name(m, "to", what, true);
        if (!step->column.empty() && step->column == step->to) {
          r_.Error(m["to"], what + " renames `" + step->column + "` to itself");
        }
        return;
      case OpKind::kAddPrimaryKey:
        step->columns = Names(m, "columns", what, true);
        if (m["name"]) step->name.name = Name(m, "name", what, true);
        return;
      default: return;
    }
  }

  void ParseAddColumn(const YAML::Node& m, const std::string& what, Step* step) {
    step->column = Name(m, "column", what, true);
    step->type = Sql(m, "type", what, true);
    if (m["default"]) step->default_sql = Sql(m, "default", what, true);
    step->not_null = Bool(m, "not_null", what);
    TypeOnly(m["type"], what, step->type,
             "give only the type (e.g. `text`, `numeric(10,2)`); use `default:`, "
             "`not_null:` or a later typed operation for the rest");
    if (step->default_sql) Expression(m["default"], "default", what, *step->default_sql);
    if (step->default_sql && IsVolatileExpression(*step->default_sql)) {
      r_.Error(m["default"], "the default of " + what + " is volatile, which rewrites the whole "
                             "table under an ACCESS EXCLUSIVE lock",
               "add the column without a default (or with a constant one) and fill it with a "
               "backfill task");
    }
  }

  void ParseAlterColumn(const YAML::Node& m, const std::string& what, Step* step) {
    step->column = Name(m, "column", what, true);
    step->type = Sql(m, "type", what, false);
    step->up = Sql(m, "up", what, false);
    step->down = Sql(m, "down", what, false);
    if (m["default"]) step->default_sql = Sql(m, "default", what, true);
    step->not_null = Bool(m, "not_null", what);
    TypeOnly(m["type"], what, step->type,
             "give only the type (e.g. `bigint`); use `not_null:`, `default:`, `check:` or "
             "`unique:` for the rest");
    Expression(m["up"], "up", what, step->up);
    Expression(m["down"], "down", what, step->down);
    if (step->default_sql) Expression(m["default"], "default", what, *step->default_sql);
    if (const YAML::Node c = m["check"]) {
      const std::string cw = "`check` in " + what;
      if (r_.ExpectMap(c, cw, {"name", "expression"}) || c.IsMap()) {
        step->name.name = Name(c, "name", cw, true);
        step->expression = Sql(c, "expression", cw, true);
        Expression(c["expression"], "expression", cw, step->expression);
      }
    }
    if (const YAML::Node u = m["unique"]) {
      const std::string uw = "`unique` in " + what;
      if (r_.ExpectMap(u, uw, {"name"}) || u.IsMap()) step->unique_name = Name(u, "name", uw, true);
    }
    if (step->type.empty() && step->up.empty() && !step->not_null && !step->default_sql &&
        step->name.name.empty() && step->unique_name.empty()) {
      r_.Error(m, what + " changes nothing",
               "give at least one of `type`, `up`, `not_null`, `default`, `check`, `unique`");
    }
    if (!step->down.empty() && step->up.empty() && step->type.empty()) {
      r_.Error(m["down"], "`down` in " + what + " without `type` or `up`",
               "`down` gives the old value from a new one: say how the new one differs");
    }
  }

  // Alterations that would step on each other's shadows, triggers or names.
  void CheckAlterations(const Plan& plan) {
    std::set<std::string> altered, renamed_tables;
    for (const auto& s : plan.expand) {
      const std::string key = s.table.Display() + "." + s.column;
      if (s.kind == OpKind::kAlterColumn && !altered.insert(key).second) {
        r_.Error(s.pos, "`" + key + "` is altered twice in this plan",
                 "put every change of the column in one `alter_column`");
      }
      if (s.kind == OpKind::kRenameTable && !renamed_tables.insert(s.table.Display()).second) {
        r_.Error(s.pos, "`" + s.table.Display() + "` is renamed twice in this plan");
      }
    }
    // One view per table in the version schema, by the table's (new) name.
    std::map<std::string, std::string> views;  // view name -> table
    for (const auto& s : plan.expand) {
      if (s.kind != OpKind::kAlterColumn && s.kind != OpKind::kRenameColumn && s.kind != OpKind::kRenameTable) continue;
      std::string view = s.table.name;
      for (const auto& r : plan.expand) {
        if (r.kind == OpKind::kRenameTable && r.table == s.table) view = r.to;
      }
      auto [it, fresh] = views.emplace(view, s.table.Display());
      if (!fresh && it->second != s.table.Display()) {
        r_.Error(s.pos, "`" + s.table.Display() + "` and `" + it->second + "` would both be the view `" +
                            view + "` of the plan's version schema",
                 "change them in two plans");
      }
    }
    for (const auto& s : plan.expand) {
      if (s.kind == OpKind::kRenameColumn && altered.count(s.table.Display() + "." + s.column)) {
        r_.Error(s.pos, "`" + s.table.Display() + "." + s.column + "` is both altered and renamed",
                 "rename it in a plan of its own, after this one");
      }
    }
  }

  void ParseCreateIndex(const YAML::Node& m, const std::string& what, Step* step) {
    step->name.name = Name(m, "name", what, true);
    step->columns = Names(m, "columns", what, false);
    step->expression = Sql(m, "expression", what, false);
    if (step->columns.empty() == step->expression.empty()) {
      r_.Error(m, what + " needs exactly one of `columns` and `expression`",
               "e.g. `columns: [clinicId]` or `expression: lower(email)`");
    }
    step->unique = Bool(m, "unique", what);
    step->where = Sql(m, "where", what, false);
    Expression(m["expression"], "expression", what, step->expression);
    Expression(m["where"], "where", what, step->where);
    step->method = Sql(m, "method", what, false);
    static const std::set<std::string> methods = {"",    "btree", "hash",  "gist",
                                                  "gin", "brin",  "spgist"};
    if (!methods.count(step->method)) {
      r_.Error(m["method"], "`method` in " + what + " is `" + step->method + "`",
               "use one of btree, hash, gist, gin, brin, spgist");
    }
  }

  void ParseForeignKey(const YAML::Node& m, const std::string& what, Step* step) {
    step->columns = Names(m, "columns", what, true);
    if (m["name"]) step->name.name = Name(m, "name", what, true);
    const YAML::Node ref = m["references"];
    const std::string rw = "`references` in " + what;
    if (!ref) {
      r_.Error(m, what + " is missing the required key `references`",
               "add `references: {table: other, columns: [id]}`");
    } else if (r_.ExpectMap(ref, rw, {"table", "columns"}) || ref.IsMap()) {
      Table(ref, "table", rw, &step->ref_table);
      step->ref_columns = Names(ref, "columns", rw, true);
      if (!step->columns.empty() && step->ref_columns.size() != step->columns.size()) {
        r_.Error(ref["columns"], rw + " names " + std::to_string(step->ref_columns.size()) +
                                     " column(s) for " + std::to_string(step->columns.size()),
                 "give one referenced column for each column");
      }
    }
    step->on_delete = Sql(m, "on_delete", what, false);
    static const std::set<std::string> actions = {"",         "no action", "restrict",
                                                  "cascade",  "set null",  "set default"};
    if (!actions.count(step->on_delete)) {
      r_.Error(m["on_delete"], "`on_delete` in " + what + " is `" + step->on_delete + "`",
               "use one of: no action, restrict, cascade, set null, set default");
    }
  }

  // A required or optional identifier.
  std::string Name(const YAML::Node& m, const std::string& key, const std::string& what,
                   bool required) {
    auto v = r_.String(m, key, what, required);
    if (!v) return "";
    Identifier(m[key], "`" + key + "` in " + what);
    return *v;
  }

  // A column name or a list of them.
  std::vector<std::string> Names(const YAML::Node& m, const std::string& key,
                                 const std::string& what, bool required) {
    std::vector<std::string> out;
    const YAML::Node n = m[key];
    if (!n || n.IsNull()) {
      if (required) {
        r_.Error(m, what + " is missing the required key `" + key + "`",
                 "add `" + key + ": [column, ...]`");
      }
      return out;
    }
    std::vector<YAML::Node> parts;
    if (n.IsSequence()) {
      for (const auto& k : n) parts.push_back(k);
    } else {
      parts.push_back(n);
    }
    if (parts.empty()) r_.Error(n, "`" + key + "` in " + what + " is an empty list");
    for (const auto& k : parts) {
      if (!k.IsScalar()) {
        r_.Error(k, "`" + key + "` in " + what + " must be a column name or a list of them");
        continue;
      }
      Identifier(k, "`" + key + "` in " + what);
      out.push_back(k.Scalar());
    }
    return out;
  }

  // A SQL fragment (passed through unchanged).
  std::string Sql(const YAML::Node& m, const std::string& key, const std::string& what,
                  bool required) {
    auto v = r_.String(m, key, what, required);
    if (v && Trim(*v).empty()) r_.Error(m[key], "`" + key + "` in " + what + " is empty");
    return v.value_or("");
  }

  // An SQL expression of the plan (a default, `up`, a check, `where`, a `set` value) must be
  // one expression PostgreSQL's parser reads: tide places it in its own statements as written.
  void Expression(const YAML::Node& at, const std::string& key, const std::string& what,
                  const std::string& text, const std::string& wrap_before = "SELECT (",
                  const std::string& wrap_after = "\n)") {
    if (Trim(text).empty()) return;
    const SqlParse p = ParseSql(wrap_before + text + wrap_after);
    if (!p.ok()) {
      r_.Error(at, "`" + key + "` in " + what + " is not SQL PostgreSQL can read: " + p.error,
               "correct it; tide puts it in its statements as written");
    } else if (p.statements.size() != 1) {
      r_.Error(at, "`" + key + "` in " + what + " holds more than one expression",
               "give one SQL expression, without a semicolon");
    }
  }

  // A column type alone (`numeric(10,2)`, `text[]`): read as a column of a table, with nothing
  // else in its definition.
  void TypeOnly(const YAML::Node& at, const std::string& what, const std::string& type,
                const std::string& hint) {
    if (Trim(type).empty()) return;
    const SqlParse p = ParseSql("CREATE TABLE t (c " + type + "\n)");
    const SqlNode* elts = p.ok() && p.statements.size() == 1 ? Field(p.statements[0].body, "tableElts") : nullptr;
    const bool one_column = elts && elts->is_array() && elts->size() == 1 && KindOf((*elts)[0]) == "ColumnDef";
    if (!p.ok() || !one_column) {
      r_.Error(at, "`type` in " + what + " is not a type PostgreSQL can read" + (p.ok() ? "" : ": " + p.error),
               "give only the type (e.g. `text`, `numeric(10,2)`)");
    } else if (const SqlNode* cons = Field(BodyOf((*elts)[0]), "constraints")) {
      static const std::map<std::string, std::string> words = {
          {"CONSTR_NOTNULL", "NOT NULL"}, {"CONSTR_NULL", "NULL"}, {"CONSTR_DEFAULT", "DEFAULT"},
          {"CONSTR_PRIMARY", "PRIMARY KEY"}, {"CONSTR_FOREIGN", "REFERENCES"}, {"CONSTR_UNIQUE", "UNIQUE"},
          {"CONSTR_CHECK", "CHECK"}, {"CONSTR_GENERATED", "GENERATED"}, {"CONSTR_IDENTITY", "GENERATED"}};
      const auto it = words.find(StringField(BodyOf((*cons)[0]), "contype"));
      r_.Error(at, "`type` in " + what + " holds `" + (it == words.end() ? "a constraint" : it->second) + "`", hint);
    } else if (Field(BodyOf((*elts)[0]), "collClause")) {
      r_.Error(at, "`type` in " + what + " holds `COLLATE`", hint);
    }
  }

  bool Bool(const YAML::Node& m, const std::string& key, const std::string& what) {
    return r_.Bool(m, key, what).value_or(false);
  }


  void ParseBackfill(const YAML::Node& node, Plan* plan) {
    if (!r_.ExpectList(node, "`backfill`")) return;
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node t = node[i];
      const std::string what = "backfill task " + std::to_string(i + 1);
      if (!r_.ExpectMap(t, what,
                        {"table", "key", "set", "where", "from", "batch_size", "workers",
                         "target_batch_time", "min_batch_size", "max_batch_size",
                         "max_rows_per_second", "pause_between_batches", "sync_trigger",
                         "batch_by", "verify"})) {
        if (!t.IsMap()) continue;
      }
      BackfillTask task;
      task.pos = r_.Pos(t);
      Table(t, "table", what, &task.table);
      ParseKey(t, what, &task);
      ParseSet(t, what, &task);
      if (auto w = r_.String(t, "where", what, false)) task.where = *w;
      Expression(t["where"], "where", what, task.where);
      if (auto f = r_.String(t, "from", what, false)) {
        Expression(t["from"], "from", what, *f, "SELECT 1 FROM ", "\n");
        // UPDATE t SET c = e FROM other o WHERE join, batched by t's key: each value is looked
        // up in `from` by `where` (the join); a row with no match stays as it is.
        if (task.where.empty()) {
          r_.Error(t["from"], "`from` in " + what + " needs `where`: the join to " + *f,
                   "e.g. `where: o.id = patient_offers.\"offerId\"`");
        }
        task.from = *f;
        for (auto& [column, expr] : task.set) {
          expr = "(SELECT " + expr + " FROM " + *f + " WHERE " + task.where + " LIMIT 1)";
        }
        task.where.clear();
      }
      ParseTuning(t, what, &task);
      CheckSyncTrigger(t, what, task);
      for (const auto& other : plan->backfill) {
        if (other.table == task.table && !task.table.name.empty()) {
          r_.Error(t, what + " backfills `" + task.table.Display() + "` again",
                   "put every column of one table in a single task's `set`");
        }
      }
      plan->backfill.push_back(std::move(task));
    }
  }

  void ParseTuning(const YAML::Node& t, const std::string& what, BackfillTask* task) {
    task->batch_size = r_.Int(t, "batch_size", what, 1, kMaxBatchSize);
    task->workers = r_.Int(t, "workers", what, 1, 64);
    task->target_batch_time = r_.Duration(t, "target_batch_time", what, kTargetBatchTimeRange);
    task->min_batch_size = r_.Int(t, "min_batch_size", what, 1, kMaxBatchSize);
    task->max_batch_size = r_.Int(t, "max_batch_size", what, 1, kMaxBatchSize);
    task->max_rows_per_second = r_.Int(t, "max_rows_per_second", what, 1, 100000000);
    task->pause_between_batches =
        r_.Duration(t, "pause_between_batches", what, kPauseBetweenBatchesRange);
    if (task->min_batch_size && task->max_batch_size && *task->min_batch_size > *task->max_batch_size) {
      r_.Error(t["min_batch_size"], "`min_batch_size` in " + what + " is above `max_batch_size`");
    }
    task->sync_trigger = Bool(t, "sync_trigger", what);
    task->verify = Bool(t, "verify", what);
    if (task->verify && !task->where.empty()) {
      r_.Error(t["verify"], "`verify: true` in " + what + " compares every row with the `set` "
                            "expressions, but `where` fills only the rows it matches",
               "remove `verify`, or add a `sql` gate that counts the rows that differ");
    }
    for (const auto& [column, expr] : task->set) {
      if (!task->verify) break;
      const std::string call = TimeVaryingCallIn(expr);
      if (call.empty()) continue;
      r_.Error(t["verify"], "`verify: true` in " + what + " would compute `" + column + "` again later, "
                            "and its expression calls " + call + ", whose value has changed by then: "
                            "no row would agree",
               "remove `verify` from this task");
      break;
    }
    if (auto by = r_.String(t, "batch_by", what, false)) {
      if (*by == "pages") {
        task->batch_by = BackfillTask::BatchBy::kPages;
      } else if (*by == "key") {
        task->batch_by = BackfillTask::BatchBy::kKey;
      } else {
        r_.Error(t["batch_by"], "`batch_by` in " + what + " is `" + *by + "`",
                 "write `pages` (the table in its physical order) or `key` (in the key's order)");
      }
    }
    if (task->batch_by == BackfillTask::BatchBy::kPages && !task->where.empty()) {
      r_.Error(t["batch_by"], "`batch_by: pages` in " + what + " cannot be used with `where`",
               "a row that still matches `where` after its update could be found again on a "
               "later page; remove `batch_by` (a task with `where` goes by key)");
    }
  }

  // The trigger evaluates each expression over the new row under the table's bare name; a
  // schema-qualified reference to the table itself cannot resolve there.
  void CheckSyncTrigger(const YAML::Node& t, const std::string& what, const BackfillTask& task) {
    if (!task.sync_trigger || task.table.schema.empty()) return;
    const std::string qualified = task.table.schema + "." + task.table.name + ".";
    for (const auto& [column, expr] : task.set) {
      if (expr.find(qualified) == std::string::npos) continue;
      r_.Error(t["set"], "the expression for `" + column + "` in " + what + " names `" +
                             qualified + "...`, which `sync_trigger` cannot evaluate",
               "write `" + task.table.name + ".<column>` or the bare column name");
    }
  }

  void ParseKey(const YAML::Node& t, const std::string& what, BackfillTask* task) {
    const YAML::Node key = t["key"];
    if (!key.IsDefined() || key.IsNull()) return;
    std::vector<YAML::Node> parts;
    if (key.IsSequence()) {
      for (const auto& k : key) parts.push_back(k);
      if (parts.empty()) r_.Error(key, "`key` in " + what + " is an empty list");
    } else {
      parts.push_back(key);
    }
    for (const auto& k : parts) {
      if (!k.IsScalar()) {
        r_.Error(k, "`key` in " + what + " must be a column name or a list of them");
        continue;
      }
      Identifier(k, "`key` in " + what);
      task->key.push_back(k.Scalar());
    }
  }

  void ParseSet(const YAML::Node& t, const std::string& what, BackfillTask* task) {
    const YAML::Node set = t["set"];
    if (!set.IsDefined() || set.IsNull()) {
      r_.Error(t, what + " is missing the required key `set`",
               "add `set:` with `column: SQL expression` lines");
      return;
    }
    if (!r_.ExpectMap(set, "`set` in " + what, {})) {
      if (!set.IsMap()) return;
    }
    if (set.size() == 0) r_.Error(set, "`set` in " + what + " names no column");
    for (const auto& kv : set) {
      if (!kv.first.IsScalar()) continue;
      Identifier(kv.first, "a column in `set` of " + what);
      if (!kv.second.IsScalar() || Trim(kv.second.Scalar()).empty()) {
        r_.Error(kv.second, "the value of `" + kv.first.Scalar() + "` in " + what +
                                " must be an SQL expression",
                 "quote it if it contains `: ` or starts with a special character");
        continue;
      }
      Expression(kv.second, "the value of `" + kv.first.Scalar() + "`", "`set` of " + what, kv.second.Scalar());
      task->set.emplace_back(kv.first.Scalar(), kv.second.Scalar());
    }
  }

  void ParseGates(const YAML::Node& node, Plan* plan) {
    if (!r_.ExpectList(node, "`gates`")) return;
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node g = node[i];
      const std::string what = "gate " + std::to_string(i + 1);
      if (!r_.ExpectMap(g, what, {"null_count", "sql", "expect"})) {
        if (!g.IsMap()) continue;
      }
      Gate gate;
      gate.pos = r_.Pos(g);
      if (g["null_count"]) {
        gate.kind = Gate::Kind::kNullCount;
        const YAML::Node nc = g["null_count"];
        if (g["sql"] || g["expect"]) {
          r_.Error(g, what + " mixes `null_count` with `sql`/`expect`", "make them two gates");
        }
        if (!r_.ExpectMap(nc, "`null_count` in " + what, {"table", "column"})) {
          if (!nc.IsMap()) continue;
        }
        Table(nc, "table", "`null_count` in " + what, &gate.table);
        if (auto col = r_.String(nc, "column", "`null_count` in " + what, true)) {
          Identifier(nc["column"], "`column` in " + what);
          gate.column = *col;
        }
      } else if (g["sql"]) {
        gate.kind = Gate::Kind::kSql;
        if (auto sql = r_.String(g, "sql", what, true)) gate.sql = *sql;
        auto expect = r_.Int(g, "expect", what, INT64_MIN, INT64_MAX);
        if (!g["expect"]) {
          r_.Error(g, what + " has `sql` but no `expect`",
                   "add `expect: 0` (the number the query must return)");
        }
        gate.expect = expect.value_or(0);
      } else {
        r_.Error(g, what + " must have `null_count:` or `sql:` with `expect:`");
        continue;
      }
      plan->gates.push_back(std::move(gate));
    }
  }

  // Rules between phases.
  void CheckPhases(const YAML::Node& root, const Plan& plan) {
    if (!plan.contract.empty() && plan.gates.empty()) {
      r_.Error(root["contract"], "the plan has a `contract` but no `gates`",
               "add a gate that proves the data is ready, e.g. `- null_count: {table: t, "
               "column: c}`");
    }
    bool has_null_gate = false;
    for (const auto& g : plan.gates) has_null_gate |= g.kind == Gate::Kind::kNullCount;
    if (!has_null_gate) return;
    for (const auto& task : plan.backfill) {
      for (const auto& [column, expr] : task.set) {
        if (!NullCountGateCovers(plan, task.table, column)) {
          r_.Error(task.pos, "no `null_count` gate covers `" + task.table.Display() + "." +
                                 column + "`, which the backfill sets",
                   "add `- null_count: {table: " + task.table.Display() + ", column: " + column +
                       "}` to `gates`");
        }
      }
    }
  }

  void Table(const YAML::Node& map, const std::string& key, const std::string& what,
             QualifiedName* out) {
    auto text = r_.String(map, key, what, true);
    if (!text) return;
    std::string error;
    if (!ParseQualifiedName(*text, out, &error)) r_.Error(map[key], "`" + key + "` in " + what + ": " + error);
  }

  void Identifier(const YAML::Node& node, const std::string& what) {
    std::string error;
    if (!CheckIdentifier(node.Scalar(), &error)) r_.Error(node, what + ": " + error);
  }

  static std::string Trim(const std::string& s) {
    size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
  }

  std::string file_;
  YamlReader r_;
};

}  // namespace

bool IsValidPlanName(const std::string& name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
  }
  return true;
}

namespace {
// `text` with control characters written as \xNN, for messages.
std::string Printable(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20) {
      out += static_cast<char>(c);
      continue;
    }
    char buf[8];
    std::snprintf(buf, sizeof buf, "\\x%02x", c);
    out += buf;
  }
  return out;
}
}  // namespace

bool CheckIdentifier(const std::string& text, std::string* error) {
  if (text.empty()) {
    *error = "the name is empty";
    return false;
  }
  if (text.size() > 63) {
    *error = "`" + text + "` is longer than PostgreSQL's 63-byte limit for names";
    return false;
  }
  for (char c : text) {
    if (c == '"' || c == ';' || static_cast<unsigned char>(c) < 0x20) {
      *error = "`" + Printable(text) + "` contains a quote, semicolon or control character; write "
               "the name exactly as it is in the database, without quotes (tide quotes it)";
      return false;
    }
  }
  return true;
}

bool ParseQualifiedName(const std::string& text, QualifiedName* out, std::string* error) {
  const size_t dot = text.find('.');
  if (dot != std::string::npos && text.find('.', dot + 1) != std::string::npos) {
    *error = "`" + text + "` has more than one dot; write `table` or `schema.table`";
    return false;
  }
  QualifiedName q;
  if (dot == std::string::npos) {
    q.name = text;
  } else {
    q.schema = text.substr(0, dot);
    q.name = text.substr(dot + 1);
    if (!CheckIdentifier(q.schema, error)) return false;
  }
  if (!CheckIdentifier(q.name, error)) return false;
  *out = q;
  return true;
}

Diagnostic InternalError(const std::string& file, const std::string& what) {
  return Diagnostic{file, {}, std::string(kInternalError) + ": " + what,
                    "the file was not accepted; please report this with the file"};
}

PlanParseResult ParsePlan(const std::string& text, const std::string& file) {
  PlanParseResult result;
  try {
    PlanParser(file, &result.errors).Parse(text, &result.plan);
  } catch (const std::exception& e) {
    // A bug, never the plan's fault; the daemon must go on all the same.
    result.errors.push_back(InternalError(file, e.what()));
  }
  return result;
}

std::vector<Diagnostic> CheckPlanAgainstDatabases(const Plan& plan, const std::string& file,
                                                  const std::set<std::string>& databases,
                                                  const std::set<std::string>& groups) {
  std::vector<Diagnostic> out;
  if (groups.count(plan.database)) return out;
  if (databases.count(plan.database)) {
    if (plan.rollout.given) {
      out.push_back(Diagnostic{file, plan.rollout.pos,
                               "`rollout` is for a plan on a database group, and `" +
                                   plan.database + "` is one database",
                               "remove `rollout`, or name a group of `database_groups` in "
                               "`database`"});
    }
    return out;
  }
  std::string known;
  for (const auto& d : databases) known += (known.empty() ? "" : ", ") + d;
  for (const auto& g : groups) known += (known.empty() ? "" : ", ") + g + " (a group)";
  out.push_back(Diagnostic{file, plan.database_pos,
                           "database `" + plan.database + "` is not in the daemon's config",
                           known.empty() ? "add it under `databases:` in tided.yaml"
                                         : "use one of: " + known});
  return out;
}

std::vector<Diagnostic> CheckPlanAgainstConfig(const Plan& plan, const std::string& file,
                                               const Config& config) {
  std::set<std::string> names, groups;
  for (const auto& kv : config.databases) names.insert(kv.first);
  for (const auto& kv : config.database_groups) groups.insert(kv.first);
  return CheckPlanAgainstDatabases(plan, file, names, groups);
}

}  // namespace tide
