// The SQL of a plan's steps: each typed operation compiled to its safe sequence of statements.
// Pure.
//
// Every statement of a typed operation can be run again after a crash at any point: each carries
// a catalog query (`skip_if`) that is true once its effect is in place, and index builds name the
// index whose invalid leftover must be dropped before the build is tried again. So a step is
// resumed part-way by running its statements from the first, skipping those already done.
//
// Why this order for set_not_null: ADD CONSTRAINT ... CHECK (c IS NOT NULL) NOT VALID takes a
// brief ACCESS EXCLUSIVE lock without a scan and stops new NULLs at once; VALIDATE CONSTRAINT
// scans under SHARE UPDATE EXCLUSIVE, which blocks neither reads nor writes; SET NOT NULL then
// finds the valid check and skips its own scan (PostgreSQL 12+), so its ACCESS EXCLUSIVE lock is
// brief too; the check is dropped last, since NOT NULL now says the same.
#pragma once

#include <string>
#include <vector>

#include "tide/plan.h"

namespace tide {

struct DdlStatement {
  std::string sql;
  bool transactional = true;  // false: PostgreSQL refuses it in a transaction (CONCURRENTLY)
  std::string skip_if;        // a query returning one boolean, true when the effect is in place
  std::string lock;           // the lock it takes and what that holds up, for the preflight
  // Index builds: the index (quoted) whose INVALID leftover of a failed build is dropped before
  // the build runs and after it fails.
  std::string invalid_index;
  // A query returning why the statement must not run ('' when it may): a name tide makes up
  // that an object of someone else's already has. Checked before skip_if.
  std::string refuse_if;
  // The statement's last query returns one number: how long it held its locks, in ms (the
  // switch of alter_column), reported in the audit log.
  bool reports_lock_held = false;
  // Only a description for `validate` (the switch before its catalog facts are read): never run.
  bool describes_only = false;
};

// The statements of one step, in order. A raw `sql` step is one statement without `skip_if`.
std::vector<DdlStatement> CompileStep(const Step& step);

// The NOT VALID check of each set_not_null step at the head of contract (a set_not_null after
// another contract step runs in its place: that step may be what lets writes satisfy the
// check, a default say). They go in only once the gates pass
// (a check in place while the gates wait would make the old application's writes of NULL
// fail), then the gates are checked again: so no NULL can arrive between the gate and the
// constraint, and one that did is found. When that re-check fails they are removed again
// (GateCheckRemovals), as they are by an abort and on entering the gates after a restart.
std::vector<DdlStatement> GateChecks(const Plan& plan);

// Whether a step only adds a constraint or an index (set_not_null, add_check, add_unique,
// add_foreign_key, create_index): the sync triggers may stay in place while it runs.
bool AddsConstraintOnly(const Step& step);
std::vector<DdlStatement> GateCheckRemovals(const Plan& plan);

// The name tide gives a constraint it creates: the parts joined by `_`, then the suffix, within
// PostgreSQL's 63 bytes (a long name is cut and ends in a hash of the whole, so it stays unique
// and stable; PostgreSQL would cut it silently and the catalog checks would miss it).
std::string ObjectName(const std::vector<std::string>& parts, const std::string& suffix);

// Catalog conditions for skip_if queries: `to_regclass('<quoted name>')`; a constraint of that
// name on the table exists (and is validated); the column is NOT NULL.
std::string RegClass(const QualifiedName& name);
std::string ConstraintExists(const QualifiedName& table, const std::string& name, bool validated);
std::string ColumnIsNotNull(const QualifiedName& table, const std::string& column);

// DROP INDEX CONCURRENTLY IF EXISTS `index` (quoted): outside a transaction, blocking no writes.
std::string DropIndexSql(const std::string& index);

// A query that is true when `index` (quoted) exists and is valid.
std::string IndexIsValidSql(const std::string& index);
// A query that is true when `index` (quoted) exists and is not valid (a failed build's leftover).
std::string IndexIsInvalidSql(const std::string& index);
// The sessions other than this one building `index` (quoted) now: pid, seconds running.
std::string IndexBuildsSql(const std::string& index);

}  // namespace tide
