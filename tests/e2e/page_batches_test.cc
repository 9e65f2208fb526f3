// Backfills by page (TID range scans) on tables whose key is random (uuid) and whose heap is not
// in key order, with the application updating rows under the scan, so that rows move to pages
// the scan has passed or not reached yet: every row is filled, and updated by tide exactly
// once, through kill -9 too.
#include <signal.h>

#include <random>

#include "e2e/application_fixture.h"

namespace tide {
namespace {

// 20,000 rows keyed by a uuid, written to the heap in an order unrelated to the key; `n` is the
// application's handle on a row (1..20,000). tide_updates counts the updates made by tide's
// batches and sweeps (they set tide.backfill), not the application's.
std::string ShuffledUuidTable(int rows) {
  return R"SQL(
CREATE TABLE t (id uuid PRIMARY KEY, n bigint NOT NULL UNIQUE, k int NOT NULL, a text,
                tide_updates int NOT NULL DEFAULT 0);
INSERT INTO t (id, n, k, a)
  SELECT md5(g::text)::uuid, g, g % 1000, 'a' || g FROM generate_series(1, )SQL" +
         std::to_string(rows) + R"SQL() g ORDER BY md5('heap' || g);
)SQL" + std::string(kCountTideUpdatesOnT) + R"SQL(ANALYZE;
)SQL";
}

AppStatements OldApp() {
  return {"INSERT INTO t (id, n, k, a) VALUES (md5({id}::text)::uuid, {id}, {id} % 1000, 'a' || {id})",
          "UPDATE t SET a = 'u' || {v} WHERE n = {row}",
          "DELETE FROM t WHERE n = {own}",
          "SELECT * FROM t WHERE n = {row}"};
}

class PageBatchTest : public ApplicationTest {};

// A scenario on ShuffledUuidTable(20000) that fills b with `expression` by two workers in small
// batches, with `task` lines added to the backfill task and `gate` as the plan's gate. The
// application runs OldApp in both versions, the new one inserting `inserted` (the expression's
// value for row {id}) into b itself.
Scenario UuidScenario(const std::string& name, const std::string& expression,
                      const std::string& inserted, const std::string& task,
                      const std::string& gate) {
  Scenario s;
  s.schema = ShuffledUuidTable(20000) + kAppVersion;
  s.plan_name = name;
  s.plan = WithTestSettings("plan: " + name + R"(
database: app
expand:
  - add_column: {table: t, column: b, type: text}
backfill:
  - table: t
    set: {b: ")" + expression + R"("}
)" + task + R"(    workers: 2
    batch_size: 300
    max_batch_size: 600
    pause_between_batches: 20ms
gates:
  - )" + gate + "\n");
  s.old_version = OldApp();
  s.new_version = OldApp();
  s.new_version.insert =
      "INSERT INTO t (id, n, k, a, b) VALUES (md5({id}::text)::uuid, {id}, {id} % 1000, "
      "'a' || {id}, " + inserted + ")";
  return s;
}

// Without a sync trigger the old version's updates move rows while the passes run (to the
// table's end, or to room on a page the scan has passed) and its inserts land anywhere in the
// key's order: the open page tail and the catch-up fill them, and no row is taken twice.
TEST_F(PageBatchTest, EveryRowIsFilledOnceWhileTheApplicationMovesRowsUnderTheScan) {
  Scenario s = UuidScenario("uuid_pages", "'k' || k", "'k' || ({id} % 1000)", "",
                            "null_count: {table: t, column: b}");
  s.checks = {"SELECT count(*) FROM t WHERE b IS DISTINCT FROM 'k' || k",
              "SELECT count(*) FROM t WHERE tide_updates > 1",
              // Every row the old version knew was filled by tide (the new one writes b itself).
              "SELECT count(*) FROM t WHERE n <= 20000 AND tide_updates <> 1"};
  RunScenario(s);
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"batch_by\":\"pages\""), std::string::npos)
      << "an ordinary table goes by page";
}

// Share batches, where the old version changes rows' keys under the scan (a row can change
// share) and the expression yields NULL for some rows (such a row stays pending, and its own
// update can move it ahead of its share): every row is right, and no row is taken by tide's
// batches twice.
TEST_F(PageBatchTest, SharesSurviveKeysChangedUnderTheScanAndRowsThatStayNull) {
  Scenario s = UuidScenario(
      "uuid_shares", "CASE WHEN k % 7 = 0 THEN NULL ELSE 'k' || k END",
      "CASE WHEN {id} % 1000 % 7 = 0 THEN NULL ELSE 'k' || ({id} % 1000) END",
      "    sync_trigger: true\n",
      "sql: \"SELECT count(*) FROM t WHERE b IS NULL AND k % 7 <> 0\"\n    expect: 0");
  s.old_version.update = "UPDATE t SET id = gen_random_uuid(), a = 'u' || {v} WHERE n = {row}";
  s.new_version.update = s.old_version.update;
  s.checks = {"SELECT count(*) FROM t WHERE b IS DISTINCT FROM (CASE WHEN k % 7 = 0 THEN NULL ELSE 'k' || k END)",
              "SELECT count(*) FROM t WHERE tide_updates > 1"};
  RunScenario(s);
  EXPECT_NE(ReadAll(dir_ + "/audit.jsonl").find("\"batch_by\":\"pages\""), std::string::npos);
  EXPECT_EQ(Query("SELECT count(*) FROM tide.backfill WHERE plan = 'uuid_shares' AND "
                  "cardinality(last_key) > 2"),
            Query("SELECT count(*) - 1 FROM tide.backfill WHERE plan = 'uuid_shares'"))
      << "every closed range went by shares";
}

// `batch_by: key` keeps the key's order on the same table.
TEST_F(PageBatchTest, BatchByKeyWalksTheKeysInstead) {
  PgCluster::Shared().Exec(db_, ShuffledUuidTable(5000) + "ALTER TABLE t ADD COLUMN b text;");
  StartDaemon();
  const std::string plan = WritePlan("by_key.yaml", R"(plan: by_key
database: app
backfill:
  - table: t
    set: {b: "'k' || k"}
    batch_by: key
    workers: 2
gates:
  - null_count: {table: t, column: b}
)");
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("by_key") == "done"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE tide_updates <> 1 OR b IS DISTINCT FROM 'k' || k"), "0");
  EXPECT_EQ(Query("SELECT string_agg(DISTINCT unit, ',') FROM tide.backfill WHERE plan = 'by_key'"), "key");
}

// kill -9 of tided again and again while it backfills by page: each batch's rows and its page
// checkpoint commit together, so a restart neither skips a page nor updates a row twice.
TEST_F(PageBatchTest, SigkillDuringPageBatchesNeitherSkipsNorRepeatsARow) {
  PgCluster::Shared().Exec(db_, ShuffledUuidTable(60000));
  const std::string plan = WritePlan("pages_kill.yaml", R"(plan: pages_kill
database: app
expand:
  - add_column: {table: t, column: b, type: text}
backfill:
  - table: t
    set: {b: "'k' || k"}
    workers: 2
    batch_size: 500
    max_batch_size: 1000
    max_rows_per_second: 8000
gates:
  - null_count: {table: t, column: b}
)");
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  // About 7 s of batches: a kill at a random instant every 0.2-0.9 s of them.
  std::mt19937 rng(20261203);
  int kills = 0;
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(WaitFor([&] {
      const std::string state = PlanState("pages_kill");
      return state == "backfilling" || state == "gating" || state == "done";
    }, 30s));
    if (PlanState("pages_kill") != "backfilling") {
      std::cerr << "stopped killing in state " << PlanState("pages_kill") << "\n";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(200, 900)(rng)));
    daemon_->Signal(SIGKILL);
    daemon_->Wait(10s);
    ++kills;
    StartDaemon();
  }
  EXPECT_GE(kills, 4) << "the backfill ended before it could be interrupted";
  ASSERT_TRUE(WaitFor([&] { return PlanState("pages_kill") == "done"; }, 120s))
      << PlanState("pages_kill") << "\n" << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE b IS DISTINCT FROM 'k' || k"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE tide_updates <> 1"), "0")
      << "a committed batch was redone or a row skipped";
  EXPECT_EQ(Query("SELECT string_agg(DISTINCT unit, ',') FROM tide.backfill WHERE plan = 'pages_kill'"), "page");
  EXPECT_EQ(Query("SELECT max(pass) FROM tide.backfill WHERE plan = 'pages_kill'"), "1")
      << "the first pass left nothing for a catch-up: no page was skipped";
}

}  // namespace
}  // namespace tide
