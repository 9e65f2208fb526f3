// Safe schema changes through tided and tidectl: typed operations, abort with rollback (and its
// refusal once contract started), backup_command before anything changes, history, and the
// online preflight with a dry run.
#include <signal.h>

#include "e2e/daemon_fixture.h"

namespace tide {
namespace {

const char* kTypedPlan = R"(plan: add_clinic_id
database: app
expand:
  - add_column: {table: patient_offers, column: clinicId, type: text}
  - create_index: {table: patient_offers, name: po_clinic_idx, columns: [clinicId]}
backfill:
  - table: patient_offers
    set:
      clinicId: (SELECT o."clinicId" FROM offers o WHERE o.id = patient_offers."offerId")
    batch_size: 500
    max_batch_size: 500
    pause_between_batches: 20ms
    sync_trigger: true
gates:
  - null_count: {table: patient_offers, column: clinicId}
contract:
  - set_not_null: {table: patient_offers, column: clinicId}
rollback:
  - drop_index: {name: po_clinic_idx}
  - drop_column: {table: patient_offers, column: clinicId}
)";

class SafetyTest : public DaemonTest {
 protected:
  // Columns, indexes, constraints and triggers of patient_offers, as one comparable text.
  std::string Shape() {
    return Query(
        "SELECT concat_ws(' | ', "
        "(SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute WHERE attrelid = "
        "'patient_offers'::regclass AND attnum > 0 AND NOT attisdropped), "
        "(SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY 1) FROM pg_index WHERE "
        "indrelid = 'patient_offers'::regclass), "
        "(SELECT string_agg(conname, ',' ORDER BY 1) FROM pg_constraint WHERE conrelid = "
        "'patient_offers'::regclass), "
        "(SELECT string_agg(tgname, ',' ORDER BY 1) FROM pg_trigger WHERE tgrelid = "
        "'patient_offers'::regclass))");
  }
  int64_t Scanned() { return std::stoll("0" + Query("SELECT sum(rows_scanned) FROM tide.backfill")); }
};

TEST_F(SafetyTest, AbortDuringTheBackfillRunsTheRollbackAndLeavesTheSchemaAsBefore) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  const std::string before = Shape();
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kTypedPlan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return Scanned() >= 3000; }, 60s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_NE(Shape(), before);

  auto abort = Ctl({"abort", "add_clinic_id", "--config", config_});
  ASSERT_EQ(abort.status, 0) << abort.output;
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "aborted"; }, 30s))
      << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Shape(), before) << "column, index and sync trigger are gone";
  EXPECT_LT(Scanned(), 100000) << "the backfill stopped at the abort";
  EXPECT_TRUE(Exists(dir_ + "/spool/failed/clinic.yaml.error"));
  EXPECT_NE(ReadAll(dir_ + "/spool/failed/clinic.yaml.error").find("aborted by"), std::string::npos);

  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  for (const char* e : {"\"event\":\"abort_requested\"", "\"event\":\"abort_started\"",
                        "\"event\":\"sync_triggers_dropped\"", "\"phase\":\"rollback\"",
                        "\"event\":\"plan_aborted\""}) {
    EXPECT_NE(audit.find(e), std::string::npos) << e;
  }
  EXPECT_NE(audit.find("via tidectl"), std::string::npos) << "the abort names who asked";

  auto again = Ctl({"abort", "add_clinic_id", "--config", config_});
  EXPECT_EQ(again.status, 1);
  EXPECT_NE(again.output.find("already aborted"), std::string::npos) << again.output;
  auto history = Ctl({"history", "--config", config_});
  ASSERT_EQ(history.status, 0) << history.output;
  EXPECT_NE(history.output.find("add_clinic_id"), std::string::npos) << history.output;
  EXPECT_NE(history.output.find("aborted"), std::string::npos) << history.output;

  // The same file again starts over and, this time, finishes, filling each row once.
  PgCluster::Shared().Exec(db_, "SET session_replication_role = replica; UPDATE patient_offers SET updates = 0");
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kTypedPlan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 120s))
      << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers WHERE \"clinicId\" IS NULL"), "0");
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'patient_offers'::regclass AND attname = 'clinicId'"), "t");
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'po_clinic_idx'::regclass"), "t");
  EXPECT_EQ(Query("SELECT max(updates) FROM patient_offers"), "1") << "every row filled once";
}

TEST_F(SafetyTest, AHoldOfContractKeepsItsChecksOutAndTheOldApplicationsWritesGoOn) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  StartDaemon();
  ASSERT_EQ(Ctl({"pause", "add_clinic_id", "--phase", "contract", "--config", config_}).status, 0);
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kTypedPlan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/tided.log").find("held before contract") != std::string::npos; },
                      120s))
      << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(PlanState("add_clinic_id"), "gating");
  // The gates pass, but the hold keeps the NOT VALID check out: a NULL written by an old
  // version that knows nothing of the column (triggers off, so the sync trigger cannot fill
  // it) still goes in.
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 'patient_offers_clinicId_not_null'"), "0");
  EXPECT_NO_THROW(PgCluster::Shared().Exec(db_, "SET session_replication_role = replica; "
                                                "INSERT INTO patient_offers (id, \"offerId\") VALUES (0, 1)"));
  // Released, the catch-up fills that row before the check goes in.
  ASSERT_EQ(Ctl({"resume", "add_clinic_id", "--config", config_}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT \"clinicId\" IS NOT NULL FROM patient_offers WHERE id = 0"), "t");
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'patient_offers'::regclass AND attname = 'clinicId'"), "t");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 'patient_offers_clinicId_not_null'"), "0");
}

TEST_F(SafetyTest, AbortIsRefusedOnceContractHasStarted) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  // A contract step that takes a while, after the set_not_null.
  std::string plan = kTypedPlan;
  const std::string step = "  - set_not_null: {table: patient_offers, column: clinicId}\n";
  plan.replace(plan.find(step), step.size(), step + "  - sql: SELECT pg_sleep(4)\n");
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", plan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "contracting"; }, 120s))
      << ReadAll(dir_ + "/tided.log");
  auto abort = Ctl({"abort", "add_clinic_id", "--config", config_});
  EXPECT_EQ(abort.status, 1);
  EXPECT_NE(abort.output.find("contract has started"), std::string::npos) << abort.output;
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 30s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'patient_offers'::regclass AND attname = 'clinicId'"), "t");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 'patient_offers_clinicId_not_null'"), "0");
}

TEST_F(SafetyTest, AFailingBackupCommandFailsThePlanBeforeAnythingChanged) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  const std::string before = Shape();
  const std::string config = ReadAll(config_);
  WriteAll(config_, config + "backup_command: \"echo dumping $TIDE_PLAN of $TIDE_DATABASE; exit 3\"\n");
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kTypedPlan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "failed"; }, 30s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Shape(), before);
  EXPECT_NE(Query("SELECT last_error FROM tide.plans").find("backup_command exited with 3"), std::string::npos);
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"event\":\"backup_failed\""), std::string::npos);
  EXPECT_NE(audit.find("dumping add_clinic_id of app"), std::string::npos) << "its output is kept";

  // Fixed: the retry runs the backup again, then the plan.
  WriteAll(config_, config + "backup_command: \"touch " + dir_ + "/backup.done\"\n");
  daemon_->Signal(SIGHUP);
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(Ctl({"retry", "add_clinic_id", "--config", config_}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 120s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_TRUE(Exists(dir_ + "/backup.done"));
}

TEST_F(SafetyTest, TidectlValidateOnlineShowsTheImpactAndADryRunChangesNothing) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  const std::string before = Shape();
  const std::string plan = WritePlan("clinic.yaml", kTypedPlan);
  auto r = Ctl({"validate", plan, "--db", "app", "--config", config_, "--dry-run"});
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* part : {"backfill patient_offers: ~100000 rows", "key id bigint",
                           "expand step 1: ran, then rolled back", "first batch:",
                           "Update on patient_offers", "lock: SHARE UPDATE EXCLUSIVE",
                           "no problems found"}) {
    EXPECT_NE(r.output.find(part), std::string::npos) << part << "\n" << r.output;
  }
  EXPECT_EQ(Shape(), before);
  EXPECT_EQ(Query("SELECT count(*) FROM pg_namespace WHERE nspname = 'tide'"), "0")
      << "a preflight does not even create tide's schema";

  auto bad = Ctl({"validate",
                  WritePlan("bad.yaml", "plan: typo\ndatabase: app\nbackfill:\n  - table: patient_offers\n"
                                        "    set: {clinicID: \"'x'\"}\n"),
                  "--db", "app", "--config", config_});
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("column `clinicID` does not exist and no expand step adds it"),
            std::string::npos) << bad.output;

  auto unknown = Ctl({"validate", plan, "--db", "crm", "--config", config_});
  EXPECT_EQ(unknown.status, 2) << unknown.output;
  EXPECT_NE(unknown.output.find("database `crm` is not in " + config_), std::string::npos) << unknown.output;
  auto no_config = Ctl({"validate", plan, "--dry-run"});
  EXPECT_EQ(no_config.status, 2);
  EXPECT_NE(no_config.output.find("--db and --dry-run need --config FILE"), std::string::npos) << no_config.output;
}

}  // namespace
}  // namespace tide
