// The fixture of the application-under-test scenarios (application_test.cc,
// alter_column_test.cc): a plan runs while a simulated application (tests/support/app_sim.h)
// writes and reads its tables, the old version until the plan waits at its gates, then the new
// one; its deploy is recorded (the deploy gate passes) and the plan finishes.
#pragma once

#include <algorithm>
#include <regex>
#include <sstream>

#include "e2e/daemon_fixture.h"
#include "support/app_sim.h"

namespace tide {

using testing::AppOptions;
using testing::AppReport;
using testing::AppSim;
using testing::AppStatements;


inline constexpr int64_t kLockTimeoutMs = 500;
inline constexpr int64_t kWaitMarginMs = 1500;

// The deploy gate added to every plan: contract waits until the test has rolled out the new
// version of the application (as a deploy pipeline records it), so the gates cannot pass while
// the old version still writes.
inline const char* kDeployGate =
    "  - sql: SELECT count(*) FROM app_version WHERE version < 2\n"
    "    expect: 0\n";
inline const char* kAppVersion =
    "CREATE TABLE app_version (version int NOT NULL); INSERT INTO app_version VALUES (1);\n";

inline void Substitute(std::string* text, const std::string& from, const std::string& to) {
  const size_t at = text->find(from);
  if (at == std::string::npos) {
    throw std::runtime_error("deploy/demo-data.sql no longer contains `" + from + "`");
  }
  for (size_t i = at; i != std::string::npos; i = text->find(from, i + to.size())) {
    text->replace(i, from.size(), to);
  }
}

// deploy/demo-data.sql with about 20,000 rows in each table: 20,000 patient offers, offers,
// patients and users, 20 tenants, and 40 surveys of 500 students' grades.
inline std::string SmallDemoData() {
  std::string sql = ReadAll(std::string(TIDE_SOURCE_DIR) + "/deploy/demo-data.sql");
  Substitute(&sql, ":rows", "20000");
  Substitute(&sql, "generate_series(1, 100000)", "generate_series(1, 20000)");
  Substitute(&sql, "% 100000", "% 20000");
  Substitute(&sql, "generate_series(1, 50000)", "generate_series(1, 20000)");
  Substitute(&sql, "generate_series(1, 2500)", "generate_series(1, 500)");
  return sql + kAppVersion;
}

// A plan with lock_timeout 500ms and the deploy gate.
inline std::string WithTestSettings(std::string plan) {
  const size_t gates = plan.find("\ngates:\n");
  if (gates == std::string::npos) plan += std::string("gates:\n") + kDeployGate;
  else plan.insert(gates + 8, kDeployGate);
  if (plan.find("\nsettings:\n") != std::string::npos) {
    if (plan.find("\n  lock_timeout: ") == std::string::npos) {
      plan = std::regex_replace(plan, std::regex("\nsettings:\n"), "\nsettings:\n  lock_timeout: 500ms\n");
    }
    return std::regex_replace(plan, std::regex("\n  lock_timeout: [0-9a-z]+"), "\n  lock_timeout: 500ms");
  }
  return std::regex_replace(plan, std::regex("\ndatabase: app\n"),
                            "\ndatabase: app\nsettings:\n  lock_timeout: 500ms\n");
}

// An example plan from plans/, with lock_timeout 500ms and the deploy gate.
inline std::string ExamplePlan(const std::string& file) {
  return WithTestSettings(ReadAll(std::string(TIDE_SOURCE_DIR) + "/plans/" + file));
}

struct Scenario {
  std::string schema;
  std::string plan_name;
  std::string plan;  // YAML
  AppStatements old_version, new_version;
  int64_t seeded_rows = 20000;  // ids 1..seeded_rows exist (what {row} picks from)
  std::vector<std::string> checks;  // each returns 0 when every row is right
  // How long the new version runs before its deploy is recorded: with alter_column and renames,
  // it works through the plan's version schema then, beside the old one.
  std::chrono::milliseconds both_versions{0};
  std::function<void()> at_deploy;  // runs just before the deploy is recorded
  // Runs once the plan is done, the new version still running (a revert, a finalize); the plan
  // is then expected in `final_state`.
  std::function<void()> after_done;
  std::string final_state = "done";
};

class ApplicationTest : public DaemonTest {
 protected:
  void RunScenario(const Scenario& s) {
    PgCluster::Shared().Exec(db_, s.schema);
    StartDaemon();
    AppOptions options;
    options.dsn = PgCluster::Shared().Dsn(db_) + " application_name=app_sim";
    options.seeded_rows = s.seeded_rows;
    AppSim app(options, s.old_version, s.new_version);
    app.Start();
    std::this_thread::sleep_for(300ms);  // the old version is writing when the plan starts

    auto submit = Ctl({"submit", "--config", config_, WritePlan(s.plan_name + ".yaml", s.plan)});
    ASSERT_EQ(submit.status, 0) << submit.output;
    std::string state;
    auto reached = [&](std::vector<std::string> states) {
      return [&, states] {
        state = PlanState(s.plan_name);
        return state == "failed" || std::find(states.begin(), states.end(), state) != states.end();
      };
    };
    // At its gates: tide.plans says so, or (for a plan without a backfill, whose state stays
    // `backfilling` while its gates are checked) the audit log has a gate check.
    auto at_gates = [&] { return reached({"gating", "contracting", "done"})() || GateChecked(s.plan_name); };
    ASSERT_TRUE(WaitFor(at_gates, 60s)) << "state " << state << "\n" << Diagnostics(s.plan_name);
    ASSERT_NE(state, "failed") << Diagnostics(s.plan_name);
    // The old version goes on writing while the plan waits at its gates, as it does until a
    // deploy replaces it.
    std::this_thread::sleep_for(1s);
    app.SwitchToNew();
    std::this_thread::sleep_for(s.both_versions);
    if (s.at_deploy) s.at_deploy();
    PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
    EXPECT_TRUE(WaitFor(reached({"done"}), 60s)) << "state " << state;
    std::this_thread::sleep_for(300ms);  // the new version on the finished schema
    if (s.after_done) s.after_done();
    // A switch keeps the old columns until `tidectl finalize`: finalized here, the new version
    // still writing.
    if (s.final_state == "done") Finalize(s.plan_name);
    app.Stop();
    const AppReport report = app.Report();

    EXPECT_EQ(PlanState(s.plan_name), s.final_state) << Diagnostics(s.plan_name) << report.Describe();
    EXPECT_TRUE(report.errors.empty()) << report.Describe();
    EXPECT_LE(report.longest_ms, kLockTimeoutMs + kWaitMarginMs) << report.Describe();
    EXPECT_GT(report.old_statements, 0) << report.Describe();
    EXPECT_GT(report.new_statements, 0) << report.Describe();
    for (const auto& check : s.checks) EXPECT_EQ(Query(check), "0") << check;
    ExpectNoLeftovers(s.plan_name);
  }

  // `tidectl finalize PLAN` when the plan's switch kept old columns (or revertible renames):
  // they are gone once it returns.
  void Finalize(const std::string& plan) {
    const std::string kept = "SELECT count(*) FROM tide.retained_columns WHERE plan = '" + plan + "'";
    if (Query(kept) == "0") return;
    auto finalize = Ctl({"finalize", plan, "--config", config_});
    ASSERT_EQ(finalize.status, 0) << finalize.output;
    EXPECT_TRUE(WaitFor([&] { return Query(kept) == "0"; }, 30s)) << Diagnostics(plan);
    EXPECT_EQ(PlanState(plan), "done");
  }

  void ExpectNoLeftovers(const std::string& plan) {
    EXPECT_EQ(Query("SELECT string_agg(attrelid::regclass || '.' || attname, ', ') FROM "
                    "pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relkind IN "
                    "('r', 'p') AND attname LIKE '\\_tide\\_%' AND NOT attisdropped"), "")
        << "shadow columns left";
    EXPECT_EQ(Query("SELECT string_agg(tgname, ', ') FROM pg_trigger WHERE tgname LIKE 'tide\\_alter\\_%' "
                    "OR tgname LIKE 'tide\\_keep\\_%'"), "")
        << "alter_column triggers left";
    EXPECT_EQ(Query("SELECT count(*) FROM tide.retained_columns WHERE plan = '" + plan + "'"), "0")
        << "kept old columns recorded";
    EXPECT_EQ(Query("SELECT count(*) FROM pg_namespace WHERE nspname = '" + plan + "'"), "0")
        << "the version schema is left";
    EXPECT_EQ(Query("SELECT string_agg(conrelid::regclass || '.' || conname, ', ') FROM "
                    "pg_constraint WHERE NOT convalidated"), "")
        << "NOT VALID constraints left";
    EXPECT_EQ(Query("SELECT string_agg(indexrelid::regclass::text, ', ') FROM pg_index "
                    "WHERE NOT indisvalid OR NOT indisready"), "")
        << "invalid indexes left";
    EXPECT_EQ(Query("SELECT string_agg(conname, ', ') FROM pg_constraint WHERE contype = 'c' "
                    "AND conname LIKE '%\\_not\\_null'"), "")
        << "the NOT NULL helper checks are dropped";
    EXPECT_EQ(Query("SELECT string_agg(tgname, ', ') FROM pg_trigger WHERE tgname LIKE 'tide\\_sync\\_%'"), "")
        << "sync triggers left";
  }

  bool GateChecked(const std::string& plan) {
    std::istringstream audit(ReadAll(dir_ + "/audit.jsonl"));
    for (std::string line; std::getline(audit, line);) {
      if (line.find("\"event\":\"gate_checked\"") != std::string::npos &&
          line.find("\"plan\":\"" + plan + "\"") != std::string::npos) {
        return true;
      }
    }
    return false;
  }

  std::string Diagnostics(const std::string& plan) {
    return "last_error: " + Query("SELECT last_error FROM tide.plans WHERE name = '" + plan + "'") +
           "\n" + ReadAll(dir_ + "/tided.log");
  }
};

}  // namespace tide
