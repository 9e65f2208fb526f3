// Two tided on one database (a standby host for failover): a plan runs on exactly one of them;
// when that one is killed, the other takes the plan over within 30 s and continues from the
// checkpoint, every row updated once.
#include <signal.h>

#include "e2e/daemon_fixture.h"

namespace tide {
namespace {

// About 20 s of backfill: long enough to kill the daemon running it half-way.
const char* kCappedPlan = R"(plan: add_clinic_id
database: app
backfill:
  - table: patient_offers
    set:
      clinicId: (SELECT o."clinicId" FROM offers o WHERE o.id = patient_offers."offerId")
    batch_size: 500
    max_rows_per_second: 2000
gates:
  - null_count: {table: patient_offers, column: clinicId}
)";

TEST_F(DaemonTest, TwoDaemonsRunAPlanOnceAndTheStandbyTakesOverWhenTheActiveDies) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  PgCluster::Shared().Exec(db_, "ALTER TABLE patient_offers ADD COLUMN \"clinicId\" text; "
                                "DELETE FROM patient_offers WHERE id > 40000");
  const std::string config_b = dir_ + "/tided-b.yaml";
  WriteAll(config_b, ConfigYaml("-b", testing::FreePort(),
                                "  app:\n    dsn: \"" + PgCluster::Shared().Dsn(db_) + "\"\n"));
  StartDaemon();
  const std::string a = ":" + dir_ + "/spool", b_spool = ":" + dir_ + "/spool-b";
  // Owners are host:spool:pid.
  auto owned_by = [](const std::string& owner, const std::string& spool) {
    return owner.find(spool + ":") != std::string::npos;
  };
  Process b({TIDED_PATH, "--allow-root", "--config", config_b}, dir_ + "/tided-b.log");
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kCappedPlan)}).status, 0);
  auto scanned = [&] { return std::stoll("0" + Query("SELECT sum(rows_scanned) FROM tide.backfill")); };
  auto owner = [&] { return Query("SELECT owner FROM tide.leases WHERE plan = 'add_clinic_id'"); };
  ASSERT_TRUE(WaitFor([&] { return scanned() >= 5000; }, 30s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_TRUE(owned_by(owner(), a)) << owner();

  std::this_thread::sleep_for(6s);  // the standby looked at least once and left the plan alone
  EXPECT_TRUE(owned_by(owner(), a)) << owner();
  EXPECT_EQ(ReadAll(dir_ + "/audit-b.jsonl").find("\"plan\":\"add_clinic_id\""), std::string::npos)
      << "the standby never touched the plan while the active one ran it";

  daemon_->Signal(SIGKILL);
  daemon_->Wait(10s);
  const auto killed = std::chrono::steady_clock::now();
  const int64_t at_kill = scanned();
  ASSERT_TRUE(WaitFor([&] { return owned_by(owner(), b_spool); }, 40s))
      << Query("SELECT concat_ws(' ', owner, expires_at, clock_timestamp()) FROM tide.leases") << "\n"
      << ReadAll(dir_ + "/tided-b.log");
  const auto took = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - killed);
  EXPECT_LE(took.count(), 30) << "the standby takes over within 30 s";
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 90s)) << ReadAll(dir_ + "/tided-b.log");
  EXPECT_GT(scanned(), at_kill);
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers WHERE updates <> 1"), "0")
      << "continued from the checkpoint: no batch redone, none skipped";
  EXPECT_NE(ReadAll(dir_ + "/audit-b.jsonl").find("\"event\":\"plan_resumed\""), std::string::npos);
  std::cerr << "failover: the standby took over " << took.count() << " s after the kill\n";
}

}  // namespace
}  // namespace tide
