#include "engine/operations.h"

#include <cstdint>
#include <cstdio>

#include "engine/alterations.h"
#include "engine/sql_text.h"
#include "plan/lint.h"

namespace tide {
namespace {

constexpr size_t kMaxName = 63;

const char* kBriefExclusive =
    "ACCESS EXCLUSIVE on {t}, brief: a catalog change without a scan or rewrite; queries on "
    "{t} queue behind it for at most lock_timeout";
const char* kValidate =
    "SHARE UPDATE EXCLUSIVE on {t} while it scans: reads and writes go on";
const char* kConcurrentIndex =
    "SHARE UPDATE EXCLUSIVE on {t}: reads and writes go on; waits for transactions older than "
    "the build";

std::string Fill(const char* text, const QualifiedName& table) {
  std::string out = text;
  const std::string t = table.Display();
  for (size_t at; (at = out.find("{t}")) != std::string::npos;) out.replace(at, 3, t);
  return out;
}

std::string Columns(const std::vector<std::string>& columns) {
  std::string out;
  for (const auto& c : columns) out += (out.empty() ? "" : ", ") + QuoteIdent(c);
  return out;
}

std::string Select(const std::string& condition) { return "SELECT " + condition; }

std::string NotNullCheckName(const Step& s) { return ObjectName({s.table.name, s.column}, "_not_null"); }

// On a pg_constraint row: it is exactly `CHECK (column IS NOT NULL)`, valid or not, as tide
// makes it; a check of the same name that says anything more is someone else's.
std::string IsNotNullCheckOf(const std::string& column) {
  return "contype = 'c' AND regexp_replace(pg_get_constraintdef(oid), ' NOT VALID$', '') = "
         "'CHECK ((' || quote_ident(" + QuoteLiteral(column) + ") || ' IS NOT NULL))'";
}

// The index a create_index or add_unique builds: in the table's schema.
QualifiedName IndexOf(const Step& s) { return QualifiedName{s.table.schema, s.name.name}; }

DdlStatement BuildIndex(const Step& s, bool unique, const std::vector<std::string>& columns,
                        const std::string& expression, const std::string& skip_if) {
  const QualifiedName index = IndexOf(s);
  std::string sql = std::string("CREATE ") + (unique ? "UNIQUE " : "") +
                    "INDEX CONCURRENTLY IF NOT EXISTS " + QuoteIdent(index.name) + " ON " +
                    QuoteName(s.table);
  if (!s.method.empty()) sql += " USING " + s.method;
  sql += columns.empty() ? " ((" + expression + "))" : " (" + Columns(columns) + ")";
  if (!s.where.empty()) sql += " WHERE (" + s.where + ")";
  return {sql, false, skip_if, Fill(kConcurrentIndex, s.table), QuoteName(index)};
}

// A query that returns why a constraint named `name` on `table` is not the one tide would
// make (`expected`: a condition on pg_constraint's row), or '' when there is none or it is.
std::string RefuseClash(const QualifiedName& table, const std::string& name,
                        const std::string& expected, const std::string& what) {
  return "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = " +
         RegClass(table) + " AND conname = " + QuoteLiteral(name) + " AND NOT (" + expected +
         ")) THEN " +
         QuoteLiteral("a constraint named " + name + " already exists on " + table.Display() +
                      " and is not " + what + "; tide will not take it for its own: drop or "
                      "rename it, or give the step a `name`") +
         " ELSE '' END";
}

std::vector<DdlStatement> SetNotNull(const Step& s) {
  const std::string check = NotNullCheckName(s);
  const std::string t = QuoteName(s.table), c = QuoteIdent(s.column), q = QuoteIdent(check);
  const std::string not_null = ColumnIsNotNull(s.table, s.column);
  const std::string ours = IsNotNullCheckOf(s.column);
  return {
      {"ALTER TABLE " + t + " ADD CONSTRAINT " + q + " CHECK (" + c + " IS NOT NULL) NOT VALID",
       true, Select(not_null + " OR " + ConstraintExists(s.table, check, false)),
       Fill(kBriefExclusive, s.table), "",
       RefuseClash(s.table, check, ours, "tide's NOT NULL check of " + s.column)},
      {"ALTER TABLE " + t + " VALIDATE CONSTRAINT " + q, true,
       Select(not_null + " OR " + ConstraintExists(s.table, check, true)), Fill(kValidate, s.table),
       ""},
      {"ALTER TABLE " + t + " ALTER COLUMN " + c + " SET NOT NULL", true, Select(not_null),
       Fill(kBriefExclusive, s.table) + " (the valid check spares the scan)", ""},
      {"ALTER TABLE " + t + " DROP CONSTRAINT IF EXISTS " + q, true,
       Select("NOT " + ConstraintExists(s.table, check, false)), Fill(kBriefExclusive, s.table),
       ""},
  };
}

// ADD CONSTRAINT ... NOT VALID, then VALIDATE CONSTRAINT.
std::vector<DdlStatement> AddValidated(const Step& s, const std::string& name,
                                       const std::string& definition, const std::string& add_lock,
                                       const std::string& validate_lock) {
  const std::string t = QuoteName(s.table), q = QuoteIdent(name);
  return {
      {"ALTER TABLE " + t + " ADD CONSTRAINT " + q + " " + definition + " NOT VALID", true,
       Select(ConstraintExists(s.table, name, false)), add_lock, ""},
      {"ALTER TABLE " + t + " VALIDATE CONSTRAINT " + q, true,
       Select(ConstraintExists(s.table, name, true)), validate_lock, ""},
  };
}

std::vector<DdlStatement> AddForeignKey(const Step& s) {
  std::vector<std::string> parts = {s.table.name};
  parts.insert(parts.end(), s.columns.begin(), s.columns.end());
  const std::string name = s.name.name.empty() ? ObjectName(parts, "_fkey") : s.name.name;
  std::string def = "FOREIGN KEY (" + Columns(s.columns) + ") REFERENCES " +
                    QuoteName(s.ref_table) + " (" + Columns(s.ref_columns) + ")";
  if (!s.on_delete.empty()) def += " ON DELETE " + s.on_delete;
  const std::string both = s.table.Display() + " and " + s.ref_table.Display();
  std::vector<DdlStatement> out = AddValidated(
      s, name, def,
      "SHARE ROW EXCLUSIVE on " + both + ", brief: no scan; writes queue behind it for at most "
      "lock_timeout",
      "SHARE UPDATE EXCLUSIVE on " + s.table.Display() + " and ROW SHARE on " +
          s.ref_table.Display() + " while it scans: reads and writes go on");
  out.front().refuse_if =
      RefuseClash(s.table, name, "contype = 'f' AND confrelid = " + RegClass(s.ref_table),
                  "a foreign key to " + s.ref_table.Display());
  return out;
}

std::vector<DdlStatement> AddUnique(const Step& s) {
  const std::string exists = ConstraintExists(s.table, s.name.name, false);
  const QualifiedName index = IndexOf(s);
  return {
      BuildIndex(s, true, s.columns, "",
                 Select(exists + " OR " + "COALESCE((SELECT indisvalid FROM pg_index WHERE "
                                          "indexrelid = " + RegClass(index) + "), false)")),
      {"ALTER TABLE " + QuoteName(s.table) + " ADD CONSTRAINT " + QuoteIdent(s.name.name) +
           " UNIQUE USING INDEX " + QuoteIdent(s.name.name),
       true, Select(exists), Fill(kBriefExclusive, s.table) + " (the index is already built)",
       ""},
  };
}

std::vector<DdlStatement> AddColumn(const Step& s) {
  std::string sql = "ALTER TABLE " + QuoteName(s.table) + " ADD COLUMN IF NOT EXISTS " +
                    QuoteIdent(s.column) + " " + s.type;
  if (s.default_sql) sql += " DEFAULT (" + *s.default_sql + ")";
  if (s.not_null) sql += " NOT NULL";
  return {{sql, true, "", Fill(kBriefExclusive, s.table), ""}};
}

}  // namespace

std::string RegClass(const QualifiedName& name) { return "to_regclass(" + QuoteLiteral(QuoteName(name)) + ")"; }

std::string ConstraintExists(const QualifiedName& table, const std::string& name, bool validated) {
  return "EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = " + RegClass(table) +
         " AND conname = " + QuoteLiteral(name) + (validated ? " AND convalidated" : "") + ")";
}

std::string ColumnIsNotNull(const QualifiedName& table, const std::string& column) {
  return "COALESCE((SELECT attnotnull FROM pg_attribute WHERE attrelid = " + RegClass(table) +
         " AND attname = " + QuoteLiteral(column) + " AND NOT attisdropped), false)";
}

std::string DropIndexSql(const std::string& index) {
  return "DROP INDEX CONCURRENTLY IF EXISTS " + index;
}

std::string IndexIsValidSql(const std::string& index) {
  return "SELECT COALESCE((SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(" +
         QuoteLiteral(index) + ")), false)";
}

std::string IndexIsInvalidSql(const std::string& index) {
  return "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indexrelid = to_regclass(" +
         QuoteLiteral(index) + ") AND NOT indisvalid)";
}

std::string IndexBuildsSql(const std::string& index) {
  return "SELECT p.pid, COALESCE(EXTRACT(epoch FROM now() - a.query_start), 0)::bigint "
         "FROM pg_stat_progress_create_index p LEFT JOIN pg_stat_activity a USING (pid) "
         "WHERE p.index_relid = to_regclass(" + QuoteLiteral(index) + ") AND p.pid <> pg_backend_pid()";
}

std::string ObjectName(const std::vector<std::string>& parts, const std::string& suffix) {
  std::string name;
  for (const auto& p : parts) name += (name.empty() ? "" : "_") + p;
  if (name.size() + suffix.size() <= kMaxName) return name + suffix;
  char hash[10];
  std::snprintf(hash, sizeof hash, "_%08x", NameHash(name));
  std::string head = name.substr(0, kMaxName - suffix.size() - 9);
  // Never cut a multi-byte UTF-8 character in two.
  while (!head.empty() && (static_cast<unsigned char>(head.back()) & 0xC0) == 0x80) head.pop_back();
  if (!head.empty() && static_cast<unsigned char>(head.back()) >= 0xC0) head.pop_back();
  return head + hash + suffix;
}

std::vector<DdlStatement> CompileStep(const Step& s) {
  switch (s.kind) {
    case OpKind::kSql:
      return {{s.sql, !RunsOutsideTransactionBlock(s.sql), "", LockTakenBy(s.sql), ""}};
    case OpKind::kAddColumn: return AddColumn(s);
    case OpKind::kCreateIndex:
      return {BuildIndex(s, s.unique, s.columns, s.expression, IndexIsValidSql(QuoteName(IndexOf(s))))};
    case OpKind::kSetNotNull: return SetNotNull(s);
    case OpKind::kAddForeignKey: return AddForeignKey(s);
    case OpKind::kAddCheck:
      return AddValidated(s, s.name.name, "CHECK (" + s.expression + ")",
                          Fill(kBriefExclusive, s.table), Fill(kValidate, s.table));
    case OpKind::kAddUnique: return AddUnique(s);
    case OpKind::kDropColumn:
      return {{"ALTER TABLE " + QuoteName(s.table) + " DROP COLUMN IF EXISTS " + QuoteIdent(s.column),
               true, "", Fill(kBriefExclusive, s.table) + " (the space is reclaimed by later writes)",
               ""}};
    case OpKind::kDropIndex:
      return {{DropIndexSql(QuoteName(s.name)), false, "",
               "SHARE UPDATE EXCLUSIVE on the index's table: reads and writes go on", ""}};
    case OpKind::kAlterColumn: return CompileAlterColumn(s.plan, s);
    case OpKind::kAddPrimaryKey: return CompileAddPrimaryKey(s);
    case OpKind::kRenameColumn:
    case OpKind::kRenameTable:
      return {};  // the version schema shows the new name; the switch renames
    case OpKind::kCreateVersionSchema: return CompileVersionSchema(s);
    case OpKind::kUndoAlterations: return CompileUndo(s);
    case OpKind::kRevertSwitch:
      return {{"-- the switch the other way, computed from the catalog when `tidectl revert` runs: "
               "each kept old column gets back its name, indexes, constraints, default and "
               "sequence; the new column goes",
               true, "", "as the switch", "", "", false, true}};
    case OpKind::kSwitch: {
      std::vector<DdlStatement> out = DescribeSwitch(s);
      for (auto& st : out) st.describes_only = true;
      return out;
    }
  }
  return {};
}

namespace {
// The set_not_null steps at the head of contract: only those may go in before contract's other
// steps (a default that an earlier step sets, say, must be there before its check).
std::vector<const Step*> LeadingSetNotNulls(const Plan& plan) {
  std::vector<const Step*> out;
  for (const auto& step : plan.contract) {
    if (step.kind != OpKind::kSetNotNull) break;
    out.push_back(&step);
  }
  return out;
}
}  // namespace

bool AddsConstraintOnly(const Step& step) {
  switch (step.kind) {
    case OpKind::kSetNotNull:
    case OpKind::kAddCheck:
    case OpKind::kAddUnique:
    case OpKind::kAddForeignKey:
    case OpKind::kCreateIndex:
      return true;
    default:
      return false;
  }
}

std::vector<DdlStatement> GateChecks(const Plan& plan) {
  std::vector<DdlStatement> out;
  for (const Step* step : LeadingSetNotNulls(plan)) out.push_back(CompileStep(*step).front());
  return out;
}

std::vector<DdlStatement> GateCheckRemovals(const Plan& plan) {
  std::vector<DdlStatement> out;
  for (const Step* s : LeadingSetNotNulls(plan)) {
    const Step& step = *s;
    const std::string check = NotNullCheckName(step);
    // Only the NOT VALID check is removed: once validated, contract has started.
    out.push_back({"ALTER TABLE " + QuoteName(step.table) + " DROP CONSTRAINT IF EXISTS " +
                       QuoteIdent(check),
                   true,
                   Select("NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = " +
                          RegClass(step.table) + " AND conname = " + QuoteLiteral(check) +
                          " AND NOT convalidated AND " + IsNotNullCheckOf(step.column) + ")"),
                   Fill(kBriefExclusive, step.table), "", ""});
  }
  return out;
}

}  // namespace tide
