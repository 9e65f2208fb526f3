// The SQL text of everything tide runs, built from typed values. Pure.
//
// Identifiers from the plan are always quoted here; SQL fragments from the plan (`set`
// expressions, `where`, raw steps) are passed through unchanged, in parentheses.
#pragma once

#include <cstdint>
#include <map>
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
  // The set columns' types as the catalog prints them (format_type), where known: a `where`
  // task's change is judged on the value cast to the column's type.
  std::map<std::string, std::string> column_types;
  // The plan whose task this is: its batches say so (tide.backfill), so that the plan's own
  // alter_column triggers leave them alone.
  std::string plan;
  // Page batches: about how many rows a heap page holds, to turn a batch size into pages.
  double rows_per_page = 0;
  // Page batches go by share (see kPageShares) only where a row whose share changes under the
  // scan (the application changes its key) is caught, as a moved row is (see BackfillOptions),
  // and where ShareOf can read the key.
  bool page_shares = false;
  // The task has met a row whose expression yields NULL: share batches take only rows their
  // update changes, so that such a row, moved ahead of its share by its own update, is not
  // taken again (see ChangeFilter).
  bool skip_unfillable = false;
};

// A batch is three short statements, all on the key's index, with the key values as typed
// parameters so that each is planned with real values:
//
// 1. BatchBoundSql: the key of the batch's last row. Parameters: the lower bound's k values (when
//    `has_lower`: keys above it), the upper bound's (when `has_upper`: keys up to it), then, for
//    the full-batch form, the batch size minus one (the OFFSET). With `last`, the largest key
//    left instead, for the final, short batch. Returns k text columns, or no row.
// 2. BatchUpdateSql: the UPDATE of every row with a key above the lower bound and up to the
//    batch's last key that still matches the filter. Parameters: lower (when `has_lower`), then
//    the last key. Returns one row: the rows filled, and the rows updated that still match the
//    filter (their expression yields NULL: unfillable, see UnfillableSql).
// 3. BatchCountSql: the rows in that same span (only for the short batch; a full batch has
//    exactly the batch size).
// A key range, not a join, bounds the UPDATE: PostgreSQL plans it as an index range scan at any
// batch size. Rows are taken in key order, so sparse keys never give empty batches and an empty
// table takes one statement.
std::string BatchBoundSql(const BatchStatement& b, bool has_lower, bool has_upper, bool last);
std::string BatchUpdateSql(const BatchStatement& b, bool has_lower);
std::string BatchCountSql(const BatchStatement& b, bool has_lower);

// A page batch: the UPDATE of every row still matching the filter in the heap from $1 up to,
// not including, $2 (both a tid, '(page,offset)'), read by a TID range scan in physical order;
// ONLY the table itself, whose pages these are. Returns what BatchUpdateSql returns. A row an
// earlier batch updated may sit on these pages again (its new version went where there was
// room); the filter skips it, as it skips a row the application filled. With `only_changes`
// (the open tail, which reads the row versions the pass itself moved there) a row is taken only
// when the update would change it (see ChangeFilter), so that a row whose expression yields NULL
// is never rewritten again; the expressions are then evaluated twice for the rows taken. With
// `shares` above 0, only the rows whose ShareOf is $3 (an integer below `shares`).
std::string PageBatchUpdateSql(const BatchStatement& b, bool only_changes, int shares = 0);

// The share of `shares` a row falls in by its key, 0 to shares - 1: the sum of its key columns'
// hashes (hashint8, uuid_hash, hash_numeric, hashtext of a text key), cheap, since a share's batch
// reads every row of its pages, and spread over the rows of a page and of an index page whatever
// the key's order or step. Only columns whose hash depends on nothing but the value take part:
// the text form of a timestamp, a date or a float depends on the session's settings, and a row
// must stay in its share from one batch to the next. Empty when no key column can.
std::string ShareOf(const BatchStatement& b, int shares);
// Whether ShareOf can read some column of `b`'s key.
bool HasShareKey(const BatchStatement& b);

// The table's size in pages now: one row, one number.
std::string HeapPagesSql(const QualifiedName& table);

// A sweep: updates up to $1 rows still pending wherever they are in the key order (found by a
// scan of the table, not the key's index), for rows written behind the passes while the gates
// wait. Only rows the update would change are taken (see ChangeFilter), so rows whose
// expression yields NULL are never rewritten again and never crowd fillable rows out of the
// LIMIT. Returns one row: the fillable rows found, the rows updated.
std::string SweepSql(const BatchStatement& b);

// True for a row the batch's SET would change: with the default filter, some set column is
// NULL and its expression is not; with `where`, some expression, cast to the column's type,
// differs from the column (compared as text, so that types without equality, json say, work).
// Always true or false, never NULL.
std::string ChangeFilter(const BatchStatement& b);

// The rows still pending that no update can fill (their expression yields NULL: an orphan
// with no matching row in a join, say): one row, their count and up to 5 of their keys as a
// text array literal.
// A verification batch (`verify: true`): the next rows after the lower bound in key order (at
// most $n, the last parameter), each set column compared as text with its expression computed
// again (cast to the column's type). Read only. Returns one row: rows read, rows that differ, a
// text array of up to 5 of their keys, then the last row's key as k text columns (NULL when no
// row was left).
std::string VerifyBatchSql(const BatchStatement& b, bool has_lower);
// "(c1::text IS DISTINCT FROM CAST((e1) AS t1)::text OR ...)": a row whose stored value differs.
std::string DifferFilter(const BatchStatement& b);

std::string UnfillableSql(const BatchStatement& b);

// A sample of the table's keys as text, in the key's order, for splitting it into ranges.
// Parameter $1: the percent of blocks to read (TABLESAMPLE SYSTEM).
std::string SampleKeysSql(const QualifiedName& table, const std::vector<KeyColumn>& key);

// The filter that selects rows still to be filled.
std::string PendingFilter(const BatchStatement& b);

// The trigger that fills a task's columns on INSERT and UPDATE while the plan runs
// (`sync_trigger: true`), so that new writes stop adding work. Each expression is evaluated over
// the new row, which is visible under the table's own name (so `patient_offers."offerId"` and
// `"offerId"` both work) and may use subqueries on other tables. With the default filter a
// column is filled only when it is NULL; with `where`, when the new row matches it.
struct SyncTriggerSql {
  std::string create;  // CREATE OR REPLACE FUNCTION ...; CREATE OR REPLACE TRIGGER ...
  std::string drop;    // DROP TRIGGER IF EXISTS ...; DROP FUNCTION IF EXISTS ...
};
// The name of a task's sync trigger and its function (in schema tide): the plan's name cut to
// 40 bytes, the task number, and a hash of the whole plan name and task, so that two plans
// whose names share a prefix never share a trigger. Within 63 bytes.
std::string SyncTriggerName(const std::string& plan, int task_index);
// A 32-bit FNV-1a hash of `text`, for names tide makes up.
uint32_t NameHash(const std::string& text);
SyncTriggerSql MakeSyncTrigger(const std::string& plan, int task_index, const BackfillTask& task);

// SELECT count(*) of rows that fail a null_count gate.
std::string NullCountSql(const QualifiedName& table, const std::string& column);

// ANALYZE of a table once its backfill is done, so that the planner knows the new column.
std::string AnalyzeSql(const QualifiedName& table);
// A plain VACUUM between batches: never FULL, never waits for its lock, never truncates.
std::string VacuumSql(const QualifiedName& table);
// How many sessions wait for a lock session `pid` holds; with `pids`, an int[] expression, one
// of those sessions. pg_blocking_pids takes every lock manager partition while it reads: it runs
// only for the sessions that wait on a lock, not once for every session of the server (and for
// every session whose wait tide's role cannot see, without pg_read_all_stats).
std::string BlockedBySql(int64_t pid);
std::string BlockedBySql(const std::string& pids);
// Cancels tide's VACUUM on session `pid` (application_name 'tided vacuum'); returns a count.
std::string CancelVacuumSql(int64_t pid);

// "SET LOCAL lock_timeout = '2000ms'" and the like.
std::string SetTimeoutSql(const std::string& setting, Millis value, bool local);

// '{"a","b"}' for a text[] parameter.
std::string TextArrayLiteral(const std::vector<std::string>& values);

}  // namespace tide
