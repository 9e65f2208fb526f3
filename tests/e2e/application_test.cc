// An application under test against every example plan in plans/ and every typed operation.
// The old version of a simulated application (tests/support/app_sim.h) inserts, updates,
// deletes and reads the table through expand, the backfill and the gates; once the plan waits
// at its gates, the new version takes over, its deploy is recorded (the plan's deploy gate
// passes), and the plan finishes.
// Each test asserts:
//   - the plan is `done`;
//   - the application saw no error at all, in either version;
//   - no statement of the application waited longer than the plan's lock_timeout (500 ms)
//     plus a margin of 1.5 s;
//   - every row's new column holds the value computed in SQL from the old columns;
//   - no NOT VALID constraint, invalid index, set_not_null helper check or sync trigger is
//     left behind.
#include <algorithm>
#include <regex>
#include <sstream>

#include "e2e/daemon_fixture.h"
#include "support/app_sim.h"

namespace tide {
namespace {

using testing::AppOptions;
using testing::AppReport;
using testing::AppSim;
using testing::AppStatements;

constexpr int64_t kLockTimeoutMs = 500;
constexpr int64_t kWaitMarginMs = 1500;

// The deploy gate added to every plan: contract waits until the test has rolled out the new
// version of the application (as a deploy pipeline records it), so the gates cannot pass while
// the old version still writes.
const char* kDeployGate =
    "  - sql: SELECT count(*) FROM app_version WHERE version < 2\n"
    "    expect: 0\n";
const char* kAppVersion =
    "CREATE TABLE app_version (version int NOT NULL); INSERT INTO app_version VALUES (1);\n";

void Substitute(std::string* text, const std::string& from, const std::string& to) {
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
std::string SmallDemoData() {
  std::string sql = ReadAll(std::string(TIDE_SOURCE_DIR) + "/deploy/demo-data.sql");
  Substitute(&sql, ":rows", "20000");
  Substitute(&sql, "generate_series(1, 100000)", "generate_series(1, 20000)");
  Substitute(&sql, "% 100000", "% 20000");
  Substitute(&sql, "generate_series(1, 50000)", "generate_series(1, 20000)");
  Substitute(&sql, "generate_series(1, 2500)", "generate_series(1, 500)");
  return sql + kAppVersion;
}

// An example plan from plans/, with lock_timeout 500ms and the deploy gate.
std::string ExamplePlan(const std::string& file) {
  std::string plan = ReadAll(std::string(TIDE_SOURCE_DIR) + "/plans/" + file);
  const size_t gates = plan.find("\ngates:\n");
  if (gates == std::string::npos) throw std::runtime_error("plans/" + file + " has no gates");
  plan.insert(gates + 8, kDeployGate);
  if (plan.find("\nsettings:\n") != std::string::npos) {
    if (plan.find("\n  lock_timeout: ") == std::string::npos) {
      plan = std::regex_replace(plan, std::regex("\nsettings:\n"), "\nsettings:\n  lock_timeout: 500ms\n");
    }
    return std::regex_replace(plan, std::regex("\n  lock_timeout: [0-9a-z]+"), "\n  lock_timeout: 500ms");
  }
  return std::regex_replace(plan, std::regex("\ndatabase: app\n"),
                            "\ndatabase: app\nsettings:\n  lock_timeout: 500ms\n");
}

struct Scenario {
  std::string schema;
  std::string plan_name;
  std::string plan;  // YAML
  AppStatements old_version, new_version;
  int64_t seeded_rows = 20000;  // ids 1..seeded_rows exist (what {row} picks from)
  std::vector<std::string> checks;  // each returns 0 when every row is right
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
    PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
    EXPECT_TRUE(WaitFor(reached({"done"}), 60s)) << "state " << state;
    std::this_thread::sleep_for(300ms);  // the new version on the finished schema
    app.Stop();
    const AppReport report = app.Report();

    EXPECT_EQ(PlanState(s.plan_name), "done") << Diagnostics(s.plan_name) << report.Describe();
    EXPECT_TRUE(report.errors.empty()) << report.Describe();
    EXPECT_LE(report.longest_ms, kLockTimeoutMs + kWaitMarginMs) << report.Describe();
    EXPECT_GT(report.old_statements, 0) << report.Describe();
    EXPECT_GT(report.new_statements, 0) << report.Describe();
    for (const auto& check : s.checks) EXPECT_EQ(Query(check), "0") << check;
    ExpectNoLeftovers();
  }

  void ExpectNoLeftovers() {
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

// ---- The example plans, on a small copy of the demo's data set.

TEST_F(ApplicationTest, KeepsWorkingThroughAddClinicIdToPatientOffers) {
  Scenario s;
  s.schema = SmallDemoData();
  s.plan_name = "add_clinic_id_to_patient_offers";
  s.plan = ExamplePlan("add_clinic_id_to_patient_offers.yaml");
  s.old_version = {
      "INSERT INTO patient_offers (id, \"patientId\", \"offerId\") VALUES ({id}, 1 + {id} % 20000, 1 + {id} % 20000)",
      "UPDATE patient_offers SET assigned = NOT assigned, \"updatedAt\" = now() WHERE id = {row}",
      "DELETE FROM patient_offers WHERE id = {own}",
      "SELECT * FROM patient_offers WHERE id = {row}"};
  s.new_version = s.old_version;
  s.new_version.insert =
      "INSERT INTO patient_offers (id, \"patientId\", \"offerId\", \"clinicId\") VALUES ({id}, "
      "1 + {id} % 20000, 1 + {id} % 20000, (SELECT o.\"clinicId\" FROM offers o WHERE o.id = 1 + {id} % 20000))";
  s.checks = {
      "SELECT count(*) FROM patient_offers po LEFT JOIN offers o ON o.id = po.\"offerId\" "
      "WHERE po.\"clinicId\" IS DISTINCT FROM o.\"clinicId\"",
      "SELECT count(*) FROM pg_attribute WHERE attrelid = 'patient_offers'::regclass "
      "AND attname = 'clinicId' AND NOT attnotnull"};
  RunScenario(s);
}

TEST_F(ApplicationTest, KeepsWorkingThroughCoreUsersDisplayNameNotNull) {
  Scenario s;
  s.schema = SmallDemoData();
  s.plan_name = "core_users_display_name";
  s.plan = ExamplePlan("core_users_display_name_not_null.yaml");
  const std::string name = "CASE WHEN {id} % 4 = 0 THEN NULL ELSE 'App ' || {id} END";
  s.old_version = {
      "INSERT INTO core.users (id, tenant_id, email, name) VALUES ({id}, 1 + {id} % 20, "
      "'app' || {id} || '@example.org', " + name + ")",
      "UPDATE core.users SET created_at = now() WHERE id = {row}",
      "DELETE FROM core.users WHERE id = {own}",
      "SELECT * FROM core.users WHERE id = {row}"};
  s.new_version = s.old_version;
  s.new_version.insert =
      "INSERT INTO core.users (id, tenant_id, email, name, display_name) VALUES ({id}, "
      "1 + {id} % 20, 'app' || {id} || '@example.org', " + name + ", COALESCE(" + name +
      ", 'app' || {id}))";
  s.checks = {
      "SELECT count(*) FROM core.users WHERE display_name IS DISTINCT FROM "
      "COALESCE(NULLIF(name, ''), split_part(email, '@', 1))",
      "SELECT count(*) FROM pg_attribute WHERE attrelid = 'core.users'::regclass "
      "AND attname = 'display_name' AND NOT attnotnull"};
  RunScenario(s);
}

TEST_F(ApplicationTest, KeepsWorkingThroughGradesScorePercent) {
  Scenario s;
  s.schema = SmallDemoData();
  s.plan_name = "grades_score_percent";
  s.plan = ExamplePlan("grades_score_percent.yaml");
  // Row n is survey 1 + (n - 1) / 500, student 1 + (n - 1) % 500: the seeded 40 x 500 grades
  // are rows 1..20000, and the application's own rows lie beyond survey 40.
  const std::string key = "survey_id = 1 + ({row} - 1) / 500 AND student_id = 1 + ({row} - 1) % 500";
  const std::string max = "CASE WHEN {id} % 50 = 0 THEN 0 ELSE 100 END";
  s.old_version = {
      "INSERT INTO grades (survey_id, student_id, score, max_score) VALUES (1 + ({id} - 1) / 500, "
      "1 + ({id} - 1) % 500, {id} % 101, " + max + ")",
      // The old version saves a grade again as it was (its form has no percent field).
      "UPDATE grades SET score = score, max_score = max_score WHERE " + key,
      "DELETE FROM grades WHERE survey_id = 1 + ({own} - 1) / 500 AND student_id = 1 + ({own} - 1) % 500",
      "SELECT * FROM grades WHERE " + key};
  s.new_version = s.old_version;
  s.new_version.insert =
      "INSERT INTO grades (survey_id, student_id, score, max_score, score_percent) VALUES "
      "(1 + ({id} - 1) / 500, 1 + ({id} - 1) % 500, {id} % 101, " + max +
      ", round(100.0 * ({id} % 101) / NULLIF(" + max + ", 0), 2))";
  s.checks = {
      "SELECT count(*) FROM grades WHERE score_percent IS DISTINCT FROM "
      "round(100.0 * score / NULLIF(max_score, 0), 2)",
      "SELECT 1 - count(*) FROM pg_index WHERE indexrelid = to_regclass('grades_score_percent_idx') "
      "AND indisvalid"};
  RunScenario(s);
}

TEST_F(ApplicationTest, KeepsWorkingThroughCoreTenantsSlug) {
  Scenario s;
  s.schema = SmallDemoData();
  s.plan_name = "core_tenants_slug";
  s.plan = ExamplePlan("core_tenants_slug.yaml");
  s.seeded_rows = 20;
  s.old_version = {
      "INSERT INTO core.tenants (id, name) VALUES ({id}, 'Tenant ' || {id})",
      // The old version saves a tenant's settings page again, name unchanged.
      "UPDATE core.tenants SET name = name WHERE id = {row}",
      "DELETE FROM core.tenants WHERE id = {own}",
      "SELECT * FROM core.tenants WHERE id = {row}"};
  s.new_version = s.old_version;
  s.new_version.insert =
      "INSERT INTO core.tenants (id, name, slug) VALUES ({id}, 'Tenant ' || {id}, 'tenant-' || {id})";
  s.checks = {
      "SELECT count(*) FROM core.tenants WHERE slug IS DISTINCT FROM lower(replace(name, ' ', '-'))",
      "SELECT count(*) FROM pg_attribute WHERE attrelid = 'core.tenants'::regclass "
      "AND attname = 'slug' AND NOT attnotnull",
      "SELECT 1 - count(*) FROM pg_constraint WHERE conname = 'tenants_slug_key' AND contype = 'u'",
      "SELECT 1 - count(*) FROM pg_index WHERE indexrelid = "
      "to_regclass('core.users_tenant_created_idx') AND indisvalid"};
  RunScenario(s);
}

// ---- Each typed operation, on one table of 20,000 rows.

const char* kTable = R"SQL(
CREATE TABLE t (id bigint PRIMARY KEY, k int NOT NULL, a text, old_name text);
INSERT INTO t SELECT g, g % 1000, 'a' || g, 'n' || (g % 1000) FROM generate_series(1, 20000) g;
CREATE INDEX t_a_idx ON t (a);
CREATE TABLE p (id bigint PRIMARY KEY);
INSERT INTO p SELECT generate_series(1, 100);
)SQL";

// The old version knows id, k, a and old_name; k and old_name never change once written.
AppStatements OldApp() {
  return {"INSERT INTO t (id, k, a, old_name) VALUES ({id}, {id} % 1000, 'a' || {id}, 'n' || ({id} % 1000))",
          "UPDATE t SET a = 'u' || {v} WHERE id = {row}",
          "DELETE FROM t WHERE id = {own}",
          "SELECT * FROM t WHERE a = 'a' || {row}"};
}

// The new version also writes `column` = `value` (SQL over {id}) on insert.
AppStatements NewApp(const std::string& column, const std::string& value) {
  AppStatements s = OldApp();
  s.insert = "INSERT INTO t (id, k, a, old_name, " + column + ") VALUES ({id}, {id} % 1000, 'a' || {id}, "
             "'n' || ({id} % 1000), " + value + ")";
  return s;
}

std::string TypedPlan(const std::string& name, const std::string& body) {
  return "plan: " + name + "\ndatabase: app\nsettings:\n  lock_timeout: 500ms\n" + body;
}

std::string Backfill(const std::string& set, bool sync_trigger) {
  return "backfill:\n  - table: t\n    set: {" + set + "}\n    sync_trigger: " +
         (sync_trigger ? "true" : "false") + "\n";
}

Scenario Typed(const std::string& name, const std::string& body) {
  Scenario s;
  s.schema = std::string(kTable) + kAppVersion + "ANALYZE;\n";
  s.plan_name = name;
  s.plan = TypedPlan(name, body);
  s.old_version = OldApp();
  s.new_version = OldApp();
  return s;
}

Scenario AddColumn(bool sync_trigger) {
  Scenario s = Typed("add_columns",
                     "expand:\n"
                     "  - add_column: {table: t, column: b, type: text}\n"
                     "  - add_column: {table: t, column: c, type: int, default: \"7\", not_null: true}\n" +
                         Backfill("b: \"'k' || k\"", sync_trigger) +
                         "gates:\n  - null_count: {table: t, column: b}\n" + kDeployGate);
  s.new_version = NewApp("b", "'k' || ({id} % 1000)");
  s.checks = {"SELECT count(*) FROM t WHERE b IS DISTINCT FROM 'k' || k OR c IS DISTINCT FROM 7",
              "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'c' "
              "AND NOT attnotnull"};
  return s;
}

TEST_F(ApplicationTest, KeepsWorkingThroughAddColumnWithoutSyncTrigger) { RunScenario(AddColumn(false)); }
TEST_F(ApplicationTest, KeepsWorkingThroughAddColumnWithSyncTrigger) { RunScenario(AddColumn(true)); }

TEST_F(ApplicationTest, KeepsWorkingThroughCreateIndex) {
  Scenario s = Typed("index_k",
                     "expand:\n  - create_index: {table: t, name: t_k_idx, columns: [k]}\n"
                     "gates:\n" + std::string(kDeployGate));
  s.checks = {"SELECT 1 - count(*) FROM pg_index WHERE indexrelid = to_regclass('t_k_idx') AND indisvalid"};
  RunScenario(s);
}

Scenario SetNotNull(bool sync_trigger) {
  Scenario s = Typed("b_not_null",
                     "expand:\n  - add_column: {table: t, column: b, type: int}\n" +
                         Backfill("b: k * 2", sync_trigger) +
                         "gates:\n  - null_count: {table: t, column: b}\n" + kDeployGate +
                         "contract:\n  - set_not_null: {table: t, column: b}\n");
  s.new_version = NewApp("b", "({id} % 1000) * 2");
  s.checks = {"SELECT count(*) FROM t WHERE b IS DISTINCT FROM k * 2",
              "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'b' "
              "AND NOT attnotnull"};
  return s;
}

// Without a sync trigger, every row the old version inserts leaves b NULL until the backfill
// catches up, and the plan waits at its deploy gate meanwhile. The old version's INSERT is
// legal until the gates pass: no constraint on b may refuse it (23514) before then.
TEST_F(ApplicationTest, SetNotNullLetsTheOldVersionInsertWhileTheGatesWait) {
  RunScenario(SetNotNull(false));
}
TEST_F(ApplicationTest, KeepsWorkingThroughSetNotNullWithSyncTrigger) { RunScenario(SetNotNull(true)); }

Scenario AddForeignKey(bool sync_trigger) {
  Scenario s = Typed("t_parent_fk",
                     "expand:\n  - add_column: {table: t, column: parent_id, type: bigint}\n" +
                         Backfill("parent_id: 1 + k % 100", sync_trigger) +
                         "gates:\n  - null_count: {table: t, column: parent_id}\n" + kDeployGate +
                         "contract:\n  - add_foreign_key: {table: t, columns: [parent_id], "
                         "references: {table: p, columns: [id]}}\n");
  s.new_version = NewApp("parent_id", "1 + ({id} % 1000) % 100");
  s.checks = {"SELECT count(*) FROM t WHERE parent_id IS DISTINCT FROM 1 + k % 100",
              "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 't'::regclass AND contype = 'f' "
              "AND convalidated"};
  return s;
}

TEST_F(ApplicationTest, KeepsWorkingThroughAddForeignKeyWithoutSyncTrigger) { RunScenario(AddForeignKey(false)); }
TEST_F(ApplicationTest, KeepsWorkingThroughAddForeignKeyWithSyncTrigger) { RunScenario(AddForeignKey(true)); }

TEST_F(ApplicationTest, KeepsWorkingThroughAddCheck) {
  Scenario s = Typed("b_odd",
                     "expand:\n  - add_column: {table: t, column: b, type: int}\n" +
                         Backfill("b: k * 2 + 1", false) +
                         "gates:\n  - null_count: {table: t, column: b}\n" + kDeployGate +
                         "contract:\n  - add_check: {table: t, name: t_b_odd, expression: \"b % 2 = 1\"}\n");
  s.new_version = NewApp("b", "({id} % 1000) * 2 + 1");
  s.checks = {"SELECT count(*) FROM t WHERE b IS DISTINCT FROM k * 2 + 1",
              "SELECT 1 - count(*) FROM pg_constraint WHERE conname = 't_b_odd' AND convalidated"};
  RunScenario(s);
}

TEST_F(ApplicationTest, KeepsWorkingThroughAddUnique) {
  Scenario s = Typed("code_unique",
                     "expand:\n  - add_column: {table: t, column: code, type: text}\n" +
                         Backfill("code: \"'c' || id\"", false) +
                         "gates:\n  - null_count: {table: t, column: code}\n" + kDeployGate +
                         "contract:\n  - add_unique: {table: t, name: t_code_key, columns: [code]}\n");
  s.new_version = NewApp("code", "'c' || {id}");
  s.checks = {"SELECT count(*) FROM t WHERE code IS DISTINCT FROM 'c' || id",
              "SELECT 1 - count(*) FROM pg_constraint WHERE conname = 't_code_key' AND contype = 'u'"};
  RunScenario(s);
}

// A rename done the expand/contract way: new_name is filled from old_name, the new version
// writes only new_name, and old_name is dropped once the new version is out.
Scenario DropColumn(bool sync_trigger) {
  Scenario s = Typed("rename_old_name",
                     "expand:\n  - add_column: {table: t, column: new_name, type: text}\n" +
                         Backfill("new_name: old_name", sync_trigger) +
                         "gates:\n  - null_count: {table: t, column: new_name}\n" + kDeployGate +
                         "contract:\n  - drop_column: {table: t, column: old_name}\n");
  s.new_version = OldApp();
  s.new_version.insert =
      "INSERT INTO t (id, k, a, new_name) VALUES ({id}, {id} % 1000, 'a' || {id}, 'n' || ({id} % 1000))";
  s.checks = {"SELECT count(*) FROM t WHERE new_name IS DISTINCT FROM 'n' || k",
              "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'old_name' "
              "AND NOT attisdropped"};
  return s;
}

TEST_F(ApplicationTest, KeepsWorkingThroughDropColumnWithoutSyncTrigger) { RunScenario(DropColumn(false)); }
TEST_F(ApplicationTest, KeepsWorkingThroughDropColumnWithSyncTrigger) { RunScenario(DropColumn(true)); }

TEST_F(ApplicationTest, KeepsWorkingThroughDropIndex) {
  Scenario s = Typed("drop_a_idx", "gates:\n" + std::string(kDeployGate) +
                                       "contract:\n  - drop_index: {name: t_a_idx}\n");
  s.checks = {"SELECT count(*) FROM pg_class WHERE relname = 't_a_idx'"};
  RunScenario(s);
}

}  // namespace
}  // namespace tide
