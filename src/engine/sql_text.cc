#include "engine/sql_text.h"

#include <cctype>

namespace tide {
namespace {

std::string Upper(const std::string& s) {
  std::string out = s;
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

bool HasWord(const std::string& upper, const std::string& word) {
  size_t pos = 0;
  while ((pos = upper.find(word, pos)) != std::string::npos) {
    bool left = pos == 0 || !(std::isalnum(static_cast<unsigned char>(upper[pos - 1])) || upper[pos - 1] == '_');
    size_t end = pos + word.size();
    bool right = end == upper.size() || !(std::isalnum(static_cast<unsigned char>(upper[end])) || upper[end] == '_');
    if (left && right) return true;
    pos = end;
  }
  return false;
}

std::string KeyList(const std::vector<KeyColumn>& key, const std::string& prefix) {
  std::string out;
  for (const auto& k : key) out += (out.empty() ? "" : ", ") + prefix + QuoteIdent(k.name);
  return out;
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

// "($first::type1, $first+1::type2, ...)" for the key's columns.
std::string KeyParams(const std::vector<KeyColumn>& key, size_t first) {
  std::string out;
  for (size_t i = 0; i < key.size(); ++i) {
    out += (i ? ", " : "") + std::string("$") + std::to_string(first + i) + "::" + key[i].type;
  }
  return "(" + out + ")";
}

std::string BatchSql(const BatchStatement& b, bool has_lower, bool has_upper) {
  const std::string table = QuoteName(b.table);
  const std::string self = QuoteIdent(b.table.name) + ".";
  const size_t k = b.key.size();
  std::string batch_cols, join, order_desc;
  for (size_t i = 0; i < k; ++i) {
    const std::string alias = "tide_k" + std::to_string(i + 1);
    batch_cols += (i ? ", " : "") + QuoteIdent(b.key[i].name) + " AS " + alias;
    join += std::string(i ? " AND " : "") + self + QuoteIdent(b.key[i].name) + " = tide_batch." + alias;
    // Qualified: an output column named like the alias would otherwise be the sort key.
    order_desc += (i ? ", " : "") + std::string("tide_batch.") + alias + " DESC";
  }
  std::string sets;
  for (const auto& [column, expr] : b.set) {
    // With the default filter a row is taken when any set column is NULL; COALESCE keeps the
    // columns the application already filled.
    const std::string value = b.where.empty()
                                  ? "COALESCE(" + QuoteIdent(column) + ", (" + expr + "))"
                                  : "(" + expr + ")";
    sets += (sets.empty() ? "" : ", ") + QuoteIdent(column) + " = " + value;
  }
  const std::string keys = "(" + KeyList(b.key, "") + ")";
  std::vector<std::string> bounds;
  size_t next = 1;
  if (has_lower) bounds.push_back(keys + " > " + KeyParams(b.key, next)), next += k;
  if (has_upper) bounds.push_back(keys + " <= " + KeyParams(b.key, next)), next += k;
  std::string sql = "WITH tide_batch AS (SELECT " + batch_cols + " FROM " + table;
  for (size_t i = 0; i < bounds.size(); ++i) sql += (i ? " AND " : " WHERE ") + bounds[i];
  sql += " ORDER BY " + KeyList(b.key, "") + " LIMIT $" + std::to_string(next) +
         "::bigint), tide_updated AS (UPDATE " + table + " SET " + sets +
         " FROM tide_batch WHERE " + join + " AND " + PendingFilter(b) +
         " RETURNING 1) SELECT (SELECT count(*) FROM tide_updated), (SELECT count(*) FROM tide_batch)";
  for (size_t i = 0; i < k; ++i) {
    sql += ", (SELECT tide_k" + std::to_string(i + 1) + "::text FROM tide_batch ORDER BY " +
           order_desc + " LIMIT 1)";
  }
  return sql;
}

std::string NullCountSql(const QualifiedName& table, const std::string& column) {
  return "SELECT count(*) FROM " + QuoteName(table) + " WHERE " + QuoteIdent(column) + " IS NULL";
}

bool RunsOutsideTransaction(const std::string& sql) {
  const std::string u = Upper(sql);
  if (HasWord(u, "CONCURRENTLY")) return true;
  size_t start = u.find_first_not_of(" \t\r\n(");
  if (start == std::string::npos) return false;
  const std::string head = u.substr(start);
  for (const char* w : {"VACUUM", "CREATE DATABASE", "DROP DATABASE", "ALTER SYSTEM",
                        "CREATE TABLESPACE", "DROP TABLESPACE"}) {
    if (head.rfind(w, 0) == 0) return true;
  }
  return false;
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
