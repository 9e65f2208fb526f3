// The preflight report: what a plan will touch, how much, how long, and which locks it takes,
// before anything runs. The database facts are gathered by the adapter (PlanDatabase::Preflight);
// everything here is pure.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <vector>

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
  double measured_rows_per_second = 0;  // dry run: the first batch's speed
  std::string explain;           // dry run: the first batch's plan
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
