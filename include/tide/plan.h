// The change plan: what an operator writes in YAML, as plain values.
//
// A Plan is produced by ParsePlan (src/plan/plan_parser.h) and never changes afterwards.
// Identifiers in typed fields are kept exactly as written; tide quotes them when it builds SQL.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tide/duration.h"
#include "tide/guards.h"

namespace tide {

// Where something stands in a plan file; 1-based, 0 when unknown.
struct SourcePos {
  int line = 0;
  int column = 0;
};

// `table` or `schema.table`; schema is empty when the plan did not name one.
struct QualifiedName {
  std::string schema;
  std::string name;

  // As the operator wrote it: "core.users".
  std::string Display() const { return schema.empty() ? name : schema + "." + name; }
  bool operator==(const QualifiedName& o) const { return schema == o.schema && name == o.name; }
};

struct StatementSettings {
  std::optional<Millis> lock_timeout;
  std::optional<Millis> statement_timeout;
  // The statement_timeout of gate queries and of the catch-up sweeps that scan the table,
  // which take far longer than one batch on a large table.
  std::optional<Millis> gate_timeout;
  // Health limits for this plan's backfill, over the daemon's.
  std::optional<Millis> max_replication_lag;
  std::optional<int64_t> max_active_sessions;
  std::optional<std::string> throttle_query;
  std::optional<double> yield_ratio;
  std::optional<int64_t> ddl_retries;
  HealthSettings health;
};

// What one step of expand, contract or rollback does: raw SQL, or a typed operation that tide
// compiles to the safe sequence of statements (src/engine/operations.h).
enum class OpKind {
  kSql,
  kAddColumn,      // {table, column, type, default?, not_null?}
  kCreateIndex,    // {table, name, columns | expression, unique?, where?, method?}
  kSetNotNull,     // {table, column}
  kAddForeignKey,  // {table, columns, references: {table, columns}, name?, on_delete?}
  kAddCheck,       // {table, name, expression}
  kAddUnique,      // {table, name, columns}
  kDropColumn,     // {table, column}: contract and rollback only
  kDropIndex,      // {name}: contract and rollback only
  // Changes to columns the application already uses (src/engine/alterations.h): expand only.
  kAlterColumn,    // {table, column, type?, up?, down?, not_null?, default?, check?, unique?}
  kRenameColumn,   // {table, from, to}
  kRenameTable,    // {from, to}
  kAddPrimaryKey,  // {table, columns, name?}
  // Steps tide derives from the changes above; never written in a plan.
  kCreateVersionSchema,  // end of expand: the views of the new version
  kSwitch,               // head of contract: the new shape takes the old names
  kUndoAlterations,      // head of rollback: what expand added for them goes again
  kRevertSwitch,         // `tidectl revert`: the switch the other way, while the old columns are kept
};

// "sql", "add_column", ...: the key that introduces the step in a plan file.
const char* OpName(OpKind kind);

struct Step {
  OpKind kind = OpKind::kSql;
  std::string sql;     // kSql: passed through unchanged
  SourcePos pos;
  std::string unsafe;  // why the operator runs it despite the lint; empty: lint applies
  std::optional<Millis> statement_timeout;  // this step's own, over the plan's (index builds)

  // Typed operations; which fields apply depends on `kind` (see OpKind).
  QualifiedName table;
  std::string column;
  std::string type;                  // add_column: the column's SQL type
  std::optional<std::string> default_sql;  // add_column: a SQL expression
  bool not_null = false;             // add_column
  QualifiedName name;                // index or constraint; only drop_index may name a schema
  std::vector<std::string> columns;  // create_index, add_foreign_key, add_unique
  std::string expression;            // create_index (instead of columns), add_check: SQL
  bool unique = false;               // create_index
  std::string where;                 // create_index: a partial index's predicate, SQL
  std::string method;                // create_index: btree, hash, gist, gin, brin, spgist
  QualifiedName ref_table;           // add_foreign_key
  std::vector<std::string> ref_columns;
  std::string on_delete;             // add_foreign_key: "", cascade, restrict, set null, ...
  std::string up;                    // alter_column: the new value from an old row ("" : a cast)
  std::string down;                  // alter_column: the old value from a new row ("": the value)
  std::string unique_name;           // alter_column: `unique: {name}`
  std::string to;                    // rename_column: the new column; rename_table: the new name
  // Derived steps: the plan's name (the version schema) and the expand steps they stand for.
  std::string plan;
  std::vector<Step> alterations;
  // kSwitch: how long the old columns are kept after it (see `retention`); nullopt: until
  // `tidectl finalize`.
  std::optional<Millis> retention;
  // A derived alter_column of the revert: the column that takes the name back ("": the shadow).
  std::string shadow;

  // One line for logs and the audit log: the SQL, or "set_not_null core.users.display_name".
  std::string Describe() const;
};

struct BackfillTask {
  QualifiedName table;
  std::vector<std::string> key;  // empty: the table's primary key, looked up at run time
  std::vector<std::pair<std::string, std::string>> set;  // column -> SQL expression, in order
  std::string where;  // empty: every set column IS NULL
  std::string from;   // `from:` (its join folded into each `set` expression), for display
  std::optional<int64_t> batch_size;       // the starting size
  std::optional<int64_t> workers;          // parallel workers on disjoint key ranges
  std::optional<Millis> target_batch_time;  // the batch size adapts toward this
  std::optional<int64_t> min_batch_size;
  std::optional<int64_t> max_batch_size;
  std::optional<int64_t> max_rows_per_second;  // shared by the task's workers
  std::optional<Millis> pause_between_batches;
  bool sync_trigger = false;  // fill the columns on INSERT/UPDATE too, while the plan runs
  // `verify: true`: before contract, every row's set columns are computed again and compared;
  // contract waits until no row differs.
  bool verify = false;
  // `batch_by`: how batches walk the table. kAuto: by page (the heap in its physical order) for
  // an ordinary table without `where`, else by key.
  enum class BatchBy { kAuto, kKey, kPages };
  BatchBy batch_by = BatchBy::kAuto;
  SourcePos pos;
  std::string derived;  // "": the operator's; else what it was derived from ("alter_column ...")
};

struct Gate {
  enum class Kind { kNullCount, kSql };
  Kind kind = Kind::kSql;
  QualifiedName table;  // kNullCount
  std::string column;   // kNullCount
  std::string sql;      // kSql: a query returning one number
  int64_t expect = 0;   // kSql: the value the query must return
  SourcePos pos;
  std::string label;    // derived gates: "agree:accounts.id"

  // A short, stable label for metrics and status: "null_count:patient_offers.clinicId" or
  // "sql#2" (the gate's position in the plan, 1-based).
  std::string Label(size_t index) const;
};

// How a plan whose `database` names a database group goes over its databases.
struct Rollout {
  enum class OnFailure { kHalt, kContinue };
  enum class Contract { kEach, kTogether };
  int64_t canary = 1;        // the group's first databases, run alone before any other
  int64_t max_parallel = 1;  // databases in flight at once after the canary
  OnFailure on_failure = OnFailure::kHalt;  // halt: no new database starts after a failure
  Contract contract = Contract::kEach;  // together: no contract before every database's gates pass
  bool given = false;        // the plan has a `rollout:` block
  SourcePos pos;
};

struct Plan {
  std::string name;
  std::string database;  // a database, or a database group (see `group`)
  SourcePos database_pos;
  // Set for one database of a group's plan: the group the plan names (`database` is then the
  // database this copy runs on). Empty for a plan on one database.
  std::string group;
  Rollout rollout;
  std::string description;
  StatementSettings settings;
  std::optional<int64_t> batch_size;
  std::vector<Step> expand;
  std::vector<BackfillTask> backfill;
  std::vector<Gate> gates;
  std::vector<Step> contract;
  std::vector<Step> rollback;  // undoes expand; run by `tidectl abort` before contract starts
  // How long the switch of alter_column steps keeps the old columns (renamed, kept in step by
  // a trigger) so that `tidectl revert` can switch back; nullopt: until `tidectl finalize`;
  // zero: they are dropped as soon as the plan is done.
  std::optional<Millis> retention;
  std::vector<Step> revert;  // derived: run by `tidectl revert` after the switch
};

// Whether a `null_count` gate of `plan` covers `table`.`column`.
bool NullCountGateCovers(const Plan& plan, const QualifiedName& table, const std::string& column);


// One problem found in a plan or config file, with where it is and how to fix it.
struct Diagnostic {
  std::string file;
  SourcePos pos;
  std::string message;
  std::string hint;  // what to change; may be empty

  // "file:line:column: message; hint" (line and column left out when unknown).
  std::string ToString() const;
};

std::string FormatDiagnostics(const std::vector<Diagnostic>& diags);

}  // namespace tide
