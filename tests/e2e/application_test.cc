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
#include "e2e/application_fixture.h"

namespace tide {
namespace {

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
      "AND attname = 'clinicId' AND NOT attnotnull",
      // ANALYZE once the backfill is done (the data set's own ANALYZE is the first): the
      // planner knows the filled column.
      "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'patient_offers' AND analyze_count < 2"};
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

// The identity keys of core.tenants and the users' foreign key become bigint. The new version
// runs through the version schema (its search_path) before contract, on the switched tables
// after it.
TEST_F(ApplicationTest, KeepsWorkingThroughCoreTenantsBigintIds) {
  Scenario s;
  s.schema = SmallDemoData() +
             "CREATE TABLE users_before AS SELECT id, tenant_id FROM core.users;\n";
  s.plan_name = "core_tenants_bigint_ids";
  s.plan = ExamplePlan("core_tenants_bigint_ids.yaml");
  s.seeded_rows = 20;
  s.old_version = {
      "INSERT INTO core.users (tenant_id, email) VALUES ((1 + {v} % 20), 'new' || {id} || '@example.org')",
      "UPDATE core.tenants SET name = 'Tenant ' || (1 + {v} % 20) WHERE id = (1 + {v} % 20)",
      "",
      "SELECT count(*) FROM core.users u JOIN core.tenants t ON t.id = u.tenant_id WHERE t.id = (1 + {v} % 20)"};
  const std::string path = "SET search_path TO core_tenants_bigint_ids, core, public; ";
  s.new_version = {
      path + "WITH t AS (INSERT INTO tenants (name) VALUES ('T' || {v}) RETURNING id) "
             "INSERT INTO users (tenant_id, email) SELECT id, 'v2-' || {id} || '@example.org' FROM t",
      path + "UPDATE tenants SET name = 'Tenant ' || (1 + {v} % 20) WHERE id = (1 + {v} % 20)",
      "",
      path + "SELECT count(*) FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.id = (1 + {v} % 20)"};
  s.checks = {
      "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'core' AND "
      "(table_name, column_name) IN (('tenants', 'id'), ('users', 'tenant_id')) AND data_type <> 'bigint'",
      "SELECT count(*) FROM pg_attribute WHERE attrelid = 'core.tenants'::regclass AND attname = "
      "'id' AND attidentity <> 'd'",
      "SELECT count(*) FROM core.tenants WHERE id > pg_sequence_last_value('core.tenants_id_seq')",
      "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 'core.users'::regclass AND contype "
      "= 'f' AND conname = 'users_tenant_id_fkey' AND convalidated",
      "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 'core.tenants'::regclass AND "
      "contype = 'p' AND conname = 'tenants_pkey'",
      "SELECT count(*) FROM users_before b LEFT JOIN core.users u USING (id) WHERE u.tenant_id IS "
      "DISTINCT FROM b.tenant_id",
      "SELECT count(*) FROM core.users u LEFT JOIN core.tenants t ON t.id = u.tenant_id WHERE t.id IS NULL"};
  RunScenario(s);
  EXPECT_NE(Query("INSERT INTO core.tenants (name) VALUES ('after') RETURNING id"), "");
}

// Renames in a Prisma-style schema: the old version uses clinics and offers.title, the new one
// practices and offers.headline through the version schema, then on the renamed tables.
TEST_F(ApplicationTest, KeepsWorkingThroughRenameClinicsToPractices) {
  Scenario s;
  s.schema = SmallDemoData();
  s.plan_name = "rename_clinics_to_practices";
  s.plan = ExamplePlan("rename_clinics_to_practices.yaml");
  s.old_version = {
      "INSERT INTO offers (\"clinicId\", title) SELECT id, 'Offer ' || {id} FROM clinics WHERE id = 'clinic-' || (1 + {v} % 200)",
      "UPDATE offers SET title = 'Offer ' || {v} WHERE id = {row}",
      "",
      "SELECT c.name, o.title FROM offers o JOIN clinics c ON c.id = o.\"clinicId\" WHERE o.id = {row}"};
  const std::string path = "SET search_path TO rename_clinics_to_practices, public; ";
  s.new_version = {
      path + "INSERT INTO offers (\"clinicId\", headline) SELECT id, 'Offer ' || {id} FROM practices WHERE id = 'clinic-' || (1 + {v} % 200)",
      path + "UPDATE offers SET headline = 'Offer ' || {v} WHERE id = {row}",
      "",
      path + "SELECT p.name, o.headline FROM offers o JOIN practices p ON p.id = o.\"clinicId\" WHERE o.id = {row}"};
  s.checks = {
      "SELECT 1 - count(*) FROM pg_class WHERE relname = 'practices' AND relkind = 'r'",
      "SELECT count(*) FROM offers WHERE headline IS NULL",
      "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 'offers'::regclass AND contype = 'f' "
      "AND confrelid = 'practices'::regclass"};
  RunScenario(s);
}

// Prisma 5's primary key for an implicit many-to-many table (text ids on one side), the
// application linking and unlinking clinics and patients throughout.
TEST_F(ApplicationTest, KeepsWorkingThroughPrismaClinicToPatientPkey) {
  Scenario s;
  s.schema = SmallDemoData() +
             "CREATE TABLE links_before AS SELECT \"A\", \"B\" FROM \"_ClinicToPatient\";\n";
  s.plan_name = "prisma_clinic_to_patient_pkey";
  s.plan = ExamplePlan("prisma_clinic_to_patient_pkey.yaml");
  s.old_version = {
      "INSERT INTO \"_ClinicToPatient\" (\"A\", \"B\") VALUES ('clinic-' || (1 + ({id} + 7) % 200), 1 + {id} % 20000) "
      "ON CONFLICT DO NOTHING",
      "",
      "DELETE FROM \"_ClinicToPatient\" WHERE \"A\" = 'clinic-' || (1 + ({own} + 7) % 200) AND \"B\" = 1 + {own} % 20000",
      "SELECT \"A\" FROM \"_ClinicToPatient\" WHERE \"B\" = {row}"};
  s.new_version = s.old_version;
  s.checks = {
      "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = '\"_ClinicToPatient\"'::regclass AND "
      "contype = 'p' AND conname = '_ClinicToPatient_AB_pkey'",
      "SELECT count(*) FROM pg_class WHERE relname = '_ClinicToPatient_AB_unique'",
      "SELECT count(*) FROM links_before b LEFT JOIN \"_ClinicToPatient\" l USING (\"A\", \"B\") "
      "WHERE l.\"A\" IS NULL"};
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
