#include "engine/alterations.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <set>

#include "engine/sql_text.h"

namespace tide {
namespace {

const char* kBrief =
    "ACCESS EXCLUSIVE on {t}, brief: a catalog change without a scan or rewrite; queries on {t} "
    "queue behind it for at most lock_timeout";
const char* kValidate = "SHARE UPDATE EXCLUSIVE on {t} while it scans: reads and writes go on";
const char* kConcurrent =
    "SHARE UPDATE EXCLUSIVE on {t}: reads and writes go on; waits for transactions older than "
    "the build";

std::string Fill(const char* text, const std::string& t) {
  std::string out = text;
  for (size_t at; (at = out.find("{t}")) != std::string::npos;) out.replace(at, 3, t);
  return out;
}

std::string ColumnExists(const QualifiedName& table, const std::string& column) {
  return "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = " + RegClass(table) +
         " AND attname = " + QuoteLiteral(column) + " AND attnum > 0 AND NOT attisdropped)";
}

std::string IndexValid(const QualifiedName& index) {
  return "COALESCE((SELECT indisvalid FROM pg_index WHERE indexrelid = " + RegClass(index) +
         "), false)";
}

std::string Columns(const std::vector<std::string>& columns) {
  std::string out;
  for (const auto& c : columns) out += (out.empty() ? "" : ", ") + QuoteIdent(c);
  return out;
}

std::string Hash8(const std::string& text) {
  char hash[9];
  std::snprintf(hash, sizeof hash, "%08x", NameHash(text));
  return hash;
}

std::string ShadowMark(const std::string& plan, const QualifiedName& table,
                       const std::string& column) {
  return "tide shadow of " + table.Display() + "." + column + " for plan " + plan;
}

std::string TriggerMark(const std::string& plan, const QualifiedName& table,
                        const std::string& column) {
  return "tide trigger of plan " + plan + " keeping " + table.Display() + "." + column +
         " and its shadow in step";
}

std::string SchemaMark(const std::string& plan) {
  return "tide version schema of plan " + plan + ": views of the new version";
}

// The name of the view of `table` in the version schema: its new name when it is renamed.
std::string ViewName(const std::vector<Step>& alterations, const QualifiedName& table) {
  for (const auto& a : alterations) {
    if (a.kind == OpKind::kRenameTable && a.table == table) return a.to;
  }
  return table.name;
}

// The tables of the alterations, each once, in plan order.
std::vector<QualifiedName> TablesOf(const std::vector<Step>& alterations) {
  std::vector<QualifiedName> out;
  for (const auto& a : alterations) {
    if (std::find(out.begin(), out.end(), a.table) == out.end()) out.push_back(a.table);
  }
  return out;
}

// A query that is true when the session writes as the new version: its search_path names the
// version schema.
std::string NewVersionSession(const std::string& schema) {
  return QuoteLiteral(schema) + " = ANY (string_to_array(replace(replace(current_setting("
         "'search_path'), ' ', ''), '\"', ''), ','))";
}

}  // namespace

std::string ShadowColumn(const std::string& column) { return ObjectName({"_tide_new", column}, ""); }

std::string KeptColumn(const std::string& column) { return ObjectName({"_tide_old", column}, ""); }

QualifiedName SwitchedTable(const std::vector<Step>& alterations, const QualifiedName& table) {
  for (const auto& a : alterations) {
    if (a.kind == OpKind::kRenameTable && a.table == table) return {table.schema, a.to};
  }
  return table;
}

std::string AlterTriggerName(const std::string& plan, const QualifiedName& table,
                             const std::string& column) {
  std::string head = column.substr(0, 30);
  while (!head.empty() && (static_cast<unsigned char>(head.back()) & 0xC0) == 0x80) head.pop_back();
  if (!head.empty() && static_cast<unsigned char>(head.back()) >= 0xC0) head.pop_back();
  return "tide_alter_" + head + "_" + Hash8(plan + "/" + table.Display() + "/" + column);
}

std::string VersionSchema(const std::string& plan) { return plan; }

std::string FactsKey(const QualifiedName& table, const std::string& column) {
  return table.Display() + "." + column;
}

std::string Disagrees(const Step& a) { return DisagreesIn(a, ShadowColumn(a.column)); }

std::string DisagreesIn(const Step& a, const std::string& shadow_column) {
  const std::string shadow = QuoteIdent(shadow_column);
  const std::string up = a.type.empty() ? "(" + UpExpression(a) + ")"
                                        : "CAST((" + UpExpression(a) + ") AS " + a.type + ")";
  // Compared as text, so that types without equality (json) work; a column that becomes NOT
  // NULL needs a value in every row (the switch's validated check would fail on a NULL after
  // all the slow work).
  return shadow + "::text IS DISTINCT FROM (" + up + ")::text" +
         (a.not_null ? " OR " + shadow + " IS NULL" : "");
}

std::string UpExpression(const Step& a) {
  if (!a.up.empty()) return a.up;
  if (a.type.empty()) return QuoteIdent(a.column);
  return "CAST(" + QuoteIdent(a.column) + " AS " + a.type + ")";
}

void DeriveAlterations(Plan* plan) {
  std::vector<Step> alterations;
  for (auto& s : plan->expand) {
    if (s.kind == OpKind::kAlterColumn || s.kind == OpKind::kRenameColumn ||
        s.kind == OpKind::kRenameTable) {
      s.plan = plan->name;
      alterations.push_back(s);
    }
  }
  if (alterations.empty()) return;
  auto derived = [&](OpKind kind) {
    Step d;
    d.kind = kind;
    d.plan = plan->name;
    d.alterations = alterations;
    d.pos = alterations.front().pos;
    return d;
  };
  plan->expand.push_back(derived(OpKind::kCreateVersionSchema));

  // One backfill task per table, for all its shadows; one gate per column.
  std::vector<BackfillTask> tasks;
  for (const auto& a : alterations) {
    if (a.kind != OpKind::kAlterColumn) continue;
    const std::string shadow = ShadowColumn(a.column), up = UpExpression(a);
    auto it = std::find_if(tasks.begin(), tasks.end(),
                           [&](const BackfillTask& t) { return t.table == a.table; });
    if (it == tasks.end()) {
      BackfillTask t;
      t.table = a.table;
      t.pos = a.pos;
      t.derived = "alter_column";
      tasks.push_back(t);
      it = tasks.end() - 1;
    }
    it->set.emplace_back(shadow, up);
    // A row is pending while its shadow disagrees with `up` (empty, or stale); the rows where
    // `up` gives no value to a column that becomes NOT NULL are counted as unfillable.
    const std::string pending = "(" + Disagrees(a) + ")";
    it->where = it->where.empty() ? pending : it->where + " OR " + pending;
    it->derived += " " + a.table.Display() + "." + a.column;

    Gate g;
    g.kind = Gate::Kind::kSql;
    g.pos = a.pos;
    g.label = "agree:" + a.table.Display() + "." + a.column;
    g.sql = "SELECT count(*) FROM " + QuoteName(a.table) + " WHERE " + Disagrees(a);
    g.expect = 0;
    plan->gates.push_back(g);
  }
  for (auto& t : tasks) plan->backfill.push_back(std::move(t));

  size_t at = 0;
  while (at < plan->contract.size() && plan->contract[at].kind == OpKind::kSetNotNull) ++at;
  plan->contract.insert(plan->contract.begin() + static_cast<std::ptrdiff_t>(at),
                        derived(OpKind::kSwitch));
  plan->rollback.insert(plan->rollback.begin(), derived(OpKind::kUndoAlterations));
  for (auto& s : plan->contract) {
    if (s.kind == OpKind::kSwitch) s.retention = plan->retention;
  }
  plan->revert.push_back(derived(OpKind::kRevertSwitch));
}

std::string AlterTriggerFunctionSql(const std::string& plan, const Step& a, bool lenient) {
  const std::string shadow = ShadowColumn(a.column);
  const std::string name = AlterTriggerName(plan, a.table, a.column);
  const std::string fn = "tide." + QuoteIdent(name);
  const std::string tmark = TriggerMark(plan, a.table, a.column);
  const std::string row = "FROM (SELECT (NEW).*) AS " + QuoteIdent(a.table.name);
  const std::string up = "(SELECT (" + UpExpression(a) + ") " + row + ")";
  const std::string down_expr = a.down.empty() ? QuoteIdent(a.column) : a.down;
  const std::string down = "(SELECT (SELECT (" + down_expr + ") FROM (SELECT (NEW)." +
                           QuoteIdent(shadow) + " AS " + QuoteIdent(a.column) + ") AS tide_new) " +
                           row + ")";
  const std::string s = "NEW." + QuoteIdent(shadow), c = "NEW." + QuoteIdent(a.column);
  const std::string os = "OLD." + QuoteIdent(shadow), oc = "OLD." + QuoteIdent(a.column);
  const std::string new_version = NewVersionSession(VersionSchema(plan));
  // Filling the shadow from `up`: while the gates wait, a value `up` cannot convert never fails
  // the application's write (the shadow stays NULL, the row disagrees, and the backfill stops on
  // it with PostgreSQL's error); from contract on it does, so that no such value can arrive
  // between the last check and the switch and be lost.
  const std::string fill =
      lenient ? "BEGIN\n        " + s + " := " + up + ";\n      EXCEPTION WHEN OTHERS THEN\n        " + s +
                    " := NULL;\n      END;"
              : s + " := " + up + ";";
  std::string body = "#variable_conflict use_column\nBEGIN\n";
  // tide's own backfill sets the shadow from `up` itself.
  body += "  IF current_setting('tide.backfill', true) = " + QuoteLiteral(plan) +
          " THEN\n    RETURN NEW;\n  END IF;\n";
  // Which column a write changed says which version wrote it: the old version writes the old
  // column (and never the shadow), the new one the shadow (through the version schema's view).
  // An insert with an empty shadow fills it from the old column (the old version; the new one
  // writing the table by its own name, or COPY; a column the view left to its default or
  // identity). Compared as text: not every type has `=` (json).
  body += "  IF TG_OP = 'INSERT' THEN\n";
  body += "    IF " + s + " IS NOT NULL THEN\n";
  body += "      " + c + " := " + down + ";\n";
  body += "    ELSIF " + c + " IS NOT NULL THEN\n      " + fill + "\n    END IF;\n";
  body += "  ELSIF " + s + "::text IS DISTINCT FROM " + os + "::text THEN\n";
  body += "    " + c + " := " + down + ";\n";
  // An update of other columns: the old version's may change what `up` reads; the new
  // version's leaves its value alone (up(down(x)) need not be x).
  body += "  ELSIF " + c + "::text IS DISTINCT FROM " + oc + "::text OR NOT " + new_version + " THEN\n";
  body += "    " + fill + "\n";
  body += "  END IF;\n  RETURN NEW;\nEND";
  const std::string clash =
      "DO $tide_clash$ BEGIN IF EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = "
      "'tide'::regnamespace AND proname = " + QuoteLiteral(name) +
      " AND obj_description(oid, 'pg_proc') IS DISTINCT FROM " + QuoteLiteral(tmark) +
      ") THEN RAISE EXCEPTION USING ERRCODE = 'duplicate_object', MESSAGE = " +
      QuoteLiteral("a function named tide." + name + " exists and is not this plan's; tide will "
                   "not replace it") +
      "; END IF; END $tide_clash$";
  return clash + "; CREATE OR REPLACE FUNCTION " + fn +
         "() RETURNS trigger LANGUAGE plpgsql AS $tide_alter$\n" + body +
         "\n$tide_alter$; COMMENT ON FUNCTION " + fn + "() IS " + QuoteLiteral(tmark);
}

std::vector<DdlStatement> CompileAlterColumn(const std::string& plan, const Step& a) {
  const std::string t = QuoteName(a.table), shadow = ShadowColumn(a.column);
  const std::string mark = ShadowMark(plan, a.table, a.column);
  std::vector<DdlStatement> out;
  // The shadow: of the new type, or of the old one read from the catalog, with the old
  // column's collation when it is not its type's default and the new type has one (a
  // case-insensitive email stays case-insensitive, and so do its unique indexes).
  const std::string old_attr = "FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid WHERE "
                               "a.attrelid = " + RegClass(a.table) + " AND a.attname = " +
                               QuoteLiteral(a.column) + " AND NOT a.attisdropped";
  const std::string type = a.type.empty()
                               ? "(SELECT format_type(a.atttypid, a.atttypmod) " + old_attr + ")"
                               : QuoteLiteral(a.type);
  const std::string type_oid =
      a.type.empty() ? "(SELECT a.atttypid " + old_attr + ")" : QuoteLiteral(a.type) + "::regtype";
  const std::string collate =
      "COALESCE((SELECT ' COLLATE ' || quote_ident(cn.nspname) || '.' || quote_ident(co.collname) " +
      old_attr.substr(0, old_attr.find(" WHERE ")) +
      " JOIN pg_collation co ON co.oid = a.attcollation JOIN pg_namespace cn ON cn.oid = "
      "co.collnamespace" + old_attr.substr(old_attr.find(" WHERE ")) +
      " AND a.attcollation <> ty.typcollation AND (SELECT typcollation FROM pg_type WHERE oid = " +
      type_oid + ") <> 0), '')";
  std::string add = "DO $tide_shadow$ BEGIN EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %I %s%s', " +
                    QuoteLiteral(t) + ", " + QuoteLiteral(shadow) + ", " + type + ", " + collate +
                    "); END $tide_shadow$";
  add += "; COMMENT ON COLUMN " + t + "." + QuoteIdent(shadow) + " IS " + QuoteLiteral(mark);
  const std::string clash =
      "SELECT CASE WHEN " + ColumnExists(a.table, shadow) +
      " AND col_description(" + RegClass(a.table) + ", (SELECT attnum FROM pg_attribute WHERE "
      "attrelid = " + RegClass(a.table) + " AND attname = " + QuoteLiteral(shadow) +
      ")) IS DISTINCT FROM " + QuoteLiteral(mark) + " THEN " +
      QuoteLiteral("a column named " + shadow + " already exists on " + a.table.Display() +
                   " and is not this plan's shadow of " + a.column +
                   " (another plan changing the same column?); finish or abort that plan first") +
      " ELSE '' END";
  out.push_back({add, true,
                 "SELECT " + ColumnExists(a.table, shadow) + " AND col_description(" +
                     RegClass(a.table) + ", (SELECT attnum FROM pg_attribute WHERE attrelid = " +
                     RegClass(a.table) + " AND attname = " + QuoteLiteral(shadow) + ")) = " +
                     QuoteLiteral(mark),
                 Fill(kBrief, a.table.Display()) + " (a nullable column without a default)", "",
                 clash});

  const std::string name = AlterTriggerName(plan, a.table, a.column);
  out.push_back({AlterTriggerFunctionSql(plan, a, true) + "; CREATE OR REPLACE TRIGGER " +
                     QuoteIdent(name) + " BEFORE INSERT OR UPDATE ON " + t +
                     " FOR EACH ROW EXECUTE FUNCTION tide." + QuoteIdent(name) + "(); ALTER TABLE " +
                     t + " ENABLE ALWAYS TRIGGER " + QuoteIdent(name),
                 true, "",
                 "SHARE ROW EXCLUSIVE on " + a.table.Display() +
                     ", brief: writes queue behind it for at most lock_timeout; reads go on",
                 "", ""});
  return out;
}

std::vector<DdlStatement> CompileAddPrimaryKey(const Step& s) {
  const std::string t = QuoteName(s.table);
  const std::string name = s.name.name.empty() ? ObjectName({s.table.name}, "_pkey") : s.name.name;
  const QualifiedName index{s.table.schema, name};
  const std::string has_pk = "EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = " +
                             RegClass(s.table) + " AND contype = 'p' AND conname = " +
                             QuoteLiteral(name) + ")";
  const std::string other_pk =
      "SELECT COALESCE((SELECT 'the table already has a primary key, ' || conname || ', so "
      "add_primary_key cannot add " + name + "; drop it in an earlier step, or remove this one' "
      "FROM pg_constraint WHERE conrelid = " + RegClass(s.table) + " AND contype = 'p' AND conname <> " +
      QuoteLiteral(name) + "), '')";
  std::vector<DdlStatement> out;
  std::vector<std::string> checks;
  for (const auto& c : s.columns) {
    const std::string check = ObjectName({s.table.name, c}, "_not_null");
    checks.push_back(check);
    const std::string done = has_pk + " OR " + ColumnIsNotNull(s.table, c);
    out.push_back({"ALTER TABLE " + t + " ADD CONSTRAINT " + QuoteIdent(check) + " CHECK (" +
                       QuoteIdent(c) + " IS NOT NULL) NOT VALID",
                   true, "SELECT " + done + " OR " + ConstraintExists(s.table, check, false),
                   Fill(kBrief, s.table.Display()), "", out.empty() ? other_pk : ""});
    out.push_back({"ALTER TABLE " + t + " VALIDATE CONSTRAINT " + QuoteIdent(check), true,
                   "SELECT " + done + " OR " + ConstraintExists(s.table, check, true),
                   Fill(kValidate, s.table.Display()), "", ""});
    out.push_back({"ALTER TABLE " + t + " ALTER COLUMN " + QuoteIdent(c) + " SET NOT NULL", true,
                   "SELECT " + done,
                   Fill(kBrief, s.table.Display()) + " (the valid check spares the scan)", "", ""});
  }
  out.push_back({"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS " + QuoteIdent(name) + " ON " + t +
                     " (" + Columns(s.columns) + ")",
                 false, "SELECT " + has_pk + " OR " + IndexValid(index),
                 Fill(kConcurrent, s.table.Display()), QuoteName(index), ""});
  out.push_back({"ALTER TABLE " + t + " ADD CONSTRAINT " + QuoteIdent(name) +
                     " PRIMARY KEY USING INDEX " + QuoteIdent(name),
                 true, "SELECT " + has_pk,
                 Fill(kBrief, s.table.Display()) + " (the index is already built)", "", ""});
  for (const auto& check : checks) {
    out.push_back({"ALTER TABLE " + t + " DROP CONSTRAINT IF EXISTS " + QuoteIdent(check), true,
                   "SELECT NOT " + ConstraintExists(s.table, check, false),
                   Fill(kBrief, s.table.Display()), "", ""});
  }
  return out;
}

std::vector<DdlStatement> CompileVersionSchema(const Step& step) {
  const std::string schema = VersionSchema(step.plan), q = QuoteIdent(schema);
  const std::string mark = SchemaMark(step.plan);
  std::string sql = "DO $tide_views$\nDECLARE cols text; def text;\nBEGIN\n";
  sql += "  IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = " + QuoteLiteral(schema) +
         " AND obj_description(oid, 'pg_namespace') IS DISTINCT FROM " + QuoteLiteral(mark) +
         ") THEN RAISE EXCEPTION USING ERRCODE = 'duplicate_schema', MESSAGE = " +
         QuoteLiteral("a schema named " + schema + " exists and is not this plan's version "
                      "schema; tide will not put its views there (rename the plan or the schema)") +
         "; END IF;\n";
  sql += "  CREATE SCHEMA IF NOT EXISTS " + q + ";\n  COMMENT ON SCHEMA " + q + " IS " +
         QuoteLiteral(mark) + ";\n  GRANT USAGE ON SCHEMA " + q + " TO PUBLIC;\n";
  for (const auto& table : TablesOf(step.alterations)) {
    // Each column under its new name, the shadow in the old column's place; other plans'
    // shadows are left out.
    std::string names = "CASE attname", order = "CASE attname", hidden;
    for (const auto& a : step.alterations) {
      if (!(a.table == table)) continue;
      if (a.kind == OpKind::kAlterColumn) {
        const std::string shadow = ShadowColumn(a.column);
        names += " WHEN " + QuoteLiteral(shadow) + " THEN quote_ident(attname) || ' AS ' || " +
                 QuoteLiteral(QuoteIdent(a.column));
        order += " WHEN " + QuoteLiteral(shadow) +
                 " THEN (SELECT o.attnum FROM pg_attribute o WHERE o.attrelid = a.attrelid AND "
                 "o.attname = " + QuoteLiteral(a.column) + ")";
        hidden += ", " + QuoteLiteral(a.column);
      } else if (a.kind == OpKind::kRenameColumn) {
        names += " WHEN " + QuoteLiteral(a.column) + " THEN quote_ident(attname) || ' AS ' || " +
                 QuoteLiteral(QuoteIdent(a.to));
      }
    }
    names = names == "CASE attname" ? "quote_ident(attname)" : names + " ELSE quote_ident(attname) END";
    order = order == "CASE attname" ? "attnum" : order + " ELSE attnum END";
    std::string ours;
    for (const auto& a : step.alterations) {
      if (a.table == table && a.kind == OpKind::kAlterColumn) {
        ours += ", " + QuoteLiteral(ShadowColumn(a.column));
      }
    }
    const std::string view = q + "." + QuoteIdent(ViewName(step.alterations, table));
    sql += "  SELECT string_agg(" + names + ", ', ' ORDER BY " + order +
           ") INTO cols FROM pg_attribute a WHERE attrelid = " + QuoteLiteral(QuoteName(table)) +
           "::regclass AND attnum > 0 AND NOT attisdropped AND ((attname NOT LIKE '\\_tide\\_new\\_%' "
           "AND attname NOT LIKE '\\_tide\\_old\\_%')" +
           (ours.empty() ? "" : " OR attname IN (" + ours.substr(2) + ")") + ")" +
           (hidden.empty() ? "" : " AND attname NOT IN (" + hidden.substr(2) + ")") + ";\n";
    sql += "  EXECUTE " + QuoteLiteral("DROP VIEW IF EXISTS " + view) + ";\n";
    sql += "  EXECUTE " + QuoteLiteral("CREATE VIEW " + view + " WITH (security_invoker = true) AS SELECT ") +
           " || cols || " + QuoteLiteral(" FROM " + QuoteName(table)) + ";\n";
    sql += "  EXECUTE " + QuoteLiteral("GRANT SELECT, INSERT, UPDATE, DELETE ON " + view + " TO PUBLIC") +
           ";\n";
    // The view's column of an altered column gets the column's default (or an identity's next
    // value): an insert of the new version that leaves it out gets the value the old column
    // would have, and an explicit NULL stays NULL.
    for (const auto& a : step.alterations) {
      if (!(a.table == table) || a.kind != OpKind::kAlterColumn) continue;
      const std::string t = QuoteLiteral(QuoteName(table)), c = QuoteLiteral(a.column);
      // (An identity is left to the old column: the trigger fills the shadow from it.)
      const std::string cast_open = a.type.empty() ? "'('" : QuoteLiteral("CAST((");
      const std::string cast_close = a.type.empty() ? "')'" : QuoteLiteral(") AS " + a.type + ")");
      sql += "  SELECT COALESCE(" + (a.default_sql ? QuoteLiteral("(" + *a.default_sql + ")") : "NULL") +
             ", (SELECT " + cast_open + " || pg_get_expr(d.adbin, d.adrelid) || " + cast_close +
             " FROM pg_attrdef d JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = "
             "d.adnum WHERE d.adrelid = " + t + "::regclass AND a.attname = " + c + ")) INTO def;\n";
      sql += "  IF def IS NOT NULL THEN EXECUTE " +
             QuoteLiteral("ALTER VIEW " + view + " ALTER COLUMN " + QuoteIdent(a.column) + " SET DEFAULT ") +
             " || def; END IF;\n";
    }
  }
  sql += "END $tide_views$";
  std::string tables;
  for (const auto& t : TablesOf(step.alterations)) tables += (tables.empty() ? "" : ", ") + t.Display();
  return {{sql, true, "",
           "ACCESS SHARE on " + tables + " (views over them); nothing waits on it", "", ""}};
}

namespace {
// Drops the plan's version schema and its views, when it is there and carries the plan's mark.
std::string DropVersionSchema(const std::string& plan) {
  const std::string schema = VersionSchema(plan);
  return "DO $tide_views$ BEGIN IF EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = " +
         QuoteLiteral(schema) + " AND obj_description(oid, 'pg_namespace') = " +
         QuoteLiteral(SchemaMark(plan)) + ") THEN DROP SCHEMA " + QuoteIdent(schema) +
         " CASCADE; END IF; END $tide_views$";
}
}  // namespace

std::vector<DdlStatement> CompileUndo(const Step& step) {
  std::vector<DdlStatement> out;
  out.push_back({DropVersionSchema(step.plan), true, "",
                 "ACCESS EXCLUSIVE on the version schema's views, brief", "", ""});
  for (const auto& a : step.alterations) {
    if (a.kind != OpKind::kAlterColumn) continue;
    const std::string name = AlterTriggerName(step.plan, a.table, a.column);
    const std::string shadow = ShadowColumn(a.column), t = QuoteName(a.table);
    const std::string ours =
        "col_description(" + RegClass(a.table) + ", (SELECT attnum FROM pg_attribute WHERE "
        "attrelid = " + RegClass(a.table) + " AND attname = " + QuoteLiteral(shadow) +
        " AND NOT attisdropped)) = " + QuoteLiteral(ShadowMark(step.plan, a.table, a.column));
    out.push_back({"DROP TRIGGER IF EXISTS " + QuoteIdent(name) + " ON " + t +
                       "; DROP FUNCTION IF EXISTS tide." + QuoteIdent(name) +
                       "(); DO $tide_undo$ BEGIN IF " + ours + " THEN ALTER TABLE " + t +
                       " DROP COLUMN " + QuoteIdent(shadow) + "; END IF; END $tide_undo$",
                   true, "SELECT " + RegClass(a.table) + " IS NULL",
                   Fill(kBrief, a.table.Display()) + " (the shadow's space is reclaimed by later "
                   "writes)", "", ""});
  }
  return out;
}

namespace {

// One alter_column of the switch, with its facts.
struct Altered {
  const Step* step;
  const ColumnFacts* facts;
  QualifiedName table;  // with its schema resolved
  std::string shadow;
  const RetainedColumn* kept = nullptr;  // the revert: the kept column taking its name back
};

struct SwitchBuilder {
  const Step& step;
  std::vector<Altered> altered;

  // The column's name on the new shape while both exist: the shadow when `table.column` is
  // altered by the plan.
  std::string Mapped(const QualifiedName& table, const std::string& column) const {
    for (const auto& a : altered) {
      if (a.table == table && a.step->column == column) return a.shadow;
    }
    return column;
  }
  std::vector<std::string> MappedAll(const QualifiedName& table,
                                     const std::vector<std::string>& columns) const {
    std::vector<std::string> out;
    for (const auto& c : columns) out.push_back(Mapped(table, c));
    return out;
  }
  std::string MappedText(const QualifiedName& table, std::string text) const {
    for (const auto& a : altered) {
      if (a.table == table) text = ReplaceIdentifier(text, a.step->column, a.shadow);
    }
    return text;
  }
};

std::string NewName(const std::string& old) { return ObjectName({old}, "_tide"); }

// In the revert: an index or check the plan's alter_column added (`unique`, `check`), which
// goes with the new column instead of being built again on the kept one.
bool AddedByPlan(const Altered& a, const std::string& name) {
  return a.kept && ((!a.step->unique_name.empty() && name == a.step->unique_name) ||
                    (!a.step->name.name.empty() && name == a.step->name.name));
}

// Where the switch keeps an identity's next value between the old column's drop and the new
// identity: a transaction-local setting.
std::string IdentitySetting(const Altered& a) {
  return "tide.identity_" + Hash8(a.table.Display() + "." + a.step->column);
}

}  // namespace

namespace {

std::string KeptMark(const std::string& plan, const std::string& table, const std::string& column) {
  return "tide: the old " + table + "." + column + " kept by plan " + plan +
         " until `tidectl finalize " + plan + "` (or `tidectl revert " + plan + "`)";
}

std::string KeepTriggerName(const std::string& plan, const QualifiedName& table,
                            const std::string& column) {
  std::string head = column.substr(0, 30);
  while (!head.empty() && (static_cast<unsigned char>(head.back()) & 0xC0) == 0x80) head.pop_back();
  if (!head.empty() && static_cast<unsigned char>(head.back()) >= 0xC0) head.pop_back();
  return "tide_keep_" + head + "_" + Hash8(plan + "/" + table.Display() + "/" + column);
}

// The trigger function that keeps `kept` (the old column) in step with `column` after the
// switch. `lenient` (until a revert starts): every insert and update stores `conversion` of the
// new row in it (`down` may read other columns), and nothing in it can fail the write: a value
// it cannot convert, or a column it names that a later change dropped, leaves it NULL (the
// revert then refuses, naming the rows). Strict (while a revert runs): every insert, and every
// update that changes the column, converts or fails.
std::string KeepTriggerFunctionSql(const std::string& plan, const std::string& name,
                                   const std::string& table_alias, const std::string& column,
                                   const std::string& kept, const std::string& conversion,
                                   bool lenient) {
  const std::string fn = "tide." + QuoteIdent(name);
  const std::string k = "NEW." + QuoteIdent(kept), c = QuoteIdent(column);
  const std::string value = "(SELECT (" + conversion + ") FROM (SELECT (NEW).*) AS " +
                            QuoteIdent(table_alias) + ")";
  std::string body = "#variable_conflict use_column\nBEGIN\n";
  if (lenient) {
    body += "  BEGIN\n    " + k + " := " + value + ";\n  EXCEPTION WHEN OTHERS THEN\n    BEGIN\n      " + k +
            " := NULL;\n    EXCEPTION WHEN OTHERS THEN\n      NULL;\n    END;\n  END;\n";
  } else {
    body += "  IF TG_OP = 'INSERT' OR NEW." + c + "::text IS DISTINCT FROM OLD." + c + "::text THEN\n";
    body += "    " + k + " := " + value + ";\n  END IF;\n";
  }
  body += "  RETURN NEW;\nEND";
  return "CREATE OR REPLACE FUNCTION " + fn + "() RETURNS trigger LANGUAGE plpgsql AS $tide_keep$\n" +
         body + "\n$tide_keep$; COMMENT ON FUNCTION " + fn + "() IS " +
         QuoteLiteral("tide trigger of plan " + plan + " keeping the old column " + kept + " in step");
}

std::vector<DdlStatement> CompileSwitchImpl(const Step& step, const SwitchFacts& facts,
                                            std::string* problem, Millis lock_timeout,
                                            Millis statement_timeout,
                                            const std::vector<RetainedColumn>* revert);

}  // namespace

std::vector<DdlStatement> CompileSwitch(const Step& step, const SwitchFacts& facts,
                                        std::string* problem, Millis lock_timeout,
                                        Millis statement_timeout) {
  return CompileSwitchImpl(step, facts, problem, lock_timeout, statement_timeout, nullptr);
}

std::vector<DdlStatement> CompileRevert(const Step& shape, const SwitchFacts& facts,
                                        const std::vector<RetainedColumn>& kept,
                                        std::string* problem, Millis lock_timeout,
                                        Millis statement_timeout) {
  // The column as it is now (less what the plan added to it, its `unique` and `check`: see
  // AddedByPlan), with the old column's default and NOT NULL: what the kept column gets.
  SwitchFacts now = facts;
  for (const auto& a : shape.alterations) {
    if (a.kind != OpKind::kAlterColumn) continue;
    auto it = now.find(FactsKey(a.table, a.column));
    if (it == now.end()) continue;
    ColumnFacts& f = it->second;
    f.default_expr.clear();
    f.not_null = a.not_null;
  }
  return CompileSwitchImpl(shape, now, problem, lock_timeout, statement_timeout, &kept);
}

Step RevertShape(const Step& revert, const std::vector<RetainedColumn>& kept, std::string* problem) {
  Step shape = revert;
  shape.alterations.clear();
  for (const auto& a : revert.alterations) {
    Step m = a;
    m.table = SwitchedTable(revert.alterations, a.table);
    if (a.kind == OpKind::kAlterColumn) {
      auto row = std::find_if(kept.begin(), kept.end(), [&](const RetainedColumn& r) {
        return r.table_display == m.table.Display() && r.column == a.column;
      });
      if (row == kept.end()) {
        *problem = "the old " + FactsKey(m.table, a.column) + " is not kept (finalized?)";
        return shape;
      }
      m.shadow = row->kept;
      m.type = row->old_type;
      m.up = a.down;  // the old value from the new column (by the column's name)
      m.down = a.up;
      m.not_null = row->old_not_null;
      m.default_sql = row->old_default.empty() ? std::nullopt
                                               : std::optional<std::string>(row->old_default);
      // Kept to leave out of what the kept column gets: the plan added them.
      m.unique_name = a.unique_name;
      m.name = a.name;
    } else if (a.kind == OpKind::kRenameColumn) {
      m.column = a.to;
      m.to = a.column;
    } else if (a.kind == OpKind::kRenameTable) {
      m.to = a.table.name;
    }
    shape.alterations.push_back(m);
  }
  return shape;
}

std::vector<DdlStatement> CompileFinalize(const std::string& plan,
                                          const std::vector<RetainedColumn>& kept,
                                          Millis lock_timeout) {
  std::set<std::string> tables;
  for (const auto& r : kept) {
    if (!r.kept.empty()) tables.insert(r.table);
  }
  std::string list;
  for (const auto& t : tables) list += (list.empty() ? "" : ", ") + t;
  std::vector<std::string> sql;
  const int64_t share =
      std::max<int64_t>(10, lock_timeout.count() / std::max<int64_t>(1, tables.size()));
  sql.push_back("SET LOCAL lock_timeout = '" + std::to_string(share) + "ms'");
  // Only a done plan (or one whose revert failed) is finalized: the row lock keeps a revert
  // from starting until this commits.
  sql.push_back("DO $tide_finalize$ DECLARE s text; BEGIN SELECT state INTO s FROM tide.plans WHERE name = " +
                QuoteLiteral(plan) + " FOR UPDATE; IF s IS DISTINCT FROM 'done' AND s IS DISTINCT FROM "
                "'failed' THEN RAISE EXCEPTION 'plan % is %: finalize drops the old columns of a done plan', " +
                QuoteLiteral(plan) + ", s; END IF; END $tide_finalize$");
  if (!list.empty()) sql.push_back("LOCK TABLE " + list + " IN ACCESS EXCLUSIVE MODE");
  for (const auto& r : kept) {
    if (r.kept.empty()) continue;
    sql.push_back("DROP TRIGGER IF EXISTS " + QuoteIdent(r.trigger) + " ON " + r.table);
    sql.push_back("DROP FUNCTION IF EXISTS tide." + QuoteIdent(r.trigger) + "()");
    sql.push_back("DO $tide_finalize$ BEGIN IF col_description(" + QuoteLiteral(r.table) +
                  "::regclass, (SELECT attnum FROM pg_attribute WHERE attrelid = " +
                  QuoteLiteral(r.table) + "::regclass AND attname = " + QuoteLiteral(r.kept) +
                  " AND NOT attisdropped)) LIKE 'tide: the old %' THEN ALTER TABLE " + r.table +
                  " DROP COLUMN " + QuoteIdent(r.kept) + "; END IF; END $tide_finalize$");
  }
  sql.push_back("DELETE FROM tide.retained_columns WHERE plan = " + QuoteLiteral(plan));
  std::string joined;
  for (const auto& s : sql) joined += (joined.empty() ? "" : ";\n") + s;
  return {{joined, true, "",
           "ACCESS EXCLUSIVE on " + (list.empty() ? std::string("nothing") : list) +
               ", brief: catalog changes only (the old columns' space is reclaimed by later "
               "writes); queries queue behind it for at most lock_timeout",
           "", ""}};
}

namespace {

std::vector<DdlStatement> CompileSwitchImpl(const Step& step, const SwitchFacts& facts,
                                            std::string* problem, Millis lock_timeout,
                                            Millis statement_timeout,
                                            const std::vector<RetainedColumn>* revert) {
  SwitchBuilder b{step, {}};
  for (const auto& a : step.alterations) {
    if (a.kind != OpKind::kAlterColumn) continue;
    auto it = facts.find(FactsKey(a.table, a.column));
    if (it == facts.end() || !it->second.exists) {
      *problem = "column " + FactsKey(a.table, a.column) + " does not exist";
      return {};
    }
    if (!it->second.blockers.empty()) {
      *problem = FactsKey(a.table, a.column) + ": " + it->second.blockers.front();
      return {};
    }
    const std::string shadow = a.shadow.empty() ? ShadowColumn(a.column) : a.shadow;
    if (!it->second.shadow_exists) {
      *problem = revert ? "the kept old column " + shadow + " of " + FactsKey(a.table, a.column) +
                              " is missing (dropped by hand?); it cannot be switched back"
                        : "the shadow " + shadow + " of " + FactsKey(a.table, a.column) +
                              " is missing (dropped by hand?); abort the plan and submit it again";
      return {};
    }
    QualifiedName resolved{it->second.schema, a.table.name};
    const RetainedColumn* row = nullptr;
    if (revert) {
      for (const auto& r : *revert) {
        if (r.table_display == a.table.Display() && r.column == a.column) row = &r;
      }
      if (!row) {
        *problem = "the old " + FactsKey(a.table, a.column) + " is not kept (finalized?)";
        return {};
      }
    }
    b.altered.push_back({&a, &it->second, resolved, shadow, row});
  }
  std::vector<DdlStatement> out;
  std::set<std::string> locked;  // quoted, qualified
  for (const auto& a : b.altered) locked.insert(QuoteName(a.table));
  for (const auto& a : step.alterations) {
    if (a.kind != OpKind::kAlterColumn) locked.insert(QuoteName(a.table));
  }

  // Every row must agree before the locks are taken (the triggers fail writes that would not
  // from here on): a row that does not would lose its value with the old column.
  std::string refuse;
  for (const auto& a : b.altered) {
    if (a.kept) {
      refuse += std::string(refuse.empty() ? "" : ", ") + "CASE WHEN EXISTS (SELECT 1 FROM " +
                QuoteName(a.table) + " WHERE " + QuoteIdent(a.shadow) + " IS NULL AND " +
                QuoteIdent(a.step->column) + " IS NOT NULL) THEN " +
                QuoteLiteral("rows of " + a.table.Display() + " written since the switch whose " +
                             a.step->column + " `down` could not convert back to " + a.step->type +
                             " (their " + a.shadow + " is empty); switching back would lose them: "
                             "fix or delete them, then `tidectl revert` again") +
                " WHEN EXISTS (SELECT 1 FROM " + QuoteName(a.table) + " WHERE " +
                DisagreesIn(*a.step, a.shadow) + ") THEN " +
                QuoteLiteral("rows of " + a.table.Display() + " whose kept old value " + a.shadow +
                             " is not `down` of " + a.step->column + " (changed since the switch by "
                             "a trigger of the application's, or by an update tide's trigger could "
                             "not convert); switching back would bring back stale values: set " +
                             a.shadow + " from " + a.step->column + " on those rows, then `tidectl "
                             "revert` again, or `tidectl finalize` to stay on the new column") +
                " END";
      continue;
    }
    refuse += std::string(refuse.empty() ? "" : ", ") + "CASE WHEN EXISTS (SELECT 1 FROM " +
              QuoteName(a.table) + " WHERE " + Disagrees(*a.step) + ") THEN " +
              QuoteLiteral("rows of " + a.table.Display() + " whose " + ShadowColumn(a.step->column) +
                           " does not hold `up` of " + a.step->column + " (written since the gates "
                           "passed with a value `up` cannot convert?); switching would lose "
                           "them: fix or delete them, then `tidectl retry` the plan") +
              " END";
  }
  // From now on a write `up` cannot convert fails instead of leaving the shadow empty: what the
  // switch checks just before it takes its locks then holds until it has them.
  // SHARE ROW EXCLUSIVE waits for the writes in flight (which ran the lenient trigger) to end,
  // so that the check that every row agrees sees them all.
  for (const auto& a : b.altered) {
    const std::string strict =
        a.kept ? KeepTriggerFunctionSql(step.plan, a.kept->trigger, a.table.name, a.step->column,
                                        a.shadow, UpExpression(*a.step), false)
               : AlterTriggerFunctionSql(step.plan, *a.step, false);
    out.push_back({"LOCK TABLE " + QuoteName(a.table) + " IN SHARE ROW EXCLUSIVE MODE; " + strict,
                   true, "",
                   "SHARE ROW EXCLUSIVE on " + a.table.Display() + ", brief: writes queue behind it "
                   "for at most lock_timeout while those in flight end; reads go on",
                   "", ""});
  }
  // A revert that could not switch back is refused before it changes anything (the strict
  // trigger would fail the writes it could not convert).
  if (revert && !out.empty() && !refuse.empty()) out.front().refuse_if = "SELECT concat_ws('; ', " + refuse + ")";
  // Slow work first, with no lock that holds the application up: the indexes, then the checks,
  // then the foreign keys (which need the unique indexes they reference).
  std::set<std::string> seen;
  std::vector<const ForeignKeyFacts*> fks;
  for (const auto& a : b.altered) {
    const std::string t = QuoteName(a.table), td = a.table.Display();
    for (const auto& idx : a.facts->indexes) {
      if (AddedByPlan(a, idx.name) || !seen.insert("index " + td + "." + idx.name).second) continue;
      const std::vector<std::string> cols = b.MappedAll(a.table, idx.columns);
      std::string list;
      for (size_t i = 0; i < cols.size(); ++i) {
        list += (i ? ", " : "") + QuoteIdent(cols[i]);
        if (i < idx.opclasses.size() && !idx.opclasses[i].empty()) list += " " + idx.opclasses[i];
        if (i < idx.options.size() && !idx.options[i].empty()) list += " " + idx.options[i];
      }
      const QualifiedName fresh{a.table.schema, NewName(idx.name)};
      std::string sql = std::string("CREATE ") + (idx.unique ? "UNIQUE " : "") +
                        "INDEX CONCURRENTLY IF NOT EXISTS " + QuoteIdent(fresh.name) + " ON " + t +
                        " USING " + (idx.method.empty() ? "btree" : idx.method) + " (" + list + ")" +
                        (idx.nulls_not_distinct ? " NULLS NOT DISTINCT" : "");
      if (!idx.predicate.empty()) sql += " WHERE (" + b.MappedText(a.table, idx.predicate) + ")";
      out.push_back({sql, false, "SELECT " + IndexValid(fresh), Fill(kConcurrent, td),
                     QuoteName(fresh), ""});
    }
    if (!a.step->unique_name.empty() && !a.kept) {
      const QualifiedName u{a.table.schema, a.step->unique_name};
      // A relation of that name that is not this index on the shadow is someone else's.
      const std::string clash =
          "SELECT CASE WHEN " + RegClass(u) + " IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_index "
          "WHERE indexrelid = " + RegClass(u) + " AND indrelid = " + RegClass(a.table) +
          " AND indnatts = 1 AND indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = " +
          RegClass(a.table) + " AND attname = " + QuoteLiteral(a.shadow) + ")) THEN " +
          QuoteLiteral("`unique: {name: " + u.name + "}` of " + FactsKey(a.step->table, a.step->column) +
                       ": a relation of that name already exists; give the constraint another name") +
          " ELSE '' END";
      out.push_back({"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS " + QuoteIdent(u.name) +
                         " ON " + t + " (" + QuoteIdent(a.shadow) + ")",
                     false, "SELECT " + IndexValid(u), Fill(kConcurrent, td), QuoteName(u), clash});
    }
  }
  auto add_validated = [&](const QualifiedName& table, const std::string& name,
                           const std::string& def) {
    const std::string t = QuoteName(table);
    out.push_back({"ALTER TABLE " + t + " ADD CONSTRAINT " + QuoteIdent(name) + " " + def +
                       " NOT VALID",
                   true, "SELECT " + ConstraintExists(table, name, false),
                   Fill(kBrief, table.Display()), "", ""});
    out.push_back({"ALTER TABLE " + t + " VALIDATE CONSTRAINT " + QuoteIdent(name), true,
                   "SELECT " + ConstraintExists(table, name, true),
                   Fill(kValidate, table.Display()), "", ""});
  };
  auto needs_not_null = [](const Altered& a) {
    if (a.facts->not_null || a.step->not_null || a.facts->identity) return true;
    for (const auto& idx : a.facts->indexes) {
      if (idx.constraint_type == 'p') return true;
    }
    return false;
  };
  for (const auto& a : b.altered) {
    if (needs_not_null(a)) {
      add_validated(a.table, ObjectName({a.table.name, a.shadow}, "_not_null"),
                    "CHECK (" + QuoteIdent(a.shadow) + " IS NOT NULL)");
    }
    for (const auto& chk : a.facts->checks) {
      if (AddedByPlan(a, chk.name) || !seen.insert("check " + a.table.Display() + "." + chk.name).second) continue;
      add_validated(a.table, NewName(chk.name), b.MappedText(a.table, chk.definition));
    }
    if (!a.step->name.name.empty() && !a.kept) {
      add_validated(a.table, a.step->name.name,
                    "CHECK (" + b.MappedText(a.table, a.step->expression) + ")");
      // A constraint of that name that does not check the shadow is someone else's.
      out[out.size() - 2].refuse_if =
          "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = " + RegClass(a.table) +
          " AND conname = " + QuoteLiteral(a.step->name.name) + " AND NOT (SELECT attnum FROM "
          "pg_attribute WHERE attrelid = " + RegClass(a.table) + " AND attname = " +
          QuoteLiteral(a.shadow) + ") = ANY (conkey)) THEN " +
          QuoteLiteral("`check: {name: " + a.step->name.name + "}` of " +
                       FactsKey(a.step->table, a.step->column) + ": a constraint of that name already "
                       "exists on the table; give the check another name") +
          " ELSE '' END";
    }
    for (const auto& fk : a.facts->foreign_keys) {
      if (!seen.insert("fk " + fk.table.Display() + "." + fk.name).second) continue;
      fks.push_back(&fk);
    }
  }
  for (const ForeignKeyFacts* fk : fks) {
    locked.insert(QuoteName(fk->table));
    locked.insert(QuoteName(fk->ref_table));
    const std::string def = "FOREIGN KEY (" + Columns(b.MappedAll(fk->table, fk->columns)) +
                            ") REFERENCES " + QuoteName(fk->ref_table) + " (" +
                            Columns(b.MappedAll(fk->ref_table, fk->ref_columns)) + ")" + fk->actions;
    const std::string name = NewName(fk->name), t = QuoteName(fk->table);
    const std::string both = fk->table.Display() + " and " + fk->ref_table.Display();
    out.push_back({"ALTER TABLE " + t + " ADD CONSTRAINT " + QuoteIdent(name) + " " + def +
                       " NOT VALID",
                   true, "SELECT " + ConstraintExists(fk->table, name, false),
                   "SHARE ROW EXCLUSIVE on " + both + ", brief: no scan; writes queue behind it "
                   "for at most lock_timeout", "", ""});
    out.push_back({"ALTER TABLE " + t + " VALIDATE CONSTRAINT " + QuoteIdent(name), true,
                   "SELECT " + ConstraintExists(fk->table, name, true),
                   "SHARE UPDATE EXCLUSIVE on " + fk->table.Display() + " and ROW SHARE on " +
                       fk->ref_table.Display() + " while it scans: reads and writes go on",
                   "", ""});
  }

  // The switch: one transaction, every lock taken first (in one order), nothing slow inside.
  // PostgreSQL bounds each lock it waits for by lock_timeout, and the application queues
  // behind the locks already held while the next is awaited: the plan's lock_timeout is shared
  // out over the tables, the version schema's views and the sequences, so that no query waits
  // on the switch longer than about lock_timeout in all.
  std::vector<std::string> sql;
  std::string tables;
  for (const auto& t : locked) tables += (tables.empty() ? "" : ", ") + t;
  size_t objects = locked.size() + TablesOf(step.alterations).size();
  for (const auto& a : b.altered) objects += a.facts->owned_sequence.empty() ? 0 : 1;
  const int64_t share = std::max<int64_t>(10, lock_timeout.count() / static_cast<int64_t>(objects));
  sql.push_back("SET LOCAL lock_timeout = '" + std::to_string(share) + "ms'");
  sql.push_back("SET LOCAL statement_timeout = '" + std::to_string(statement_timeout.count()) + "ms'");
  // The version schema's views first: a query of the new version locks its view, then the
  // table; locking in the other order would deadlock with it.
  const std::string schema = VersionSchema(step.plan);
  sql.push_back("DO $tide_lock$ BEGIN EXECUTE 'LOCK TABLE ' || COALESCE((SELECT string_agg("
                "quote_ident(schemaname) || '.' || quote_ident(viewname), ', ' ORDER BY viewname) || "
                "', ' FROM pg_views WHERE schemaname = " + QuoteLiteral(schema) + "), '') || " +
                QuoteLiteral(tables) + " || ' IN ACCESS EXCLUSIVE MODE'; END $tide_lock$");
  sql.push_back("SELECT set_config('tide.switch_locked_at', clock_timestamp()::text, true)");
  // What the switch was computed from must still hold: an index or constraint added on an old
  // column since would be dropped with it. When it changed, the error (serialization_failure)
  // makes tide compute the switch again and retry.
  for (const auto& a : b.altered) {
    size_t constraints = a.facts->checks.size();
    for (const auto& idx : a.facts->indexes) constraints += idx.constraint_type ? 1 : 0;
    size_t fk_count = 0;
    for (const auto& fk : a.facts->foreign_keys) fk_count += !fk.name.empty();
    const std::string rel = QuoteLiteral(QuoteName(a.table)) + "::regclass";
    const std::string num = "(SELECT attnum FROM pg_attribute WHERE attrelid = " + rel +
                            " AND attname = " + QuoteLiteral(a.step->column) + ")";
    sql.push_back(
        "DO $tide_recheck$ BEGIN IF (SELECT count(*) FROM pg_index i WHERE indrelid = " + rel +
        " AND (" + num + " = ANY (indkey::int2[]) OR EXISTS (SELECT 1 FROM pg_depend d WHERE "
        "d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid AND d.refobjid = " + rel +
        " AND d.refobjsubid = " + num + "))) <> " + std::to_string(a.facts->indexes.size()) +
        " OR (SELECT count(*) FROM pg_constraint WHERE contype <> 'f' AND conrelid = " + rel +
        " AND " + num + " = ANY (conkey)) <> " + std::to_string(constraints) +
        " OR (SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conparentid = 0 AND ((conrelid = " + rel +
        " AND " + num + " = ANY (conkey)) OR (confrelid = " + rel + " AND " + num +
        " = ANY (confkey)))) <> " + std::to_string(fk_count) +
        " THEN RAISE EXCEPTION USING ERRCODE = 'serialization_failure', MESSAGE = " +
        QuoteLiteral("indexes or constraints on " + FactsKey(a.step->table, a.step->column) +
                     " changed since the switch was computed; computing it again") +
        "; END IF; END $tide_recheck$");
  }
  sql.push_back(DropVersionSchema(step.plan));
  for (const ForeignKeyFacts* fk : fks) {
    sql.push_back("ALTER TABLE " + QuoteName(fk->table) + " DROP CONSTRAINT " + QuoteIdent(fk->name));
  }
  for (const auto& a : b.altered) {
    const std::string t = QuoteName(a.table);
    const std::string trigger =
        a.kept ? a.kept->trigger : AlterTriggerName(step.plan, a.step->table, a.step->column);
    sql.push_back("DROP TRIGGER IF EXISTS " + QuoteIdent(trigger) + " ON " + t);
    sql.push_back("DROP FUNCTION IF EXISTS tide." + QuoteIdent(trigger) + "()");
    if (a.facts->identity && !a.facts->owned_sequence.empty()) {
      // An identity's sequence goes with its column; the shadow's new identity starts where it
      // stopped (the tables are locked: no insert can take a value meanwhile).
      sql.push_back("SELECT set_config(" + QuoteLiteral(IdentitySetting(a)) +
                    ", (SELECT CASE WHEN is_called THEN last_value + s.seqincrement ELSE last_value "
                    "END FROM " + a.facts->owned_sequence + ", pg_sequence s WHERE s.seqrelid = " +
                    QuoteLiteral(a.facts->owned_sequence) + "::regclass)::text || ' INCREMENT BY ' "
                    "|| (SELECT seqincrement FROM pg_sequence WHERE seqrelid = " +
                    QuoteLiteral(a.facts->owned_sequence) + "::regclass), true)");
    } else if (!a.facts->owned_sequence.empty()) {
      // A serial's sequence goes with the column that owns it: it moves to the shadow first.
      sql.push_back("ALTER SEQUENCE " + a.facts->owned_sequence + " OWNED BY " + t + "." +
                    QuoteIdent(a.shadow));
      std::string type = a.step->type;
      for (char& ch : type) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      const bool widens = (type == "bigint" || type == "int8") && a.facts->sequence_type != "bigint";
      const bool widens_int = (type == "integer" || type == "int" || type == "int4") &&
                              a.facts->sequence_type == "smallint";
      if (widens || widens_int) {
        sql.push_back("ALTER SEQUENCE " + a.facts->owned_sequence + " AS " + type);
      }
    }
  }
  // The switch keeps the old columns for `tidectl revert`; the revert drops the new ones.
  const bool keeps = !revert;
  std::set<std::string> dropped;
  for (const auto& a : b.altered) {
    const std::string t = QuoteName(a.table), c = QuoteIdent(a.step->column);
    if (!keeps) {
      sql.push_back("ALTER TABLE " + t + " DROP COLUMN " + c);
      continue;
    }
    // Kept for the revert: without its indexes and constraints (built again on the shadow),
    // its default, identity and NOT NULL (the new version does not write it: the trigger
    // does), under another name.
    for (const auto& idx : a.facts->indexes) {
      if (!dropped.insert("index " + a.table.Display() + "." + idx.name).second) continue;
      sql.push_back(idx.constraint_type
                        ? "ALTER TABLE " + t + " DROP CONSTRAINT IF EXISTS " + QuoteIdent(idx.constraint_name)
                        : "DROP INDEX IF EXISTS " + QuoteName(QualifiedName{a.table.schema, idx.name}));
    }
    for (const auto& chk : a.facts->checks) {
      if (!dropped.insert("check " + a.table.Display() + "." + chk.name).second) continue;
      sql.push_back("ALTER TABLE " + t + " DROP CONSTRAINT IF EXISTS " + QuoteIdent(chk.name));
    }
    if (a.facts->identity) sql.push_back("ALTER TABLE " + t + " ALTER COLUMN " + c + " DROP IDENTITY IF EXISTS");
    sql.push_back("ALTER TABLE " + t + " ALTER COLUMN " + c + " DROP DEFAULT");
    sql.push_back("ALTER TABLE " + t + " ALTER COLUMN " + c + " DROP NOT NULL");
    const std::string kept = KeptColumn(a.step->column);
    sql.push_back("ALTER TABLE " + t + " RENAME COLUMN " + c + " TO " + QuoteIdent(kept));
    const QualifiedName after = SwitchedTable(step.alterations, a.step->table);
    sql.push_back("COMMENT ON COLUMN " + t + "." + QuoteIdent(kept) + " IS " +
                  QuoteLiteral(KeptMark(step.plan, after.Display(), a.step->column)));
  }
  for (const auto& a : b.altered) {
    const std::string t = QuoteName(a.table), c = QuoteIdent(a.step->column);
    sql.push_back("ALTER TABLE " + t + " RENAME COLUMN " + QuoteIdent(a.shadow) + " TO " + c);
    sql.push_back("COMMENT ON COLUMN " + t + "." + c + " IS " +
                  (a.facts->comment.empty() ? "NULL" : QuoteLiteral(a.facts->comment)));
    if (a.facts->statistics >= 0) {
      sql.push_back("ALTER TABLE " + t + " ALTER COLUMN " + c + " SET STATISTICS " +
                    std::to_string(a.facts->statistics));
    }
    for (const auto& g : a.facts->grants) {
      // "SELECT TO alice [WITH GRANT OPTION]": the privilege, then its grantee.
      const size_t to = g.find(" TO ");
      sql.push_back("GRANT " + g.substr(0, to) + " (" + c + ") ON " + t + g.substr(to));
    }
    const std::string def =
        a.step->default_sql ? *a.step->default_sql
        : a.facts->default_expr.empty() || a.step->type.empty()
            ? a.facts->default_expr
            : "CAST((" + a.facts->default_expr + ") AS " + a.step->type + ")";
    if (!def.empty()) sql.push_back("ALTER TABLE " + t + " ALTER COLUMN " + c + " SET DEFAULT (" + def + ")");
    if (needs_not_null(a)) {
      sql.push_back("ALTER TABLE " + t + " ALTER COLUMN " + c + " SET NOT NULL");
      sql.push_back("ALTER TABLE " + t + " DROP CONSTRAINT " +
                    QuoteIdent(ObjectName({a.table.name, a.shadow}, "_not_null")));
    }
    if (a.facts->identity && !a.facts->owned_sequence.empty()) {
      sql.push_back("DO $tide_identity$ BEGIN EXECUTE " +
                    QuoteLiteral("ALTER TABLE " + t + " ALTER COLUMN " + c + " ADD GENERATED " +
                                 (a.facts->identity == 'a' ? "ALWAYS" : "BY DEFAULT") +
                                 " AS IDENTITY (START WITH ") +
                    " || current_setting(" + QuoteLiteral(IdentitySetting(a)) +
                    ") || ')'; END $tide_identity$");
    }
  }
  std::set<std::string> renamed;
  for (const auto& a : b.altered) {
    const std::string t = QuoteName(a.table);
    for (const auto& idx : a.facts->indexes) {
      if (AddedByPlan(a, idx.name) || !renamed.insert("index " + a.table.Display() + "." + idx.name).second) continue;
      const std::string fresh = QuoteIdent(NewName(idx.name));
      if (idx.constraint_type == 'p' || idx.constraint_type == 'u') {
        sql.push_back("ALTER TABLE " + t + " ADD CONSTRAINT " + QuoteIdent(idx.constraint_name) +
                      (idx.constraint_type == 'p' ? " PRIMARY KEY" : " UNIQUE") +
                      " USING INDEX " + fresh + idx.deferrable);
      } else {
        sql.push_back("ALTER INDEX " + QuoteName(QualifiedName{a.table.schema, NewName(idx.name)}) +
                      " RENAME TO " + QuoteIdent(idx.name));
      }
    }
    if (!a.step->unique_name.empty() && !a.kept) {
      sql.push_back("ALTER TABLE " + t + " ADD CONSTRAINT " + QuoteIdent(a.step->unique_name) +
                    " UNIQUE USING INDEX " + QuoteIdent(a.step->unique_name));
    }
    for (const auto& chk : a.facts->checks) {
      if (AddedByPlan(a, chk.name) || !renamed.insert("check " + a.table.Display() + "." + chk.name).second) continue;
      sql.push_back("ALTER TABLE " + t + " RENAME CONSTRAINT " + QuoteIdent(NewName(chk.name)) +
                    " TO " + QuoteIdent(chk.name));
    }
  }
  for (const ForeignKeyFacts* fk : fks) {
    sql.push_back("ALTER TABLE " + QuoteName(fk->table) + " RENAME CONSTRAINT " +
                  QuoteIdent(NewName(fk->name)) + " TO " + QuoteIdent(fk->name));
  }
  if (keeps) {
    const std::string until =
        step.retention ? "now() + interval '" + std::to_string(step.retention->count()) + " milliseconds'"
                       : std::string("NULL");
    for (const auto& a : b.altered) {
      const QualifiedName after = SwitchedTable(step.alterations, a.step->table);
      const QualifiedName after_resolved{a.table.schema, after.name};
      const std::string kept = KeptColumn(a.step->column);
      const std::string trigger = KeepTriggerName(step.plan, a.step->table, a.step->column);
      const std::string conversion = a.step->down.empty()
                                         ? "CAST(" + QuoteIdent(a.step->column) + " AS " + a.facts->type + ")"
                                         : a.step->down;
      const std::string t = QuoteName(a.table);
      sql.push_back(KeepTriggerFunctionSql(step.plan, trigger, after.name, a.step->column, kept,
                                           conversion, true));
      sql.push_back("CREATE OR REPLACE TRIGGER " + QuoteIdent(trigger) + " BEFORE INSERT OR UPDATE ON " +
                    t + " FOR EACH ROW EXECUTE FUNCTION tide." + QuoteIdent(trigger) + "()");
      sql.push_back("ALTER TABLE " + t + " ENABLE ALWAYS TRIGGER " + QuoteIdent(trigger));
      sql.push_back("INSERT INTO tide.retained_columns (plan, table_name, table_display, column_name, "
                    "kept_column, trigger_name, old_type, old_default, old_not_null, retain_until) "
                    "VALUES (" + QuoteLiteral(step.plan) + ", " + QuoteLiteral(QuoteName(after_resolved)) +
                    ", " + QuoteLiteral(after.Display()) + ", " + QuoteLiteral(a.step->column) + ", " +
                    QuoteLiteral(kept) + ", " + QuoteLiteral(trigger) + ", " +
                    QuoteLiteral(a.facts->type) + ", " + QuoteLiteral(a.facts->default_expr) + ", " +
                    (a.facts->not_null ? "true" : "false") + ", " + until +
                    ") ON CONFLICT (plan, table_name, column_name) DO NOTHING");
    }
    // A plan of renames only keeps nothing, but can be switched back until it is finalized.
    sql.push_back("INSERT INTO tide.retained_columns (plan, table_name, table_display, column_name, "
                  "kept_column, trigger_name, old_type, old_default, old_not_null, retain_until) "
                  "VALUES (" + QuoteLiteral(step.plan) + ", '', '', '', '', '', '', '', false, " +
                  until + ") ON CONFLICT (plan, table_name, column_name) DO NOTHING");
  }
  if (revert) {
    sql.push_back("DELETE FROM tide.retained_columns WHERE plan = " + QuoteLiteral(step.plan));
  }
  std::string done;
  for (const auto& a : b.altered) {
    done += std::string(done.empty() ? "" : " AND ") + "NOT " + ColumnExists(a.table, a.shadow);
  }
  for (const auto& a : step.alterations) {
    if (a.kind == OpKind::kRenameColumn) {
      sql.push_back("ALTER TABLE " + QuoteName(a.table) + " RENAME COLUMN " + QuoteIdent(a.column) +
                    " TO " + QuoteIdent(a.to));
      done += std::string(done.empty() ? "" : " AND ") + "NOT " + ColumnExists(a.table, a.column);
    }
  }
  for (const auto& a : step.alterations) {
    if (a.kind == OpKind::kRenameTable) {
      sql.push_back("ALTER TABLE " + QuoteName(a.table) + " RENAME TO " + QuoteIdent(a.to));
      done += std::string(done.empty() ? "" : " AND ") + RegClass(a.table) + " IS NULL";
    }
  }
  sql.push_back("SELECT (extract(epoch FROM clock_timestamp() - "
                "current_setting('tide.switch_locked_at')::timestamptz) * 1000)::bigint");
  std::string joined;
  for (const auto& s : sql) joined += (joined.empty() ? "" : ";\n") + s;
  DdlStatement sw{joined, true, "SELECT " + done,
                  "ACCESS EXCLUSIVE on " + tables + " for one short transaction: catalog changes "
                  "only, no scan, no rewrite; queries on them queue behind it for at most "
                  "lock_timeout, and it is retried with the blocker named",
                  "", ""};
  sw.reports_lock_held = true;
  if (!refuse.empty()) sw.refuse_if = "SELECT concat_ws('; ', " + refuse + ")";
  out.push_back(sw);
  return out;
}

}  // namespace

std::vector<DdlStatement> DescribeSwitch(const Step& step) {
  std::vector<DdlStatement> out;
  std::string tables;
  for (const auto& t : TablesOf(step.alterations)) tables += (tables.empty() ? "" : ", ") + t.Display();
  for (const auto& a : step.alterations) {
    if (a.kind != OpKind::kAlterColumn) continue;
    out.push_back({"-- every index, unique constraint, check and foreign key over " +
                       FactsKey(a.table, a.column) + " (and those of other tables that reference "
                       "it) built again on " + ShadowColumn(a.column) +
                       ", read from the catalog when contract starts (validate --db lists them)",
                   true, "",
                   "CREATE INDEX CONCURRENTLY, ADD CONSTRAINT ... NOT VALID then VALIDATE: reads "
                   "and writes go on", "", ""});
  }
  std::string what;
  for (const auto& a : step.alterations) {
    if (a.kind == OpKind::kAlterColumn) {
      what += "; " + FactsKey(a.table, a.column) + " replaced by its shadow (default, sequence, "
              "NOT NULL, index and constraint names moved to it)";
    } else if (a.kind == OpKind::kRenameColumn) {
      what += "; ALTER TABLE " + QuoteName(a.table) + " RENAME COLUMN " + QuoteIdent(a.column) +
              " TO " + QuoteIdent(a.to);
    } else {
      what += "; ALTER TABLE " + QuoteName(a.table) + " RENAME TO " + QuoteIdent(a.to);
    }
  }
  out.push_back({"-- one transaction: LOCK TABLE " + tables + " IN ACCESS EXCLUSIVE MODE; DROP "
                     "SCHEMA " + QuoteIdent(VersionSchema(step.plan)) + " CASCADE" + what,
                 true, "",
                 "ACCESS EXCLUSIVE on " + tables + " for one short transaction: catalog changes "
                 "only; queries queue behind it for at most lock_timeout", "", ""});
  return out;
}

std::string ReplaceIdentifier(const std::string& text, const std::string& from,
                              const std::string& to) {
  std::string out;
  const std::string quoted_to = QuoteIdent(to);
  size_t i = 0;
  auto ident_char = [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '$' || c >= 0x80; };
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  while (i < text.size()) {
    const char c = text[i];
    if (c == '\'') {  // a string literal, '' inside
      size_t j = i + 1;
      while (j < text.size()) {
        if (text[j] == '\'' && j + 1 < text.size() && text[j + 1] == '\'') {
          j += 2;
          continue;
        }
        if (text[j] == '\'') break;
        ++j;
      }
      out += text.substr(i, j + 1 - i);
      i = j + 1;
      continue;
    }
    if (c == '"') {  // a quoted identifier, "" inside
      size_t j = i + 1;
      std::string name;
      while (j < text.size()) {
        if (text[j] == '"' && j + 1 < text.size() && text[j + 1] == '"') {
          name += '"';
          j += 2;
          continue;
        }
        if (text[j] == '"') break;
        name += text[j++];
      }
      out += name == from ? quoted_to : text.substr(i, j + 1 - i);
      i = j + 1;
      continue;
    }
    if (c == '-' && i + 1 < text.size() && text[i + 1] == '-') {
      const size_t j = text.find('\n', i);
      const size_t end = j == std::string::npos ? text.size() : j;
      out += text.substr(i, end - i);
      i = end;
      continue;
    }
    if (ident_char(static_cast<unsigned char>(c)) && !std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < text.size() && ident_char(static_cast<unsigned char>(text[j]))) ++j;
      const std::string word = text.substr(i, j - i);
      // A bare identifier is folded to lower case; it is `from` only when that matches. One
      // after a dot (`t.col`) names a column of some table: replaced too, as it can only be
      // this table's in a constraint or index of it.
      const bool after_type_cast = i >= 2 && text[i - 1] == ':' && text[i - 2] == ':';
      out += (!after_type_cast && lower(word) == from) ? quoted_to : word;
      i = j;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i;
      while (j < text.size() && ident_char(static_cast<unsigned char>(text[j]))) ++j;
      out += text.substr(i, j - i);
      i = j;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
}

}  // namespace tide
