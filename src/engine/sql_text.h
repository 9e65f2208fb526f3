// The SQL text of everything tide runs, built from typed values. Pure.
//
// Identifiers from the plan are always quoted here; SQL fragments from the plan (`set`
// expressions, `where`, raw steps) are passed through unchanged, in parentheses.
#pragma once

#include <string>
#include <vector>

#include "tide/plan.h"

namespace tide {

// "clinicId" -> "\"clinicId\"", with inner quotes doubled.
std::string QuoteIdent(const std::string& ident);
// abc -> 'abc', with inner quotes doubled (standard_conforming_strings is on in every session).
std::string QuoteLiteral(const std::string& text);
// core.users -> "core"."users"; users -> "users" (found through the search_path).
std::string QuoteName(const QualifiedName& name);

// A key column and its type as the catalog prints it (format_type), e.g. {"id", "bigint"}.
struct KeyColumn {
  std::string name;
  std::string type;
};

// Everything needed to write one batch statement for a backfill task.
struct BatchStatement {
  QualifiedName table;
  std::vector<KeyColumn> key;
  std::vector<std::pair<std::string, std::string>> set;
  std::string where;  // empty: every set column IS NULL
};

// The batch statement. Parameters, all text: the lower bound's k values (only when
// `has_lower`: rows with keys above it), the upper bound's k values (only when `has_upper`: rows
// with keys at or below it), then the batch size. It returns one row:
// (updated bigint, scanned bigint, last_key_1 text, ..., last_key_k text); the last-key columns
// are NULL when no row was left. Rows are taken in key order (keyset pagination), so sparse keys
// never produce empty batches and an empty table takes one statement.
std::string BatchSql(const BatchStatement& b, bool has_lower, bool has_upper = false);

// The filter that selects rows still to be filled.
std::string PendingFilter(const BatchStatement& b);

// SELECT count(*) of rows that fail a null_count gate.
std::string NullCountSql(const QualifiedName& table, const std::string& column);

// True for statements PostgreSQL refuses inside a transaction block (CREATE/DROP INDEX
// CONCURRENTLY, REINDEX CONCURRENTLY, VACUUM, ...): these run on the session, with the timeouts
// set on it, and are expected to be idempotent (IF NOT EXISTS) since a crash between the statement
// and the record of it makes tide run it again.
bool RunsOutsideTransaction(const std::string& sql);

// "SET LOCAL lock_timeout = '2000ms'" and the like.
std::string SetTimeoutSql(const std::string& setting, Millis value, bool local);

// '{"a","b"}' for a text[] parameter.
std::string TextArrayLiteral(const std::vector<std::string>& values);

}  // namespace tide
