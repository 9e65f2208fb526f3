// The preflight report: what a plan will touch, how much, how long, and which locks it takes,
// before anything runs. The database facts are gathered by the adapter (PlanDatabase::Preflight);
// everything here is pure.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "engine/alterations.h"
#include "engine/sql_text.h"
#include "tide/plan.h"

namespace tide {

// One statement a plan will run, with the lock it takes.
struct PlannedStatement {
  std::string phase;  // expand, gate, contract, rollback
  size_t step = 0;    // 1-based
  std::string sql;
  std::string lock;
};

struct PreflightTask {
  std::string table;
  bool exists = false;
  std::string key;               // "id bigint", "" when none
  int64_t estimated_rows = 0;    // pg_class.reltuples
  int64_t total_bytes = 0;       // pg_total_relation_size
  std::string time;              // the estimate at the plan's rate, in words
  std::string explain;           // dry run: the first batch's plan
  double measured_rows_per_second = 0;  // dry run: the first batch's speed
};

struct PreflightReport {
  std::string database;
  bool dry_run = false;
  std::vector<PreflightTask> tasks;
  std::vector<PlannedStatement> statements;
  std::vector<std::string> gate_explains;  // dry run
  std::vector<std::string> notes;          // what the dry run did
  std::vector<std::string> problems;       // what would make the plan fail; empty: none found

  bool ok() const { return problems.empty(); }
};

// What the preflight reads from the catalog about one table.
struct TableFacts {
  bool exists = false;
  std::vector<KeyColumn> key;  // the task's `key`, else the primary key; empty: none
  std::string key_error;       // a `key` column that does not exist
  std::set<std::string> columns;
  int64_t estimated_rows = 0;  // pg_class.reltuples
  int64_t total_bytes = 0;     // pg_total_relation_size
  bool has_rows = false;       // read only for a TableQuery with needs_rows
  // A unique index (or the primary key) covers exactly the key's columns, all NOT NULL.
  bool key_unique = false;
  bool partitioned = false;    // relkind 'p'
  // Row-level security, and what tide's role (`role`, the DSN's) may see of it.
  bool rls_enabled = false, rls_forced = false;
  std::string role;
  bool role_is_owner = false;
  bool role_bypasses_rls = false;  // superuser or BYPASSRLS
  // Of the TableQuery's drop_columns: the views (and rules) that depend on each.
  std::map<std::string, std::vector<std::string>> dependents;
  // Of the TableQuery's add_types: those whose column PostgreSQL adds by rewriting the table
  // (a domain with constraints).
  std::set<std::string> rewriting_types;
  // Of the TableQuery's alter_steps: what the catalog says about each column, by its name.
  std::map<std::string, ColumnFacts> altered;
};
// By QualifiedName::Display().
using CatalogFacts = std::map<std::string, TableFacts>;

// A table whose facts the preflight needs: the key to resolve (a backfill task's `key`) and
// whether a rule needs to know if it has rows (add_column with not_null and no default).
struct TableQuery {
  QualifiedName table;
  std::vector<std::string> key;
  bool needs_rows = false;
  std::vector<std::string> drop_columns;  // drop_column steps: who depends on them
  std::vector<std::string> add_types;     // add_column steps: whether their type rewrites
  std::vector<Step> alter_steps;          // alter_column steps: their ColumnFacts
};
std::vector<TableQuery> TablesToDescribe(const Plan& plan);

// The report from the catalog's facts: each task's rows, size, key and time at its rate cap
// (`default_rate_cap` when the task sets none) or at `measured[i]` rows/s (the dry run's first
// batch; may be empty), every statement with its lock, and every problem that would make the
// plan fail: a table or column that neither exists nor is made by expand, a task without a key
// or with one no unique index on NOT NULL columns covers, a NOT NULL column without a default
// for a table with rows, a table whose row-level security policies would hide rows from tide's
// role, a NOT VALID foreign key on a partitioned table.
PreflightReport AssessPlan(const Plan& plan, const CatalogFacts& facts, int64_t default_rate_cap,
                           const std::vector<double>& measured = {});

// Every statement the plan runs, phase by phase (the set_not_null checks that go in before the
// gates are listed under "gate"), with the lock each takes.
std::vector<PlannedStatement> PlannedStatements(const Plan& plan);

// The columns of `table` that the plan's expand adds: typed add_column steps, and raw steps
// that say ADD COLUMN with the name (as written, or quoted).
std::set<std::string> ColumnsAddedByExpand(const Plan& plan, const QualifiedName& table);
// Whether a raw expand step creates `table` (CREATE TABLE with its name).
bool TableCreatedByExpand(const Plan& plan, const QualifiedName& table);

// "about 50s at 20000 rows/s (max_rows_per_second)", or a sentence that says why there is no
// estimate.
std::string EstimateTime(int64_t rows, int64_t rate_cap, double measured_rows_per_second);

// "1.2 GiB", "340 KiB".
std::string FormatBytes(int64_t bytes);

// The report for a person, and as a JSON object for the audit log.
std::string FormatPreflight(const PreflightReport& report);
std::string PreflightJson(const PreflightReport& report);

}  // namespace tide
