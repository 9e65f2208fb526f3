// Changes to columns and tables the application already uses, the expand/contract way. Pure.
//
// An `alter_column` step never changes the column in place (ALTER COLUMN ... TYPE rewrites the
// table under ACCESS EXCLUSIVE and breaks the application that reads the old type). Instead:
//
//   expand    a shadow column of the new shape (`_tide_new_<column>`), and a trigger that keeps
//             both in step on every write: a session of the old version writes the old column
//             and `up` fills the shadow; a session of the new version (its search_path names the
//             version schema, see below) writes the shadow and `down` fills the old column.
//             Last in expand, the version schema: a schema named after the plan with a view of
//             each changed table in its new shape (the shadow under the old name, renamed
//             columns under their new names), so that the new version can run before contract.
//   backfill  a derived task fills the shadow from `up` with everything the engine has
//             (key ranges, checkpoints, throttling, pause, resume).
//   gates     a derived gate per column proves that old and new agree on every row.
//   contract  the switch, computed from the catalog when contract starts (SwitchFacts): every
//             index, unique constraint, check and foreign key over the old column (and those of
//             other tables that reference it) is built again on the shadow, CONCURRENTLY or NOT
//             VALID + VALIDATE; then one short transaction under lock_timeout locks the tables,
//             moves the default and the sequence, drops the old column, gives the shadow its
//             name, and gives the new indexes and constraints the old names; renames run in the
//             same transaction, and the version schema goes.
//   rollback  (abort before contract) the version schema, the triggers and the shadows go.
//
// rename_column and rename_table change nothing in expand but the version schema's views; the
// rename itself is part of the switch. add_primary_key builds its unique index CONCURRENTLY and
// adds the constraint with USING INDEX (its columns made NOT NULL by validated checks first).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "engine/operations.h"
#include "tide/plan.h"

namespace tide {

// The shadow of `column` while the plan runs: `_tide_new_<column>` (cut and hashed when long).
std::string ShadowColumn(const std::string& column);
// The old column after a switch that keeps it (the plan's `retention`): `_tide_old_<column>`.
std::string KeptColumn(const std::string& column);
// The trigger (and its function, in schema tide) that keeps an alter_column's two columns in step.
std::string AlterTriggerName(const std::string& plan, const QualifiedName& table,
                             const std::string& column);
// The schema of the plan's views for the new version: the plan's name.
std::string VersionSchema(const std::string& plan);

// The value `up` gives a row of the old version: the step's `up`, else a cast of the column to
// the new type (the column itself when the type does not change).
std::string UpExpression(const Step& alter);

// The condition on a row of the altered table that its shadow does not hold `up` of the old
// value (or, with not_null, holds no value): what the backfill fills, the gate counts and the
// switch refuses.
std::string Disagrees(const Step& alter);
// The same for another column in the shadow's place (the revert's kept old column).
std::string DisagreesIn(const Step& alter, const std::string& shadow_column);

// Adds to a parsed plan what its alter_column, rename_column and rename_table steps imply: the
// version schema step at the end of expand, a backfill task per table (its shadows from `up`),
// a gate per column (old and new agree), the switch at the head of contract (after its leading
// set_not_null steps), and their undoing at the head of rollback. Idempotent per parse: the
// plan's text alone decides what is derived.
void DeriveAlterations(Plan* plan);

// A table of the plan by the name it has after the switch (its rename_table applied).
QualifiedName SwitchedTable(const std::vector<Step>& alterations, const QualifiedName& table);

// An old column the switch kept (a row of tide.retained_columns): renamed to `kept`, filled
// from `down` of the new column by `trigger` on every write, until finalize or revert.
struct RetainedColumn {
  std::string plan;
  std::string table;          // quoted, qualified, by its name after the switch
  std::string table_display;  // as the plan names it after the switch: SwitchedTable().Display()
  std::string column;         // the column, as named after the switch
  std::string kept;           // the old column under its kept name
  std::string trigger;        // the trigger and its function (schema tide)
  std::string old_type;       // the old column's type, default and NOT NULL, for the revert
  std::string old_default;
  bool old_not_null = false;
  bool expired = false;       // its retention has passed
  std::string retain_until;   // RFC 3339; "": until finalize
};

// What the catalog says about one altered column, read when contract starts (and by
// `validate --db`), for the switch.
struct IndexFacts {
  std::string name;                // the index
  bool unique = false;
  std::string method;              // btree, hash, ...
  std::vector<std::string> columns;
  std::vector<std::string> options;  // per column: "", "DESC", "NULLS FIRST", "DESC NULLS LAST"
  std::string predicate;           // a partial index's WHERE, as the catalog prints it
  char constraint_type = 0;        // 'p', 'u' when the index is a constraint's; 0 otherwise
  std::string constraint_name;
  std::vector<std::string> opclasses;  // per column: a non-default operator class, else ""
  bool nulls_not_distinct = false;
  std::string deferrable;          // the constraint's " DEFERRABLE [INITIALLY DEFERRED]", or ""
};
struct ForeignKeyFacts {
  std::string name;
  QualifiedName table;  // schema-qualified, as the catalog says
  std::vector<std::string> columns;
  QualifiedName ref_table;
  std::vector<std::string> ref_columns;
  std::string actions;  // " ON UPDATE CASCADE ON DELETE SET NULL MATCH FULL DEFERRABLE ..."
};
struct CheckFacts {
  std::string name;
  std::string definition;  // pg_get_constraintdef: "CHECK ((rating > 0))"
};
struct ColumnFacts {
  bool exists = false;
  std::string schema;  // the table's schema, resolved
  std::string type;    // format_type of the old column
  bool not_null = false;
  std::string default_expr;  // pg_get_expr of the default; "" when none
  std::string owned_sequence;  // quoted, qualified: a serial's sequence; "" when none
  std::string sequence_type;   // the sequence's type (integer, bigint, smallint)
  // 'a' (GENERATED ALWAYS) or 'd' (BY DEFAULT) for an identity column, whose sequence
  // (owned_sequence) goes with it: the shadow gets a new identity that starts where it stopped.
  char identity = 0;
  std::vector<IndexFacts> indexes;        // every index with the column as a key column
  std::vector<CheckFacts> checks;         // checks that name the column
  std::vector<ForeignKeyFacts> foreign_keys;  // from the column, and to it from other tables
  // What depends on the column that the switch cannot carry over (views, policies, identity,
  // expression indexes, ...), in words; the preflight refuses the plan while there is any.
  std::vector<std::string> blockers;
  bool shadow_exists = false;  // the shadow column is there (expand ran)
  // Carried over to the new column by the switch: its comment, statistics target (-1: the
  // default) and column privileges ("SELECT TO alice", "UPDATE TO PUBLIC WITH GRANT OPTION").
  std::string comment;
  int statistics = -1;
  std::vector<std::string> grants;
};
// By "schema.table.column" as the plan names it: QualifiedName::Display() + "." + column.
using SwitchFacts = std::map<std::string, ColumnFacts>;
std::string FactsKey(const QualifiedName& table, const std::string& column);

// The statements of a derived step. The version schema and the undoing need no catalog facts;
// the switch does (`facts` for each alter_column of the step), and fails with `problem` set
// when a fact forbids it.
std::vector<DdlStatement> CompileVersionSchema(const Step& step);
std::vector<DdlStatement> CompileUndo(const Step& step);
// `lock_timeout` is shared out over the locks the switch's transaction takes; its statements run
// under `statement_timeout` (the index builds before it under the step's own limits).
std::vector<DdlStatement> CompileSwitch(const Step& step, const SwitchFacts& facts,
                                        std::string* problem, Millis lock_timeout = Millis(2000),
                                        Millis statement_timeout = Millis(30000));
// The revert (`tidectl revert`, a kRevertSwitch step): the switch the other way, each kept old
// column taking its name back. Computed like the switch, from the catalog's facts about the
// columns as they are now (ReadSwitchFacts of RevertShape's step) and the kept columns.
// RevertShape is the revert as a switch: each alter_column with the kept column as its shadow,
// each rename the other way; `problem` is set when a kept column is missing.
Step RevertShape(const Step& revert, const std::vector<RetainedColumn>& kept, std::string* problem);
std::vector<DdlStatement> CompileRevert(const Step& shape, const SwitchFacts& facts,
                                        const std::vector<RetainedColumn>& kept,
                                        std::string* problem, Millis lock_timeout,
                                        Millis statement_timeout);
// Finalize (`tidectl finalize`, or the retention passed): the kept columns and their triggers
// go, in one short transaction under lock_timeout.
std::vector<DdlStatement> CompileFinalize(const std::string& plan,
                                          const std::vector<RetainedColumn>& kept,
                                          Millis lock_timeout);

// The switch as `validate` shows it without a database: what it will do, in words.
std::vector<DdlStatement> DescribeSwitch(const Step& step);

// Statements of the expand steps themselves (CompileStep calls these).
std::vector<DdlStatement> CompileAlterColumn(const std::string& plan, const Step& step);
std::vector<DdlStatement> CompileAddPrimaryKey(const Step& step);
// The trigger function of an alter_column step; `lenient`: a value `up` cannot convert leaves
// the shadow NULL instead of failing the write (until contract).
std::string AlterTriggerFunctionSql(const std::string& plan, const Step& step, bool lenient);

// `text` with every identifier token equal to `from` (bare or quoted) replaced by `to`
// (quoted); string literals, quoted identifiers of other names and comments are left alone.
std::string ReplaceIdentifier(const std::string& text, const std::string& from,
                              const std::string& to);

}  // namespace tide
