// tided throttles on the replay lag of a real streaming standby, and goes on when it catches up.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <pqxx/pqxx>
#include <thread>

#include "e2e/daemon_fixture.h"
#include "support/app_sim.h"
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

// A primary with a streaming standby on a cluster of its own (a failover leaves the old
// primary behind for good), tided on a DSN naming both hosts with
// target_session_attrs=read-write, and an application on that same DSN writing t through the
// change and the failover. The primary stops hard (`pg_ctl -m immediate`: every session cut, no
// checkpoint) and the standby is promoted; what tide did there is read back from the promoted
// standby.
class Failover : public ::testing::Test {
 protected:
  // `schema` creates t (id bigint primary key, v int not null, w int, ...) and its rows; the
  // application inserts (id, v) and updates w, with `new_insert` its insert once tide's change
  // is done ("" keeps the old one).
  void Start(int instance, const std::string& schema, int64_t rows, const std::string& new_insert) {
    pg_ = &PgCluster::Instance(instance);
    db_ = pg_->CreateDatabase("failover");
    pg_->Exec(db_, schema);
    standby_port_ = pg_->StartStandby();
    ASSERT_TRUE(WaitFor([&] { return pg_->Query(db_, "SELECT count(*) FROM pg_stat_replication") == "1"; }, 30s));
    dir_ = testing::MakeTempDir("tide-failover");
    config_ = dir_ + "/tided.yaml";
    const std::string both = "host=127.0.0.1,127.0.0.1 port=" + std::to_string(pg_->port()) + "," +
                             std::to_string(standby_port_) + " dbname=" + db_ +
                             " user=postgres target_session_attrs=read-write connect_timeout=2";
    tided_ = StartTided(dir_, both, "");
    testing::AppOptions o;
    o.dsn = both;
    o.seeded_rows = rows;
    o.pause = 10ms;
    const std::string old_insert = "INSERT INTO t (id, v) VALUES ({id}, {v})";
    testing::AppStatements old_version{old_insert, "UPDATE t SET w = {v} WHERE id = {row}",
                                       "DELETE FROM t WHERE id = {own}",
                                       "SELECT * FROM t WHERE id = {row}"};
    testing::AppStatements new_version = old_version;
    if (!new_insert.empty()) new_version.insert = new_insert;
    app_ = std::make_unique<testing::AppSim>(o, old_version, new_version);
    app_->Start();
  }

  void Submit(const std::string& plan) {
    testing::WriteAll(dir_ + "/plan.yaml", plan);
    auto submit = testing::RunCommand({TIDECTL_PATH, "submit", "--config", config_, dir_ + "/plan.yaml"});
    ASSERT_EQ(submit.status, 0) << submit.output;
  }

  // Waits for `sql` (one boolean) to be true on the primary, then fails it over.
  void FailOverWhen(const std::string& sql, const std::string& what) {
    ASSERT_TRUE(WaitFor([&] { return pg_->Query(db_, sql) == "t"; }, 90s))
        << what << " never came\n" << testing::ReadAll(dir_ + "/tided.log");
    pg_->Crash();
    pg_->PromoteStandby();
    promoted_ = std::make_unique<pqxx::connection>("host=127.0.0.1 port=" + std::to_string(standby_port_) +
                                                   " dbname=" + db_ + " user=postgres");
  }

  // The first value of `sql` on the promoted standby; "" for NULL.
  std::string Promoted(const std::string& sql) {
    pqxx::nontransaction n(*promoted_);
    auto r = n.exec1(sql);
    return r[0].is_null() ? std::string() : std::string(r[0].c_str());
  }

  void ExpectDoneOnThePromotedStandby(const std::string& diagnosis = "") {
    ASSERT_TRUE(WaitFor([&] { return Promoted("SELECT state FROM tide.plans WHERE name = 'change'") == "done"; }, 180s))
        << testing::ReadAll(dir_ + "/tided.log") << (diagnosis.empty() ? "" : Promoted(diagnosis));
  }

  // The application, once more on the new primary, works: it goes on a while after tide's
  // change, and its only errors are those of the failover itself (its sessions cut, no primary
  // to connect to for a moment): none caused by tide.
  void ExpectTheApplicationUnharmed() {
    if (!app_) return;
    const int64_t before = app_->Report().new_statements + app_->Report().old_statements;
    app_->SwitchToNew();  // returns at once if switched before
    std::this_thread::sleep_for(1s);
    app_->Stop();
    const testing::AppReport r = app_->Report();
    EXPECT_GT(r.new_statements + r.old_statements, before + 20) << r.Describe();
    for (const auto& e : r.errors) {
      const bool failover = e.operation == "connect" || e.sqlstate.rfind("08", 0) == 0 ||
                            e.sqlstate.rfind("57P", 0) == 0 || e.sqlstate == "40003";
      EXPECT_TRUE(failover) << "an error not of the failover: " << e.operation << " " << e.sqlstate
                            << " " << e.message << "\n" << r.Describe();
    }
  }

  void TearDown() override {
    if (app_) app_->Stop();
    if (tided_) {
      tided_->Signal(SIGTERM);
      EXPECT_EQ(tided_->Wait(15s), 0);
    }
    if (!HasFailure() && !dir_.empty()) testing::Shell("rm -rf " + dir_);
  }

  PgCluster* pg_ = nullptr;
  std::string db_, dir_, config_;
  int standby_port_ = 0;
  std::unique_ptr<testing::Process> tided_;
  std::unique_ptr<testing::AppSim> app_;
  std::unique_ptr<pqxx::connection> promoted_;
};

// In the middle of a backfill: tide reconnects to the new primary, re-reads its checkpoints
// there (a batch lost with asynchronous replication lost its checkpoint with it) and ends with
// every row updated exactly once, counted by a trigger.
TEST_F(Failover, MidBackfillEndsWithEveryRowUpdatedOnce) {
  Start(1, R"SQL(
CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, w int, filled int, tide_updates int NOT NULL DEFAULT 0);
INSERT INTO t (id, v) SELECT g, g FROM generate_series(1, 100000) g;
)SQL" + std::string(kCountTideUpdatesOnT) + "ANALYZE t;\n",
        100000, "INSERT INTO t (id, v, filled) VALUES ({id}, {v}, {v} * 2)");
  Submit(R"(plan: change
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
  FailOverWhen("SELECT coalesce(sum(rows_scanned), 0) >= 20000 FROM tide.backfill", "20,000 rows backfilled");
  // The new version, deployed before the backfill ends (a plan without contract drops its sync
  // trigger when it ends), writes filled itself.
  app_->SwitchToNew();
  ExpectDoneOnThePromotedStandby(
      "SELECT string_agg(format('(%s,%s,%s,%s,%s)', id, v, filled, tide_updates, xmin), ' ') FROM "
      "(SELECT *, xmin FROM t WHERE filled IS NULL ORDER BY id LIMIT 20) x");
  // Rows the old application inserted are filled by the sync trigger, the others by batches.
  EXPECT_EQ(Promoted("SELECT count(*) FROM t WHERE filled IS DISTINCT FROM v * 2"), "0")
      << Promoted("SELECT string_agg(format('(%s,%s,%s,%s)', id, v, filled, tide_updates), ' ') FROM "
                  "(SELECT * FROM t WHERE filled IS DISTINCT FROM v * 2 ORDER BY id LIMIT 20) x");
  EXPECT_EQ(Promoted("SELECT count(*) FROM t WHERE tide_updates > 1"), "0")
      << "no row updated by tide twice across the failover";
  ExpectTheApplicationUnharmed();
}

// An index function that takes a while per row, so that the failover lands inside the build.
constexpr const char* kSlowKey = R"SQL(
CREATE FUNCTION slow_key(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_sleep(0.0002);
  RETURN x;
END $$;
)SQL";

// In the middle of CREATE INDEX CONCURRENTLY: the promoted standby has the build's INVALID
// index (its catalog row was committed before the build began); tide drops it and builds the
// index again, which ends valid.
TEST_F(Failover, MidIndexBuildRebuildsTheIndexValid) {
  Start(2, std::string(kSlowKey) + R"SQL(
CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, w int);
INSERT INTO t (id, v) SELECT g, g FROM generate_series(1, 30000) g;
ANALYZE t;
)SQL",
        30000, "");
  Submit(R"P(plan: change
database: app
expand:
  - create_index: {table: t, name: t_slow_idx, expression: "slow_key(v)"}
    statement_timeout: 120s
)P");
  FailOverWhen("SELECT EXISTS (SELECT FROM pg_stat_progress_create_index p JOIN pg_stat_activity a "
               "USING (pid) WHERE a.query_start < now() - interval '1 second')",
               "an index build running for a second");
  ExpectDoneOnThePromotedStandby();
  EXPECT_EQ(Promoted("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_slow_idx'::regclass"), "t");
  EXPECT_EQ(Promoted("SELECT count(*) FROM pg_index WHERE indrelid = 't'::regclass AND NOT indisvalid"), "0");
  const std::string audit = testing::ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"dropped_invalid_index\":true"), std::string::npos) << audit;
  ExpectTheApplicationUnharmed();
}

// In the middle of a typed contract step's VALIDATE CONSTRAINT: the promoted standby has the
// constraint NOT VALID (added and committed before the scan); tide validates it there.
TEST_F(Failover, MidContractStepValidatesTheConstraint) {
  Start(3, std::string(kSlowKey) + R"SQL(
CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL, w int);
INSERT INTO t (id, v) SELECT g, g % 100000 FROM generate_series(1, 10000) g;
ANALYZE t;
)SQL",
        10000, "");
  Submit(R"P(plan: change
database: app
gates:
  - null_count: {table: t, column: v}
contract:
  - add_check: {table: t, name: t_v_small, expression: "slow_key(v) < 1000000"}
    statement_timeout: 120s
)P");
  FailOverWhen("SELECT EXISTS (SELECT FROM pg_stat_activity WHERE query LIKE '%VALIDATE CONSTRAINT%' "
               "AND state = 'active' AND query_start < now() - interval '1 second' "
               "AND pid <> pg_backend_pid())",
               "VALIDATE CONSTRAINT running for a second");
  ExpectDoneOnThePromotedStandby();
  EXPECT_EQ(Promoted("SELECT convalidated FROM pg_constraint WHERE conname = 't_v_small'"), "t");
  ExpectTheApplicationUnharmed();
}

}  // namespace
}  // namespace tide
