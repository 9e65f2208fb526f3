// Lint of raw `sql:` steps on PostgreSQL's own parse tree (plan/sql_parse.h): the statements
// that lock up production, rewrite a table or break the running application, as squawk and
// strong_migrations know them, each with the safe way to write it. Aware of the plan (a table
// an earlier step created is new and empty) and, when a database is at hand, of its catalog
// (LintFacts). Pure.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "tide/plan.h"

namespace tide {

struct LintFinding {
  std::string rule;   // e.g. "require-concurrent-index-creation"
  std::string phase;  // "expand", "contract" or "rollback"
  size_t step = 0;    // 1-based
  SourcePos pos;      // the step in the plan file
  std::string message;
  std::string fix;
  std::string where;  // inside the statement: "line 1, column 22" ("" when unknown)
  std::string table;  // the table it is about, with its size when known: "users, about 50,000 rows, 8 MB"
  bool catalog_may_lift = false;  // about a table CREATE TABLE IF NOT EXISTS may have created

  // "file:line:col: expand step 2: <rule>: <message> (table users; at line 1, column 22 of
  // the step); <fix>"
  std::string ToString(const std::string& file) const;
};

// What the catalog says about the objects a plan's raw steps name (see LintQuestionsOf),
// known only with a database at hand: `tidectl validate --db`, and at admission.
struct LintFacts {
  std::map<std::string, char> volatility;           // function (lower case) -> 'i', 's' or 'v'
  std::map<std::string, std::string> table_sizes;   // table as written -> "about 50,000 rows, 8 MB"
  std::map<std::string, int64_t> table_rows;        // table as written -> its estimated rows
  std::map<std::string, std::string> column_types;  // "table.column" -> format_type, e.g. "character varying(255)"
  // "table.column" with an expression or partial index or a CHECK: any type change rebuilds or
  // checks them again under the lock.
  std::set<std::string> columns_with_dependents;
  std::map<std::string, char> constraint_types;     // "table.constraint" -> contype ('c', 'f', 'u', 'p', 'x')
};

// The objects the lint would like the catalog's word on.
struct LintQuestions {
  std::set<std::string> functions;    // lower case, as called
  std::set<std::string> tables;       // as written: "users", "core.users"
  std::set<std::string> columns;      // "table.column"
  std::set<std::string> constraints;  // "table.constraint"
};
LintQuestions LintQuestionsOf(const Plan& plan);

// True when `sql` calls a function not known to return the same value throughout a statement
// (random(), clock_timestamp(), gen_random_uuid(), nextval(), a function of the application's,
// ...): as a column default it rewrites the table. `facts`, when given, has the catalog's word.
bool IsVolatileExpression(const std::string& sql, const LintFacts* facts = nullptr);

// The first call in expression `sql` whose value changes from one statement to the next
// (now(), CURRENT_TIMESTAMP, random(), nextval(), gen_random_uuid(), ...), as written; "" when
// none. Computed again later, such an expression never agrees with what a backfill stored.
std::string TimeVaryingCallIn(const std::string& sql);

// The lock a raw statement takes, and what it holds up, for the preflight report. A statement
// it does not recognize is reported as taking ACCESS EXCLUSIVE, the worst case.
std::string LockTakenBy(const std::string& sql);

// True for a statement PostgreSQL refuses inside a transaction block (CREATE/DROP INDEX
// CONCURRENTLY, REINDEX CONCURRENTLY, DETACH PARTITION CONCURRENTLY, VACUUM, ...).
bool RunsOutsideTransactionBlock(const std::string& sql);

// The tables that CREATE TABLE statements in `sql` create ("users", "core.users"); with
// `maybe`, those of CREATE TABLE IF NOT EXISTS instead (new only if they were not there).
// Temporary tables are left out.
std::vector<std::string> TablesCreatedBy(const std::string& sql, bool maybe = false);
// The columns that ALTER TABLE ... ADD COLUMN statements in `sql` add: {"core.users", "name"}.
std::vector<std::pair<std::string, std::string>> ColumnsAddedBy(const std::string& sql);

// True for a finding the catalog may lift (a type change that is binary coercible, a function
// the catalog knows to be stable): decided again with LintFacts when the database is at hand.
bool DependsOnCatalog(const LintFinding& finding);

// Every finding of every raw step (a step that does not parse is refused even when marked
// `unsafe:`; other rules skip `unsafe:` steps). Typed operations compile to their safe form
// and are not linted.
std::vector<LintFinding> LintPlan(const Plan& plan, const LintFacts* facts = nullptr);

// What the lint knows of the plan's steps before the one it looks at.
struct LintContext {
  std::vector<std::string> earlier;   // their SQL
  std::set<std::string> new_tables;   // tables they created (new and empty)
  std::set<std::string> maybe_new_tables;  // CREATE TABLE IF NOT EXISTS: new if the catalog lacks them
  const LintFacts* facts = nullptr;
};

// The findings for one statement (or step of several).
std::vector<LintFinding> LintStep(const std::string& sql, const std::string& phase,
                                  const LintContext& context);
std::vector<LintFinding> LintStep(const std::string& sql, const std::string& phase,
                                  const std::vector<std::string>& earlier);

}  // namespace tide
