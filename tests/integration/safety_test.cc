// The safety defects of PgPlanDatabase against a real PostgreSQL 15, each as a regression test:
// row-level security, rows no update can fill, sync triggers of plans with similar names, names
// that clash with the user's objects, keys that are not unique, row data in error messages, a
// throttle_query that does not return one boolean, and leases of a dead earlier process.
#include <gtest/gtest.h>

#include <pqxx/pqxx>
#include <string>

#include "engine/backfill.h"
#include "engine/operations.h"
#include "pg/pg_database.h"
#include "plan/plan_parser.h"
#include "support/pg_cluster.h"

namespace tide {
namespace {

using testing::PgCluster;

class PgSafetyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_name_ = PgCluster::Shared().CreateDatabase("safety");
    db_ = Open(PgCluster::Shared().Dsn(db_name_));
    ASSERT_TRUE(db_->EnsureSchema().ok());
    ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  }

  static PlanRecord Record(const std::string& name) {
    PlanRecord r;
    r.name = name;
    r.checksum = "x";
    r.file_name = name + ".yaml";
    r.source = "plan: " + name;
    return r;
  }

  std::unique_ptr<PgPlanDatabase> Open(const std::string& dsn) {
    auto db = std::make_unique<PgPlanDatabase>(dsn, Defaults{});
    Status s = db->Open();
    EXPECT_TRUE(s.ok()) << s.ToString();
    return db;
  }

  void Exec(const std::string& sql) { PgCluster::Shared().Exec(db_name_, sql); }
  std::string Query(const std::string& sql) { return PgCluster::Shared().Query(db_name_, sql); }

  Plan Parse(const std::string& text) {
    auto r = ParsePlan(text, "p.yaml");
    EXPECT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
    return r.plan;
  }

  std::string Problems(const Plan& plan, PlanDatabase* db = nullptr) {
    auto report = (db ? db : db_.get())->Preflight(plan, false, limits_);
    EXPECT_TRUE(report.ok()) << report.status().ToString();
    std::string out;
    for (const auto& p : report->problems) out += p + "\n";
    return out;
  }

  // A role that owns table `people` with forced row-level security on app.tenant, and a
  // session of tide's as that role.
  std::unique_ptr<PgPlanDatabase> ForcedRlsTable() {
    const std::string role = "owner_" + db_name_;
    Exec("CREATE ROLE " + role + " LOGIN");
    Exec("GRANT ALL ON DATABASE " + db_name_ + " TO " + role);
    Exec("GRANT ALL ON SCHEMA public TO " + role);
    Exec("CREATE TABLE people (id int PRIMARY KEY, tenant text NOT NULL, old_name text, new_name text)");
    Exec("INSERT INTO people SELECT g, 't' || (g % 10), 'name ' || g, NULL FROM generate_series(1, 1000) g");
    Exec("ALTER TABLE people OWNER TO " + role);
    Exec("ALTER TABLE people ENABLE ROW LEVEL SECURITY");
    Exec("ALTER TABLE people FORCE ROW LEVEL SECURITY");
    Exec("CREATE POLICY tenant ON people USING (tenant = current_setting('app.tenant', true))");
    Exec("GRANT ALL ON SCHEMA tide TO " + role);
    Exec("GRANT ALL ON ALL TABLES IN SCHEMA tide TO " + role);
    std::string dsn = PgCluster::Shared().Dsn(db_name_);
    const size_t user = dsn.find("user=");
    if (user != std::string::npos) dsn = dsn.substr(0, user);
    return Open(dsn + " user=" + role);
  }

  std::string db_name_;
  std::unique_ptr<PgPlanDatabase> db_;
  StatementLimits limits_{Millis(2000), Millis(30000)};
};

const char* kRlsPlan = R"(plan: rename_people
database: app
backfill:
  - table: people
    set: {new_name: old_name}
gates:
  - null_count: {table: people, column: new_name}
contract:
  - drop_column: {table: people, column: old_name}
)";

TEST_F(PgSafetyTest, ATableWithForcedRowLevelSecurityIsRefusedAtPreflightNamingIt) {
  auto owner = ForcedRlsTable();
  const std::string problems = Problems(Parse(kRlsPlan), owner.get());
  EXPECT_NE(problems.find("row-level security"), std::string::npos) << problems;
  EXPECT_NE(problems.find("forced"), std::string::npos) << problems;
  EXPECT_NE(problems.find("BYPASSRLS"), std::string::npos) << problems;
  EXPECT_NE(problems.find("gate 1"), std::string::npos) << "the gate would count only visible rows";
}

TEST_F(PgSafetyTest, ARoleThatCannotSeeOtherSessionsCannotRunABackfill) {
  auto owner = ForcedRlsTable();
  const std::string problems = Problems(Parse(kRlsPlan), owner.get());
  EXPECT_NE(problems.find("GRANT pg_monitor TO"), std::string::npos) << problems;
}

TEST_F(PgSafetyTest, TideSessionsNeverSeeASubsetOfATableTheyCannotSeeWhole) {
  auto owner = ForcedRlsTable();
  // A gate that would read 0 NULLs through the policy fails instead.
  auto nulls = owner->QueryNumber("SELECT count(*) FROM people WHERE new_name IS NULL", limits_);
  ASSERT_FALSE(nulls.ok()) << "counted " << *nulls << " rows through the policy";
  EXPECT_NE(nulls.status().ToString().find("row-level security"), std::string::npos)
      << nulls.status().ToString();
  // So does a batch, instead of updating 0 rows.
  BackfillTask task;
  task.table = {"", "people"};
  task.set = {{"new_name", "old_name"}};
  auto ranges = owner->CreateRanges("p", 0, "people", 1, {{{}, {}, RangeUnit::kKey, 1000}});
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  auto b = owner->RunBatch("p", 0, MakeBatchStatement(task, {{"id", "integer"}}), ranges->at(0),
                           100, limits_);
  EXPECT_FALSE(b.ok()) << "a batch updated " << b->updated << " rows through the policy";
  EXPECT_EQ(Query("SELECT count(*) FROM people WHERE new_name IS NULL"), "1000");
}

TEST_F(PgSafetyTest, RowsWhoseExpressionYieldsNullAreCountedAndNeverRewrittenAgain) {
  Exec("CREATE TABLE offers (id int PRIMARY KEY, clinic text NOT NULL)");
  Exec("INSERT INTO offers SELECT g, 'c' || g FROM generate_series(1, 100) g");
  Exec("CREATE TABLE po (id int PRIMARY KEY, offer_id int, clinic text)");
  // 1 row in 10 has no offer: an orphan.
  Exec("INSERT INTO po SELECT g, CASE WHEN g % 10 = 0 THEN 1000 + g ELSE 1 + g % 100 END, NULL "
       "FROM generate_series(1, 2000) g");
  BackfillTask task;
  task.table = {"", "po"};
  task.set = {{"clinic", "(SELECT o.clinic FROM offers o WHERE o.id = po.offer_id)"}};
  const BatchStatement stmt = MakeBatchStatement(task, {{"id", "integer"}});
  auto ranges = db_->CreateRanges("p", 0, "po", 1, {{{}, {}, RangeUnit::kKey, 2000}});
  ASSERT_TRUE(ranges.ok());
  TaskCheckpoint at = ranges->at(0);
  int64_t filled = 0;
  while (!at.done) {
    auto b = db_->RunBatch("p", 0, stmt, at, 100, limits_);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    filled += b->updated;
    at = AdvanceCheckpoint(at, *b, 100);
  }
  EXPECT_EQ(filled, 1800) << "rows changed, not rows found";
  const std::string updates_after_pass =
      Query("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'po'");
  // Sweeps while the gates wait find nothing to do, however often they run.
  for (int i = 0; i < 20; ++i) {
    auto b = db_->RunSweep(stmt, 100, limits_);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(b->scanned, 0) << "sweep " << i;
    EXPECT_EQ(b->updated, 0);
  }
  auto unfillable = db_->CountUnfillable(stmt, limits_);
  ASSERT_TRUE(unfillable.ok()) << unfillable.status().ToString();
  EXPECT_EQ(unfillable->rows, 200);
  EXPECT_EQ(unfillable->keys, "{10,20,30,40,50}");
  Exec("SELECT pg_stat_force_next_flush()");
  EXPECT_EQ(Query("SELECT count(*) FROM po WHERE clinic IS NULL"), "200");
  (void)updates_after_pass;
  EXPECT_LE(std::stoll(Query("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'po'")), 2000)
      << "the sweeps rewrote unfillable rows";
}

TEST_F(PgSafetyTest, SyncTriggersOfPlansWhoseNamesShareAPrefixDoNotCollide) {
  Exec("CREATE TABLE ca (id int PRIMARY KEY, x int, y int)");
  Exec("CREATE TABLE cb (id int PRIMARY KEY, x int, z int)");
  BackfillTask a, b;
  a.table = {"", "ca"};
  a.set = {{"y", "x + 1"}};
  b.table = {"", "cb"};
  b.set = {{"z", "x + 2"}};
  Status s = db_->Execute(
      MakeSyncTrigger("backfill_patient_offers_clinic_identifier_2024_06_01_a", 0, a).create, limits_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  s = db_->Execute(
      MakeSyncTrigger("backfill_patient_offers_clinic_identifier_2024_06_01_b", 0, b).create, limits_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  Exec("INSERT INTO ca (id, x) VALUES (1, 10)");
  Exec("INSERT INTO cb (id, x) VALUES (1, 10)");
  EXPECT_EQ(Query("SELECT y FROM ca"), "11");
  EXPECT_EQ(Query("SELECT z FROM cb"), "12");
}

TEST_F(PgSafetyTest, ASyncTriggerNameThatIsSomeoneElsesIsRefusedNotReplaced) {
  Exec("CREATE TABLE ca (id int PRIMARY KEY, x int, y int)");
  BackfillTask a;
  a.table = {"", "ca"};
  a.set = {{"y", "x + 1"}};
  const std::string name = SyncTriggerName("p", 0);
  Exec("CREATE FUNCTION tide.\"" + name + "\"() RETURNS trigger LANGUAGE plpgsql AS "
       "$$ BEGIN RETURN NEW; END $$");
  Status s = db_->Execute(MakeSyncTrigger("p", 0, a).create, limits_);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("is not this task's"), std::string::npos) << s.ToString();
}

TEST_F(PgSafetyTest, AConstraintNameTideWouldMakeUpThatIsTakenIsRefused) {
  Exec("CREATE TABLE t (id int PRIMARY KEY, c int)");
  // The user's own, which also says NOT NULL: taken for tide's, it would be validated, then
  // dropped, and `c > 0` lost.
  Exec("ALTER TABLE t ADD CONSTRAINT t_c_not_null CHECK (c IS NOT NULL AND c > 0) NOT VALID");
  const Plan plan = Parse(R"(plan: p
database: app
gates:
  - null_count: {table: t, column: c}
contract:
  - set_not_null: {table: t, column: c}
)");
  auto r = db_->RunStatements("p", CompileStep(plan.contract[0]), limits_, std::nullopt);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().ToString().find("already exists on t"), std::string::npos) << r.status().ToString();
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 't_c_not_null'"), "1")
      << "the user's constraint is left alone";
  // Nor is it removed as a leftover of tide's gates.
  auto removed = db_->RunStatements("p", GateCheckRemovals(plan), limits_, std::nullopt);
  ASSERT_TRUE(removed.ok()) << removed.status().ToString();
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 't_c_not_null'"), "1");
  // tide's own check is recognised as its own, NOT VALID or not.
  Exec("ALTER TABLE t DROP CONSTRAINT t_c_not_null");
  Exec("ALTER TABLE t ADD CONSTRAINT t_c_not_null CHECK (c IS NOT NULL) NOT VALID");
  r = db_->RunStatements("p", CompileStep(plan.contract[0]), limits_, std::nullopt);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE((*r)[0].skipped) << "the check already in place is tide's";
}

TEST_F(PgSafetyTest, AKeyThatIsNotUniqueOrHasNullsIsRefusedAtPreflight) {
  Exec("CREATE TABLE k (k int, v int, w int)");
  Exec("INSERT INTO k SELECT CASE WHEN g % 7 = 0 THEN NULL ELSE g % 50 END, g, NULL "
       "FROM generate_series(1, 700) g");
  const std::string problems = Problems(Parse(R"(plan: p
database: app
backfill:
  - table: k
    key: k
    set: {w: v}
)"));
  EXPECT_NE(problems.find("not covered by a unique index on NOT NULL columns"), std::string::npos)
      << problems;
  Exec("CREATE TABLE u (k int NOT NULL, v int, w int)");
  Exec("CREATE UNIQUE INDEX ON u (k)");
  EXPECT_EQ(Problems(Parse(R"(plan: p
database: app
backfill:
  - table: u
    key: k
    set: {w: v}
)")), "") << "a unique key on a NOT NULL column is fine";
}

TEST_F(PgSafetyTest, AForeignKeyOnAPartitionedTableIsRefusedAtPreflight) {
  Exec("CREATE TABLE parent (id int PRIMARY KEY)");
  Exec("CREATE TABLE events (id int, parent_id int, at date) PARTITION BY RANGE (at)");
  Exec("CREATE TABLE events_default PARTITION OF events DEFAULT");
  const std::string problems = Problems(Parse(R"(plan: p
database: app
expand:
  - add_foreign_key: {table: events, columns: [parent_id], references: {table: parent, columns: [id]}}
)"));
  EXPECT_NE(problems.find("is partitioned"), std::string::npos) << problems;
}

TEST_F(PgSafetyTest, ErrorsCarryNoRowData) {
  Exec("CREATE TABLE secrets (id int PRIMARY KEY, ssn text CHECK (ssn LIKE '___-__-____'))");
  Status s = db_->Execute("INSERT INTO secrets VALUES (1, 'alice 123456789')", limits_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.sqlstate(), "23514");
  EXPECT_EQ(s.ToString().find("123456789"), std::string::npos) << s.ToString();
  EXPECT_EQ(s.ToString().find("Failing row"), std::string::npos) << s.ToString();
  Exec("INSERT INTO secrets VALUES (2, '123-45-6789')");
  s = db_->Execute("INSERT INTO secrets VALUES (2, '987-65-4321')", limits_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.ToString().find("(id)=(2)"), std::string::npos) << s.ToString();
}

TEST_F(PgSafetyTest, AThrottleQueryMustReturnOneBoolean) {
  auto pid = db_->BackendPid();
  ASSERT_TRUE(pid.ok());
  EXPECT_TRUE(db_->ReadHealth({*pid}, "SELECT false", limits_).ok());
  for (const char* bad : {"SELECT 'yes'", "SELECT 1/0 = 1", "SELECT true, false",
                          "SELECT true FROM generate_series(1, 2)", "SELECT NULL::boolean"}) {
    auto h = db_->ReadHealth({*pid}, bad, limits_);
    EXPECT_FALSE(h.ok()) << bad << " was taken as a reading";
  }
  Exec("CREATE TABLE t (id int PRIMARY KEY, c int)");
  const std::string problems = Problems(Parse(R"(plan: p
database: app
settings: {throttle_query: "SELECT 'no'"}
backfill:
  - table: t
    set: {c: id}
)"));
  EXPECT_NE(problems.find("throttle_query"), std::string::npos) << problems;
}

TEST_F(PgSafetyTest, LeasesOfADeadEarlierProcessOfTheSameSpoolAreReclaimed) {
  ASSERT_TRUE(db_->InsertPlan(Record("a")).ok());
  ASSERT_TRUE(db_->AcquireLease("a", "host:/spool:100", Millis(60000)).value());
  EXPECT_FALSE(db_->AcquireLease("a", "host:/spool:200", Millis(60000)).value());
  auto n = db_->ReclaimLeases("host:/spool", "host:/spool:200");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 1);
  EXPECT_TRUE(db_->AcquireLease("a", "host:/spool:200", Millis(60000)).value());
  EXPECT_FALSE(db_->AcquireLease("a", "host:/spool2:300", Millis(60000)).value())
      << "another spool's daemon still waits for the lease to expire";
}

}  // namespace
}  // namespace tide
