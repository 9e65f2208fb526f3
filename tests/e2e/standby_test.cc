// tided throttles on the replay lag of a real streaming standby, and goes on when it catches up.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <pqxx/pqxx>
#include <thread>

#include "e2e/daemon_fixture.h"
#include "support/pg_cluster.h"
#include "support/process.h"

namespace tide {
namespace {

using namespace std::chrono_literals;
using testing::PgCluster;

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return cond();
}

// tided in `dir` on database `app` at `dsn`, with `defaults` (a YAML map, or "") in its config;
// returns once it takes plans.
std::unique_ptr<testing::Process> StartTided(const std::string& dir, const std::string& dsn,
                                             const std::string& defaults) {
  const std::string config = dir + "/tided.yaml";
  testing::WriteAll(config, "spool_dir: " + dir + "/spool\naudit_log: " + dir +
                                "/audit.jsonl\nmetrics_listen: 127.0.0.1:" +
                                std::to_string(testing::FreePort()) + "\ndatabases:\n  app:\n    dsn: \"" +
                                dsn + "\"\n" + (defaults.empty() ? "" : "defaults: " + defaults + "\n"));
  auto tided = std::make_unique<testing::Process>(
      std::vector<std::string>{TIDED_PATH, "--allow-root", "--config", config}, dir + "/tided.log");
  EXPECT_TRUE(WaitFor([&] { return access((dir + "/spool/incoming").c_str(), F_OK) == 0; }, 10s));
  return tided;
}

TEST(Standby, BackfillWaitsWhileReplayIsPausedAndFinishesAfterItResumes) {
  PgCluster& pg = PgCluster::Shared();
  const std::string db = pg.CreateDatabase("standby");
  pg.Exec(db, "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, filled int)");
  pg.Exec(db, "INSERT INTO t (id, v) SELECT g, g FROM generate_series(1, 200000) g");
  pg.Exec(db, "ANALYZE t");
  pg.StartStandby();
  ASSERT_TRUE(WaitFor([&] { return pg.Query(db, "SELECT count(*) FROM pg_stat_replication") == "1"; }, 30s));
  pqxx::connection standby(pg.StandbyDsn(db));
  pqxx::nontransaction sn(standby);
  ASSERT_TRUE(WaitFor([&] { return sn.exec1("SELECT count(*) FROM t")[0].as<int64_t>() == 200000; }, 30s));
  sn.exec("SELECT pg_wal_replay_pause()");

  const std::string dir = testing::MakeTempDir("tide-standby");
  const std::string config = dir + "/tided.yaml";
  auto tided = StartTided(dir, pg.Dsn(db), "{max_replication_lag: 2s}");
  testing::WriteAll(dir + "/plan.yaml", R"(plan: fill
database: app
backfill:
  - table: t
    set: {filled: v * 2}
    batch_size: 2000
    max_batch_size: 2000
    pause_between_batches: 50ms
)");
  auto submit = testing::RunCommand({TIDECTL_PATH, "submit", "--config", config, dir + "/plan.yaml"});
  ASSERT_EQ(submit.status, 0) << submit.output;

  auto audit = [&] { return testing::ReadAll(dir + "/audit.jsonl"); };
  ASSERT_TRUE(WaitFor([&] { return audit().find("\"reason\":\"replication_lag\"") != std::string::npos; }, 60s))
      << testing::ReadAll(dir + "/tided.log");
  auto done_rows = [&] {
    return std::stoll("0" + pg.Query(db, "SELECT sum(rows_scanned) FROM tide.backfill"));
  };
  std::this_thread::sleep_for(1500ms);  // batches in flight finish
  const int64_t held = done_rows();
  std::this_thread::sleep_for(3s);
  EXPECT_LE(done_rows(), held + 2000) << "no new batches while the standby is behind";
  EXPECT_LT(held, 200000) << "throttled before the end";
  auto status = testing::RunCommand({TIDECTL_PATH, "status", "--config", config});
  EXPECT_NE(status.output.find("throttled: replication_lag"), std::string::npos) << status.output;

  sn.exec("SELECT pg_wal_replay_resume()");
  ASSERT_TRUE(WaitFor([&] { return pg.Query(db, "SELECT state FROM tide.plans WHERE name = 'fill'") == "done"; }, 120s))
      << testing::ReadAll(dir + "/tided.log");
  EXPECT_NE(audit().find("\"event\":\"throttle_ended\""), std::string::npos);
  EXPECT_EQ(pg.Query(db, "SELECT count(*) FROM t WHERE filled = v * 2"), "200000");
  tided->Signal(SIGTERM);
  EXPECT_EQ(tided->Wait(15s), 0);
  testing::Shell("rm -rf " + dir);
}

// The primary stops hard in the middle of a backfill and its streaming standby is promoted:
// tided, on a DSN naming both hosts with target_session_attrs=read-write, reconnects to the new
// primary, re-reads its checkpoints there (a batch lost with asynchronous replication lost its
// checkpoint with it) and ends with every row updated exactly once, counted by a trigger.
TEST(Standby, APrimaryFailoverMidBackfillEndsWithEveryRowUpdatedOnce) {
  PgCluster& pg = PgCluster::Instance(1);
  const std::string db = pg.CreateDatabase("failover");
  pg.Exec(db, R"SQL(
CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, filled int, tide_updates int NOT NULL DEFAULT 0);
INSERT INTO t (id, v) SELECT g, g FROM generate_series(1, 100000) g;
)SQL" + std::string(kCountTideUpdatesOnT) + R"SQL(ANALYZE t;
)SQL");
  const int standby_port = pg.StartStandby();
  ASSERT_TRUE(WaitFor([&] { return pg.Query(db, "SELECT count(*) FROM pg_stat_replication") == "1"; }, 30s));
  const std::string dir = testing::MakeTempDir("tide-failover");
  const std::string config = dir + "/tided.yaml";
  auto tided = StartTided(dir, "host=127.0.0.1,127.0.0.1 port=" + std::to_string(pg.port()) + "," +
                                   std::to_string(standby_port) + " dbname=" + db +
                                   " user=postgres target_session_attrs=read-write connect_timeout=2",
                          "");
  testing::WriteAll(dir + "/plan.yaml", R"(plan: fill
database: app
backfill:
  - table: t
    set: {filled: v * 2}
    batch_size: 1000
    max_batch_size: 1000
    max_rows_per_second: 10000
gates:
  - null_count: {table: t, column: filled}
)");
  auto submit = testing::RunCommand({TIDECTL_PATH, "submit", "--config", config, dir + "/plan.yaml"});
  ASSERT_EQ(submit.status, 0) << submit.output;
  ASSERT_TRUE(WaitFor([&] {
    return std::stoll("0" + pg.Query(db, "SELECT coalesce(sum(rows_scanned), 0) FROM tide.backfill")) >= 20000;
  }, 60s)) << testing::ReadAll(dir + "/tided.log");
  pg.Crash();  // the primary stops hard: every session cut, no checkpoint
  pg.PromoteStandby();
  pqxx::connection promoted("host=127.0.0.1 port=" + std::to_string(standby_port) + " dbname=" + db +
                            " user=postgres");
  auto query = [&](const std::string& sql) {
    pqxx::nontransaction n(promoted);
    auto r = n.exec1(sql);
    return r[0].is_null() ? std::string() : std::string(r[0].c_str());
  };
  ASSERT_TRUE(WaitFor([&] { return query("SELECT state FROM tide.plans WHERE name = 'fill'") == "done"; }, 120s))
      << testing::ReadAll(dir + "/tided.log");
  EXPECT_EQ(query("SELECT count(*) FROM t WHERE filled IS DISTINCT FROM v * 2"), "0");
  EXPECT_EQ(query("SELECT count(*) FROM t WHERE tide_updates <> 1"), "0")
      << "every row updated by tide exactly once across the failover";
  tided->Signal(SIGTERM);
  EXPECT_EQ(tided->Wait(15s), 0);
}

}  // namespace
}  // namespace tide
