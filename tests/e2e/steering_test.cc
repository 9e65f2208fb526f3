// Steering a running plan and protecting production, with tided as a process and a simulated
// application writing the table throughout: live settings (tidectl set), the blocker policy, and
// the verification before contract.
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <sstream>

#include "e2e/application_fixture.h"

namespace tide {
namespace {

// items: 20,000 rows, `b` to be filled from `a`, and the deploy gate's table.
const char* kItemsSchema =
    "CREATE TABLE items (id bigint PRIMARY KEY, a int NOT NULL, b int, note text);\n"
    "INSERT INTO items (id, a) SELECT g, g % 1000 FROM generate_series(1, 20000) g;\n"
    "ANALYZE items;\n";

// The old version knows only `a` (and never changes it: the sync trigger fills `b` when it is
// NULL, it does not follow `a`); the new one writes `b` too.
AppStatements OldItems() {
  return AppStatements{"INSERT INTO items (id, a) VALUES ({id}, {v} % 1000)",
                       "UPDATE items SET note = 'n{v}' WHERE id = {row}",
                       "DELETE FROM items WHERE id = {own}", "SELECT a FROM items WHERE id = {row}"};
}
AppStatements NewItems() {
  return AppStatements{"INSERT INTO items (id, a, b) VALUES ({id}, {v} % 1000, ({v} % 1000) * 2)",
                       "UPDATE items SET a = {v} % 1000, b = ({v} % 1000) * 2 WHERE id = {row}",
                       "DELETE FROM items WHERE id = {own}", "SELECT a, b FROM items WHERE id = {row}"};
}

class SteeringTest : public ApplicationTest {
 protected:
  void SetUp() override {
    ApplicationTest::SetUp();
    PgCluster::Shared().Exec(db_, std::string(kItemsSchema) + kAppVersion);
  }

  std::unique_ptr<AppSim> StartApp() {
    AppOptions options;
    options.dsn = PgCluster::Shared().Dsn(db_) + " application_name=app_sim";
    options.seeded_rows = 20000;
    auto app = std::make_unique<AppSim>(options, OldItems(), NewItems());
    app->Start();
    return app;
  }

  // tided, the application, then `plan` (fill_b) submitted; nullptr if the submit failed.
  std::unique_ptr<AppSim> StartAndSubmit(const std::string& plan) {
    StartDaemon();
    auto app = StartApp();
    const auto submit = Ctl({"submit", "--config", config_, WritePlan("fill_b.yaml", plan)});
    EXPECT_EQ(submit.status, 0) << submit.output;
    return submit.status == 0 ? std::move(app) : nullptr;
  }

  void ExpectUnharmed(AppSim& app) {
    app.Stop();
    const AppReport report = app.Report();
    EXPECT_TRUE(report.errors.empty()) << report.Describe();
    EXPECT_LE(report.longest_ms, kLockTimeoutMs + kWaitMarginMs) << report.Describe();
    EXPECT_GT(report.old_statements, 0) << report.Describe();
  }

  int64_t RowsUpdated(const std::string& plan) {
    return std::stoll("0" + Query("SELECT sum(rows_updated) FROM tide.backfill WHERE plan = '" + plan + "'"));
  }
  // The backfill's rate over `window`, from its stored progress.
  double RateOver(const std::string& plan, std::chrono::milliseconds window) {
    const int64_t before = RowsUpdated(plan);
    const auto start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(window);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return static_cast<double>(RowsUpdated(plan) - before) / seconds;
  }

  // Audit lines of `event` for `plan`.
  std::vector<std::string> AuditLines(const std::string& plan, const std::string& event) {
    std::vector<std::string> out;
    std::istringstream audit(ReadAll(dir_ + "/audit.jsonl"));
    for (std::string line; std::getline(audit, line);) {
      if (line.find("\"event\":\"" + event + "\"") != std::string::npos &&
          line.find("\"plan\":\"" + plan + "\"") != std::string::npos) {
        out.push_back(line);
      }
    }
    return out;
  }

  // fill_b uncapped to its gates, the new application deployed, the plan done: every row right.
  void FinishFillB(AppSim& app) {
    ASSERT_EQ(Ctl({"set", "fill_b", "max_rows_per_second=0", "--config", config_}).status, 0);
    ASSERT_TRUE(WaitFor([&] { return PlanState("fill_b") == "gating"; }, 60s)) << Diagnostics("fill_b");
    app.SwitchToNew();
    PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
    ASSERT_TRUE(WaitFor([&] { return PlanState("fill_b") == "done"; }, 60s)) << Diagnostics("fill_b");
    ExpectUnharmed(app);
    EXPECT_EQ(Query("SELECT count(*) FROM items WHERE b IS DISTINCT FROM a * 2"), "0");
  }

  std::string Metrics() {
    return RunCommand({"/usr/bin/curl", "-sf", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"})
        .output;
  }
};

const char* kFillPlan = R"(plan: fill_b
database: app
settings:
  lock_timeout: 500ms
backfill:
  - table: items
    set: {b: "a * 2"}
    batch_size: 100
    max_rows_per_second: 200
    sync_trigger: true
gates:
  - null_count: {table: items, column: b}
  - sql: SELECT count(*) FROM app_version WHERE version < 2
    expect: 0
contract:
  - set_not_null: {table: items, column: b}
)";

TEST_F(SteeringTest, LiveSettingsChangeTheRateWithinOneBatchAreAuditedAndOutliveARestart) {
  auto app = StartAndSubmit(kFillPlan);
  ASSERT_TRUE(app);
  ASSERT_TRUE(WaitFor([&] { return RowsUpdated("fill_b") > 0; }, 30s)) << Diagnostics("fill_b");
  // The cap lets at most a second's worth go at once: measured after that.
  std::this_thread::sleep_for(1500ms);
  const double capped = RateOver("fill_b", 3000ms);
  EXPECT_LT(capped, 350) << "the plan's cap of 200 rows/s (batches of 100 blur a 3 s window)";

  auto bad = Ctl({"set", "fill_b", "max_rows_per_second=lots", "--config", config_});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.output.find("max_rows_per_second=lots"), std::string::npos) << bad.output;
  auto unknown = Ctl({"set", "no_such_plan", "workers=2", "--config", config_});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.output.find("no plan `no_such_plan`"), std::string::npos) << unknown.output;

  auto set = Ctl({"set", "fill_b", "max_rows_per_second=2000", "--config", config_});
  ASSERT_EQ(set.status, 0) << set.output;
  // Within one batch: the lanes waiting on the old cap start over at once.
  std::this_thread::sleep_for(500ms);
  const double raised = RateOver("fill_b", 2000ms);
  EXPECT_GT(raised, capped * 3) << "capped " << capped << " rows/s, then " << raised;

  auto status = Ctl({"status", "--config", config_});
  EXPECT_NE(status.output.find("live settings: max_rows_per_second=2000 (set by "), std::string::npos)
      << status.output;
  EXPECT_NE(Metrics().find("tide_live_setting{plan=\"fill_b\",setting=\"max_rows_per_second\"} 2000"),
            std::string::npos);
  const auto changed = AuditLines("fill_b", "settings_changed");
  ASSERT_EQ(changed.size(), 1u);
  EXPECT_NE(changed[0].find("\"actor\":\""), std::string::npos);
  EXPECT_NE(changed[0].find("uid " + std::to_string(::getuid())), std::string::npos) << changed[0];

  // Back to a lower cap, then a restart: the stored value holds the new daemon's backfill.
  ASSERT_EQ(Ctl({"set", "fill_b", "max_rows_per_second=100", "--config", config_}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return AuditLines("fill_b", "settings_changed").size() == 2; }, 5s));
  daemon_->Signal(SIGTERM);
  ASSERT_EQ(daemon_->Wait(15s), 0) << ReadAll(dir_ + "/tided.log");
  StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return !AuditLines("fill_b", "plan_resumed").empty(); }, 15s));
  std::this_thread::sleep_for(1500ms);
  const double after_restart = RateOver("fill_b", 3000ms);
  EXPECT_LT(after_restart, 200) << "the live cap of 100 rows/s outlived the restart";
  auto json = Ctl({"status", "--config", config_, "--json"});
  EXPECT_NE(json.output.find("\"live_settings\":\"max_rows_per_second=100\""), std::string::npos) << json.output;

  FinishFillB(*app);
}

const char* kAddColumnPlan = R"(plan: NAME
database: app
settings:
  lock_timeout: 300ms
  blockers:
    after_lock_timeouts: 2
    terminate_idle_in_transaction: 1s
    max_per_plan: 3
expand:
  - add_column: {table: items, column: COLUMN, type: int}
)";

std::string AddColumnPlan(const std::string& name, const std::string& column) {
  std::string plan = kAddColumnPlan;
  plan.replace(plan.find("NAME"), 4, name);
  plan.replace(plan.find("COLUMN"), 6, column);
  return plan;
}

TEST_F(SteeringTest, TheBlockerPolicyTerminatesAnIdleTransactionAndLeavesASuperusersAlone) {
  const std::string role = "e2e_app_" + std::to_string(::getpid());
  PgCluster::Shared().Exec(db_, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '" +
                                    role + "') THEN CREATE ROLE " + role + " LOGIN; END IF; END $$; "
                                    "GRANT SELECT ON items TO " + role);
  StartDaemon();
  auto app = StartApp();

  // A superuser's forgotten transaction holds the table: tide leaves it alone and keeps retrying.
  pqxx::connection root(PgCluster::Shared().Dsn(db_) + " application_name=psql");
  pqxx::work root_idle(root);
  root_idle.exec("SELECT count(*) FROM items");
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("add_c.yaml", AddColumnPlan("add_c", "c"))}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return !AuditLines("add_c", "blocker_left").empty(); }, 60s)) << Diagnostics("add_c");
  EXPECT_NE(AuditLines("add_c", "blocker_left")[0].find("superuser"), std::string::npos);
  EXPECT_NO_THROW(root_idle.exec("SELECT 1")) << "a superuser's session is never ended";
  EXPECT_NE(PlanState("add_c"), "done");
  root_idle.abort();
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_c") == "done"; }, 60s)) << Diagnostics("add_c");

  // An application session left idle in its transaction: terminated after the second lock
  // timeout, and the plan goes on.
  pqxx::connection billing(PgCluster::Shared().Dsn(db_) + " user=" + role + " application_name=billing");
  pqxx::work idle(billing);
  idle.exec("SELECT count(*) FROM items");
  const std::string pid = idle.exec1("SELECT pg_backend_pid()")[0].c_str();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("add_d.yaml", AddColumnPlan("add_d", "d"))}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_d") == "done"; }, 60s)) << Diagnostics("add_d");
  const auto ended = AuditLines("add_d", "blocker_ended");
  ASSERT_EQ(ended.size(), 1u) << ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(ended[0].find("\"pid\":" + pid), std::string::npos) << ended[0];
  EXPECT_NE(ended[0].find("\"user\":\"" + role + "\""), std::string::npos) << ended[0];
  EXPECT_NE(ended[0].find("\"action\":\"terminate\""), std::string::npos) << ended[0];
  EXPECT_EQ(ended[0].find("count(*)"), std::string::npos) << "no query text in the audit log";
  EXPECT_GE(AuditLines("add_d", "lock_timeout").size(), 2u);
  EXPECT_THROW(idle.exec("SELECT 1"), pqxx::broken_connection);
  EXPECT_EQ(Query("SELECT sessions_ended FROM tide.plans WHERE name = 'add_d'"), "1");
  EXPECT_NE(Metrics().find("tide_blocking_sessions_ended_total{action=\"terminate\",plan=\"add_d\"} 1"),
            std::string::npos);
  ExpectUnharmed(*app);
}

TEST_F(SteeringTest, VerificationCatchesARowChangedWithTheSyncTriggerDisabled) {
  std::string plan = kFillPlan;
  plan.replace(plan.find("    max_rows_per_second: 200\n"), 28, "    verify: true\n");
  auto app = StartAndSubmit(plan);
  ASSERT_TRUE(app);
  ASSERT_TRUE(WaitFor([&] { return PlanState("fill_b") == "gating"; }, 60s)) << Diagnostics("fill_b");
  // A write that bypasses the sync trigger (a bulk fix run with triggers disabled).
  const std::string trigger = Query("SELECT tgname FROM pg_trigger WHERE tgname LIKE 'tide\\_sync\\_%'");
  ASSERT_FALSE(trigger.empty());
  PgCluster::Shared().Exec(db_, "BEGIN; SET LOCAL lock_timeout = '2s'; ALTER TABLE items DISABLE TRIGGER " +
                                    trigger + "; UPDATE items SET a = a + 1 WHERE id = 4242; "
                                    "ALTER TABLE items ENABLE TRIGGER " + trigger + "; COMMIT");
  app->SwitchToNew();
  PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
  ASSERT_TRUE(WaitFor([&] { return !AuditLines("fill_b", "verify_failed").empty(); }, 60s)) << Diagnostics("fill_b");
  EXPECT_NE(AuditLines("fill_b", "verify_failed")[0].find("4242"), std::string::npos);
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(PlanState("fill_b"), "gating") << "contract waits while a row differs";
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'b'"), "f");
  auto status = Ctl({"status", "--config", config_});
  EXPECT_NE(status.output.find("(4242)"), std::string::npos) << status.output;
  // The operator's fix: the row is filled again by tide.
  PgCluster::Shared().Exec(db_, "UPDATE items SET b = NULL WHERE id = 4242");
  ASSERT_TRUE(WaitFor([&] { return PlanState("fill_b") == "done"; }, 60s)) << Diagnostics("fill_b");
  EXPECT_FALSE(AuditLines("fill_b", "verified").empty());
  ExpectUnharmed(*app);
  EXPECT_EQ(Query("SELECT count(*) FROM items WHERE b IS DISTINCT FROM a * 2"), "0");
}

// PostgreSQL's own signals, each the real thing, hold a running backfill until they clear: an
// open transaction older than max_xmin_age, an inactive replication slot retaining more WAL than
// max_slot_retained_wal, and the throttle file. Each hold names its signal in the audit log, the
// status and tide_throttled; the application writes through it all.
// A backfill that yields to a busy application is not throttled, but on-call sees that it
// yields, to how many sessions and how much: in the status, its JSON, the metrics and the
// audit log's progress lines.
TEST_F(SteeringTest, AYieldingBackfillSaysToHowManySessionsInItsStatusMetricsAndAudit) {
  std::string plan = kFillPlan;
  // Autovacuum on items would hold the backfill (and its yield) for throttle_hold.
  const std::string at = "  lock_timeout: 500ms\n";
  plan.replace(plan.find(at), at.size(), at + "  yield_ratio: 1\n  hold_on_autovacuum: false\n");
  auto app = StartAndSubmit(plan);
  ASSERT_TRUE(app);
  ASSERT_TRUE(WaitFor([&] { return RowsUpdated("fill_b") > 0; }, 30s)) << Diagnostics("fill_b");
  {
    // Three sessions of a report, each in a transaction: at least three busy sessions.
    std::vector<std::unique_ptr<pqxx::connection>> sessions;
    std::vector<std::unique_ptr<pqxx::work>> open;
    for (int i = 0; i < 3; ++i) {
      sessions.push_back(std::make_unique<pqxx::connection>(PgCluster::Shared().Dsn(db_) + " application_name=report"));
      open.push_back(std::make_unique<pqxx::work>(*sessions.back()));
      open.back()->exec("SELECT count(*) FROM app_version");
    }
    // The status is stored with each health reading; the application's own sessions count too.
    auto Number = [](const std::string& text, const std::string& after) -> int64_t {
      const size_t k = text.find(after);
      if (k == std::string::npos) return -1;
      const std::string rest = text.substr(k + after.size());
      return rest.empty() || !std::isdigit(static_cast<unsigned char>(rest[0])) ? -1 : std::stoll(rest);
    };
    std::string status;
    ASSERT_TRUE(WaitFor([&] {
      status = Ctl({"status", "--config", config_}).output;
      return Number(status, "yielding to ") >= 3;
    }, 15s)) << status;
    EXPECT_NE(status.find("x as long (yield_ratio)"), std::string::npos) << status;
    EXPECT_NE(status.find("app/fill_b  backfilling"), std::string::npos)
        << "a plan without expand steps is backfilling, not accepted: " << status;

    std::string json;
    EXPECT_TRUE(WaitFor([&] {
      json = Ctl({"status", "--json", "--config", config_}).output;
      return Number(json, "\"yielding_to_sessions\":") >= 3;
    }, 5s)) << json;

    // The gauges: sessions, and the rest after each batch (yield_ratio 1 x sessions).
    std::string metrics;
    auto Gauge = [&](const std::string& name) {
      const std::string key = name + "{plan=\"fill_b\"} ";
      const size_t k = metrics.find(key);
      return k == std::string::npos ? -1.0 : std::stod(metrics.substr(k + key.size()));
    };
    ASSERT_TRUE(WaitFor([&] {
      metrics = Metrics();
      return Gauge("tide_yielding_sessions") >= 3;
    }, 5s)) << metrics;
    EXPECT_GE(Gauge("tide_yield_rest_ratio"), 3) << metrics;

    // A progress line while the sessions are open says it too (one every tenth of the rows).
    ASSERT_TRUE(WaitFor([&] {
      for (const auto& line : AuditLines("fill_b", "backfill_progress")) {
        if (Number(line, "\"yielding_to_sessions\":") >= 3) return true;
      }
      return false;
    }, 30s)) << Diagnostics("fill_b");
    for (auto& w : open) w->abort();
  }
  FinishFillB(*app);
  EXPECT_NE(Metrics().find("tide_yielding_sessions{plan=\"fill_b\"} 0\n"), std::string::npos)
      << "back to 0 once the backfill ends";
}

TEST_F(SteeringTest, PostgresOwnSignalsHoldARunningBackfillUntilTheyClear) {
  std::string plan = kFillPlan;
  auto Replace = [&plan](const std::string& from, const std::string& to) {
    plan.replace(plan.find(from), from.size(), to);
  };
  Replace("  lock_timeout: 500ms\n",
          "  lock_timeout: 500ms\n  max_xmin_age: 2s\n  max_slot_retained_wal: 1MB\n  throttle_hold: 1s\n");
  Replace("max_rows_per_second: 200", "max_rows_per_second: 300");
  auto app = StartAndSubmit(plan);
  ASSERT_TRUE(app);
  ASSERT_TRUE(WaitFor([&] { return RowsUpdated("fill_b") > 0; }, 30s)) << Diagnostics("fill_b");

  auto Held = [&](const std::string& reason) {
    for (const auto& line : AuditLines("fill_b", "throttle_started")) {
      if (line.find("\"reason\":\"" + reason + "\"") != std::string::npos) return true;
    }
    return false;
  };
  auto Ended = [&](const std::string& reason) {
    for (const auto& line : AuditLines("fill_b", "throttle_ended")) {
      if (line.find("\"reason\":\"" + reason + "\"") != std::string::npos) return true;
    }
    return false;
  };
  // While held, no batch commits (the one in flight when the signal was read may).
  auto ExpectHeld = [&](const std::string& reason) {
    // The status is stored with the next reading, within a second.
    std::string status;
    EXPECT_TRUE(WaitFor([&] {
      status = Ctl({"status", "--config", config_}).output;
      return status.find("throttled: " + reason) != std::string::npos;
    }, 5s)) << status;
    EXPECT_NE(Metrics().find("tide_throttled{plan=\"fill_b\",reason=\"" + reason + "\"} 1\n"),
              std::string::npos) << reason;
    std::this_thread::sleep_for(500ms);
    const int64_t before = RowsUpdated("fill_b");
    std::this_thread::sleep_for(2000ms);
    EXPECT_EQ(RowsUpdated("fill_b"), before) << reason << " holds the batches";
  };
  auto ExpectGoesOn = [&](const std::string& reason) {
    ASSERT_TRUE(WaitFor([&] { return Ended(reason); }, 15s)) << Diagnostics("fill_b");
    const int64_t before = RowsUpdated("fill_b");
    ASSERT_TRUE(WaitFor([&] { return RowsUpdated("fill_b") > before; }, 10s)) << reason;
  };

  // A transaction left open holds back vacuum: the backfill waits once it is 2 s old.
  {
    pqxx::connection report(PgCluster::Shared().Dsn(db_) + " application_name=report");
    pqxx::work open(report);
    const std::string pid = open.exec1("SELECT pg_backend_pid()")[0].c_str();
    open.exec("SELECT txid_current()");
    ASSERT_TRUE(WaitFor([&] { return Held("xmin_age"); }, 15s)) << Diagnostics("fill_b");
    for (const auto& line : AuditLines("fill_b", "throttle_started")) {
      if (line.find("xmin_age") != std::string::npos) {
        EXPECT_NE(line.find("\"xmin_pid\":" + pid), std::string::npos) << line;
      }
    }
    ExpectHeld("xmin_age");
    open.abort();
  }
  ExpectGoesOn("xmin_age");

  // An inactive slot retains WAL (from the last checkpoint, then what the backfill writes):
  // the backfill waits past 1MB.
  const std::string slot = "e2e_slot_" + std::to_string(::getpid());
  PgCluster::Shared().Exec(db_, "SELECT pg_create_physical_replication_slot('" + slot + "', true)");
  struct DropSlot {
    std::string db, slot;
    ~DropSlot() {
      try {
        PgCluster::Shared().Exec(db, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                                     "WHERE slot_name = '" + slot + "'");
      } catch (...) {
      }
    }
  } drop{db_, slot};
  ASSERT_TRUE(WaitFor([&] { return Held("slot_retained_wal"); }, 30s)) << Diagnostics("fill_b");
  for (const auto& line : AuditLines("fill_b", "throttle_started")) {
    if (line.find("slot_retained_wal") != std::string::npos) {
      EXPECT_NE(line.find("\"slot\":\"" + slot + "\""), std::string::npos) << line;
      EXPECT_NE(line.find("\"slot_active\":false"), std::string::npos) << line;
    }
  }
  ExpectHeld("slot_retained_wal");
  PgCluster::Shared().Exec(db_, "SELECT pg_drop_replication_slot('" + slot + "')");
  ExpectGoesOn("slot_retained_wal");

  // The throttle file, naming the plan.
  const std::string file = dir_ + "/spool/control/throttle";
  ::mkdir((dir_ + "/spool/control").c_str(), 0755);
  WriteAll(file, "# maintenance window\nfill_b\n");
  ASSERT_TRUE(WaitFor([&] { return Held("throttle_file"); }, 15s)) << Diagnostics("fill_b");
  ExpectHeld("throttle_file");
  ::unlink(file.c_str());
  ExpectGoesOn("throttle_file");

  FinishFillB(*app);
}

}  // namespace
}  // namespace tide
