#include "engine/sql_text.h"

#include <cctype>
#include <cstdio>

namespace tide {
namespace {

std::string KeyList(const std::vector<KeyColumn>& key, const std::string& prefix) {
  std::string out;
  for (const auto& k : key) out += (out.empty() ? "" : ", ") + prefix + QuoteIdent(k.name);
  return out;
}

// "($first::type1, $first+1::type2, ...)" for the key's columns.
std::string KeyParams(const std::vector<KeyColumn>& key, size_t first) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    out += (i ? ", " : "") + std::string("$") + std::to_string(first + i) + "::" + key[i].type;
  }
  return "(" + out + ")";
}

}  // namespace

std::string QuoteIdent(const std::string& ident) {
  std::string out = "\"";
  for (char c : ident) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string QuoteLiteral(const std::string& text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

std::string QuoteName(const QualifiedName& name) {
  if (name.schema.empty()) return QuoteIdent(name.name);
  return QuoteIdent(name.schema) + "." + QuoteIdent(name.name);
}

std::string PendingFilter(const BatchStatement& b) {
  if (!b.where.empty()) return "(" + b.where + ")";
  std::string out;
  for (const auto& [column, expr] : b.set) {
    out += (out.empty() ? "" : " OR ") + QuoteIdent(column) + " IS NULL";
  }
  return "(" + out + ")";
}

namespace {

// "(k1, k2) > ($1::t1, $2::t2) AND (k1, k2) <= ($3::t1, $4::t2)"; *next is the next free
// parameter number.
std::string KeyBounds(const std::vector<KeyColumn>& key, bool has_lower, bool has_upper,
                      size_t* next) {
  const std::string keys = "(" + KeyList(key, "") + ")";
  std::string out;
  if (has_lower) out += keys + " > " + KeyParams(key, *next), *next += key.size();
  if (has_upper) {
    out += std::string(out.empty() ? "" : " AND ") + keys + " <= " + KeyParams(key, *next);
    *next += key.size();
  }
  return out;
}

std::string KeyOrder(const std::vector<KeyColumn>& key, bool descending) {
  std::string out;
  for (const auto& k : key) {
    out += (out.empty() ? "" : ", ") + QuoteIdent(k.name) + (descending ? " DESC" : "");
  }
  return out;
}

// Aliased: an output column named like a key column would be what ORDER BY sorts on, as text.
std::string KeyAsText(const std::vector<KeyColumn>& key) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    out += (i ? ", " : "") + QuoteIdent(key[i].name) + "::text AS tide_k" + std::to_string(i + 1);
  }
  return out;
}

}  // namespace

std::string BatchBoundSql(const BatchStatement& b, bool has_lower, bool has_upper, bool last) {
  size_t next = 1;
  const std::string bounds = KeyBounds(b.key, has_lower, has_upper, &next);
  std::string sql = "SELECT " + KeyAsText(b.key) + " FROM " + QuoteName(b.table);
  if (!bounds.empty()) sql += " WHERE " + bounds;
  sql += " ORDER BY " + KeyOrder(b.key, last) + " LIMIT 1";
  if (!last) sql += " OFFSET $" + std::to_string(next) + "::bigint";
  return sql;
}

namespace {
std::string SetList(const BatchStatement& b) {
  std::string sets;
  for (const auto& [column, expr] : b.set) {
    // With the default filter a row is taken when any set column is NULL; COALESCE keeps the
    // columns the application already filled.
    const std::string value = b.where.empty()
                                  ? "COALESCE(" + QuoteIdent(column) + ", (" + expr + "))"
                                  : "(" + expr + ")";
    sets += (sets.empty() ? "" : ", ") + QuoteIdent(column) + " = " + value;
  }
  return sets;
}
}  // namespace

std::string ChangeFilter(const BatchStatement& b) {
  std::string out;
  for (const auto& [column, expr] : b.set) {
    const std::string c = QuoteIdent(column);
    auto type = b.column_types.find(column);
    const std::string value = type == b.column_types.end()
                                  ? "(" + expr + ")"
                                  : "CAST((" + expr + ") AS " + type->second + ")";
    out += (out.empty() ? "" : " OR ") +
           (b.where.empty() ? "(" + c + " IS NULL AND (" + expr + ") IS NOT NULL)"
                            : "(" + value + "::text IS DISTINCT FROM " + c + "::text)");
  }
  return "(" + out + ")";
}

std::string BatchUpdateSql(const BatchStatement& b, bool has_lower) {
  size_t next = 1;
  return "WITH tide_updated AS (UPDATE " + QuoteName(b.table) + " SET " + SetList(b) + " WHERE " +
         KeyBounds(b.key, has_lower, true, &next) + " AND " + PendingFilter(b) + " RETURNING " +
         PendingFilter(b) + " AS tide_unfilled) SELECT count(*) FILTER (WHERE NOT tide_unfilled), "
         "count(*) FILTER (WHERE tide_unfilled) FROM tide_updated";
}

std::string ShareOf(const BatchStatement& b, int shares) {
  const std::string n = std::to_string(shares);
  std::string sum;
  for (const auto& k : b.key) {
    const std::string c = QuoteIdent(k.name);
    const std::string& t = k.type;
    std::string term;
    if (t == "smallint" || t == "integer" || t == "bigint") {
      term = "pg_catalog.hashint8(" + c + "::bigint)";
    } else if (t == "uuid") {
      term = "pg_catalog.uuid_hash(" + c + ")";
    } else if (t == "numeric" || t.rfind("numeric(", 0) == 0) {
      term = "pg_catalog.hash_numeric(" + c + ")";
    } else if (t == "text" || t.rfind("character varying", 0) == 0 || t.rfind("character(", 0) == 0 ||
               t == "character" || t == "name") {
      term = "pg_catalog.hashtext(" + c + "::text)";
    } else {
      continue;
    }
    sum += (sum.empty() ? "" : " + ") + term + " % " + n;
  }
  if (sum.empty()) return "";
  return "(((" + sum + ") % " + n + " + " + n + ") % " + n + ")";
}

bool HasShareKey(const BatchStatement& b) { return !ShareOf(b, 2).empty(); }

std::string PageBatchUpdateSql(const BatchStatement& b, bool only_changes, int shares) {
  return "WITH tide_updated AS (UPDATE ONLY " + QuoteName(b.table) + " SET " + SetList(b) +
         " WHERE ctid >= $1::tid AND ctid < $2::tid AND " +
         (shares > 0 ? ShareOf(b, shares) + " = $3::int AND " : std::string()) + PendingFilter(b) +
         (only_changes ? " AND " + ChangeFilter(b) : std::string()) + " RETURNING " +
         PendingFilter(b) + " AS tide_unfilled) SELECT count(*) FILTER (WHERE NOT tide_unfilled), "
         "count(*) FILTER (WHERE tide_unfilled) FROM tide_updated";
}

std::string HeapPagesSql(const QualifiedName& table) {
  return "SELECT pg_relation_size(" + QuoteLiteral(QuoteName(table)) +
         "::regclass) / current_setting('block_size')::bigint";
}

std::string BatchCountSql(const BatchStatement& b, bool has_lower) {
  size_t next = 1;
  return "SELECT count(*) FROM " + QuoteName(b.table) + " WHERE " +
         KeyBounds(b.key, has_lower, true, &next);
}

std::string SweepSql(const BatchStatement& b) {
  const std::string keys = "(" + KeyList(b.key, "") + ")";
  return "WITH tide_pending AS (SELECT " + KeyList(b.key, "") + " FROM " + QuoteName(b.table) +
         " WHERE " + PendingFilter(b) + " AND " + ChangeFilter(b) +
         " LIMIT $1::bigint), tide_updated AS (UPDATE " +
         QuoteName(b.table) + " SET " + SetList(b) + " WHERE " + keys + " IN (SELECT " +
         KeyList(b.key, "") + " FROM tide_pending) AND " + PendingFilter(b) +
         " RETURNING 1) SELECT (SELECT count(*) FROM tide_pending), (SELECT count(*) FROM tide_updated)";
}

std::string DifferFilter(const BatchStatement& b) {
  std::string out;
  for (const auto& [column, expr] : b.set) {
    auto type = b.column_types.find(column);
    const std::string value = type == b.column_types.end()
                                  ? "(" + expr + ")"
                                  : "CAST((" + expr + ") AS " + type->second + ")";
    out += (out.empty() ? "" : " OR ") + std::string("(") + QuoteIdent(column) +
           "::text IS DISTINCT FROM " + value + "::text)";
  }
  return "(" + out + ")";
}

std::string VerifyBatchSql(const BatchStatement& b, bool has_lower) {
  size_t next = 1;
  const std::string bounds = KeyBounds(b.key, has_lower, false, &next);
  std::string keys_text, last_key;
  for (size_t i = 0; i < b.key.size(); ++i) {
    const std::string k = QuoteIdent(b.key[i].name);
    keys_text += (i ? " || ', ' || " : "") + k + "::text";
    last_key += std::string(i ? ", " : "") + "tide_last.tide_k" + std::to_string(i + 1);
  }
  return "WITH tide_rows AS (SELECT " + KeyList(b.key, "") + ", " + DifferFilter(b) +
         " AS tide_differs FROM " + QuoteName(b.table) + (bounds.empty() ? "" : " WHERE " + bounds) +
         " ORDER BY " + KeyOrder(b.key, false) + " LIMIT $" + std::to_string(next) +
         "::bigint) SELECT (SELECT count(*) FROM tide_rows), "
         "(SELECT count(*) FROM tide_rows WHERE tide_differs), "
         "ARRAY(SELECT " + keys_text + " AS tide_keys FROM tide_rows WHERE tide_differs ORDER BY " +
         KeyOrder(b.key, false) + " LIMIT 5)::text, " + last_key +
         " FROM (SELECT 1) tide_one LEFT JOIN LATERAL (SELECT " + KeyAsText(b.key) +
         " FROM tide_rows ORDER BY " + KeyOrder(b.key, true) + " LIMIT 1) tide_last ON true";
}

std::string UnfillableSql(const BatchStatement& b) {
  const std::string unfillable = PendingFilter(b) + " AND NOT " + ChangeFilter(b);
  std::string keys;
  for (const auto& k : b.key) {
    keys += (keys.empty() ? "" : " || ', ' || ") + QuoteIdent(k.name) + "::text";
  }
  // Aliased, so that ORDER BY sorts on the key, not on its text.
  return "SELECT (SELECT count(*) FROM " + QuoteName(b.table) + " WHERE " + unfillable +
         "), ARRAY(SELECT " + keys + " AS tide_keys FROM " + QuoteName(b.table) + " WHERE " + unfillable +
         " ORDER BY " + KeyOrder(b.key, false) + " LIMIT 5)::text";
}

std::string SampleKeysSql(const QualifiedName& table, const std::vector<KeyColumn>& key) {
  return "SELECT " + KeyAsText(key) + " FROM " + QuoteName(table) +
         " TABLESAMPLE SYSTEM ($1::real) ORDER BY " + KeyOrder(key, false);
}

uint32_t NameHash(const std::string& text) {
  uint32_t h = 2166136261u;
  for (unsigned char c : text) h = (h ^ c) * 16777619u;
  return h;
}

std::string SyncTriggerName(const std::string& plan, int task_index) {
  const std::string task = std::to_string(task_index);
  char hash[10];
  std::snprintf(hash, sizeof hash, "_%08x", NameHash(plan + "/" + task));
  // 10 + at most 40 + 1 + the task number + 9 bytes: within 63 for any task number below 1000.
  std::string head = plan.substr(0, 40);
  return "tide_sync_" + head + "_" + task + hash;
}

SyncTriggerSql MakeSyncTrigger(const std::string& plan, int task_index,
                               const BackfillTask& task) {
  const std::string name = SyncTriggerName(plan, task_index);
  const std::string fn = "tide." + QuoteIdent(name);
  const std::string mark = "tide sync trigger of plan " + plan + ", task " +
                           std::to_string(task_index) + ", on " + task.table.Display();
  const std::string row = "FROM (SELECT (NEW).*) AS " + QuoteIdent(task.table.name);
  std::string body = "#variable_conflict use_column\nBEGIN\n";
  if (!task.where.empty()) body += "  IF (SELECT (" + task.where + ") " + row + ") THEN\n";
  for (const auto& [column, expr] : task.set) {
    const std::string target = "NEW." + QuoteIdent(column);
    if (task.where.empty()) {
      body += "  IF " + target + " IS NULL THEN " + target + " := (SELECT (" + expr + ") " + row +
              "); END IF;\n";
    } else {
      body += "    " + target + " := (SELECT (" + expr + ") " + row + ");\n";
    }
  }
  if (!task.where.empty()) body += "  END IF;\n";
  body += "  RETURN NEW;\nEND";
  SyncTriggerSql out;
  // The function and the trigger are this task's when they carry its mark; anything else of
  // the same name is a clash, refused before anything is replaced.
  const std::string clash =
      "DO $tide_clash$ BEGIN IF EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = "
      "'tide'::regnamespace AND proname = " + QuoteLiteral(name) +
      " AND obj_description(oid, 'pg_proc') IS DISTINCT FROM " + QuoteLiteral(mark) +
      ") OR EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = " + QuoteLiteral(name) +
      " AND (tgrelid <> " + QuoteLiteral(QuoteName(task.table)) + "::regclass OR "
      "obj_description(tgfoid, 'pg_proc') IS DISTINCT FROM " + QuoteLiteral(mark) +
      ")) THEN RAISE EXCEPTION USING ERRCODE = 'duplicate_object', MESSAGE = " +
      QuoteLiteral("a function or trigger named " + name +
                   " exists and is not this task's; tide will not replace it") +
      "; END IF; END $tide_clash$";
  out.create = clash + "; CREATE OR REPLACE FUNCTION " + fn +
               "() RETURNS trigger LANGUAGE plpgsql AS " + "$tide_sync$\n" + body +
               "\n$tide_sync$; COMMENT ON FUNCTION " + fn + "() IS " + QuoteLiteral(mark) +
               "; CREATE OR REPLACE TRIGGER " + QuoteIdent(name) + " BEFORE INSERT OR UPDATE ON " +
               QuoteName(task.table) + " FOR EACH ROW EXECUTE FUNCTION " + fn + "()";
  // Also the trigger under the name an earlier tide gave it (no hash), when it is on this
  // table, and its function once no trigger uses it.
  const std::string legacy = "tide_sync_" + plan.substr(0, 40) + "_" + std::to_string(task_index);
  out.drop = "DROP TRIGGER IF EXISTS " + QuoteIdent(name) + " ON " + QuoteName(task.table) +
             "; DROP FUNCTION IF EXISTS " + fn + "(); DROP TRIGGER IF EXISTS " +
             QuoteIdent(legacy) + " ON " + QuoteName(task.table) +
             "; DO $tide_legacy$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_trigger t JOIN pg_proc p "
             "ON p.oid = t.tgfoid WHERE p.pronamespace = 'tide'::regnamespace AND p.proname = " +
             QuoteLiteral(legacy) + ") THEN DROP FUNCTION IF EXISTS tide." + QuoteIdent(legacy) +
             "(); END IF; END $tide_legacy$";
  return out;
}

std::string NullCountSql(const QualifiedName& table, const std::string& column) {
  return "SELECT count(*) FROM " + QuoteName(table) + " WHERE " + QuoteIdent(column) + " IS NULL";
}

std::string AnalyzeSql(const QualifiedName& table) { return "ANALYZE " + QuoteName(table); }

std::string BlockedBySql(const std::string& pids) {
  return "SELECT count(*) FROM pg_stat_activity WHERE CASE WHEN wait_event_type = 'Lock' "
         "OR backend_type IS NULL THEN pg_blocking_pids(pid) && " + pids + " ELSE false END";
}

std::string BlockedBySql(int64_t pid) { return BlockedBySql("ARRAY[" + std::to_string(pid) + "]"); }

std::string CancelVacuumSql(int64_t pid) {
  return "SELECT count(pg_cancel_backend(pid)) FROM pg_stat_activity WHERE pid = " +
         std::to_string(pid) + " AND application_name = 'tided vacuum'";
}

std::string VacuumSql(const QualifiedName& table) {
  return "VACUUM (SKIP_LOCKED, TRUNCATE false) " + QuoteName(table);
}

std::string SetTimeoutSql(const std::string& setting, Millis value, bool local) {
  return std::string("SET ") + (local ? "LOCAL " : "") + setting + " = '" +
         std::to_string(value.count()) + "ms'";
}

std::string TextArrayLiteral(const std::vector<std::string>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ",";
    out += '"';
    for (char c : values[i]) {
      if (c == '"' || c == '\\') out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "}";
}

}  // namespace tide
