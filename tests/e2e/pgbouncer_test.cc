// tide in front of a real PgBouncer in transaction pooling, shared with the application: every
// statement of tide's keeps its lock_timeout (proved with a blocker: the application's reads
// through the same bouncer never wait much longer than it), no client of the bouncer ever sees
// one of tide's settings, and what cannot run in a transaction goes to `ddl_dsn` or is refused
// naming it.
#include <atomic>
#include <set>

#include "e2e/daemon_fixture.h"
#include "support/app_sim.h"
#include "support/pgbouncer.h"

namespace tide {
namespace {

const char* kTable = R"SQL(
CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, note text);
INSERT INTO t (id, a) SELECT g, g % 100 FROM generate_series(1, 20000) g;
ANALYZE t;
)SQL";

class PgBouncerTest : public DaemonTest {
 protected:
  void SetUp() override {
    DaemonTest::SetUp();
    PgCluster::Shared().Exec(db_, kTable);
    bouncer_ = std::make_unique<testing::PgBouncer>(PgCluster::Shared().port(), 3);
    UseBouncer("");
  }
  void TearDown() override {
    DaemonTest::TearDown();
    bouncer_.reset();
  }
  // tided reaches the database through the bouncer; `extra` adds lines to its entry.
  void UseBouncer(const std::string& extra) {
    WriteAll(config_, ConfigYaml("", metrics_port_,
                                 "  app:\n    dsn: \"" + bouncer_->Dsn(db_) + "\"\n" + extra));
  }

  std::unique_ptr<testing::PgBouncer> bouncer_;
};

// Through the bouncer, over and over, the settings a client sees: never one of tide's.
class SettingsWatch {
 public:
  explicit SettingsWatch(const std::string& dsn)
      : thread_([this, dsn] {
          pqxx::connection c(dsn);
          while (!stop_) {
            pqxx::work w(c);
            auto r = w.exec1(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), "
                "current_setting('row_security'), coalesce(current_setting('tide.backfill', true), ''), "
                "current_setting('application_name')");
            w.commit();
            std::string seen = std::string(r[0].c_str()) + " " + r[1].c_str() + " " + r[2].c_str() +
                               " [" + r[3].c_str() + "] [" + r[4].c_str() + "]";
            if (seen != "0 0 on [] []") {
              std::lock_guard<std::mutex> l(mu_);
              foreign_.insert(seen);
            }
            ++reads_;
            std::this_thread::sleep_for(2ms);
          }
        }) {}
  ~SettingsWatch() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::set<std::string> foreign() {
    std::lock_guard<std::mutex> l(mu_);
    return foreign_;
  }
  int64_t reads() const { return reads_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> reads_{0};
  std::mutex mu_;
  std::set<std::string> foreign_;
  std::thread thread_;
};

TEST_F(PgBouncerTest, EveryStatementKeepsItsLockTimeoutAndNoOtherClientSeesTidesSettings) {
  testing::AppOptions o;
  o.dsn = bouncer_->Dsn(db_);
  o.seeded_rows = 20000;
  testing::AppStatements old_version{"INSERT INTO t (id, a) VALUES ({id}, {id} % 100)",
                                     "UPDATE t SET note = 'u' || {v} WHERE id = {row}",
                                     "DELETE FROM t WHERE id = {own}",
                                     "SELECT * FROM t WHERE id = {row}"};
  testing::AppStatements new_version = old_version;
  new_version.insert = "INSERT INTO t (id, a, b) VALUES ({id}, {id} % 100, {id} % 100 * 2)";
  testing::AppSim app(o, old_version, new_version);
  app.Start();
  SettingsWatch watch(bouncer_->Dsn(db_));

  // A session (directly on the server) holds a lock that tide's ADD COLUMN must wait for.
  pqxx::connection blocker(PgCluster::Shared().Dsn(db_));
  pqxx::work hold(blocker);
  hold.exec0("LOCK TABLE t IN ACCESS SHARE MODE");

  StartDaemon();
  const std::string plan = WritePlan("add_b.yaml", R"(plan: add_b
database: app
settings:
  lock_timeout: 300ms
expand:
  - add_column: {table: t, column: b, type: int}
backfill:
  - table: t
    set: {b: "a * 2"}
    sync_trigger: true
    workers: 2
    batch_size: 1000
gates:
  - null_count: {table: t, column: b}
contract:
  - set_not_null: {table: t, column: b}
)");
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  // tide's ADD COLUMN times out and retries while the blocker holds its lock; the application's
  // reads queue behind each attempt for at most lock_timeout.
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/audit.jsonl").find("\"event\":\"lock_timeout\"") !=
                                   std::string::npos; }, 30s))
      << ReadAll(dir_ + "/tided.log");
  std::this_thread::sleep_for(3s);
  EXPECT_EQ(Query("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'b'"),
            "0") << "still waiting for the blocker";
  hold.abort();
  ASSERT_TRUE(WaitFor([&] { return Query("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass "
                                         "AND attname = 'b'") == "1"; }, 60s));
  app.SwitchToNew();
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_b") == "done"; }, 120s)) << ReadAll(dir_ + "/tided.log");
  app.Stop();
  watch.Stop();

  const testing::AppReport r = app.Report();
  EXPECT_TRUE(r.errors.empty()) << r.Describe();
  EXPECT_LT(r.longest_ms, 300 + 1500) << "an application statement waited behind tide longer than "
                                          "lock_timeout: " << r.longest_statement;
  EXPECT_GT(watch.reads(), 100);
  EXPECT_TRUE(watch.foreign().empty()) << "a client of the bouncer saw: " << *watch.foreign().begin();
  EXPECT_EQ(Query("SELECT count(*) FROM t WHERE b IS DISTINCT FROM a * 2"), "0");
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'b'"), "t");
}

TEST_F(PgBouncerTest, ConcurrentlyIsRefusedNamingDdlDsnAndRunsOnIt) {
  StartDaemon();
  const std::string plan = WritePlan("idx.yaml", R"(plan: idx
database: app
expand:
  - create_index: {table: t, name: t_a_idx, columns: [a]}
)");
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("idx") == "failed"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  const std::string error = Query("SELECT last_error FROM tide.plans WHERE name = 'idx'");
  EXPECT_NE(error.find("ddl_dsn"), std::string::npos) << error;
  EXPECT_NE(error.find("transaction pooler"), std::string::npos) << error;
  EXPECT_EQ(Query("SELECT count(*) FROM pg_class WHERE relname = 't_a_idx'"), "0");

  daemon_->Signal(SIGTERM);
  ASSERT_EQ(daemon_->Wait(15s), 0);
  UseBouncer("    ddl_dsn: \"" + PgCluster::Shared().Dsn(db_) + "\"\n");
  StartDaemon();
  ASSERT_EQ(Ctl({"retry", "idx", "--config", config_}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("idx") == "done"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_a_idx'::regclass"), "t");
}

}  // namespace
}  // namespace tide
