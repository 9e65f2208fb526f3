// SQL read with PostgreSQL's own parser (libpg_query: PostgreSQL 15's grammar), for every rule
// of tide that looks at SQL text: the lint, the statement splitter, the preflight's lock table.
// Pure.
//
// A statement is its parse tree as libpg_query prints it in JSON: {"AlterTableStmt": {...}}.
// Fields at their default (false, 0, empty) are left out of that JSON, so a missing field reads
// as its default.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace tide {

using SqlNode = nlohmann::json;

struct SqlStatement {
  std::string kind;    // "AlterTableStmt", "IndexStmt", ...
  SqlNode body;        // the node's fields
  std::string text;    // the statement as written (without its semicolon)
  size_t offset = 0;   // where it starts in the parsed text, in bytes
};

struct SqlParse {
  std::vector<SqlStatement> statements;
  std::string error;        // PostgreSQL's message; empty when the text parsed
  size_t error_offset = 0;  // where the error is, in bytes from the start (when `error`)

  bool ok() const { return error.empty(); }
};

// Parses `sql` (one statement or several). Never throws.
SqlParse ParseSql(const std::string& sql);

// "line 3, column 7" of byte `offset` in `text` (1-based).
std::string PositionIn(const std::string& text, size_t offset);

// The field `key` of `node`, or nullptr (left out: its default).
const SqlNode* Field(const SqlNode& node, const char* key);
// A string field, or "".
std::string StringField(const SqlNode& node, const char* key);
// A boolean field, or false.
bool BoolField(const SqlNode& node, const char* key);
// A node's kind ("ColumnRef") and its fields, for a node of the form {"ColumnRef": {...}}.
std::string KindOf(const SqlNode& node);
const SqlNode& BodyOf(const SqlNode& node);

// The names in a list of String nodes ([{"String": {"sval": "pg_catalog"}}, ...]).
std::vector<std::string> Names(const SqlNode* list);
// The last name of a list of String nodes, lower-cased ("pg_catalog.int4" -> "int4").
std::string LastName(const SqlNode* list);
// A RangeVar as schema.name ("users", "core.users").
std::string RelationName(const SqlNode* range_var);

// Calls `visit(kind, body)` for `node` and every node under it, depth first.
void Walk(const SqlNode& node, const std::function<void(const std::string&, const SqlNode&)>& visit);

}  // namespace tide
