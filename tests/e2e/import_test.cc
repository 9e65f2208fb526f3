// `tidectl import`: the seeds' own migrations (a numbered file with its down file, Prisma's
// clinicId migration) become plans that run to done while the application writes, and
// `--history` records what the application's tool applied before tide, so that importing it
// again is refused.
#include "e2e/application_fixture.h"

namespace tide {
namespace {

const std::string kData = std::string(TIDE_SOURCE_DIR) + "/tests/data/import";

class ImportTest : public ApplicationTest {
 protected:
  // The plan `tidectl import` writes for `file`, as the tests run plans.
  std::string Imported(const std::string& file) {
    const std::string out = dir_ + "/imported.yaml";
    auto r = Ctl({"import", file, "-o", out});
    EXPECT_EQ(r.status, 0) << r.output;
    return WithTestSettings(ReadAll(out));
  }
};

TEST_F(ImportTest, ANumberedMigrationWithItsDownFileRunsToDone) {
  const std::string file = kData + "/numbered/019_users_display_name.sql";
  auto r = Ctl({"import", file});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("statement 3: a backfill task"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("create_index idx_users_display_name"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("statement 1: dropped"), std::string::npos) << "BEGIN: " << r.output;
  EXPECT_NE(r.output.find("rollback:\n  - drop_index: {name: core.idx_users_display_name}"), std::string::npos)
      << "the down file is the rollback: " << r.output;

  Scenario s;
  s.schema = SmallDemoData();
  s.plan_name = "019_users_display_name";
  s.plan = Imported(file);
  s.seeded_rows = 20000;
  s.old_version = {"INSERT INTO core.users (tenant_id, email, name) VALUES (1 + {id} % 20, 'n' || {id} || '@example.org', 'N' || {id})",
                   "UPDATE core.users SET name = 'U' || {v} WHERE id = {row}", "",
                   "SELECT * FROM core.users WHERE id = {row}"};
  s.new_version = s.old_version;
  s.new_version.insert =
      "INSERT INTO core.users (tenant_id, email, name, display_name) VALUES (1 + {id} % 20, 'n' || {id} || "
      "'@example.org', 'N' || {id}, 'N' || {id})";
  s.checks = {"SELECT count(*) FROM core.users WHERE display_name IS DISTINCT FROM COALESCE(name, split_part(email, '@', 1)) "
              "AND id <= 20000 AND name NOT LIKE 'U%'",
              "SELECT count(*) FROM pg_attribute WHERE attrelid = 'core.users'::regclass AND attname = 'display_name' AND NOT attnotnull",
              "SELECT 1 - count(*) FROM pg_index WHERE indexrelid = to_regclass('core.idx_users_display_name') AND indisvalid"};
  RunScenario(s);
}

TEST_F(ImportTest, PrismasClinicIdMigrationRunsToDoneWithItsJoinAsFrom) {
  const std::string file = kData + "/prisma/20250720211648_add_clinicid_to_patientoffer/migration.sql";
  Scenario s;
  s.schema = SmallDemoData();
  s.plan_name = "20250720211648_add_clinicid_to_patientoffer";
  s.plan = Imported(file);
  EXPECT_NE(s.plan.find("from: \"\\\"offers\\\" o\""), std::string::npos) << s.plan;
  s.old_version = {
      "INSERT INTO patient_offers (id, \"patientId\", \"offerId\") VALUES ({id}, 1 + {id} % 20000, 1 + {id} % 20000)",
      "UPDATE patient_offers SET assigned = NOT assigned WHERE id = {row}",
      "DELETE FROM patient_offers WHERE id = {own}",
      "SELECT * FROM patient_offers WHERE id = {row}"};
  s.new_version = s.old_version;
  s.new_version.insert =
      "INSERT INTO patient_offers (id, \"patientId\", \"offerId\", \"clinicId\") VALUES ({id}, 1 + {id} % 20000, "
      "1 + {id} % 20000, (SELECT o.\"clinicId\" FROM offers o WHERE o.id = 1 + {id} % 20000))";
  s.checks = {
      "SELECT count(*) FROM patient_offers po JOIN offers o ON o.id = po.\"offerId\" WHERE po.\"clinicId\" IS DISTINCT FROM o.\"clinicId\"",
      "SELECT 1 - count(*) FROM pg_constraint WHERE conname = 'patient_offers_clinicId_fkey' AND convalidated",
      "SELECT count(*) FROM pg_attribute WHERE attrelid = 'patient_offers'::regclass AND attname = 'clinicId' AND NOT attnotnull"};
  RunScenario(s);
}

TEST_F(ImportTest, HistoryRecordsWhatWasAppliedBeforeAndImportingItAgainIsRefused) {
  PgCluster::Shared().Exec(db_, SmallDemoData() + R"SQL(
CREATE TABLE schema_migrations (version varchar(255) PRIMARY KEY, applied_at timestamptz DEFAULT now());
INSERT INTO schema_migrations (version) VALUES ('018_something_older'), ('019_users_display_name');
)SQL");
  StartDaemon();
  auto h = Ctl({"import", "--history", kData + "/numbered", "--db", "app", "--config", config_});
  ASSERT_EQ(h.status, 0) << h.output;
  EXPECT_NE(h.output.find("019_users_display_name: recorded as applied"), std::string::npos) << h.output;
  EXPECT_EQ(Query("SELECT state || ' ' || submitted_by FROM tide.plans WHERE name = '019_users_display_name'"),
            "done tidectl import --history (schema_migrations)");
  auto again = Ctl({"import", "--history", kData + "/numbered", "--db", "app", "--config", config_});
  EXPECT_NE(again.output.find("already known to tide"), std::string::npos) << again.output;

  const std::string plan = dir_ + "/019.yaml";
  ASSERT_EQ(Ctl({"import", kData + "/numbered/019_users_display_name.sql", "-o", plan}).status, 0);
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return Exists(dir_ + "/spool/rejected/019.yaml.error"); }, 20s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_NE(ReadAll(dir_ + "/spool/rejected/019.yaml.error").find("was already applied"), std::string::npos)
      << ReadAll(dir_ + "/spool/rejected/019.yaml.error");
  EXPECT_EQ(Query("SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND "
                  "column_name = 'display_name'"), "0") << "nothing ran";
}

}  // namespace
}  // namespace tide
