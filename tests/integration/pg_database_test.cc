// PgPlanDatabase against a real PostgreSQL 15: the tide schema, steps, batches, gates and how
// server errors are classified.
#include "pg/pg_database.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <pqxx/pqxx>
#include <thread>

#include "engine/backfill.h"
#include "engine/key_ranges.h"
#include "support/pg_cluster.h"
#include "support/process.h"

namespace tide {
namespace {

using testing::PgCluster;

class PgDatabaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_name_ = PgCluster::Shared().CreateDatabase("it");
    db_ = Open();
    ASSERT_TRUE(db_->EnsureSchema().ok());
  }

  std::unique_ptr<PgPlanDatabase> Open() {
    auto db = std::make_unique<PgPlanDatabase>(PgCluster::Shared().Dsn(db_name_), Defaults{});
    EXPECT_TRUE(db->Open().ok());
    return db;
  }

  void Exec(const std::string& sql) { PgCluster::Shared().Exec(db_name_, sql); }
  std::string Query(const std::string& sql) { return PgCluster::Shared().Query(db_name_, sql); }

  PlanRecord Record(const std::string& name) {
    PlanRecord r;
    r.name = name;
    r.checksum = "abc";
    r.file_name = name + ".yaml";
    r.source = "plan: " + name;
    r.submitted_by = "alice";
    return r;
  }

  // A table t(id, v, filled) with `rows` rows and a trigger that counts updates per row.
  void MakeCountedTable(const std::string& table, const std::string& key_type,
                        const std::string& key_expr, int rows) {
    Exec("CREATE TABLE " + table + " (id " + key_type + " PRIMARY KEY, v int NOT NULL, "
         "filled int, updates int NOT NULL DEFAULT 0)");
    Exec("CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS "
         "$$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$");
    Exec("CREATE TRIGGER counted BEFORE UPDATE ON " + table +
         " FOR EACH ROW EXECUTE FUNCTION count_updates()");
    Exec("INSERT INTO " + table + " (id, v) SELECT " + key_expr + ", g FROM generate_series(1, " +
         std::to_string(rows) + ") g");
    Exec("ANALYZE " + table);
  }

  // Runs the task's batches to the end of the pass, like the orchestrator does.
  TaskCheckpoint Backfill(const std::string& table, int64_t batch_size, int* batches = nullptr) {
    BackfillTask task;
    task.table = {"", table};
    task.set = {{"filled", "v * 2"}};
    auto info = db_->DescribeTable(task.table, {});
    EXPECT_TRUE(info.ok()) << info.status().ToString();
    auto ranges = db_->CreateRanges("p", 0, table, 1, {{{}, {}, RangeUnit::kKey, info->estimated_rows}});
    EXPECT_TRUE(ranges.ok()) << ranges.status().ToString();
    TaskCheckpoint at = ranges->at(0);
    BatchStatement stmt = MakeBatchStatement(task, info->key);
    int n = 0;
    while (!at.done && n < 100000) {
      auto b = db_->RunBatch("p", 0, stmt, at, batch_size, limits_);
      EXPECT_TRUE(b.ok()) << b.status().ToString();
      if (!b.ok()) break;
      at = AdvanceCheckpoint(at, *b, batch_size);
      ++n;
    }
    if (batches) *batches = n;
    return at;
  }

  // A raw `sql:` step, run as the orchestrator runs it.
  Status RunSql(const std::string& plan, const std::string& sql, const StatementLimits& limits,
                const PlanCursor& after) {
    Step step;
    step.sql = sql;
    return db_->RunStatements(plan, CompileStep(step), limits, after).status();
  }

  std::string db_name_;
  std::unique_ptr<PgPlanDatabase> db_;
  StatementLimits limits_{Millis(2000), Millis(30000)};
};

TEST_F(PgDatabaseTest, SchemaIsCreatedOnceAndSafeToEnsureConcurrently) {
  EXPECT_EQ(Query("SELECT max(version) FROM tide.schema_version"), "7");
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] { ok += Open()->EnsureSchema().ok(); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 4);
}

TEST_F(PgDatabaseTest, PlanRowsRoundTripAndAFailureKeepsWhereItStood) {
  ASSERT_TRUE(db_->InsertPlan(Record("p1")).ok());
  auto found = db_->FindPlan("p1");
  ASSERT_TRUE(found.ok() && found.value());
  EXPECT_EQ(found.value()->cursor.state, PlanState::kAccepted);
  EXPECT_EQ(found.value()->submitted_by, "alice");
  EXPECT_FALSE(found.value()->submitted_at.empty());

  ASSERT_TRUE(db_->SaveCursor("p1", {PlanState::kContracting, 1, true}).ok());
  ASSERT_TRUE(db_->SaveFailure("p1", {PlanState::kContracting, 2, true}, "boom").ok());
  auto r = *db_->FindPlan("p1").value();
  EXPECT_EQ(r.cursor.state, PlanState::kFailed);
  EXPECT_EQ(r.failed_in, PlanState::kContracting);
  EXPECT_EQ(r.cursor.step, 2);
  EXPECT_TRUE(r.cursor.catch_up);
  EXPECT_EQ(r.last_error, "boom");
  EXPECT_FALSE(r.finished_at.empty());
  EXPECT_FALSE(db_->FindPlan("nope").value().has_value());
  EXPECT_FALSE(db_->InsertPlan(Record("p1")).ok()) << "a plan name is unique per database";
}

TEST_F(PgDatabaseTest, AStepAndItsCursorCommitTogether) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  Exec("CREATE TABLE t (id int PRIMARY KEY)");
  Status s = RunSql("p", "ALTER TABLE t ADD COLUMN c text", limits_,
                          {PlanState::kExpanding, 1, false});
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Query("SELECT step FROM tide.plans WHERE name = 'p'"), "1");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'c'"), "1");

  // A failing step changes neither the schema nor the cursor, and says why.
  s = RunSql("p", "ALTER TABLE missing ADD COLUMN c int", limits_,
                   {PlanState::kExpanding, 2, false});
  EXPECT_EQ(s.code(), Status::Code::kFatal);
  EXPECT_EQ(s.sqlstate(), "42P01");
  EXPECT_NE(s.ToString().find("relation \"missing\" does not exist"), std::string::npos);
  EXPECT_EQ(Query("SELECT step FROM tide.plans WHERE name = 'p'"), "1");
}

TEST_F(PgDatabaseTest, ConcurrentIndexBuildsRunOutsideATransaction) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  Exec("CREATE TABLE t (id int PRIMARY KEY, c int)");
  Status s = RunSql("p", "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_c ON t (c)", limits_,
                          {PlanState::kExpanding, 1, false});
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_c'::regclass"), "t");
  EXPECT_EQ(Query("SELECT step FROM tide.plans WHERE name = 'p'"), "1");
  // The session's own timeouts are back to the defaults afterwards.
  auto v = db_->QueryNumber("SELECT setting::bigint FROM pg_settings WHERE name = 'lock_timeout'", limits_);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 2000);
}

TEST_F(PgDatabaseTest, AStepBlockedByALockGivesUpAfterLockTimeoutAsRetryable) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  Exec("CREATE TABLE t (id int PRIMARY KEY)");
  pqxx::connection blocker(PgCluster::Shared().Dsn(db_name_));
  pqxx::work hold(blocker);
  hold.exec0("LOCK TABLE t IN ACCESS SHARE MODE");
  const auto start = std::chrono::steady_clock::now();
  Status s = RunSql("p", "ALTER TABLE t ADD COLUMN c int", {Millis(300), Millis(30000)},
                          {PlanState::kExpanding, 1, false});
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), Status::Code::kRetryable) << s.ToString();
  EXPECT_EQ(s.sqlstate(), "55P03");
  EXPECT_LT(waited, std::chrono::seconds(5)) << "bounded by lock_timeout, not by the blocker";
  const int64_t blocker_pid = hold.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  EXPECT_NE(s.detail().find("\"pid\":" + std::to_string(blocker_pid)), std::string::npos) << s.detail();
  EXPECT_NE(s.detail().find("\"state\":\"idle in transaction\""), std::string::npos) << s.detail();
  hold.abort();
}

TEST_F(PgDatabaseTest, DescribesKeysOfEveryShape) {
  Exec("CREATE TABLE single (id bigint PRIMARY KEY, c int)");
  Exec("CREATE SCHEMA core");
  Exec("CREATE TABLE core.grades (survey_id int, \"studentId\" text, PRIMARY KEY (survey_id, \"studentId\"))");
  Exec("CREATE TABLE nokey (a int, b int)");
  auto single = db_->DescribeTable({"", "single"}, {});
  ASSERT_TRUE(single.ok());
  ASSERT_EQ(single->key.size(), 1u);
  EXPECT_EQ(single->key[0].name, "id");
  EXPECT_EQ(single->key[0].type, "bigint");
  auto composite = db_->DescribeTable({"core", "grades"}, {});
  ASSERT_EQ(composite->key.size(), 2u);
  EXPECT_EQ(composite->key[1].name, "studentId");
  EXPECT_EQ(composite->key[1].type, "text");
  auto nokey = db_->DescribeTable({"", "nokey"}, {});
  EXPECT_TRUE(nokey->exists);
  EXPECT_FALSE(nokey->has_primary_key);
  EXPECT_TRUE(nokey->key.empty());
  auto chosen = db_->DescribeTable({"", "nokey"}, {"b"});
  ASSERT_EQ(chosen->key.size(), 1u);
  EXPECT_EQ(chosen->key[0].type, "integer");
  EXPECT_FALSE(db_->DescribeTable({"", "nokey"}, {"zz"}).ok());
  EXPECT_FALSE(db_->DescribeTable({"", "missing"}, {})->exists);
}

TEST_F(PgDatabaseTest, HostileNamesStayNamesAndNeverRunAsSql) {
  Exec("CREATE TABLE users (id int PRIMARY KEY)");
  auto info = db_->DescribeTable({"", "users; DROP TABLE users; --"}, {});
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_FALSE(info->exists);
  EXPECT_EQ(Query("SELECT to_regclass('users') IS NOT NULL"), "t");
}

TEST_F(PgDatabaseTest, BackfillUpdatesEveryRowExactlyOnceAndCheckpointsEachBatch) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  MakeCountedTable("t", "bigint", "g", 10000);
  int batches = 0;
  TaskCheckpoint end = Backfill("t", 700, &batches);
  EXPECT_TRUE(end.done);
  EXPECT_EQ(end.rows_updated, 10000);
  EXPECT_EQ(batches, 15);  // 14 full batches and one short
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE filled = v * 2 AND updates = 1"), "10000");
  // The stored checkpoint is the one in memory.
  EXPECT_EQ(Query("SELECT rows_updated FROM tide.backfill WHERE plan = 'p'"), "10000");
  EXPECT_EQ(Query("SELECT last_key[1] FROM tide.backfill WHERE plan = 'p'"), "10000");
  EXPECT_EQ(Query("SELECT done FROM tide.backfill WHERE plan = 'p'"), "t");
}

TEST_F(PgDatabaseTest, ABatchRollsBackWhenItsCheckpointMovedUnderIt) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  MakeCountedTable("t", "int", "g", 100);
  BackfillTask task;
  task.table = {"", "t"};
  task.set = {{"filled", "v * 2"}};
  auto info = db_->DescribeTable(task.table, {});
  TaskCheckpoint stale = db_->CreateRanges("p", 0, "t", 1, {{{}, {}, RangeUnit::kKey, 100}})->at(0);
  BatchStatement stmt = MakeBatchStatement(task, info->key);
  ASSERT_TRUE(db_->RunBatch("p", 0, stmt, stale, 10, limits_).ok());
  // Running from the same (now stale) checkpoint again must not update rows twice.
  auto again = db_->RunBatch("p", 0, stmt, stale, 10, limits_);
  EXPECT_EQ(again.status().code(), Status::Code::kRetryable);
  EXPECT_EQ(Query("SELECT max(updates) FROM t"), "1");
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE filled IS NOT NULL"), "10");
}

TEST_F(PgDatabaseTest, TextSparseAndEmptyKeysAllFinish) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  MakeCountedTable("sparse", "bigint", "g * 1000000", 500);
  int batches = 0;
  EXPECT_EQ(Backfill("sparse", 100, &batches).rows_updated, 500);
  EXPECT_EQ(batches, 6) << "gaps in the key never produce empty batches: five full, one that finds the end";
  Exec("DROP TABLE sparse; DROP FUNCTION count_updates CASCADE");

  Exec("DELETE FROM tide.backfill");
  MakeCountedTable("texty", "text", "md5(g::text)", 1000);
  EXPECT_EQ(Backfill("texty", 64).rows_updated, 1000);
  EXPECT_EQ(Query("SELECT count(*) FROM texty WHERE updates = 1"), "1000");
  Exec("DROP TABLE texty; DROP FUNCTION count_updates CASCADE");

  Exec("DELETE FROM tide.backfill");
  MakeCountedTable("empty", "int", "g", 0);
  EXPECT_EQ(Backfill("empty", 100, &batches).rows_updated, 0);
  EXPECT_EQ(batches, 1) << "an empty table finishes with one statement";
}

TEST_F(PgDatabaseTest, ANewPassStartsFromTheFirstKeyAndOnlyTouchesRowsStillMatching) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  MakeCountedTable("t", "int", "g", 300);
  Backfill("t", 50);
  Exec("UPDATE t SET filled = NULL, updates = 0 WHERE id % 100 = 0");  // the application wrote NULLs
  TaskCheckpoint cp = db_->LoadRanges("p", 0, 2)->at(0);
  EXPECT_EQ(cp.pass, 2);
  EXPECT_TRUE(cp.last_key.empty());
  EXPECT_FALSE(cp.done);
  BackfillTask task;
  task.table = {"", "t"};
  task.set = {{"filled", "v * 2"}};
  auto info = db_->DescribeTable(task.table, {});
  auto b = db_->RunBatch("p", 0, MakeBatchStatement(task, info->key), cp, 1000, limits_);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->updated, 3);
  EXPECT_EQ(b->scanned, 300);
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE filled = v * 2"), "300");
}

TEST_F(PgDatabaseTest, RangesSplitTheKeysAndEachCheckpointsOnItsOwn) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  MakeCountedTable("t", "bigint", "g", 1000);
  auto bounds = db_->IntegerKeyBounds({"", "t"}, "id");
  ASSERT_TRUE(bounds.ok());
  EXPECT_EQ(bounds->first, 1);
  EXPECT_EQ(bounds->second, 1000);
  auto ranges = db_->CreateRanges("p", 0, "t", 1, {{{}, {"500"}, RangeUnit::kKey, 500}, {{"500"}, {}, RangeUnit::kKey, 500}});
  ASSERT_TRUE(ranges.ok());
  ASSERT_EQ(ranges->size(), 2u);
  // A second daemon asking to create ranges gets the stored ones.
  auto again = db_->CreateRanges("p", 0, "t", 1, {{{}, {}, RangeUnit::kKey, 1000}});
  ASSERT_EQ(again->size(), 2u);
  EXPECT_EQ(again->at(1).lower, std::vector<std::string>{"500"});

  BackfillTask task;
  task.table = {"", "t"};
  task.set = {{"filled", "v * 2"}};
  BatchStatement stmt = MakeBatchStatement(task, db_->DescribeTable(task.table, {})->key);
  auto second = db_->RunBatch("p", 0, stmt, ranges->at(1), 10000, limits_);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->scanned, 500);
  EXPECT_EQ(Query("SELECT min(id) FROM t WHERE filled IS NOT NULL"), "501");
  auto first = db_->RunBatch("p", 0, stmt, ranges->at(0), 10000, limits_);
  EXPECT_EQ(first->scanned, 500);
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE updates = 1"), "1000");
  auto stored = db_->LoadRanges("p", 0, 1);
  EXPECT_TRUE(stored->at(0).done);
  EXPECT_TRUE(stored->at(1).done);
  EXPECT_EQ(stored->at(0).last_key, std::vector<std::string>{"500"});
}

TEST_F(PgDatabaseTest, PageRangesFillEveryRowOnceAndTheTailFollowsTheTableToItsEnd) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  MakeCountedTable("t", "uuid", "gen_random_uuid()", 20000);
  BackfillTask task;
  task.table = {"", "t"};
  task.set = {{"filled", "v * 2"}};
  auto info = db_->DescribeTable(task.table, {});
  ASSERT_TRUE(info.ok());
  EXPECT_TRUE(info->plain_heap);
  EXPECT_GT(info->pages, 50);
  std::string error;
  ASSERT_TRUE(BatchesByPage(task, *info, true, &error));
  auto ranges = db_->CreateRanges("p", 0, "t", 1, SplitPages(info->pages, info->estimated_rows, 2));
  ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
  ASSERT_EQ(ranges->size(), 3u);
  EXPECT_EQ(ranges->at(2).unit, RangeUnit::kPage);
  BatchStatement stmt = MakeBatchStatement(task, info->key);
  stmt.plan = "p";
  stmt.rows_per_page = static_cast<double>(info->estimated_rows) / static_cast<double>(info->pages);
  // The first range, then rows written behind it and beyond the table's first end: an update
  // that moves a row of the second range, and new rows.
  auto run = [&](TaskCheckpoint at) {
    int n = 0;
    while (!at.done && n++ < 10000) {
      auto b = db_->RunBatch("p", 0, stmt, at, 700, limits_);
      EXPECT_TRUE(b.ok()) << b.status().ToString();
      if (!b.ok()) break;
      at = AdvanceCheckpoint(at, *b, 700);
    }
    return at;
  };
  run(ranges->at(0));
  Exec("CREATE TABLE moved AS SELECT id FROM t WHERE ctid >= '(" + ranges->at(1).lower[0] +
       ",0)' AND v % 10 = 0");
  Exec("UPDATE t SET v = v WHERE id IN (SELECT id FROM moved)");
  Exec("INSERT INTO t (id, v) SELECT gen_random_uuid(), g FROM generate_series(1, 500) g");
  run(ranges->at(1));
  TaskCheckpoint tail = run(ranges->at(2));
  EXPECT_TRUE(tail.done);
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE filled IS DISTINCT FROM v * 2"), "0");
  // The test's own UPDATE counts once for the rows it moved; tide's batches once for every row.
  EXPECT_NE(Query("SELECT count(*) FROM moved"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE updates <> 1 + (id IN (SELECT id FROM moved))::int"), "0");
  // A row no update can fill is rewritten once by its range, never again by the tail that
  // reads the version its range moved to the end.
  Exec("UPDATE t SET filled = NULL WHERE v = 13");
  const std::string before = Query("SELECT updates FROM t WHERE v = 13");
  BackfillTask orphan = task;
  orphan.set = {{"filled", "NULLIF(v, 13) * 2"}};
  BatchStatement orphan_stmt = MakeBatchStatement(orphan, info->key);
  orphan_stmt.plan = "p";
  orphan_stmt.rows_per_page = stmt.rows_per_page;
  TaskCheckpoint again = tail;
  again.done = false;
  again.last_key = {"0", "0"};
  for (int i = 0; i < 3 && !again.done; ++i) {
    auto b = db_->RunBatch("p", 0, orphan_stmt, again, 1000000, limits_);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    again = AdvanceCheckpoint(again, *b, 1000000);
  }
  EXPECT_EQ(Query("SELECT updates FROM t WHERE v = 13"), before)
      << "the open tail changes only what it fills";
  auto stored = db_->LoadRanges("p", 0, 1);
  ASSERT_TRUE(stored.ok());
  for (const auto& r : *stored) EXPECT_TRUE(r.done) << r.range;
  ASSERT_FALSE(stored->at(0).last_key.empty());
  EXPECT_EQ(stored->at(0).last_key[0], stored->at(0).upper.at(0)) << "a range ends at its last page";
}

TEST_F(PgDatabaseTest, AnOlderSchemaGetsTheRangeUnitAndItsRangesStayKeyRanges) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  Exec("ALTER TABLE tide.backfill DROP COLUMN unit");
  Exec("DELETE FROM tide.schema_version WHERE version >= 5");
  Exec("INSERT INTO tide.backfill (plan, task, table_name) VALUES ('p', 0, 't')");
  ASSERT_TRUE(db_->EnsureSchema().ok());
  auto stored = db_->LoadRanges("p", 0, 1);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  ASSERT_EQ(stored->size(), 1u);
  EXPECT_EQ(stored->at(0).unit, RangeUnit::kKey);
}

TEST_F(PgDatabaseTest, AVersion5SchemaGetsLiveSettingsAndTheCountOfEndedSessions) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  Exec("DROP TABLE tide.live_settings; ALTER TABLE tide.plans DROP COLUMN sessions_ended");
  Exec("DELETE FROM tide.schema_version WHERE version >= 6");
  ASSERT_TRUE(db_->EnsureSchema().ok());
  EXPECT_EQ(Query("SELECT max(version) FROM tide.schema_version"), "7");
  auto changed = db_->ChangeLiveSettings("p", "workers=2", "alice");
  ASSERT_TRUE(changed.ok()) << changed.status().ToString();
  EXPECT_TRUE(changed->has_value());
  EXPECT_EQ(*db_->SessionsEnded("p"), 0);
}

// A tide schema of version 6 (before the yield was kept): status reads it as not yielding, and
// the upgrade adds the columns.
TEST_F(PgDatabaseTest, AVersion6SchemaShowsItsTasksAndGetsTheYield) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  ASSERT_TRUE(db_->CreateRanges("p", 0, "public.t", 1, {RangeBounds{}}).ok());
  TaskLiveStatus live;
  live.rows_per_second = 100;
  live.yield_sessions = 3;
  live.yield_rest = 12;
  ASSERT_TRUE(db_->SaveTaskStatus("p", 0, live).ok());
  Exec("ALTER TABLE tide.task_status DROP COLUMN yield_sessions, DROP COLUMN yield_rest");
  Exec("DELETE FROM tide.schema_version WHERE version >= 7");
  auto before = db_->ListTaskProgress();
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  ASSERT_EQ(before->size(), 1u);
  EXPECT_EQ(before->at(0).yield_sessions, 0);
  EXPECT_EQ(before->at(0).rows_per_second, 100);
  ASSERT_TRUE(db_->EnsureSchema().ok());
  EXPECT_EQ(Query("SELECT max(version) FROM tide.schema_version"), "7");
  ASSERT_TRUE(db_->SaveTaskStatus("p", 0, live).ok());
  auto after = db_->ListTaskProgress();
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(after->at(0).yield_sessions, 3);
  EXPECT_EQ(after->at(0).yield_rest, 12);
}

TEST_F(PgDatabaseTest, UuidAndCompositeKeysSplitAtASampleAndEachRangeFillsItsShareOnce) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  MakeCountedTable("u", "uuid", "gen_random_uuid()", 50000);
  Exec("CREATE TABLE comp (tenant text, n int, v int NOT NULL, filled int, "
       "updates int NOT NULL DEFAULT 0, PRIMARY KEY (tenant, n))");
  Exec("CREATE TRIGGER counted BEFORE UPDATE ON comp FOR EACH ROW EXECUTE FUNCTION count_updates()");
  Exec("INSERT INTO comp (tenant, n, v) SELECT 'tenant-' || (g % 7), g, g "
       "FROM generate_series(1, 30000) g");
  Exec("ANALYZE comp");
  int task = 0;
  for (const std::string table : {"u", "comp"}) {
    SCOPED_TRACE(table);
    BackfillTask t;
    t.table = {"", table};
    t.set = {{"filled", "v * 2"}};
    auto info = db_->DescribeTable(t.table, {});
    ASSERT_TRUE(info.ok());
    auto sample = db_->SampleKeys(t.table, info->key,
                                  SamplePercent(info->estimated_rows, KeysToSample(2)));
    ASSERT_TRUE(sample.ok()) << sample.status().ToString();
    EXPECT_GT(sample->size(), 500u);
    EXPECT_LT(sample->size(), 20000u) << "a sample, not the table";
    const std::vector<KeyRange> split = SplitAtSamples(*sample, 2);
    ASSERT_EQ(split.size(), 2u);
    std::vector<RangeBounds> bounds;
    for (const auto& r : split) {
      bounds.push_back(RangeBounds{r.lower, r.upper, RangeUnit::kKey, info->estimated_rows / 2});
    }
    auto ranges = db_->CreateRanges("p", task, table, 1, bounds);
    ASSERT_TRUE(ranges.ok()) << ranges.status().ToString();
    const BatchStatement stmt = MakeBatchStatement(t, info->key);
    std::vector<int64_t> scanned;
    for (TaskCheckpoint at : *ranges) {
      for (int n = 0; !at.done && n < 1000; ++n) {
        auto b = db_->RunBatch("p", task, stmt, at, 4000, limits_);
        ASSERT_TRUE(b.ok()) << b.status().ToString();
        at = AdvanceCheckpoint(at, *b, 4000);
      }
      scanned.push_back(at.rows_scanned);
    }
    const int64_t rows = std::stoll(Query("SELECT count(*) FROM " + table));
    EXPECT_EQ(scanned[0] + scanned[1], rows) << "the ranges cover the table and never overlap";
    EXPECT_EQ(Query("SELECT count(*) FROM " + table + " WHERE updates = 1 AND filled = v * 2"),
              std::to_string(rows));
    // Balanced to within the sample's error, so two workers share the work.
    EXPECT_GT(scanned[0], rows * 35 / 100);
    EXPECT_GT(scanned[1], rows * 35 / 100);
    ++task;
  }
}

TEST_F(PgDatabaseTest, APartitionedTableNeverAnalyzedIsEstimatedAndSampledNotReadWhole) {
  Exec("CREATE TABLE pt (id uuid PRIMARY KEY, n int NOT NULL) PARTITION BY HASH (id)");
  Exec("CREATE TABLE pt0 PARTITION OF pt FOR VALUES WITH (modulus 2, remainder 0)");
  Exec("CREATE TABLE pt1 PARTITION OF pt FOR VALUES WITH (modulus 2, remainder 1)");
  Exec("INSERT INTO pt SELECT gen_random_uuid(), g FROM generate_series(1, 100000) g");
  auto info = db_->DescribeTable({"", "pt"}, {});
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_GT(info->estimated_rows, 10000) << "from the partitions' size, not the parent's empty row";
  const double percent = SamplePercent(info->estimated_rows, KeysToSample(2));
  EXPECT_LT(percent, 50);
  auto sample = db_->SampleKeys({"", "pt"}, info->key, percent);
  ASSERT_TRUE(sample.ok()) << sample.status().ToString();
  EXPECT_GT(sample->size(), 500u);
  EXPECT_LT(sample->size(), 50000u) << "a sample, not every key sorted";
  // uuid text (fixed-width lower-case hex) sorts like the uuid itself.
  EXPECT_TRUE(std::is_sorted(sample->begin(), sample->end())) << "in the key's order";
  EXPECT_EQ(SplitAtSamples(*sample, 2).size(), 2u);
}

TEST_F(PgDatabaseTest, ASweepFillsPendingRowsWhereverTheyAreAndNoRowTwice) {
  MakeCountedTable("t", "text", "md5(g::text)", 300);
  Exec("ALTER TABLE t DISABLE TRIGGER counted");
  Exec("UPDATE t SET filled = v * 2 WHERE v % 12 <> 0");  // 25 rows pending, spread over the keys
  Exec("ALTER TABLE t ENABLE TRIGGER counted");
  BackfillTask task;
  task.table = {"", "t"};
  task.set = {{"filled", "v * 2"}};
  const BatchStatement stmt = MakeBatchStatement(task, db_->DescribeTable(task.table, {})->key);
  std::vector<int64_t> found;
  for (int i = 0; i < 4; ++i) {
    auto b = db_->RunSweep(stmt, 10, limits_);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    EXPECT_EQ(b->updated, b->scanned);
    found.push_back(b->scanned);
  }
  EXPECT_EQ(found, (std::vector<int64_t>{10, 10, 5, 0}));
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE filled = v * 2"), "300");
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE updates = 1"), "25") << "only the pending rows";
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE updates > 1"), "0");
}

TEST_F(PgDatabaseTest, HealthReadingsComeFromTheServer) {
  auto pid = db_->BackendPid();
  ASSERT_TRUE(pid.ok());
  auto h = db_->ReadHealth({*pid}, "SELECT true", limits_);
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_GT(h->current_lsn, 0);
  EXPECT_FALSE(h->replay_lsn.has_value()) << "no standby";
  EXPECT_TRUE(h->throttle_query_true);
  // A session waiting on a lock this session holds counts as blocked by us.
  Exec("CREATE TABLE t (id int PRIMARY KEY)");
  auto holder = Open();
  const int64_t holder_pid = *holder->BackendPid();
  pqxx::connection hc(PgCluster::Shared().Dsn(db_name_));
  pqxx::work hold(hc);
  hold.exec0("LOCK TABLE t IN ACCESS EXCLUSIVE MODE");
  const int64_t lock_pid = hold.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  std::thread waiter([&] {
    try {
      PgCluster::Shared().Exec(db_name_, "SET lock_timeout = '3s'; SELECT count(*) FROM t");
    } catch (const std::exception&) {
    }
  });
  int64_t blocked = 0;
  for (int i = 0; i < 100 && blocked == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    blocked = db_->ReadHealth({lock_pid}, "", limits_)->blocked_by_us;
  }
  EXPECT_EQ(blocked, 1);
  EXPECT_EQ(db_->ReadHealth({holder_pid}, "", limits_)->blocked_by_us, 0);
  // The same question for one session (tide's VACUUM gives way when it is asked).
  EXPECT_EQ(*db_->QueryNumber(BlockedBySql(lock_pid), limits_), 1);
  EXPECT_EQ(*db_->QueryNumber(BlockedBySql(holder_pid), limits_), 0);
  hold.abort();
  waiter.join();
}

TEST_F(PgDatabaseTest, HealthSignalsReadTheRealThings) {
  Exec("CREATE TABLE t (id int PRIMARY KEY)");
  HealthQuestions q;
  q.our_pids = {*db_->BackendPid()};
  q.table = {"", "t"};
  q.autovacuum = q.archive = q.slots = q.xmin = q.checkpoints = true;
  auto before = db_->ReadHealth(q, limits_);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_FALSE(before->autovacuum);
  EXPECT_EQ(before->archive_backlog, 0) << "archive_mode is off";
  EXPECT_GE(before->checkpoints_requested, 0);

  // A long open transaction holding a snapshot: its age and its session.
  pqxx::connection oc(PgCluster::Shared().Dsn(db_name_));
  pqxx::transaction<pqxx::repeatable_read> old(oc);
  old.exec("SELECT count(*) FROM t");
  const int64_t old_pid = old.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  // An inactive slot that retains WAL.
  Exec("SELECT pg_create_physical_replication_slot('tide_health_test', true)");
  Exec("INSERT INTO t SELECT generate_series(1, 20000)");
  // A requested checkpoint.
  Exec("CHECKPOINT");
  auto after = db_->ReadHealth(q, limits_);
  Exec("SELECT pg_drop_replication_slot('tide_health_test')");
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_GE(after->xmin_age_ms, 1000);
  EXPECT_EQ(after->xmin_pid, old_pid);
  EXPECT_EQ(after->slot_name, "tide_health_test");
  EXPECT_FALSE(after->slot_active);
  EXPECT_GT(after->slot_retained_wal, 100000) << "the rows' WAL is held back by the slot";
  EXPECT_GT(after->checkpoints_requested, before->checkpoints_requested);
  old.abort();
  auto gone = db_->ReadHealth(q, limits_);
  ASSERT_TRUE(gone.ok());
  EXPECT_LT(gone->xmin_age_ms, 1000) << "the transaction ended";
  EXPECT_EQ(gone->slot_retained_wal, 0) << "the slot is gone";

  // A vacuum of the table, slowed down so that it is seen at work.
  Exec("UPDATE t SET id = id + 100000");
  pqxx::connection vc(PgCluster::Shared().Dsn(db_name_));
  const int64_t vacuum_pid = pqxx::nontransaction(vc).exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  std::thread vacuum([&] {
    try {
      pqxx::nontransaction n(vc);
      n.exec("SET vacuum_cost_delay = 100; SET vacuum_cost_limit = 1");
      n.exec("VACUUM t");  // alone: a VACUUM refuses to run in the implicit block of several
    } catch (const std::exception&) {
      // cancelled below
    }
  });
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto v = db_->ReadHealth(q, limits_);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    seen = v->autovacuum;
  }
  Exec("SELECT pg_cancel_backend(" + std::to_string(vacuum_pid) + ")");
  vacuum.join();
  EXPECT_TRUE(seen) << "a vacuum at work on the table holds the backfill";
}

TEST_F(PgDatabaseTest, TheSyncTriggerFillsNewAndUpdatedRowsWithTheSameExpressions) {
  Exec("CREATE TABLE offers (id int PRIMARY KEY, \"clinicId\" text)");
  Exec("INSERT INTO offers VALUES (1, 'c1'), (2, 'c2')");
  Exec("CREATE TABLE patient_offers (id int PRIMARY KEY, \"offerId\" int, \"clinicId\" text, note text)");
  Exec("INSERT INTO patient_offers VALUES (1, 1, NULL, NULL)");
  BackfillTask task;
  task.table = {"", "patient_offers"};
  task.set = {{"clinicId", "(SELECT o.\"clinicId\" FROM offers o WHERE o.id = patient_offers.\"offerId\")"}};
  const SyncTriggerSql sql = MakeSyncTrigger("p", 0, task);
  Status s = db_->Execute(sql.create, limits_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(db_->Execute(sql.create, limits_).ok()) << "installing it again is harmless";
  Exec("INSERT INTO patient_offers VALUES (2, 2, NULL, NULL), (3, 1, 'kept', NULL)");
  EXPECT_EQ(Query("SELECT \"clinicId\" FROM patient_offers WHERE id = 2"), "c2");
  EXPECT_EQ(Query("SELECT \"clinicId\" FROM patient_offers WHERE id = 3"), "kept");
  Exec("UPDATE patient_offers SET note = 'x' WHERE id = 1");
  EXPECT_EQ(Query("SELECT \"clinicId\" FROM patient_offers WHERE id = 1"), "c1");

  // With an explicit `where`, the row is filled when it matches, and bare column names work.
  Exec("CREATE TABLE grades (id int PRIMARY KEY, score numeric, max_score numeric, pct numeric)");
  BackfillTask g;
  g.table = {"", "grades"};
  g.set = {{"pct", "round(100 * score / max_score, 2)"}};
  g.where = "max_score > 0";
  ASSERT_TRUE(db_->Execute(MakeSyncTrigger("p", 1, g).create, limits_).ok());
  Exec("INSERT INTO grades VALUES (1, 5, 10, NULL), (2, 5, 0, NULL)");
  EXPECT_EQ(Query("SELECT pct FROM grades WHERE id = 1"), "50.00");
  EXPECT_EQ(Query("SELECT pct IS NULL FROM grades WHERE id = 2"), "t");

  ASSERT_TRUE(db_->Execute(sql.drop, limits_).ok());
  ASSERT_TRUE(db_->Execute(sql.drop, limits_).ok()) << "dropping it again is harmless";
  Exec("INSERT INTO patient_offers VALUES (4, 2, NULL, NULL)");
  EXPECT_EQ(Query("SELECT \"clinicId\" IS NULL FROM patient_offers WHERE id = 4"), "t");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_proc WHERE proname = '" + SyncTriggerName("p", 0) + "'"), "0");
}

TEST_F(PgDatabaseTest, GatesReturnOneNumberWithinTheirTimeout) {
  Exec("CREATE TABLE t (id int PRIMARY KEY, c int)");
  Exec("INSERT INTO t SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE g END FROM generate_series(1, 100) g");
  auto nulls = db_->QueryNumber(NullCountSql({"", "t"}, "c"), limits_);
  ASSERT_TRUE(nulls.ok());
  EXPECT_EQ(*nulls, 10);
  EXPECT_EQ(db_->QueryNumber("SELECT 1, 2", limits_).status().code(), Status::Code::kFatal);
  EXPECT_EQ(db_->QueryNumber("SELECT 'x'", limits_).status().code(), Status::Code::kFatal);
  auto slow = db_->QueryNumber("SELECT count(*) FROM pg_sleep(5)", {Millis(1000), Millis(200)});
  EXPECT_EQ(slow.status().sqlstate(), "57014");
  EXPECT_EQ(slow.status().code(), Status::Code::kRetryable);
  // A gate cannot write.
  auto write = db_->QueryNumber("WITH d AS (DELETE FROM t RETURNING 1) SELECT count(*) FROM d", limits_);
  EXPECT_EQ(write.status().sqlstate(), "25006");
  EXPECT_EQ(Query("SELECT count(*) FROM t"), "100");
}

TEST_F(PgDatabaseTest, ADeadlockIsRetryableWithItsSqlstate) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  pqxx::connection other(PgCluster::Shared().Dsn(db_name_));
  pqxx::work x(other);
  x.exec("SELECT pg_advisory_xact_lock(2)");
  // tide takes lock 1 and waits for 2; then the other session asks for 1: a deadlock, which
  // PostgreSQL breaks by cancelling tide's statement (it waited first).
  std::thread closer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    x.exec("SELECT pg_advisory_xact_lock(1)");
  });
  Status s = RunSql("p", "SELECT pg_advisory_xact_lock(1), pg_advisory_xact_lock(2)",
                    {Millis(5000), Millis(30000)}, {PlanState::kExpanding, 1, false});
  closer.join();
  x.abort();
  EXPECT_EQ(s.code(), Status::Code::kRetryable) << s.ToString();
  EXPECT_EQ(s.sqlstate(), "40P01") << s.ToString();
  EXPECT_EQ(Query("SELECT step FROM tide.plans WHERE name = 'p'"), "0");
}

TEST_F(PgDatabaseTest, APlanLeaseHasOneOwnerUntilItExpires) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  auto a = Open();
  auto b = Open();
  const Millis ttl(400);
  auto got = a->AcquireLease("p", "A", ttl);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got);
  EXPECT_FALSE(*b->AcquireLease("p", "B", ttl)) << "held by A";
  EXPECT_TRUE(*a->AcquireLease("p", "A", ttl)) << "A may take its own again";
  EXPECT_EQ(*a->RenewLeases("A", {"p", "q"}, ttl), std::vector<std::string>{"p"});
  EXPECT_TRUE(b->RenewLeases("B", {"p"}, ttl)->empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(600));  // A died: no renewal
  EXPECT_TRUE(*b->AcquireLease("p", "B", ttl)) << "expired, so B takes it over";
  EXPECT_TRUE(a->RenewLeases("A", {"p"}, ttl)->empty()) << "A learns it lost the plan";
  EXPECT_TRUE(b->ReleaseLease("p", "B").ok());
  EXPECT_TRUE(*a->AcquireLease("p", "A", ttl));
}

TEST_F(PgDatabaseTest, ReconnectsAfterTheSessionIsKilled) {
  const std::string pid = std::to_string(*db_->QueryNumber("SELECT pg_backend_pid()", limits_));
  Exec("SELECT pg_terminate_backend(" + pid + ")");
  auto lost = db_->QueryNumber("SELECT 1", limits_);
  EXPECT_EQ(lost.status().code(), Status::Code::kRetryable) << lost.status().ToString();
  auto back = db_->QueryNumber("SELECT 2", limits_);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, 2);
}

TEST(ResolveDsn, ReadsFileOrEnvironmentAndRefusesLooseFilePermissions) {
  const std::string dir = testing::MakeTempDir("tide-dsn");
  const std::string path = dir + "/app.dsn";
  testing::WriteAll(path, "host=x password=s3cret\n");
  ::chmod(path.c_str(), 0644);
  auto loose = ResolveDsn("app", DatabaseConfig{"", path, ""});
  ASSERT_FALSE(loose.ok());
  EXPECT_NE(loose.status().message().find("chmod 600"), std::string::npos);
  EXPECT_EQ(loose.status().message().find("s3cret"), std::string::npos);
  ::chmod(path.c_str(), 0600);
  EXPECT_EQ(*ResolveDsn("app", DatabaseConfig{"", path, ""}), "host=x password=s3cret");
  ::setenv("TIDE_TEST_DSN", "host=y", 1);
  EXPECT_EQ(*ResolveDsn("app", DatabaseConfig{"", "", "TIDE_TEST_DSN"}), "host=y");
  EXPECT_FALSE(ResolveDsn("app", DatabaseConfig{"", "", "TIDE_TEST_UNSET"}).ok());
  testing::Shell("rm -rf " + dir);
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {

TEST_F(PgDatabaseTest, LiveSettingsChangeOnTheStoredOnesOnlyForAnUnfinishedPlanAndGoWhenItStartsOver) {
  auto none = db_->ChangeLiveSettings("p", "workers=2", "alice");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->has_value()) << "no such plan here";
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  auto first = db_->ChangeLiveSettings("p", "max_rows_per_second=5000", "alice");
  ASSERT_TRUE(first.ok() && first->has_value()) << first.status().ToString();
  EXPECT_EQ((*first)->version, 1);
  // Two tided, or two requests: each change applies to what is stored, not to a stale copy.
  auto second = db_->ChangeLiveSettings("p", "workers=2", "bob");
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->settings, "max_rows_per_second=5000 workers=2");
  EXPECT_EQ((*second)->version, 2);
  auto listed = db_->ListLiveSettings();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->at(0).settings, "max_rows_per_second=5000 workers=2");
  EXPECT_EQ(listed->at(0).actor, "bob");
  EXPECT_EQ(listed->at(0).version, 2);
  EXPECT_FALSE(listed->at(0).at.empty());
  auto cleared = db_->ChangeLiveSettings("p", "max_rows_per_second=default", "carol");
  ASSERT_TRUE(cleared.ok() && cleared->has_value());
  EXPECT_EQ((*cleared)->settings, "workers=2");
  EXPECT_FALSE(db_->ChangeLiveSettings("p", "workers=lots", "carol").ok());
  // A plan that starts over (resubmitted after an abort) starts with its own settings.
  ASSERT_TRUE(db_->RestartPlan("p").ok());
  EXPECT_TRUE(db_->ListLiveSettings()->empty());
  ASSERT_TRUE(db_->ChangeLiveSettings("p", "workers=3", "dave").ok());
  ASSERT_TRUE(db_->SaveCursor("p", PlanCursor{PlanState::kDone, 0, false}).ok());
  EXPECT_TRUE(db_->ListLiveSettings()->empty()) << "a finished plan has none in force";
  auto finished = db_->ChangeLiveSettings("p", "workers=1", "erin");
  ASSERT_TRUE(finished.ok());
  EXPECT_FALSE(finished->has_value());
}

// A login role that is no superuser, for the application's sessions.
std::string AppRole(const std::string& db) {
  const std::string role = "it_app_" + std::to_string(::getpid());
  PgCluster::Shared().Exec(db, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '" + role +
                                   "') THEN CREATE ROLE " + role + " LOGIN; CREATE ROLE " + role +
                                   "_batch NOLOGIN; GRANT " + role + "_batch TO " + role +
                                   "; END IF; END $$");
  PgCluster::Shared().Exec(db, "GRANT ALL ON SCHEMA public TO " + role);
  return role;
}

TEST_F(PgDatabaseTest, ABlockingIdleTransactionIsDescribedAndTerminatedOnlyWhileItIsTheSameSession) {
  ASSERT_TRUE(db_->InsertPlan(Record("p")).ok());
  Exec("CREATE TABLE t (id int PRIMARY KEY)");
  const std::string role = AppRole(db_name_);
  Exec("GRANT SELECT ON t TO " + role);
  pqxx::connection app(PgCluster::Shared().Dsn(db_name_) + " user=" + role + " application_name=billing");
  pqxx::work idle(app);
  idle.exec("SELECT count(*) FROM t");
  const int64_t pid = idle.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  pqxx::connection root(PgCluster::Shared().Dsn(db_name_));
  pqxx::work root_idle(root);
  root_idle.exec("SELECT count(*) FROM t");
  const int64_t root_pid = root_idle.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));

  auto facts = db_->DescribeSessions({pid, root_pid, 999999}, {"replicator"});
  ASSERT_TRUE(facts.ok()) << facts.status().ToString();
  ASSERT_EQ(facts->size(), 2u) << "a pid with no session is left out";
  SessionFacts app_session, root_session;
  for (const auto& f : *facts) (f.pid == pid ? app_session : root_session) = f;
  EXPECT_EQ(app_session.user, role);
  EXPECT_EQ(app_session.application_name, "billing");
  EXPECT_EQ(app_session.backend_type, "client backend");
  EXPECT_EQ(app_session.state, "idle in transaction");
  EXPECT_FALSE(app_session.superuser);
  EXPECT_GE(app_session.state_age_ms, 250);
  EXPECT_GE(app_session.transaction_age_ms, 250);
  EXPECT_TRUE(root_session.superuser);
  EXPECT_FALSE(app_session.protected_role);
  auto grouped = db_->DescribeSessions({pid}, {"no_such_role", role + "_batch"});
  ASSERT_TRUE(grouped.ok()) << grouped.status().ToString();
  ASSERT_EQ(grouped->size(), 1u);
  EXPECT_TRUE(grouped->at(0).protected_role) << "a member of a role in `never` is protected too";

  // The transaction it was in when described ended and a new one began: not the one described.
  SessionFacts earlier = app_session;
  earlier.state_change = "2000-01-01 00:00:00+00";
  auto moved_on = db_->EndSession("p", earlier, true, 5);
  ASSERT_TRUE(moved_on.ok()) << moved_on.status().ToString();
  EXPECT_EQ(*moved_on, EndOutcome::kGone);

  SessionFacts stale = app_session;
  stale.backend_start = "2000-01-01 00:00:00+00";
  auto gone = db_->EndSession("p", stale, true, 5);
  ASSERT_TRUE(gone.ok()) << gone.status().ToString();
  EXPECT_EQ(*gone, EndOutcome::kGone) << "another session that got the pid is never touched";
  EXPECT_EQ(*db_->SessionsEnded("p"), 0);

  auto ended = db_->EndSession("p", app_session, true, 5);
  ASSERT_TRUE(ended.ok()) << ended.status().ToString();
  EXPECT_EQ(*ended, EndOutcome::kEnded);
  EXPECT_EQ(*db_->SessionsEnded("p"), 1);
  bool terminated = false;
  for (int i = 0; i < 100 && !terminated; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    terminated = Query("SELECT count(*) FROM pg_stat_activity WHERE pid = " + std::to_string(pid)) == "0";
  }
  EXPECT_TRUE(terminated);
  EXPECT_THROW(idle.exec("SELECT 1"), pqxx::broken_connection);

  auto spent = db_->EndSession("p", root_session, false, 1);
  ASSERT_TRUE(spent.ok());
  EXPECT_EQ(*spent, EndOutcome::kBudgetSpent) << "max_per_plan is counted in the database";
  EXPECT_NO_THROW(root_idle.exec("SELECT 1"));
}

TEST_F(PgDatabaseTest, DeadRowsAreReadAndAPlainVacuumReclaimsThemWithoutWaitingForALock) {
  Exec("CREATE TABLE t (id int PRIMARY KEY, v int)");
  Exec("INSERT INTO t SELECT g, g FROM generate_series(1, 30000) g");
  Exec("UPDATE t SET v = v + 1");
  Result<DeadTuples> dead = Status::Fatal("not read");
  for (int i = 0; i < 100; ++i) {  // statistics arrive within a second or so
    dead = db_->ReadDeadTuples({"", "t"});
    ASSERT_TRUE(dead.ok()) << dead.status().ToString();
    if (dead->dead >= 30000) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GE(dead->dead, 30000);
  EXPECT_GE(dead->live, 30000);
  EXPECT_FALSE(dead->vacuum_running);

  // DDL in flight holds the lock a VACUUM needs: it is skipped at once, never queued.
  pqxx::connection ddl(PgCluster::Shared().Dsn(db_name_));
  pqxx::work holding(ddl);
  holding.exec("LOCK TABLE t IN SHARE UPDATE EXCLUSIVE MODE");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(db_->Vacuum({"", "t"}, StatementLimits{Millis(2000), Millis(30000)}, Millis(2)).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
  holding.abort();

  ASSERT_TRUE(db_->Vacuum({"", "t"}, StatementLimits{Millis(2000), Millis(30000)}, Millis(0)).ok());
  auto after = db_->ReadDeadTuples({"", "t"});
  ASSERT_TRUE(after.ok());
  EXPECT_LT(after->dead, 1000) << "the vacuum reclaimed the dead rows";
}

TEST_F(PgDatabaseTest, VerificationFindsARowWrittenBehindTheExpressionsBack) {
  MakeCountedTable("t", "int", "g", 1000);
  Exec("UPDATE t SET filled = v * 2");
  Exec("UPDATE t SET filled = 0 WHERE id IN (17, 733)");
  BackfillTask task;
  task.table = {"", "t"};
  task.set = {{"filled", "v * 2"}};
  auto info = db_->DescribeTable(task.table, {});
  ASSERT_TRUE(info.ok());
  const BatchStatement stmt = MakeBatchStatement(task, info->key, info->column_types);
  std::vector<std::string> after;
  int64_t scanned = 0, differing = 0, batches = 0;
  std::vector<std::string> keys;
  while (true) {
    auto b = db_->RunVerify(stmt, after, 300, limits_);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    ++batches;
    scanned += b->scanned;
    differing += b->differing;
    keys.insert(keys.end(), b->differing_keys.begin(), b->differing_keys.end());
    if (b->scanned < 300) break;
    after = b->last_key;
  }
  EXPECT_EQ(scanned, 1000);
  EXPECT_EQ(batches, 4);
  EXPECT_EQ(differing, 2);
  EXPECT_EQ(keys, (std::vector<std::string>{"17", "733"}));
  EXPECT_EQ(Query("SELECT max(updates) FROM t"), "2") << "a verification writes nothing";
}

}  // namespace
}  // namespace tide
