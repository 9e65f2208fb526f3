// Typed operations: the parser's rules, the SQL each compiles to, the catalog checks that make
// them resumable, and the preflight's pure parts.
#include "engine/operations.h"

#include <gtest/gtest.h>

#include "engine/phase.h"
#include "engine/preflight.h"
#include "plan/lint.h"
#include "plan/plan_parser.h"

namespace tide {
namespace {

const char* kTypedPlan = R"(plan: orders_customer
database: app
expand:
  - add_column: {table: core.orders, column: customerId, type: bigint}
  - add_column: {table: core.orders, column: status, type: text, default: "'new'", not_null: true}
  - create_index: {table: core.orders, name: orders_customer_idx, columns: [customerId]}
  - create_index: {table: core.orders, name: orders_email_idx, expression: lower(email), unique: true, where: email IS NOT NULL, method: btree}
    statement_timeout: 10m
backfill:
  - table: core.orders
    set: {customerId: (SELECT c.id FROM core.customers c WHERE c.email = orders.email)}
gates:
  - null_count: {table: core.orders, column: customerId}
contract:
  - set_not_null: {table: core.orders, column: customerId}
  - add_foreign_key: {table: core.orders, columns: [customerId], references: {table: core.customers, columns: [id]}, on_delete: restrict}
  - add_check: {table: core.orders, name: orders_total_positive, expression: total >= 0}
  - add_unique: {table: core.orders, name: orders_number_key, columns: [number]}
  - drop_column: {table: core.orders, column: legacy_customer}
  - drop_index: {name: core.orders_legacy_idx}
rollback:
  - drop_index: {name: core.orders_customer_idx}
  - drop_column: {table: core.orders, column: customerId}
)";

Plan Parsed(const std::string& text) {
  auto r = ParsePlan(text, "p.yaml");
  EXPECT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  return r.plan;
}

std::string Errors(const std::string& text) { return FormatDiagnostics(ParsePlan(text, "p.yaml").errors); }

std::string Expand(const std::string& steps) {
  return "plan: p\ndatabase: app\nexpand:\n" + steps;
}

TEST(TypedOperations, EveryKindParsesWithItsFields) {
  const Plan p = Parsed(kTypedPlan);
  ASSERT_EQ(p.expand.size(), 4u);
  EXPECT_EQ(p.expand[0].kind, OpKind::kAddColumn);
  EXPECT_EQ(p.expand[0].table.Display(), "core.orders");
  EXPECT_EQ(p.expand[1].default_sql.value_or(""), "'new'");
  EXPECT_TRUE(p.expand[1].not_null);
  EXPECT_EQ(p.expand[3].expression, "lower(email)");
  EXPECT_TRUE(p.expand[3].unique);
  EXPECT_EQ(p.expand[3].statement_timeout.value_or(Millis(0)), std::chrono::minutes(10));
  ASSERT_EQ(p.contract.size(), 6u);
  EXPECT_EQ(p.contract[1].ref_table.Display(), "core.customers");
  EXPECT_EQ(p.contract[1].on_delete, "restrict");
  EXPECT_EQ(p.contract[5].name.Display(), "core.orders_legacy_idx");
  ASSERT_EQ(p.rollback.size(), 2u);
  EXPECT_TRUE(LintPlan(p).empty()) << "typed operations are safe by construction";
}

TEST(TypedOperations, DropsAreRefusedInExpand) {
  EXPECT_NE(Errors(Expand("  - drop_column: {table: t, column: c}\n"))
                .find("p.yaml:4:5: `drop_column` in expand step 1 is not backward compatible; "
                      "move it to `contract`"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - drop_index: {name: i}\n")).find("not backward compatible"),
            std::string::npos);
}

TEST(TypedOperations, AStepHasExactlyOneOperation) {
  EXPECT_NE(Errors(Expand("  - sql: SELECT 1\n    add_column: {table: t, column: c, type: int}\n"))
                .find("expand step 1 has more than one operation (`sql` and `add_column`)"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - statement_timeout: 1m\n")).find("expand step 1 has no operation"),
            std::string::npos);
}

TEST(TypedOperations, FieldsAreCheckedWithTheirPlace) {
  EXPECT_NE(Errors(Expand("  - add_column: {table: t, column: c, type: int, colour: red}\n"))
                .find("unknown key `colour` in `add_column` in expand step 1"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - add_column: {table: t, column: c}\n"))
                .find("missing the required key `type`"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - add_column: {table: t, column: c, type: int NOT NULL}\n"))
                .find("`type` in `add_column` in expand step 1 holds `NOT NULL`"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - add_column: {table: t, column: c, type: uuid, default: gen_random_uuid()}\n"))
                .find("is volatile, which rewrites the whole table"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - create_index: {table: t, name: i}\n"))
                .find("needs exactly one of `columns` and `expression`"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - create_index: {table: t, name: i, columns: [a], method: bitmap}\n"))
                .find("use one of btree, hash, gist, gin, brin, spgist"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - add_column: {table: t, column: c, type: int, not_null: yes}\n"))
                .find("must be true or false"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - sql: SELECT 1\n    unsafe: ok\n  - add_column: {table: t, column: c, type: int}\n    unsafe: why\n"))
                .find("`unsafe` in expand step 2 applies to `sql` steps only"),
            std::string::npos);
}

TEST(TypedOperations, NamesInTypedFieldsCanNeverCarrySql) {
  EXPECT_NE(Errors(Expand("  - add_column: {table: \"users; DROP TABLE users\", column: c, type: int}\n"))
                .find("contains a quote, semicolon or control character"),
            std::string::npos);
  EXPECT_NE(Errors(Expand("  - create_index: {table: t, name: i, columns: ['a\"b']}\n"))
                .find("contains a quote, semicolon or control character"),
            std::string::npos);
}

TEST(TypedOperations, ForeignKeysNeedOneReferencedColumnPerColumn) {
  const std::string e = Errors(
      "plan: p\ndatabase: app\ngates:\n  - sql: SELECT 0\n    expect: 0\ncontract:\n"
      "  - add_foreign_key: {table: a, columns: [x, y], references: {table: b, columns: [id]}, "
      "on_delete: explode}\n");
  EXPECT_NE(e.find("names 1 column(s) for 2"), std::string::npos) << e;
  EXPECT_NE(e.find("use one of: no action, restrict, cascade, set null, set default"), std::string::npos) << e;
}

TEST(TypedOperations, AddColumnIsOneIdempotentStatement) {
  const Plan p = Parsed(kTypedPlan);
  auto st = CompileStep(p.expand[0]);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].sql, "ALTER TABLE \"core\".\"orders\" ADD COLUMN IF NOT EXISTS \"customerId\" bigint");
  EXPECT_TRUE(st[0].transactional);
  EXPECT_EQ(CompileStep(p.expand[1])[0].sql,
            "ALTER TABLE \"core\".\"orders\" ADD COLUMN IF NOT EXISTS \"status\" text DEFAULT ('new') NOT NULL");
}

TEST(TypedOperations, IndexesAreBuiltConcurrentlyOutsideATransaction) {
  const Plan p = Parsed(kTypedPlan);
  auto a = CompileStep(p.expand[2]);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].sql, "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"orders_customer_idx\" ON "
                      "\"core\".\"orders\" (\"customerId\")");
  EXPECT_FALSE(a[0].transactional);
  EXPECT_EQ(a[0].invalid_index, "\"core\".\"orders_customer_idx\"");
  EXPECT_NE(a[0].skip_if.find("indisvalid"), std::string::npos);
  EXPECT_EQ(CompileStep(p.expand[3])[0].sql,
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"orders_email_idx\" ON "
            "\"core\".\"orders\" USING btree ((lower(email))) WHERE (email IS NOT NULL)");
}

TEST(TypedOperations, SetNotNullGoesThroughAValidatedCheck) {
  const Plan p = Parsed(kTypedPlan);
  auto st = CompileStep(p.contract[0]);
  ASSERT_EQ(st.size(), 4u);
  EXPECT_EQ(st[0].sql, "ALTER TABLE \"core\".\"orders\" ADD CONSTRAINT \"orders_customerId_not_null\" "
                       "CHECK (\"customerId\" IS NOT NULL) NOT VALID");
  EXPECT_EQ(st[1].sql, "ALTER TABLE \"core\".\"orders\" VALIDATE CONSTRAINT \"orders_customerId_not_null\"");
  EXPECT_EQ(st[2].sql, "ALTER TABLE \"core\".\"orders\" ALTER COLUMN \"customerId\" SET NOT NULL");
  EXPECT_EQ(st[3].sql, "ALTER TABLE \"core\".\"orders\" DROP CONSTRAINT IF EXISTS \"orders_customerId_not_null\"");
  for (size_t i = 0; i < st.size(); ++i) {
    EXPECT_TRUE(st[i].transactional);
    // Once the column is NOT NULL, re-running the first three does nothing: a crash after the
    // last statement must not add the check back.
    if (i < 3) {
      EXPECT_NE(st[i].skip_if.find("attnotnull"), std::string::npos) << st[i].sql;
    }
  }
  EXPECT_NE(st[1].skip_if.find("convalidated"), std::string::npos);
  EXPECT_NE(st[3].skip_if.find("NOT EXISTS"), std::string::npos);
  EXPECT_NE(st[1].lock.find("reads and writes go on"), std::string::npos);
}

TEST(TypedOperations, ConstraintsGoInNotValidThenAreValidated) {
  const Plan p = Parsed(kTypedPlan);
  auto fk = CompileStep(p.contract[1]);
  ASSERT_EQ(fk.size(), 2u);
  EXPECT_EQ(fk[0].sql, "ALTER TABLE \"core\".\"orders\" ADD CONSTRAINT \"orders_customerId_fkey\" "
                       "FOREIGN KEY (\"customerId\") REFERENCES \"core\".\"customers\" (\"id\") "
                       "ON DELETE restrict NOT VALID");
  EXPECT_EQ(fk[1].sql, "ALTER TABLE \"core\".\"orders\" VALIDATE CONSTRAINT \"orders_customerId_fkey\"");
  auto check = CompileStep(p.contract[2]);
  ASSERT_EQ(check.size(), 2u);
  EXPECT_EQ(check[0].sql, "ALTER TABLE \"core\".\"orders\" ADD CONSTRAINT \"orders_total_positive\" "
                          "CHECK (total >= 0) NOT VALID");
  auto unique = CompileStep(p.contract[3]);
  ASSERT_EQ(unique.size(), 2u);
  EXPECT_EQ(unique[0].sql, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"orders_number_key\" ON "
                           "\"core\".\"orders\" (\"number\")");
  EXPECT_EQ(unique[1].sql, "ALTER TABLE \"core\".\"orders\" ADD CONSTRAINT \"orders_number_key\" "
                           "UNIQUE USING INDEX \"orders_number_key\"");
  EXPECT_NE(unique[0].skip_if.find("pg_constraint"), std::string::npos)
      << "once the constraint owns the index, the build is skipped";
}

TEST(TypedOperations, DropsAreIdempotent) {
  const Plan p = Parsed(kTypedPlan);
  EXPECT_EQ(CompileStep(p.contract[4])[0].sql,
            "ALTER TABLE \"core\".\"orders\" DROP COLUMN IF EXISTS \"legacy_customer\"");
  auto drop = CompileStep(p.contract[5]);
  EXPECT_EQ(drop[0].sql, "DROP INDEX CONCURRENTLY IF EXISTS \"core\".\"orders_legacy_idx\"");
  EXPECT_FALSE(drop[0].transactional);
}

TEST(TypedOperations, TheNotValidCheckOfTheGatesIsContractsFirstStatementAndCanBeRemoved) {
  const Plan p = Parsed(kTypedPlan);
  auto checks = GateChecks(p);
  ASSERT_EQ(checks.size(), 1u);
  EXPECT_EQ(checks[0].sql, CompileStep(p.contract[0])[0].sql);
  auto removals = GateCheckRemovals(p);
  ASSERT_EQ(removals.size(), 1u);
  EXPECT_NE(removals[0].sql.find("DROP CONSTRAINT IF EXISTS"), std::string::npos);
  EXPECT_NE(removals[0].skip_if.find("NOT convalidated"), std::string::npos)
      << "only the NOT VALID check goes; a validated one means contract has started";
}

TEST(TypedOperations, NamesTideMakesUpAreCheckedForAClashBeforeTheyAreCreated) {
  const Plan p = Parsed(kTypedPlan);
  const auto set_not_null = CompileStep(p.contract[0]);
  EXPECT_NE(set_not_null[0].refuse_if.find("pg_constraint"), std::string::npos);
  EXPECT_NE(set_not_null[0].refuse_if.find("already exists"), std::string::npos);
  for (const auto& step : p.contract) {
    if (step.kind != OpKind::kAddForeignKey) continue;
    EXPECT_NE(CompileStep(step)[0].refuse_if.find("contype = 'f'"), std::string::npos);
  }
}

TEST(TypedOperations, LongNamesStayWithinPostgresLimitAndStayDistinct) {
  const std::string long_table(60, 't');
  const std::string a = ObjectName({long_table, "column_one"}, "_not_null");
  const std::string b = ObjectName({long_table, "column_two"}, "_not_null");
  EXPECT_LE(a.size(), 63u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, ObjectName({long_table, "column_one"}, "_not_null")) << "stable across runs";
  EXPECT_EQ(a.substr(a.size() - 9), "_not_null");
  EXPECT_EQ(ObjectName({"t", "c"}, "_fkey"), "t_c_fkey");
}

TEST(TypedOperations, EachStatementNamesTheLockItTakes) {
  EXPECT_EQ(LockTakenBy("CREATE INDEX i ON t (c)"), "SHARE: blocks every write for the whole build");
  EXPECT_NE(LockTakenBy("create index concurrently i on t (c)").find("reads and writes go on"), std::string::npos);
  EXPECT_NE(LockTakenBy("ALTER TABLE t\n  ADD COLUMN c int").find("brief"), std::string::npos);
  EXPECT_NE(LockTakenBy("ALTER TABLE t ALTER COLUMN c TYPE bigint").find("rewrite"), std::string::npos);
  EXPECT_NE(LockTakenBy("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES b (id)").find("blocks writes"),
            std::string::npos);
  EXPECT_NE(LockTakenBy("UPDATE t SET a = 1").find("ROW EXCLUSIVE"), std::string::npos);
  EXPECT_NE(LockTakenBy("COMMENT ON TABLE t IS 'x'").find("assume ACCESS EXCLUSIVE"), std::string::npos);
  const auto planned = PlannedStatements(Parsed(kTypedPlan));
  ASSERT_FALSE(planned.empty());
  for (const auto& s : planned) EXPECT_FALSE(s.lock.empty()) << s.sql;
  EXPECT_EQ(planned.front().phase, "expand");
  EXPECT_EQ(planned.back().phase, "rollback");
}

TEST(Preflight, FindsColumnsThatExpandAdds) {
  Plan p = Parsed(kTypedPlan);
  EXPECT_EQ(ColumnsAddedByExpand(p, {"core", "orders"}), (std::set<std::string>{"customerId", "status"}));
  Step raw;
  raw.sql = "ALTER TABLE patient_offers ADD COLUMN IF NOT EXISTS \"clinicId\" text";
  Plan q;
  q.expand = {raw};
  BackfillTask t;
  t.table = {"", "patient_offers"};
  t.set = {{"clinicId", "1"}, {"other", "2"}};
  q.backfill = {t};
  EXPECT_EQ(ColumnsAddedByExpand(q, t.table), (std::set<std::string>{"clinicId"}));
  raw.sql = "CREATE TABLE audit_trail (id bigint PRIMARY KEY)";
  q.expand = {raw};
  EXPECT_TRUE(TableCreatedByExpand(q, {"", "audit_trail"}));
  EXPECT_FALSE(TableCreatedByExpand(q, {"", "audit"}));
}

TEST(Preflight, AsksForTheTablesItNeedsAndRowsOnlyWhereARuleDoes) {
  const Plan p = Parsed(kTypedPlan);
  const auto q = TablesToDescribe(p);
  ASSERT_EQ(q.size(), 1u) << "one table, asked once";
  EXPECT_EQ(q[0].table.Display(), "core.orders");
  EXPECT_FALSE(q[0].needs_rows) << "its NOT NULL column has a default: no need to look at rows";
  const auto q2 = TablesToDescribe(Parsed(Expand("  - add_column: {table: t, column: c, type: int, not_null: true}\n")));
  ASSERT_EQ(q2.size(), 1u);
  EXPECT_TRUE(q2[0].needs_rows) << "NOT NULL without a default: only a table without rows takes it";
}

TEST(Preflight, FindsWhatWouldFailFromTheCatalogsFacts) {
  const Plan p = Parsed(R"(plan: p
database: app
expand:
  - add_column: {table: orders, column: region, type: text, not_null: true}
  - add_column: {table: invoices, column: paid, type: bool}
  - sql: CREATE TABLE audit_trail (id bigint PRIMARY KEY, note text)
backfill:
  - table: orders
    set: {regoin: "'eu'", region: "'eu'"}
    max_rows_per_second: 1000
  - table: audit_trail
    set: {note: "'x'"}
  - table: legacy
    set: {c: "1"}
)");
  CatalogFacts facts;
  TableFacts orders;
  orders.exists = true;
  orders.key = {{"id", "bigint"}};
  orders.columns = {"id", "total"};
  orders.estimated_rows = 5000;
  orders.has_rows = true;
  orders.key_unique = true;
  facts["orders"] = orders;
  TableFacts legacy;
  legacy.exists = true;
  legacy.columns = {"c"};
  facts["legacy"] = legacy;
  const PreflightReport r = AssessPlan(p, facts, 0);
  std::string all;
  for (const auto& problem : r.problems) all += problem + "\n";
  EXPECT_EQ(r.problems.size(), 4u) << all;
  EXPECT_NE(all.find("backfill orders: column `regoin` does not exist"), std::string::npos) << all;
  EXPECT_NE(all.find("a NOT NULL column without a default cannot be added"), std::string::npos) << all;
  EXPECT_NE(all.find("expand step 2 (add_column): table `invoices` does not exist"), std::string::npos) << all;
  EXPECT_NE(all.find("backfill legacy: the table has no primary key"), std::string::npos) << all;
  EXPECT_EQ(all.find("audit_trail"), std::string::npos) << "expand creates it";
  ASSERT_EQ(r.tasks.size(), 3u);
  EXPECT_EQ(r.tasks[0].key, "id bigint");
  EXPECT_EQ(r.tasks[0].time, "about 5s at 1000 rows/s (max_rows_per_second)");
  EXPECT_FALSE(r.tasks[1].exists);
}

TEST(Preflight, EstimatesTimeFromTheCapOrTheMeasuredRate) {
  EXPECT_EQ(EstimateTime(1000000, 20000, 0), "about 50s at 20000 rows/s (max_rows_per_second)");
  EXPECT_EQ(EstimateTime(6000000, 0, 50000),
            "about 2m at 50000 rows/s (the first batch's speed, one worker, before throttling)");
  EXPECT_NE(EstimateTime(100, 0, 0).find("--dry-run measures"), std::string::npos);
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(3ll << 30), "3.0 GiB");
}

TEST(Abort, IsAllowedUntilContractStarts) {
  for (PlanState s : {PlanState::kAccepted, PlanState::kExpanding, PlanState::kBackfilling,
                      PlanState::kGating}) {
    EXPECT_EQ(AbortRefusal(s, PlanState::kAccepted), "") << ToString(s);
    EXPECT_EQ(AbortRefusal(PlanState::kFailed, s), "") << "failed in " << ToString(s);
  }
  EXPECT_NE(AbortRefusal(PlanState::kContracting, PlanState::kAccepted).find("contract has started"),
            std::string::npos);
  EXPECT_NE(AbortRefusal(PlanState::kFailed, PlanState::kContracting).find("the plan failed in it"),
            std::string::npos);
  EXPECT_NE(AbortRefusal(PlanState::kDone, PlanState::kAccepted), "");
  EXPECT_NE(AbortRefusal(PlanState::kAborted, PlanState::kAccepted), "");
}

TEST(Abort, RunsTheRollbackStepsThenEnds) {
  Plan p = Parsed(kTypedPlan);
  PlanCursor c{PlanState::kAborting, 0, false};
  EXPECT_EQ(NextAction(p, c).kind, Action::Kind::kRunRollbackStep);
  c = AfterSuccess(p, c);
  EXPECT_EQ(NextAction(p, c).index, 1u);
  c = AfterSuccess(p, c);
  EXPECT_EQ(NextAction(p, c).kind, Action::Kind::kFinishAborted);
  c = AfterSuccess(p, c);
  EXPECT_EQ(c.state, PlanState::kAborted);
  EXPECT_TRUE(IsFinal(c.state));
  EXPECT_STREQ(PhaseOf(PlanState::kAborting), "rollback");
}

TEST(Preflight, RefusesKeysThatAreNotUniqueTablesWhoseRowSecurityHidesRowsAndNotValidForeignKeysOnPartitions) {
  const Plan p = Parsed(R"(plan: p
database: app
expand:
  - add_foreign_key: {table: events, columns: [parent_id], references: {table: parents, columns: [id]}}
backfill:
  - table: people
    key: k
    set: {b: a}
gates:
  - null_count: {table: people, column: b}
contract:
  - drop_column: {table: people, column: a}
)");
  CatalogFacts facts;
  TableFacts people;
  people.exists = true;
  people.key = {{"k", "integer"}};
  people.columns = {"k", "a", "b"};
  people.rls_enabled = people.rls_forced = true;
  people.role = "app_owner";
  people.role_is_owner = true;
  facts["people"] = people;
  TableFacts events;
  events.exists = true;
  events.columns = {"id", "parent_id"};
  events.partitioned = true;
  facts["events"] = events;
  TableFacts parents;
  parents.exists = true;
  parents.columns = {"id"};
  facts["parents"] = parents;
  const PreflightReport r = AssessPlan(p, facts, 0);
  std::string all;
  for (const auto& problem : r.problems) all += problem + "\n";
  EXPECT_NE(all.find("backfill people: the key (k) is not covered by a unique index"), std::string::npos) << all;
  EXPECT_NE(all.find("backfill people: `people` has row-level security enabled and forced, and tide's role `app_owner` owns it"),
            std::string::npos) << all;
  EXPECT_NE(all.find("gate 1: `people` has row-level security"), std::string::npos) << all;
  EXPECT_NE(all.find("`events` is partitioned"), std::string::npos) << all;

  // The owner without FORCE, or a role with BYPASSRLS, sees every row.
  facts["people"].rls_forced = false;
  facts["people"].key_unique = true;
  std::string owner_ok;
  for (const auto& problem : AssessPlan(p, facts, 0).problems) owner_ok += problem + "\n";
  EXPECT_EQ(owner_ok.find("people"), std::string::npos) << owner_ok;
  facts["people"].rls_forced = true;
  facts["people"].role_bypasses_rls = true;
  std::string bypass_ok;
  for (const auto& problem : AssessPlan(p, facts, 0).problems) bypass_ok += problem + "\n";
  EXPECT_EQ(bypass_ok.find("people"), std::string::npos) << bypass_ok;
}

}  // namespace
}  // namespace tide
