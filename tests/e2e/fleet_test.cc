// One plan over a database group: 8 databases on 3 PostgreSQL servers, each with an application
// writing to the table. The canary runs first, alone; then at most max_parallel databases at a
// time, in the group's order (read back from the audit log); contract: together holds every
// database's contract until the last one's gates pass; a failing database halts the rollout
// and `tidectl retry --database` resumes it; kill -9 of tided mid-rollout loses nothing.
#include <signal.h>

#include <atomic>
#include <sstream>

#include "e2e/daemon_fixture.h"
#include "support/app_sim.h"
#include "util/json_parse.h"

#include <set>

namespace tide {
namespace {

constexpr int kShards = 8;
constexpr int kRows = 3000;

// Rows counted by a trigger: tide_updates is how many times tide's batches updated the row.
const std::string kShardSchema = R"SQL(
CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL, note text,
                tide_updates int NOT NULL DEFAULT 0);
INSERT INTO t (id, a) SELECT g, g % 100 + 1 FROM generate_series(1, 3000) g;
)SQL" + std::string(kCountTideUpdatesOnT) + R"SQL(ANALYZE t;
)SQL";

const char* kRolloutPlan = R"(plan: add_b
database: shards
rollout:
  canary: 1
  max_parallel: 2
  on_failure: halt
  contract: together
expand:
  - add_column: {table: t, column: b, type: int}
backfill:
  - table: t
    set: {b: "100 / a"}
    sync_trigger: true
    batch_size: 300
    max_rows_per_second: 3000
gates:
  - null_count: {table: t, column: b}
contract:
  - set_not_null: {table: t, column: b}
)";

class FleetTest : public DaemonTest {
 protected:
  struct Shard {
    std::string name;      // shard_01 ...
    testing::PgCluster* cluster;
    std::string db;
  };

  void SetUp() override {
    DaemonTest::SetUp();
    std::string& databases = databases_;
    for (int i = 1; i <= kShards; ++i) {
      Shard s;
      s.name = std::string("shard_0") + std::to_string(i);
      s.cluster = &testing::PgCluster::Instance(i % 3);
      s.db = s.cluster->CreateDatabase("fleet");
      s.cluster->Exec(s.db, kShardSchema);
      databases += "  " + s.name + ":\n    dsn: \"" + s.cluster->Dsn(s.db) + "\"\n";
      shards_.push_back(s);
    }
    WriteAll(config_, ConfigYaml("", metrics_port_, databases) +
                          "database_groups:\n  shards: [\"shard_*\"]\n");
  }

  std::string ShardQuery(const Shard& s, const std::string& sql) {
    try {
      return s.cluster->Query(s.db, sql);
    } catch (const pqxx::undefined_table&) {
      return "";
    }
  }
  std::string StateOf(const Shard& s) {
    return ShardQuery(s, "SELECT state FROM tide.plans WHERE name = 'add_b'");
  }
  bool AllDone() {
    for (const auto& s : shards_) {
      if (StateOf(s) != "done") return false;
    }
    return true;
  }

  // The audit log's events, in order.
  std::vector<FlatJson> Events() {
    std::vector<FlatJson> out;
    std::istringstream in(ReadAll(dir_ + "/audit.jsonl"));
    for (std::string line; std::getline(in, line);) {
      if (auto e = ParseFlatJson(line)) out.push_back(*e);
    }
    return out;
  }
  static std::string Get(const FlatJson& e, const std::string& k) {
    auto it = e.find(k);
    return it == e.end() ? "" : it->second;
  }

  // An application on each shard writing through the whole rollout: the old version inserts
  // and updates without b (the sync trigger fills it on insert; its updates leave a alone, as
  // the trigger fills only a NULL b), the new one writes b itself.
  // `seeded` of the rows are the application's to update.
  void StartApplications(int64_t seeded = kRows) {
    for (const auto& s : shards_) {
      testing::AppOptions o;
      o.dsn = s.cluster->Dsn(s.db);
      o.seeded_rows = seeded;
      testing::AppStatements old_version{
          "INSERT INTO t (id, a) VALUES ({id}, {id} % 100 + 1)",
          "UPDATE t SET note = 'u' || {v} WHERE id = {row}", "DELETE FROM t WHERE id = {own}",
          "SELECT * FROM t WHERE id = {row}"};
      testing::AppStatements new_version{
          "INSERT INTO t (id, a, b) VALUES ({id}, {id} % 100 + 1, 100 / ({id} % 100 + 1))",
          "UPDATE t SET a = {v} % 100 + 1, b = 100 / ({v} % 100 + 1) WHERE id = {row}",
          "DELETE FROM t WHERE id = {own}", "SELECT * FROM t WHERE id = {row}"};
      apps_.push_back(std::make_unique<testing::AppSim>(o, old_version, new_version));
      apps_.back()->Start();
    }
  }
  // As an operator deploys the new version: with contract held, once every shard has the
  // column, then contract goes on.
  void DeployNewVersionBeforeContract() {
    ASSERT_TRUE(WaitFor([&] {
      for (const auto& s : shards_) {
        if (ShardQuery(s, "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND "
                          "attname = 'b'") != "1") {
          return false;
        }
      }
      return true;
    }, 240s)) << ReadAll(dir_ + "/tided.log");
    for (auto& a : apps_) a->SwitchToNew();
    ASSERT_EQ(Ctl({"resume", "add_b", "--phase", "contract", "--config", config_}).status, 0);
  }
  // As operators deploy shard by shard: the new version on each shard whose column is there
  // (its backfill takes longer than the polls between, so it comes before that shard's contract).
  void SwitchWhereDeployed() {
    for (size_t i = 0; i < shards_.size() && i < apps_.size(); ++i) {
      if (switched_.count(i)) continue;
      if (ShardQuery(shards_[i], "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass "
                                 "AND attname = 'b'") != "1") {
        continue;
      }
      apps_[i]->SwitchToNew();
      switched_.insert(i);
    }
  }
  void StopApplications() {
    for (auto& a : apps_) {
      a->Stop();
      const testing::AppReport r = a->Report();
      EXPECT_TRUE(r.errors.empty()) << r.Describe();
      EXPECT_GT(r.old_statements, 0);
      EXPECT_GT(r.new_statements, 0);
    }
  }

  // Every row of every shard filled right, and updated by tide's batches at most once.
  void ExpectEveryRowFilledOnce() {
    for (const auto& s : shards_) {
      EXPECT_EQ(ShardQuery(s, "SELECT count(*) FROM t WHERE b IS DISTINCT FROM 100 / a"), "0") << s.name;
      EXPECT_EQ(ShardQuery(s, "SELECT count(*) FROM t WHERE tide_updates > 1"), "0") << s.name;
      EXPECT_EQ(ShardQuery(s, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass "
                              "AND attname = 'b'"), "t") << s.name;
    }
  }

  std::vector<Shard> shards_;
  std::vector<std::unique_ptr<testing::AppSim>> apps_;
  std::set<size_t> switched_;
  std::string databases_;  // the config's databases section
};

TEST_F(FleetTest, CanaryFirstThenTwoAtATimeAndContractTogether) {
  StartDaemon();
  StartApplications();
  ASSERT_EQ(Ctl({"pause", "add_b", "--phase", "contract", "--config", config_}).status, 0);
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("add_b.yaml", kRolloutPlan)}).status, 0);
  DeployNewVersionBeforeContract();
  ASSERT_TRUE(WaitFor([&] { return AllDone(); }, 240s)) << ReadAll(dir_ + "/tided.log");
  StopApplications();
  ExpectEveryRowFilledOnce();

  // From the audit log: the order of starts, how many ran at once, when contracts began.
  std::vector<std::string> started;
  std::set<std::string> in_flight, ready;
  size_t most_at_once = 0;
  bool contract_before_all_ready = false;
  int contracts = 0;
  std::string canary_ready_or_done_first;
  for (const auto& e : Events()) {
    const std::string ev = Get(e, "event"), db = Get(e, "database");
    if (ev == "rollout_database_started") {
      if (started.size() == 1) {
        EXPECT_TRUE(ready.count("shard_01")) << "the canary reached its gates before " << db << " started";
      }
      started.push_back(db);
      in_flight.insert(db);
      most_at_once = std::max(most_at_once, in_flight.size());
    } else if (ev == "rollout_ready" || ev == "plan_done" || ev == "plan_failed") {
      in_flight.erase(db);
      if (ev == "rollout_ready") ready.insert(db);
    } else if (ev == "phase_started" && Get(e, "phase") == "contract") {
      ++contracts;
      if (ready.size() < static_cast<size_t>(kShards)) contract_before_all_ready = true;
    }
  }
  std::vector<std::string> expected;
  for (const auto& s : shards_) expected.push_back(s.name);
  EXPECT_EQ(started, expected) << "the group's order, the canary first";
  EXPECT_EQ(most_at_once, 2u) << "max_parallel 2";
  EXPECT_EQ(contracts, kShards);
  EXPECT_FALSE(contract_before_all_ready) << "no contract before every database's gates passed";

  const auto status = Ctl({"status", "--config", config_});
  EXPECT_NE(status.output.find("shards/add_b: 8 done"), std::string::npos) << status.output;
  const auto json = Ctl({"status", "--config", config_, "--json"});
  EXPECT_NE(json.output.find("\"group\":\"shards\""), std::string::npos) << json.output;
  EXPECT_TRUE(Exists(dir_ + "/spool/done/add_b.yaml")) << "the file is done once every database is";
}

TEST_F(FleetTest, AFailedDatabaseHaltsTheRolloutAndRetryOfThatDatabaseFinishesIt) {
  // shard_03 has a row the expression cannot take (100 / 0): its backfill fails.
  const Shard& bad = shards_[2];
  bad.cluster->Exec(bad.db, "UPDATE t SET a = 0 WHERE id = 2500");
  StartDaemon();
  // The application never writes that row: its writes would fail in the sync trigger, as they
  // would without tide on a check the row breaks.
  StartApplications(2000);
  std::atomic<bool> stop_deploying{false};
  std::thread deployer([&] {
    while (!stop_deploying) {
      SwitchWhereDeployed();
      std::this_thread::sleep_for(20ms);
    }
  });
  auto stop = [&] {
    stop_deploying = true;
    if (deployer.joinable()) deployer.join();
  };
  struct Joiner {
    std::function<void()> f;
    ~Joiner() { f(); }
  } joiner{stop};  // also on a failed assertion's early return
  std::string plan = kRolloutPlan;
  plan.replace(plan.find("contract: together"), 18, "contract: each");
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("add_b.yaml", plan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return StateOf(bad) == "failed"; }, 120s)) << ReadAll(dir_ + "/tided.log");
  // What was in flight ends; nothing new starts.
  std::this_thread::sleep_for(5s);
  int waiting = 0;
  for (const auto& s : shards_) {
    const std::string st = StateOf(s);
    if (st == "accepted") ++waiting;
    EXPECT_TRUE(st == "done" || st == "accepted" || st == "failed") << s.name << " " << st;
  }
  EXPECT_GE(waiting, 4) << "the databases after the failure were left as they were";
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"event\":\"rollout_halted\""), std::string::npos);
  auto status = Ctl({"status", "--config", config_});
  EXPECT_NE(status.output.find("1 failed"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("waiting"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("shard_03 failed in"), std::string::npos) << status.output;

  bad.cluster->Exec(bad.db, "UPDATE t SET a = 5 WHERE a = 0");
  const auto retry = Ctl({"retry", "add_b", "--database", "shard_03", "--config", config_});
  ASSERT_EQ(retry.status, 0) << retry.output;
  const bool all_done = WaitFor([&] { return AllDone(); }, 240s);
  stop();
  ASSERT_TRUE(all_done) << ReadAll(dir_ + "/tided.log");
  StopApplications();
  ExpectEveryRowFilledOnce();
  EXPECT_NE(ReadAll(dir_ + "/audit.jsonl").find("\"event\":\"rollout_done\""), std::string::npos);
}

TEST_F(FleetTest, KillNineDuringTheRolloutAndItResumesFromTheDatabases) {
  StartDaemon();
  StartApplications();
  ASSERT_EQ(Ctl({"pause", "add_b", "--phase", "contract", "--config", config_}).status, 0);
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("add_b.yaml", kRolloutPlan)}).status, 0);
  // Twice: once during the canary, once with two databases in flight.
  for (const char* when : {"shard_01", "shard_03"}) {
    const Shard& s = *std::find_if(shards_.begin(), shards_.end(),
                                   [&](const Shard& x) { return x.name == when; });
    ASSERT_TRUE(WaitFor([&] { return StateOf(s) == "backfilling"; }, 120s)) << ReadAll(dir_ + "/tided.log");
    daemon_->Signal(SIGKILL);
    daemon_->Wait(10s);
    StartDaemon();
  }
  DeployNewVersionBeforeContract();
  ASSERT_TRUE(WaitFor([&] { return AllDone(); }, 240s)) << ReadAll(dir_ + "/tided.log");
  StopApplications();
  ExpectEveryRowFilledOnce();
}

// Two tided with the same databases share one rollout submitted to one of them: each takes
// databases by their leases (so a second host adds throughput: max_parallel counts each
// tided's own), every database is run by exactly one of them, the canary still runs alone,
// contract: together still waits for every database whichever tided runs it, and the rollout
// ends done with every row filled once while the applications write.
TEST_F(FleetTest, TwoTidedShareOneRolloutDatabaseByDatabase) {
  const std::string config_b = dir_ + "/tided-b.yaml";
  WriteAll(config_b, ConfigYaml("-b", testing::FreePort(), databases_) +
                         "database_groups:\n  shards: [\"shard_*\"]\n");
  StartDaemon();
  Process b({TIDED_PATH, "--allow-root", "--config", config_b}, dir_ + "/tided-b.log");
  ASSERT_TRUE(WaitFor([&] { return Exists(dir_ + "/spool-b/incoming"); }, 10s));
  StartApplications();
  ASSERT_EQ(Ctl({"pause", "add_b", "--phase", "contract", "--config", config_}).status, 0);
  ASSERT_EQ(Ctl({"pause", "add_b", "--phase", "contract", "--config", config_b}).status, 0);
  std::string plan = kRolloutPlan;
  plan.replace(plan.find("max_rows_per_second: 3000"), 25, "max_rows_per_second: 600");
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("add_b.yaml", plan)}).status, 0);
  DeployNewVersionBeforeContract();
  ASSERT_EQ(Ctl({"resume", "add_b", "--phase", "contract", "--config", config_b}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return AllDone(); }, 300s))
      << ReadAll(dir_ + "/tided.log") << ReadAll(dir_ + "/tided-b.log");
  StopApplications();
  ExpectEveryRowFilledOnce();

  // Who ran what, from each tided's audit log: each database backfilled by exactly one of them,
  // and done once (a ready database parks with no session; whichever tided then takes its lease
  // contracts it).
  std::map<std::string, int> filled_by;  // database -> 1 (a), 2 (b)
  std::map<std::string, int> done;
  bool contract_before_all_ready = false;
  std::set<std::string> ready;
  for (int which : {1, 2}) {
    std::istringstream in(ReadAll(dir_ + (which == 1 ? "/audit.jsonl" : "/audit-b.jsonl")));
    for (std::string line; std::getline(in, line);) {
      auto e = ParseFlatJson(line);
      if (!e || Get(*e, "plan") != "add_b") continue;
      const std::string ev = Get(*e, "event"), db = Get(*e, "database");
      if (ev == "backfill_finished") {
        EXPECT_EQ(filled_by.count(db), 0u) << db << " backfilled by both";
        filled_by[db] = which;
      }
      if (ev == "plan_done") ++done[db];
    }
  }
  for (const auto& s : shards_) EXPECT_EQ(done[s.name], 1) << s.name;
  // Readiness and contracts in time order across both logs.
  std::vector<std::pair<std::string, FlatJson>> timeline;
  for (const char* log : {"/audit.jsonl", "/audit-b.jsonl"}) {
    std::istringstream in(ReadAll(dir_ + log));
    for (std::string line; std::getline(in, line);) {
      auto e = ParseFlatJson(line);
      if (e && Get(*e, "plan") == "add_b") timeline.push_back({Get(*e, "ts"), *e});
    }
  }
  std::stable_sort(timeline.begin(), timeline.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  for (const auto& [at, e] : timeline) {
    if (Get(e, "event") == "rollout_ready") ready.insert(Get(e, "database"));
    if (Get(e, "event") == "phase_started" && Get(e, "phase") == "contract" && ready.size() < shards_.size()) {
      contract_before_all_ready = true;
    }
  }
  EXPECT_EQ(filled_by.size(), shards_.size());
  int by_b = 0;
  for (const auto& [db, which] : filled_by) by_b += which == 2;
  EXPECT_GE(by_b, 1) << "the second tided ran databases too";
  EXPECT_LE(by_b, static_cast<int>(shards_.size()) - 1) << "the first tided ran databases too";
  EXPECT_FALSE(contract_before_all_ready);
  EXPECT_EQ(filled_by["shard_01"], 1) << "the canary ran where the plan was submitted";
  std::cout << "two tided: " << shards_.size() - by_b << " databases on the first, " << by_b
            << " on the second\n";
  b.Signal(SIGTERM);
  EXPECT_EQ(b.Wait(15s), 0);
}

// The three databases on one server (shard_01, _04, _07) read its health once a second between
// them and hold together: sessions idle in a transaction on that server hold all three at once
// (max_active_sessions), while the databases of the other servers go on; tide's own sessions on
// the server, of all three backfills, are never counted as the application's.
TEST_F(FleetTest, TheDatabasesOfOneServerShareItsHealthReadingAndHoldTogether) {
  testing::PgCluster& held = testing::PgCluster::Instance(1);
  std::vector<std::unique_ptr<pqxx::connection>> idle;
  std::vector<std::unique_ptr<pqxx::work>> open;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(std::make_unique<pqxx::connection>(held.Dsn("postgres")));
    open.push_back(std::make_unique<pqxx::work>(*idle.back()));
    open.back()->exec("SELECT 1");
  }
  // Enough workers for every database at once: a held backfill keeps its workers.
  std::string config = ReadAll(config_);
  WriteAll(config_, config + "max_workers: 16\n");
  StartDaemon();
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("add_b.yaml", R"(plan: add_b
database: shards
rollout: {canary: 0, max_parallel: 8}
settings:
  max_active_sessions: 3
expand:
  - add_column: {table: t, column: b, type: int}
backfill:
  - table: t
    set: {b: "100 / a"}
    workers: 2
    batch_size: 300
gates:
  - null_count: {table: t, column: b}
)")}).status, 0);
  auto on_held = [&](const Shard& s) { return s.cluster == &held; };
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& s : shards_) {
      if (!on_held(s) && StateOf(s) != "done") return false;
    }
    return true;
  }, 120s)) << ReadAll(dir_ + "/tided.log");
  std::this_thread::sleep_for(5s);  // the held ones have had time to go on, were they not held
  for (const auto& s : shards_) {
    if (!on_held(s)) continue;
    EXPECT_EQ(StateOf(s), "backfilling") << s.name;
    EXPECT_EQ(ShardQuery(s, "SELECT count(b) FROM t"), "0") << s.name << " wrote while its server was busy";
  }
  const auto held_for = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start);
  const std::string metrics = RunCommand({"/usr/bin/curl", "-sf", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"}).output;
  open.clear();
  idle.clear();
  ASSERT_TRUE(WaitFor([&] { return AllDone(); }, 120s)) << ReadAll(dir_ + "/tided.log");
  std::map<std::string, int> held_reason;
  for (const auto& e : Events()) {
    if (Get(e, "event") == "throttle_started") ++held_reason[Get(e, "database") + " " + Get(e, "reason")];
  }
  for (const auto& s : shards_) {
    EXPECT_EQ(held_reason.count(s.name + " active_sessions"), on_held(s) ? 1u : 0u) << s.name;
  }
  // One reading a second for the server, not one for each of its three databases.
  const std::string series = "tide_server_health_readings_total{server=\"127.0.0.1:" + std::to_string(held.port()) + "\"} ";
  const size_t at = metrics.find(series);
  ASSERT_NE(at, std::string::npos) << metrics;
  const double readings = std::stod(metrics.substr(at + series.size()));
  std::cout << "server of shard_01/04/07: " << readings << " health readings in " << held_for.count() << " s\n";
  EXPECT_LE(readings, 1.4 * held_for.count() + 3);
}

// 200 small databases on one server, with a connection budget and contract: together (a ready
// database parks with no session until all are ready): the rollout finishes, every
// database filled and NOT NULL, and tided's sessions on the server (sampled from pg_stat_activity) stay
// within the budget plus what its pool of max_workers + 4 threads may hold for the scans of the
// databases (each scan is one short session). tided's peak memory is printed.
TEST_F(DaemonTest, TwoHundredDatabasesRollOutWithinTheConnectionBudget) {
  constexpr int kDatabases = 200, kBudget = 15, kMaxWorkers = 2;
  auto& pg = PgCluster::Shared();
  const std::string tmpl = pg.CreateDatabase("fleet_tmpl");
  pg.Exec(tmpl, "CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL); "
                "INSERT INTO t SELECT g, g FROM generate_series(1, 500) g");
  std::string databases;
  std::vector<std::string> names;
  for (int i = 1; i <= kDatabases; ++i) {
    const std::string name = tmpl + "_" + std::to_string(i);
    pg.Exec("postgres", "CREATE DATABASE " + name + " TEMPLATE " + tmpl);
    names.push_back(name);
    char key[16];
    std::snprintf(key, sizeof key, "s%03d", i);
    databases += std::string("  ") + key + ":\n    dsn: \"" + pg.Dsn(name) + "\"\n";
  }
  WriteAll(config_, ConfigYaml("", metrics_port_, databases) +
                        "database_groups:\n  fleet: [\"s*\"]\nmax_connections_per_server: " +
                        std::to_string(kBudget) + "\nmax_workers: " + std::to_string(kMaxWorkers) + "\n");
  std::atomic<bool> stop{false};
  std::atomic<int64_t> most{0};
  std::thread sampler([&] {
    pqxx::connection c(pg.Dsn("postgres"));
    while (!stop) {
      pqxx::nontransaction n(c);
      const int64_t now = n.exec1("SELECT count(*) FROM pg_stat_activity WHERE application_name "
                                  "LIKE 'tided%'")[0].as<int64_t>();
      if (now > most) most = now;
      std::this_thread::sleep_for(10ms);
    }
  });
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("fleet.yaml", R"(plan: fleet_b
database: fleet
rollout: {canary: 1, max_parallel: 8, contract: together}
expand:
  - add_column: {table: t, column: b, type: int}
backfill:
  - table: t
    set: {b: "a * 2"}
gates:
  - null_count: {table: t, column: b}
contract:
  - set_not_null: {table: t, column: b}
)")}).status, 0);
  const bool done = WaitFor([&] {
    return ReadAll(dir_ + "/audit.jsonl").find("\"event\":\"rollout_done\"") != std::string::npos;
  }, 600s);
  stop = true;
  sampler.join();
  ASSERT_TRUE(done) << Ctl({"status", "--config", config_}).output;
  for (const auto& name : names) {
    ASSERT_EQ(pg.Query(name, "SELECT count(*) FROM t WHERE b IS DISTINCT FROM a * 2"), "0") << name;
    ASSERT_EQ(pg.Query(name, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 't'::regclass "
                             "AND attname = 'b'"), "t") << name;
  }
  const std::string status = ReadAll("/proc/" + std::to_string(daemon_->pid()) + "/status");
  const size_t hwm = status.find("VmHWM:");
  std::cout << "200 databases: at most " << most << " sessions of tided on the server (budget "
            << kBudget << " for the runs, + " << kMaxWorkers + 4 << " pool threads); tided "
            << (hwm == std::string::npos ? "VmHWM unknown" : status.substr(hwm, status.find('\n', hwm) - hwm))
            << "\n";
  EXPECT_LE(most, kBudget + kMaxWorkers + 4);
  EXPECT_NE(Ctl({"status", "--config", config_}).output.find("fleet/fleet_b: 200 done"), std::string::npos);
}

}  // namespace
}  // namespace tide
