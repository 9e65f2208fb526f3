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
  // Health limits for this plan's backfill, over the daemon's.
  std::optional<Millis> max_replication_lag;
  std::optional<int64_t> max_active_sessions;
  std::optional<std::string> throttle_query;
  std::optional<double> yield_ratio;
  std::optional<int64_t> ddl_retries;
};

struct SqlStep {
  std::string sql;
  SourcePos pos;
  std::string unsafe;  // why the operator runs it despite the lint; empty: lint applies
};

struct BackfillTask {
  QualifiedName table;
  std::vector<std::string> key;  // empty: the table's primary key, looked up at run time
  std::vector<std::pair<std::string, std::string>> set;  // column -> SQL expression, in order
  std::string where;  // empty: every set column IS NULL
  std::optional<int64_t> batch_size;       // the starting size
  std::optional<int64_t> workers;          // parallel workers on disjoint key ranges
  std::optional<Millis> target_batch_time;  // the batch size adapts toward this
  std::optional<int64_t> min_batch_size;
  std::optional<int64_t> max_batch_size;
  std::optional<int64_t> max_rows_per_second;  // shared by the task's workers
  std::optional<Millis> pause_between_batches;
  bool sync_trigger = false;  // fill the columns on INSERT/UPDATE too, while the plan runs
  SourcePos pos;
};

struct Gate {
  enum class Kind { kNullCount, kSql };
  Kind kind = Kind::kSql;
  QualifiedName table;  // kNullCount
  std::string column;   // kNullCount
  std::string sql;      // kSql: a query returning one number
  int64_t expect = 0;   // kSql: the value the query must return
  SourcePos pos;

  // A short, stable label for metrics and status: "null_count:patient_offers.clinicId" or
  // "sql#2" (the gate's position in the plan, 1-based).
  std::string Label(size_t index) const;
};

struct Plan {
  std::string name;
  std::string database;
  SourcePos database_pos;
  std::string description;
  StatementSettings settings;
  std::optional<int64_t> batch_size;
  std::vector<SqlStep> expand;
  std::vector<BackfillTask> backfill;
  std::vector<Gate> gates;
  std::vector<SqlStep> contract;
};

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
