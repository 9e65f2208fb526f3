#include "plan/lint.h"

#include <algorithm>
#include <cctype>

#include "plan/sql_parse.h"

namespace tide {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Functions that return the same value for every row of a statement (immutable or stable in
// PostgreSQL's catalog): as a default they are evaluated once, and the table is not rewritten.
// Any other function is taken as volatile unless the catalog says otherwise (fail safe).
bool KnownNotVolatile(const std::string& f) {
  static const std::set<std::string> known = {
      "now", "statement_timestamp", "transaction_timestamp", "current_setting", "current_database",
      "current_schema", "lower", "upper", "btrim", "ltrim", "rtrim", "length", "char_length",
      "character_length", "octet_length", "substr", "substring", "left", "right", "replace",
      "concat", "concat_ws", "format", "md5", "abs", "round", "floor", "ceil", "ceiling", "trunc",
      "date_trunc", "date_part", "extract", "to_char", "to_date", "to_timestamp", "to_number",
      "make_date", "make_time", "make_timestamp", "make_timestamptz", "make_interval",
      "jsonb_build_object", "jsonb_build_array", "json_build_object", "json_build_array",
      "to_jsonb", "to_json", "array_length", "cardinality", "split_part", "regexp_replace",
      "strpos", "initcap", "repeat", "lpad", "rpad", "translate", "encode", "decode", "int4",
      "int8", "int2", "numeric", "text", "timezone", "array_to_string", "string_to_array",
      "uuid_nil", "jsonb_object", "array_fill", "sqrt", "power", "mod", "sign", "chr", "ascii",
      "quote_ident", "quote_literal", "reverse", "starts_with", "date", "interval", "age",
      "pg_catalog.now", "current_date", "localtimestamp", "bool", "float8", "float4"};
  return known.count(f) > 0;
}

bool CallIsVolatile(const std::string& f, const LintFacts* facts) {
  if (facts) {
    auto it = facts->volatility.find(f);
    if (it != facts->volatility.end()) return it->second == 'v';
  }
  // Only PostgreSQL's own functions are known: `app.now()` is the application's.
  const std::string bare = f.rfind("pg_catalog.", 0) == 0 ? f.substr(11) : f;
  return bare.find('.') != std::string::npos || !KnownNotVolatile(bare);
}

// A called function's name as the catalog is asked about it: "now", "app.new_slug".
std::string FunctionName(const SqlNode* list) {
  std::string out;
  for (const auto& n : Names(list)) out += (out.empty() ? "" : ".") + Lower(n);
  return out;
}

// The first volatile call under `node` ("" when none).
std::string VolatileCallIn(const SqlNode& node, const LintFacts* facts) {
  std::string found;
  Walk(node, [&](const std::string& kind, const SqlNode& body) {
    if (!found.empty() || kind != "FuncCall") return;
    const std::string f = FunctionName(Field(body, "funcname"));
    if (CallIsVolatile(f, facts)) found = f;
  });
  return found;
}

size_t LocationOf(const SqlNode& node) {
  if (const SqlNode* at = Field(node, "location")) {
    if (at->is_number_integer() && at->get<int64_t>() >= 0) return at->get<size_t>();
  }
  return std::string::npos;
}

// ---- Column types, for the rewrite question of ALTER COLUMN ... TYPE.

struct TypeSpec {
  std::string base;           // as format_type prints it: "character varying", "numeric"
  std::vector<int64_t> mods;  // (255), (10,2)
};

std::string CanonicalType(std::string name) {
  name = Lower(name);
  static const std::map<std::string, std::string> alias = {
      {"varchar", "character varying"}, {"bpchar", "character"}, {"char", "character"},
      {"int", "integer"}, {"int4", "integer"}, {"int8", "bigint"}, {"int2", "smallint"},
      {"float8", "double precision"}, {"float4", "real"}, {"bool", "boolean"},
      {"decimal", "numeric"}, {"timestamptz", "timestamp with time zone"},
      {"timestamp", "timestamp without time zone"}, {"timetz", "time with time zone"},
      {"time", "time without time zone"}, {"varbit", "bit varying"}};
  auto it = alias.find(name);
  return it == alias.end() ? name : it->second;
}

TypeSpec FromTypeName(const SqlNode& type_name) {
  TypeSpec t;
  t.base = CanonicalType(LastName(Field(type_name, "names")));
  if (const SqlNode* mods = Field(type_name, "typmods")) {
    for (const SqlNode& m : *mods) {
      const SqlNode* ival = Field(BodyOf(m), "ival");
      const SqlNode* v = ival ? Field(*ival, "ival") : nullptr;
      t.mods.push_back(v && v->is_number_integer() ? v->get<int64_t>() : 0);
    }
  }
  if (Field(type_name, "arrayBounds")) t.base += "[]";
  return t;
}

TypeSpec FromFormatType(const std::string& printed) {
  TypeSpec t;
  std::string base;
  for (size_t i = 0; i < printed.size(); ++i) {
    if (printed[i] != '(') {
      base += printed[i];
      continue;
    }
    const size_t close = printed.find(')', i);
    if (close == std::string::npos) break;
    std::string num;
    for (size_t j = i + 1; j <= close; ++j) {
      if (std::isdigit(static_cast<unsigned char>(printed[j]))) {
        num += printed[j];
      } else if (!num.empty()) {
        t.mods.push_back(num.size() > 12 ? -1 : std::stoll(num));  // -1: not a type modifier
        num.clear();
      }
    }
    i = close;
  }
  std::string collapsed;
  for (char c : base) {
    if (c == ' ' && (collapsed.empty() || collapsed.back() == ' ')) continue;
    collapsed += c;
  }
  while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
  t.base = CanonicalType(collapsed);
  return t;
}

// False when PostgreSQL changes the type in the catalog only (binary coercible, a limit
// raised or removed): no rewrite, no scan.
bool TypeChangeRewrites(const TypeSpec& from, const TypeSpec& to) {
  const bool limited = from.base == "character varying" || from.base == "bit varying";
  if (from.base == to.base) {
    if (from.mods == to.mods || to.mods.empty()) return false;
    if (from.mods.empty()) return true;  // a limit added: every row is checked
    if (limited) return to.mods[0] < from.mods[0];
    if (from.base == "numeric") {
      const int64_t fs = from.mods.size() > 1 ? from.mods[1] : 0, ts = to.mods.size() > 1 ? to.mods[1] : 0;
      return !(fs == ts && to.mods[0] >= from.mods[0]);
    }
    if (from.base.rfind("timestamp", 0) == 0 || from.base.rfind("time ", 0) == 0) return to.mods[0] < from.mods[0];
    return true;
  }
  if (to.base == "text" && (from.base == "character varying" || from.base == "text")) return false;
  if (to.base == "character varying" && to.mods.empty() && from.base == "text") return false;
  if (from.base == "cidr" && to.base == "inet") return false;
  return true;
}

constexpr int64_t kBigTable = 10000;

// REINDEX (CONCURRENTLY) / REINDEX ... CONCURRENTLY.
bool HasConcurrentlyParam(const SqlNode& reindex) {
  const SqlNode* params = Field(reindex, "params");
  for (const SqlNode& p : params ? *params : SqlNode::array()) {
    if (StringField(BodyOf(p), "defname") == "concurrently") return true;
  }
  return false;
}

// "public.users" -> "users": the search_path's usual schema, as an earlier step may have
// named the table either way.
std::string Unqualified(const std::string& table) {
  return table.rfind("public.", 0) == 0 ? table.substr(7) : table;
}

struct Linter {
  const std::string& sql;
  const std::string& phase;
  const LintContext& ctx;
  std::vector<LintFinding> out;

  void Add(const char* rule, size_t at, const std::string& table, std::string message, std::string fix) {
    LintFinding f;
    f.rule = rule;
    f.phase = phase;
    f.message = std::move(message);
    f.fix = std::move(fix);
    if (at != std::string::npos) f.where = PositionIn(sql, at);
    f.table = table;
    const std::string bare = Unqualified(table);
    f.catalog_may_lift = !ctx.facts && !table.empty() &&
                         (ctx.maybe_new_tables.count(bare) || ctx.maybe_new_tables.count("public." + bare));
    if (!table.empty() && ctx.facts) {
      auto it = ctx.facts->table_sizes.find(table);
      if (it != ctx.facts->table_sizes.end()) f.table += ", " + it->second;
    }
    for (const auto& o : out) {
      if (o.rule == f.rule) return;  // once per step
    }
    out.push_back(std::move(f));
  }

  // A table an earlier step created: `users` and `public.users` are taken as one.
  bool IsNew(const std::string& table) const {
    const std::string bare = Unqualified(table);
    if (ctx.new_tables.count(bare) || ctx.new_tables.count("public." + bare)) return true;
    // CREATE TABLE IF NOT EXISTS: new only when the catalog says it was not there.
    if (ctx.maybe_new_tables.count(bare) || ctx.maybe_new_tables.count("public." + bare)) {
      return ctx.facts && !ctx.facts->table_sizes.count(table) && !ctx.facts->table_sizes.count(bare);
    }
    return false;
  }

  void Statement(const SqlStatement& st) {
    const SqlNode& b = st.body;
    const std::string& k = st.kind;
    if (k == "TransactionStmt") {
      Add("transaction-nesting", st.offset, "",
          "BEGIN, COMMIT, ROLLBACK and SAVEPOINT fight tide's own transaction control: each step "
          "runs in a transaction of its own (CONCURRENTLY steps on the session), recorded with it",
          "remove the statement; put what must commit together in one step of its own");
    } else if (k == "IndexStmt") {
      Index(st, b);
    } else if (k == "DropStmt") {
      Drop(st, b);
    } else if (k == "ReindexStmt") {
      if (!HasConcurrentlyParam(b)) {
        Add("require-concurrent-reindex", st.offset, RelationName(Field(b, "relation")),
            "REINDEX without CONCURRENTLY blocks every write to the table (and reads that use the "
            "index) while it rebuilds",
            "write REINDEX INDEX CONCURRENTLY (or REINDEX TABLE CONCURRENTLY)");
      }
    } else if (k == "AlterTableStmt") {
      AlterTable(st, b);
    } else if (k == "RenameStmt") {
      Rename(st, b);
    } else if (k == "DropdbStmt") {
      Add("ban-drop-database", st.offset, "", "DROP DATABASE removes every table of the database",
          "do it by hand, outside tide, if that is really meant");
    } else if (k == "AlterDomainStmt") {
      const std::string sub = StringField(b, "subtype");
      if (sub == "C" || sub == "O") {
        Add("ban-alter-domain-with-add-constraint", st.offset, "",
            "ALTER DOMAIN ... ADD CONSTRAINT / SET NOT NULL checks every column of the domain in "
            "every table under locks that block writes",
            "add the constraint NOT VALID, then ALTER DOMAIN ... VALIDATE CONSTRAINT in a later step; "
            "or check the columns with `add_check` on each table");
      }
    } else if (k == "TruncateStmt") {
      Add("ban-truncate", st.offset, "", "TRUNCATE takes an ACCESS EXCLUSIVE lock and removes every row",
          "delete in batches if that is really meant");
    } else if (k == "VacuumStmt") {
      if (const SqlNode* options = Field(b, "options")) {
        for (const SqlNode& o : *options) {
          const SqlNode& d = BodyOf(o);
          if (StringField(d, "defname") != "full") continue;
          // FULL, FULL TRUE, FULL 1 and FULL ON rewrite; FULL FALSE, FULL OFF and FULL 0 do not.
          const SqlNode* arg = Field(d, "arg");
          const std::string v = arg ? Lower(StringField(BodyOf(*arg), "sval")) : "true";
          const SqlNode* ival = arg ? Field(BodyOf(*arg), "ival") : nullptr;
          const bool zero = arg && KindOf(*arg) == "Integer" && (!ival || ival->get<int64_t>() == 0);
          if (!(v == "false" || v == "off" || v == "no" || zero)) {
            Add("ban-vacuum-full", st.offset, "", "VACUUM FULL rewrites the table under an ACCESS EXCLUSIVE lock",
                "use plain VACUUM, or pg_repack outside tide");
          }
        }
      }
    } else if (k == "ClusterStmt") {
      Add("ban-cluster", st.offset, RelationName(Field(b, "relation")),
          "CLUSTER rewrites the table under an ACCESS EXCLUSIVE lock", "use pg_repack outside tide");
    } else if (k == "LockStmt") {
      Add("ban-lock-table", st.offset, "", "an explicit LOCK TABLE holds production up for the whole step",
          "let each statement take the lock it needs, bounded by lock_timeout");
    } else if (k == "RefreshMatViewStmt") {
      if (!BoolField(b, "concurrent")) {
        Add("require-concurrent-refresh", st.offset, RelationName(Field(b, "relation")),
            "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks every read of the view while it runs",
            "give the view a unique index and write REFRESH MATERIALIZED VIEW CONCURRENTLY");
      }
    } else if (k == "DoStmt" || k == "CallStmt") {
      Add("opaque-statement", st.offset, "",
          std::string(k == "DoStmt" ? "a DO block" : "CALL") + " runs statements tide cannot see: "
          "their locks, scans and rewrites are not checked",
          "write its statements as steps of their own (typed operations where tide has them), or "
          "mark the step `unsafe:` once you have checked them");
    } else if (k == "ExplainStmt") {
      if (const SqlNode* q = Field(b, "query")) {
        bool analyze = false;
        for (const SqlNode& o : Field(b, "options") ? *Field(b, "options") : SqlNode::array()) {
          analyze |= StringField(BodyOf(o), "defname") == "analyze";
        }
        if (analyze) Statement(SqlStatement{KindOf(*q), BodyOf(*q), st.text, st.offset});
      }
    } else if (k == "AlterEnumStmt" && !StringField(b, "oldVal").empty()) {
      Add("renaming-enum-value", st.offset, "", "a renamed enum value breaks the application code that writes the old one",
          "add the new value (ALTER TYPE ... ADD VALUE), move the rows over with a backfill task, and stop using the old one");
    } else if (k == "AlterObjectSchemaStmt" &&
               (StringField(b, "objectType") == "OBJECT_TABLE" || StringField(b, "objectType") == "OBJECT_VIEW")) {
      Add("renaming-table", st.offset, RelationName(Field(b, "relation")),
          "moving a table to another schema breaks the application code that names it where it was",
          "create a view under the old name first, or move it when no running version uses that name");
    } else if (k == "GrantStmt" && !BoolField(b, "is_grant")) {
      Add("revoking-privileges", st.offset, "", "REVOKE can make the running application's queries fail with permission denied",
          "revoke in contract, once no running version needs the privilege (and mark the step `unsafe:`)");
    } else if (k == "VariableSetStmt" && StringField(b, "kind") == "VAR_RESET_ALL") {
      Add("ban-setting-timeouts", st.offset, "",
          "RESET ALL clears the lock_timeout and statement_timeout tide set, leaving later statements "
          "free to wait on locks without bound",
          "use `settings: {lock_timeout, statement_timeout}` in the plan, or `statement_timeout:` on the step");
    } else if (k == "VariableSetStmt") {
      const std::string name = Lower(StringField(b, "name"));
      if (name == "lock_timeout" || name == "statement_timeout" || name == "idle_in_transaction_session_timeout") {
        Add("ban-setting-timeouts", st.offset, "",
            "tide sets " + name + " on every statement itself; a step that changes it leaves later "
            "statements free to wait on locks without bound",
            "use `settings: {lock_timeout, statement_timeout}` in the plan, or `statement_timeout:` on the step");
      }
    } else if (k == "UpdateStmt" || k == "DeleteStmt") {
      const std::string table = RelationName(Field(b, "relation"));
      // With a WHERE, only the catalog can tell how many rows it writes: a big table's are
      // refused (more than 10,000 rows by its statistics).
      int64_t rows = -1;
      if (ctx.facts) {
        auto it = ctx.facts->table_rows.find(table);
        if (it != ctx.facts->table_rows.end()) rows = it->second;
      }
      if ((!Field(b, "whereClause") || rows > kBigTable) && !IsNew(table)) {
        Add("ban-unbatched-data-change", st.offset, table,
            std::string(k == "UpdateStmt" ? "an UPDATE" : "a DELETE") +
                " of every row in one step holds row locks on the whole table until it commits, "
                "and bloats it at once",
            k == "UpdateStmt" ? "write it as a backfill task (batched, throttled, resumable)"
                              : "delete in batches if that is really meant");
      }
    }
  }

  // What any statement may hide: set_config() of tide's timeouts, and UPDATE or DELETE inside a
  // WITH.
  void Nested(const SqlStatement& st) {
    Walk(st.body, [&](const std::string& kind, const SqlNode& body) {
      if (kind == "FuncCall" && FunctionName(Field(body, "funcname")) == "set_config") {
        const SqlNode* args = Field(body, "args");
        if (args && !args->empty() && KindOf((*args)[0]) == "A_Const") {
          const SqlNode* sval = Field(BodyOf((*args)[0]), "sval");
          const std::string name = sval ? Lower(StringField(*sval, "sval")) : "";
          if (name == "lock_timeout" || name == "statement_timeout") {
            Add("ban-setting-timeouts", LocationOf(body), "",
                "set_config('" + name + "') changes the timeout tide set on every statement",
                "use `settings: {lock_timeout, statement_timeout}` in the plan");
          }
        }
      }
      if ((kind == "UpdateStmt" || kind == "DeleteStmt") && st.kind != kind && st.kind != "ExplainStmt") {
        Statement(SqlStatement{kind, body, st.text, st.offset});
      }
    });
  }

  void Index(const SqlStatement& st, const SqlNode& b) {
    const std::string table = RelationName(Field(b, "relation"));
    if (BoolField(b, "concurrent") || IsNew(table)) return;
    Add("require-concurrent-index-creation", st.offset, table,
        "CREATE INDEX without CONCURRENTLY blocks every write to the table while it builds",
        "use `create_index: {table, name, columns}` (CREATE INDEX CONCURRENTLY, cleaned up and "
        "retried if the build fails), or write CREATE INDEX CONCURRENTLY IF NOT EXISTS");
  }

  void Drop(const SqlStatement& st, const SqlNode& b) {
    const std::string type = StringField(b, "removeType");
    if (type == "OBJECT_INDEX" && !BoolField(b, "concurrent")) {
      Add("require-concurrent-index-deletion", st.offset, "",
          "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the table: it waits "
          "behind every running query, and every query waits behind it",
          "use `drop_index: {name}` (DROP INDEX CONCURRENTLY IF EXISTS)");
    }
    static const std::set<std::string> breaking = {
        "OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_SCHEMA",
        "OBJECT_SEQUENCE", "OBJECT_TYPE", "OBJECT_DOMAIN", "OBJECT_FUNCTION", "OBJECT_TRIGGER",
        "OBJECT_FOREIGN_TABLE", "OBJECT_PROCEDURE", "OBJECT_RULE", "OBJECT_POLICY"};
    if (phase == "expand" && breaking.count(type)) {
      Add("ban-drop-in-expand", st.offset, "", "expand must stay backward compatible; a DROP is not",
          "move it to contract (`drop_column`, `drop_index`)");
    }
  }

  void Rename(const SqlStatement& st, const SqlNode& b) {
    const std::string type = StringField(b, "renameType");
    const std::string table = RelationName(Field(b, "relation"));
    if (IsNew(table)) return;
    if (type == "OBJECT_COLUMN") {
      Add("renaming-column", st.offset, table, "a rename breaks the application code that uses the old name",
          "use `rename_column: {table, from, to}` in expand: the new version works through the "
          "plan's version schema until contract renames");
    } else if (type == "OBJECT_SCHEMA") {
      Add("renaming-schema", st.offset, "", "a rename breaks the application code that uses the old name",
          "create the new schema and move its objects over several plans, or keep the old name");
    } else if (type == "OBJECT_TABLE" || type == "OBJECT_VIEW" || type == "OBJECT_MATVIEW") {
      Add("renaming-table", st.offset, table, "a rename breaks the application code that uses the old name",
          "use `rename_table: {from, to}` in expand: the new version works through the plan's "
          "version schema until contract renames");
    }
  }

  void AlterTable(const SqlStatement& st, const SqlNode& b) {
    const std::string table = RelationName(Field(b, "relation"));
    const SqlNode* cmds = Field(b, "cmds");
    if (!cmds) return;
    const bool fresh = IsNew(table);
    for (const SqlNode& c : *cmds) {
      const SqlNode& cmd = BodyOf(c);
      const std::string sub = StringField(cmd, "subtype");
      const SqlNode* def = Field(cmd, "def");
      const SqlNode& d = def ? BodyOf(*def) : cmd;
      const size_t at = def ? LocationOf(d) : st.offset;
      if (sub == "AT_AddColumn") {
        AddColumn(table, d, fresh);
      } else if (sub == "AT_AddConstraint" && !fresh) {
        AddConstraint(table, d);
      } else if (sub == "AT_AlterColumnType" && !fresh) {
        AlterType(table, StringField(cmd, "name"), d, at);
      } else if (sub == "AT_SetNotNull" && !fresh) {
        SetNotNull(table, StringField(cmd, "name"), at == std::string::npos ? st.offset : at);
      } else if ((sub == "AT_SetLogged" || sub == "AT_SetUnLogged") && !fresh) {
        Add("ban-set-logged", st.offset, table,
            "SET LOGGED / SET UNLOGGED rewrites the whole table under an ACCESS EXCLUSIVE lock",
            "leave the table's persistence alone, or copy it into a new table outside tide");
      } else if (sub == "AT_SetAccessMethod" && !fresh) {
        Add("ban-set-access-method", st.offset, table,
            "SET ACCESS METHOD rewrites the whole table under an ACCESS EXCLUSIVE lock",
            "copy it into a new table outside tide");
      } else if (sub == "AT_AttachPartition") {
        Add("attach-partition-scans", st.offset, table,
            "ATTACH PARTITION scans the attached table (and the default partition) under a lock that "
            "blocks its writes, unless a validated CHECK already proves the bound",
            "add a CHECK matching the partition bound to the table (`add_check`: NOT VALID, then "
            "VALIDATE) in an earlier step, then attach it (mark this step `unsafe:`)");
      } else if (sub == "AT_AddInherit" && !fresh) {
        Add("ban-inherit", st.offset, table,
            "INHERIT takes ACCESS EXCLUSIVE on the table and checks its rows against the parent's constraints",
            "leave inheritance alone, or do it in a maintenance window (mark the step `unsafe:`)");
      } else if (sub == "AT_SetTableSpace" && !fresh) {
        Add("ban-set-tablespace", st.offset, table,
            "SET TABLESPACE copies the whole table under an ACCESS EXCLUSIVE lock",
            "move it with pg_repack --tablespace outside tide");
      } else if (sub == "AT_DetachPartition") {
        const SqlNode* pc = Field(cmd, "def");
        if (!(pc && BoolField(BodyOf(*pc), "concurrent"))) {
          Add("require-concurrent-detach-partition", st.offset, table,
              "DETACH PARTITION without CONCURRENTLY takes an ACCESS EXCLUSIVE lock on the "
              "partitioned table: every query of every partition waits",
              "write ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY (in a step of its own)");
        }
      } else if (sub == "AT_DropColumn" && phase == "expand") {
        Add("ban-drop-in-expand", st.offset, table,
            "expand must stay backward compatible; dropping a column breaks the old version",
            "move it to contract (`drop_column`)");
      } else if (sub == "AT_DropConstraint" && phase == "expand" && ctx.facts) {
        auto it = ctx.facts->constraint_types.find(table + "." + StringField(cmd, "name"));
        if (it != ctx.facts->constraint_types.end() && (it->second == 'u' || it->second == 'p' || it->second == 'x')) {
          Add("ban-drop-in-expand", st.offset, table,
              "dropping a unique, primary key or exclusion constraint in expand breaks the old "
              "version's ON CONFLICT and lets duplicates in",
              "move it to contract");
        }
      }
    }
  }

  void AddColumn(const std::string& table, const SqlNode& col, bool fresh) {
    if (fresh) return;
    const size_t at = LocationOf(col);
    const SqlNode* type_name = Field(col, "typeName");
    const std::string type = type_name ? LastName(Field(*type_name, "names")) : "";
    bool has_default = false, not_null = false;
    if (type == "serial" || type == "bigserial" || type == "smallserial" || type == "serial4" ||
        type == "serial8" || type == "serial2") {
      Add("adding-serial-or-identity-field", at, table,
          "a " + type + " column fills every existing row from the sequence: the whole table is "
          "rewritten under an ACCESS EXCLUSIVE lock",
          "add a plain nullable column, fill it with a backfill task (nextval in the set "
          "expression), then set its default and NOT NULL");
      has_default = true;
    }
    if (const SqlNode* cons = Field(col, "constraints")) {
      for (const SqlNode& cn : *cons) {
        const SqlNode& c = BodyOf(cn);
        const std::string ct = StringField(c, "contype");
        const size_t cat = LocationOf(c);
        if (ct == "CONSTR_DEFAULT") {
          has_default = true;
          if (const SqlNode* e = Field(c, "raw_expr")) {
            const std::string f = VolatileCallIn(*e, ctx.facts);
            if (!f.empty()) {
              Add("adding-field-with-volatile-default", cat, table,
                  "a volatile DEFAULT (" + f + "()) rewrites the whole table under an ACCESS EXCLUSIVE lock",
                  "use `add_column` without a default (or with a constant one) and fill it with a backfill task");
            }
          }
        } else if (ct == "CONSTR_NOTNULL") {
          not_null = true;
        } else if (ct == "CONSTR_IDENTITY") {
          has_default = true;
          Add("adding-serial-or-identity-field", cat, table,
              "an identity column fills every existing row: the whole table is rewritten under an "
              "ACCESS EXCLUSIVE lock",
              "add a plain nullable column, fill it with a backfill task, then ALTER COLUMN ... ADD "
              "GENERATED ... AS IDENTITY (a catalog change)");
        } else if (ct == "CONSTR_GENERATED") {
          has_default = true;
          Add("adding-stored-generated-column", cat, table,
              "a stored generated column computes every existing row: the whole table is rewritten "
              "under an ACCESS EXCLUSIVE lock",
              "add a plain column, a trigger that computes it on write, and a backfill task");
        } else if (ct == "CONSTR_PRIMARY" || ct == "CONSTR_UNIQUE") {
          Add("adding-field-with-unique-or-primary-key", cat, table,
              std::string(ct == "CONSTR_PRIMARY" ? "PRIMARY KEY" : "UNIQUE") +
                  " on a new column builds its index under the ACCESS EXCLUSIVE lock of the ALTER "
                  "TABLE: every query of the table waits for the whole build",
              ct == "CONSTR_PRIMARY" ? "add the column, then `add_primary_key: {table, columns}` (the "
                                       "index built CONCURRENTLY first)"
                                     : "add the column, then `add_unique: {table, name, columns}` (the "
                                       "index built CONCURRENTLY first)");
        } else if (ct == "CONSTR_FOREIGN") {
          Add("adding-foreign-key-constraint", cat, table,
              "REFERENCES on a new column checks the table under a lock that blocks writes on both tables",
              "add the column, then `add_foreign_key` (NOT VALID, then VALIDATE CONSTRAINT)");
        } else if (ct == "CONSTR_CHECK") {
          Add("constraint-missing-not-valid", cat, table,
              "a CHECK on a new column is checked against every row while the ACCESS EXCLUSIVE lock is held",
              "add the column, then `add_check` (NOT VALID, then VALIDATE CONSTRAINT)");
        }
      }
    }
    if (not_null && !has_default) {
      Add("adding-not-nullable-field", at, table,
          "ADD COLUMN ... NOT NULL without a default fails on a table with rows",
          "use `add_column` without not_null, a backfill task, then `set_not_null: {table, column}` "
          "in contract");
    }
  }

  void AddConstraint(const std::string& table, const SqlNode& c) {
    const std::string ct = StringField(c, "contype");
    const size_t at = LocationOf(c);
    const bool not_valid = BoolField(c, "skip_validation");
    const bool using_index = !StringField(c, "indexname").empty();
    if (ct == "CONSTR_PRIMARY" && !using_index) {
      Add("adding-primary-key-constraint", at, table,
          "ADD PRIMARY KEY builds its index under an ACCESS EXCLUSIVE lock: every query of the "
          "table waits for the whole build",
          "use `add_primary_key: {table, columns}` (a unique index built CONCURRENTLY, then ADD "
          "CONSTRAINT ... PRIMARY KEY USING INDEX)");
    } else if (ct == "CONSTR_UNIQUE" && !using_index) {
      Add("disallowed-unique-constraint", at, table,
          "ADD CONSTRAINT ... UNIQUE builds its index under an ACCESS EXCLUSIVE lock: every query "
          "of the table waits for the whole build",
          "use `add_unique: {table, name, columns}` (the index built CONCURRENTLY, then ADD "
          "CONSTRAINT ... UNIQUE USING INDEX)");
    } else if (ct == "CONSTR_EXCLUSION") {
      Add("adding-exclusion-constraint", at, table,
          "an exclusion constraint builds its index under an ACCESS EXCLUSIVE lock, and cannot "
          "be built CONCURRENTLY",
          "enforce it in the application or with a trigger, or add it in a maintenance window "
          "(mark the step `unsafe:`)");
    } else if ((ct == "CONSTR_FOREIGN" || ct == "CONSTR_CHECK") && !not_valid) {
      Add("constraint-missing-not-valid", at, table,
          "adding a FOREIGN KEY or CHECK validates every row while holding a lock that blocks writes",
          "use `add_foreign_key` or `add_check` (NOT VALID, then VALIDATE CONSTRAINT, which blocks "
          "no writes), or write those two steps yourself");
    }
  }

  void AlterType(const std::string& table, const std::string& column, const SqlNode& col, size_t at) {
    const SqlNode* type_name = Field(col, "typeName");
    // USING computes every row; COLLATE rebuilds every index on the column.
    const bool using_expr = Field(col, "raw_default") != nullptr || Field(col, "collClause") != nullptr;
    if (ctx.facts && type_name && !using_expr) {
      auto it = ctx.facts->column_types.find(table + "." + column);
      if (it != ctx.facts->column_types.end() && !ctx.facts->columns_with_dependents.count(table + "." + column) &&
          !TypeChangeRewrites(FromFormatType(it->second), FromTypeName(*type_name))) {
        return;  // a catalog change only
      }
    }
    Add("changing-column-type", at, table,
        "ALTER COLUMN ... TYPE rewrites the table (and its indexes) under an ACCESS EXCLUSIVE lock" +
            std::string(ctx.facts ? "" : " (unless the change is binary coercible, such as varchar(n) "
                                         "to text: `tidectl validate --db` checks the catalog)"),
        "use `alter_column: {table, column, type, up?, down?}` in expand: a shadow column kept "
        "in step both ways, backfilled, then switched in one short transaction");
  }

  // SET NOT NULL is brief only when a validated CHECK (column IS NOT NULL) on that very column
  // is already there: added and validated by earlier steps of the plan.
  void SetNotNull(const std::string& table, const std::string& column, size_t at) {
    std::set<std::string> checks, validated;
    for (const auto& e : ctx.earlier) {
      const SqlParse p = ParseSql(e);
      for (const auto& st : p.statements) {
        if (st.kind != "AlterTableStmt" || RelationName(Field(st.body, "relation")) != table) continue;
        const SqlNode* cmds = Field(st.body, "cmds");
        if (!cmds) continue;
        for (const SqlNode& c : *cmds) {
          const SqlNode& cmd = BodyOf(c);
          const std::string sub = StringField(cmd, "subtype");
          if (sub == "AT_ValidateConstraint") validated.insert(StringField(cmd, "name"));
          if (sub != "AT_AddConstraint" || !Field(cmd, "def")) continue;
          const SqlNode& con = BodyOf(*Field(cmd, "def"));
          const SqlNode* e2 = Field(con, "raw_expr");
          if (StringField(con, "contype") != "CONSTR_CHECK" || !e2 || KindOf(*e2) != "NullTest") continue;
          const SqlNode& nt = BodyOf(*e2);
          const SqlNode* arg = Field(nt, "arg");
          if (StringField(nt, "nulltesttype") != "IS_NOT_NULL" || !arg || KindOf(*arg) != "ColumnRef") continue;
          const auto names = Names(Field(BodyOf(*arg), "fields"));
          if (names.empty() || names.back() != column) continue;
          const std::string name = StringField(con, "conname");
          if (!BoolField(con, "skip_validation")) validated.insert(name);
          checks.insert(name);
        }
      }
    }
    for (const auto& c : checks) {
      if (validated.count(c)) return;
    }
    Add("set-not-null-without-validated-check", at, table,
        "SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE lock",
        "use `set_not_null: {table, column}` (a NOT VALID check, VALIDATE, SET NOT NULL without "
        "a scan), or write ADD CONSTRAINT ... CHECK (" + column + " IS NOT NULL) NOT VALID and "
        "VALIDATE CONSTRAINT in earlier steps");
  }
};

}  // namespace

std::string LintFinding::ToString(const std::string& file) const {
  std::string out = file;
  if (pos.line > 0) out += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
  out += ": " + phase + " step " + std::to_string(step) + ": " + rule + ": " + message;
  std::string about;
  if (!table.empty()) about = "table " + table;
  if (!where.empty()) about += (about.empty() ? "" : "; ") + std::string("at ") + where + " of the step";
  if (!about.empty()) out += " (" + about + ")";
  return out + "; " + fix + (rule == "syntax-error" ? "" : " (or mark the step `unsafe: \"why\"` to run it as written)");
}

bool DependsOnCatalog(const LintFinding& f) {
  return f.catalog_may_lift || f.rule == "changing-column-type" ||
         f.rule == "adding-field-with-volatile-default";
}

bool IsVolatileExpression(const std::string& sql, const LintFacts* facts) {
  const SqlParse p = ParseSql("SELECT " + sql);
  if (!p.ok() || p.statements.size() != 1) return true;  // unreadable: assume the worst
  return !VolatileCallIn(p.statements[0].body, facts).empty();
}

std::string TimeVaryingCallIn(const std::string& sql) {
  static const std::set<std::string> varying = {
      "now", "statement_timestamp", "transaction_timestamp", "clock_timestamp", "timeofday",
      "random", "nextval", "currval", "lastval", "setval", "gen_random_uuid", "uuid_generate_v1",
      "uuid_generate_v1mc", "uuid_generate_v4", "txid_current", "pg_current_xact_id",
      "pg_backend_pid", "inet_client_addr", "current_user", "session_user"};
  const SqlParse p = ParseSql("SELECT " + sql);
  if (!p.ok() || p.statements.size() != 1) return "";  // the plan's SQL checks report it
  std::string found;
  Walk(p.statements[0].body, [&](const std::string& kind, const SqlNode& body) {
    if (!found.empty()) return;
    if (kind == "SQLValueFunction") found = "CURRENT_TIMESTAMP (or CURRENT_DATE, LOCALTIME...)";
    if (kind != "FuncCall") return;
    std::string f = FunctionName(Field(body, "funcname"));
    if (f.rfind("pg_catalog.", 0) == 0) f = f.substr(11);
    if (varying.count(f)) found = f + "()";
  });
  return found;
}

std::vector<std::string> TablesCreatedBy(const std::string& sql, bool maybe) {
  std::vector<std::string> out;
  for (const auto& st : ParseSql(sql).statements) {
    if (st.kind == "CreateStmt" || st.kind == "CreateTableAsStmt") {
      const SqlNode* rel = Field(st.body, "relation");
      if (st.kind == "CreateTableAsStmt") {
        const SqlNode* into = Field(st.body, "into");
        rel = into ? Field(*into, "rel") : nullptr;
      }
      const std::string name = RelationName(rel);
      const SqlNode* r = rel && KindOf(*rel) == "RangeVar" ? &BodyOf(*rel) : rel;
      const bool temp = r && StringField(*r, "relpersistence") == "t";
      const bool if_not_exists = BoolField(st.body, "if_not_exists");
      if (!name.empty() && !temp && if_not_exists == maybe) out.push_back(name);
    }
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> ColumnsAddedBy(const std::string& sql) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& st : ParseSql(sql).statements) {
    if (st.kind != "AlterTableStmt") continue;
    const std::string table = RelationName(Field(st.body, "relation"));
    const SqlNode* cmds = Field(st.body, "cmds");
    for (const SqlNode& c : cmds ? *cmds : SqlNode::array()) {
      const SqlNode& cmd = BodyOf(c);
      const SqlNode* def = Field(cmd, "def");
      if (StringField(cmd, "subtype") == "AT_AddColumn" && def) {
        out.emplace_back(table, StringField(BodyOf(*def), "colname"));
      }
    }
  }
  return out;
}

bool RunsOutsideTransactionBlock(const std::string& sql) {
  const SqlParse p = ParseSql(sql);
  for (const auto& st : p.statements) {
    const SqlNode& b = st.body;
    if (st.kind == "IndexStmt" || st.kind == "DropStmt") {
      if (BoolField(b, "concurrent")) return true;
    } else if (st.kind == "ReindexStmt") {
      if (HasConcurrentlyParam(b)) return true;
    } else if (st.kind == "VacuumStmt") {
      return BoolField(b, "is_vacuumcmd");  // ANALYZE alone may run in a transaction
    } else if (st.kind == "CreatedbStmt" || st.kind == "DropdbStmt" || st.kind == "AlterSystemStmt" ||
               st.kind == "CreateTableSpaceStmt" || st.kind == "DropTableSpaceStmt") {
      return true;
    } else if (st.kind == "AlterTableStmt") {
      const SqlNode* cmds = Field(b, "cmds");
      for (const SqlNode& c : cmds ? *cmds : SqlNode::array()) {
        const SqlNode& cmd = BodyOf(c);
        const SqlNode* def = Field(cmd, "def");
        if (StringField(cmd, "subtype") == "AT_DetachPartition" && def && BoolField(BodyOf(*def), "concurrent")) {
          return true;
        }
      }
    }
  }
  return false;
}

std::string LockTakenBy(const std::string& sql) {
  const SqlParse p = ParseSql(sql);
  if (!p.ok() || p.statements.empty()) return "unknown: assume ACCESS EXCLUSIVE";
  const SqlStatement& st = p.statements[0];
  const SqlNode& b = st.body;
  const std::string& k = st.kind;
  const char* concurrent = "SHARE UPDATE EXCLUSIVE: reads and writes go on; waits for older transactions";
  if (RunsOutsideTransactionBlock(sql) && k != "VacuumStmt") return concurrent;
  if (k == "IndexStmt") return "SHARE: blocks every write for the whole build";
  if (k == "AlterTableStmt") {
    const SqlNode* cmds = Field(b, "cmds");
    std::string worst;
    for (const SqlNode& c : cmds ? *cmds : SqlNode::array()) {
      const SqlNode& cmd = BodyOf(c);
      const std::string sub = StringField(cmd, "subtype");
      const SqlNode* def = Field(cmd, "def");
      const SqlNode& d = def ? BodyOf(*def) : cmd;
      const std::string ct = StringField(d, "contype");
      if (sub == "AT_ValidateConstraint") {
        worst = worst.empty() ? "SHARE UPDATE EXCLUSIVE while it scans: reads and writes go on" : worst;
      } else if (sub == "AT_AddConstraint" && ct == "CONSTR_FOREIGN") {
        return BoolField(d, "skip_validation")
                   ? "SHARE ROW EXCLUSIVE on both tables, brief: no scan"
                   : "SHARE ROW EXCLUSIVE on both tables while every row is checked: blocks writes";
      } else if (sub == "AT_AddConstraint") {
        if (BoolField(d, "skip_validation") || !StringField(d, "indexname").empty()) {
          worst = "ACCESS EXCLUSIVE, brief: no scan";
        } else {
          return "ACCESS EXCLUSIVE while every row is checked: blocks reads and writes";
        }
      } else if (sub == "AT_SetNotNull") {
        return "ACCESS EXCLUSIVE: brief after a validated CHECK (c IS NOT NULL), else for a full scan";
      } else if (sub == "AT_AlterColumnType" || sub == "AT_SetLogged" || sub == "AT_SetUnLogged" ||
                 sub == "AT_SetTableSpace") {
        return "ACCESS EXCLUSIVE for a table rewrite";
      } else if (sub == "AT_AddColumn" || sub.rfind("AT_Drop", 0) == 0 || sub == "AT_ColumnDefault") {
        worst = "ACCESS EXCLUSIVE, brief: a catalog change";
      } else if (sub.find("Trig") != std::string::npos) {
        worst = "SHARE ROW EXCLUSIVE, brief: blocks writes";
      } else if (worst.empty()) {
        worst = "ACCESS EXCLUSIVE (most ALTER TABLE forms)";
      }
    }
    return worst.empty() ? "ACCESS EXCLUSIVE (most ALTER TABLE forms)" : worst;
  }
  if (k == "CreateTrigStmt") return "SHARE ROW EXCLUSIVE, brief: blocks writes";
  if (k == "RenameStmt") return "ACCESS EXCLUSIVE, brief: a catalog change";
  if (k == "CreateStmt" || k == "CreateTableAsStmt" || k == "CreateFunctionStmt" || k == "CreateSeqStmt" ||
      k == "ViewStmt" || k == "CreateSchemaStmt" || k == "CompositeTypeStmt" || k == "CreateEnumStmt" ||
      k == "CreateDomainStmt" || k == "CreateExtensionStmt") {
    return "none on existing tables";
  }
  if (k == "UpdateStmt" || k == "InsertStmt" || k == "DeleteStmt") {
    return "ROW EXCLUSIVE, and row locks on the rows it writes";
  }
  if (k == "VacuumStmt") return "SHARE UPDATE EXCLUSIVE: reads and writes go on";
  if (k == "DropStmt" || k == "TruncateStmt" || k == "ClusterStmt" || k == "LockStmt" ||
      k == "RefreshMatViewStmt" || k == "ReindexStmt") {
    return "ACCESS EXCLUSIVE";
  }
  if (k == "SelectStmt") return "ACCESS SHARE";
  return "unknown: assume ACCESS EXCLUSIVE";
}

std::vector<LintFinding> LintStep(const std::string& sql, const std::string& phase,
                                  const LintContext& context) {
  Linter l{sql, phase, context, {}};
  const SqlParse p = ParseSql(sql);
  if (!p.ok()) {
    LintFinding f;
    f.rule = "syntax-error";
    f.phase = phase;
    f.message = "PostgreSQL cannot parse the step: " + p.error;
    f.where = PositionIn(sql, p.error_offset);
    f.fix = "correct the SQL (PostgreSQL 15's grammar)";
    return {f};
  }
  if (p.statements.empty()) {
    l.Add("empty-step", std::string::npos, "", "the step holds no statement", "remove it or write its SQL");
    return l.out;
  }
  if (p.statements.size() > 1) {
    l.Add("one-statement-per-step", p.statements[1].offset, "", "the step holds more than one statement",
          "split it into one step per statement, so each runs, retries and is recorded on its own");
    bool txn = false, concurrently = false;
    for (const auto& st : p.statements) {
      txn |= st.kind == "TransactionStmt";
      concurrently |= RunsOutsideTransactionBlock(st.text);
    }
    if (txn && concurrently) {
      l.Add("ban-concurrent-index-creation-in-transaction", p.statements[0].offset, "",
            "CONCURRENTLY cannot run inside a transaction block",
            "drop the BEGIN/COMMIT: tide runs CONCURRENTLY statements on their own");
    }
  }
  LintContext ctx = context;
  Linter inner{sql, phase, ctx, {}};
  for (const auto& st : p.statements) {
    inner.Statement(st);
    inner.Nested(st);
    for (const auto& t : TablesCreatedBy(st.text)) ctx.new_tables.insert(t);
    for (const auto& t : TablesCreatedBy(st.text, true)) ctx.maybe_new_tables.insert(t);
  }
  for (auto& f : inner.out) {
    if (std::none_of(l.out.begin(), l.out.end(), [&](const LintFinding& o) { return o.rule == f.rule; })) {
      l.out.push_back(std::move(f));
    }
  }
  return l.out;
}

std::vector<LintFinding> LintStep(const std::string& sql, const std::string& phase,
                                  const std::vector<std::string>& earlier) {
  LintContext ctx;
  ctx.earlier = earlier;
  for (const auto& e : earlier) {
    for (const auto& t : TablesCreatedBy(e)) ctx.new_tables.insert(t);
    for (const auto& t : TablesCreatedBy(e, true)) ctx.maybe_new_tables.insert(t);
  }
  return LintStep(sql, phase, ctx);
}

LintQuestions LintQuestionsOf(const Plan& plan) {
  LintQuestions q;
  auto ask = [&](const std::vector<Step>& steps) {
    for (const auto& s : steps) {
      if (s.kind != OpKind::kSql) continue;
      for (const auto& st : ParseSql(s.sql).statements) {
        Walk(st.body, [&](const std::string& kind, const SqlNode& body) {
          if (kind == "FuncCall") q.functions.insert(FunctionName(Field(body, "funcname")));
        });
        const std::string table = RelationName(Field(st.body, "relation"));
        if (table.empty()) continue;
        q.tables.insert(table);
        const SqlNode* cmds = Field(st.body, "cmds");
        for (const SqlNode& c : cmds ? *cmds : SqlNode::array()) {
          const SqlNode& cmd = BodyOf(c);
          const std::string sub = StringField(cmd, "subtype");
          if (sub == "AT_AlterColumnType") q.columns.insert(table + "." + StringField(cmd, "name"));
          if (sub == "AT_DropConstraint") q.constraints.insert(table + "." + StringField(cmd, "name"));
        }
      }
    }
  };
  ask(plan.expand);
  ask(plan.contract);
  ask(plan.rollback);
  return q;
}

std::vector<LintFinding> LintPlan(const Plan& plan, const LintFacts* facts) {
  std::vector<LintFinding> out;
  LintContext ctx;
  ctx.facts = facts;
  auto lint = [&](const std::vector<Step>& steps, const char* phase) {
    for (size_t i = 0; i < steps.size(); ++i) {
      if (steps[i].kind != OpKind::kSql) continue;
      for (auto f : LintStep(steps[i].sql, phase, ctx)) {
        if (!steps[i].unsafe.empty() && f.rule != "syntax-error" && f.rule != "empty-step") continue;
        f.step = i + 1;
        f.pos = steps[i].pos;
        out.push_back(std::move(f));
      }
      ctx.earlier.push_back(steps[i].sql);
      for (const auto& t : TablesCreatedBy(steps[i].sql)) ctx.new_tables.insert(t);
      for (const auto& t : TablesCreatedBy(steps[i].sql, true)) ctx.maybe_new_tables.insert(t);
    }
  };
  lint(plan.expand, "expand");
  // By contract the application has been writing the tables expand created: they are not
  // new any more; nor to rollback, which undoes expand.
  ctx.new_tables.clear();
  ctx.maybe_new_tables.clear();
  lint(plan.contract, "contract");
  ctx.new_tables.clear();
  ctx.maybe_new_tables.clear();
  lint(plan.rollback, "rollback");
  return out;
}

}  // namespace tide
