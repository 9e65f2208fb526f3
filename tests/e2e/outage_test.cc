// PostgreSQL goes away (`pg_ctl stop -m immediate`) while a step runs and while the backfill
// runs, for longer than tide's retry budget for other errors: tided waits, reconnects and ends
// with the same result as without the outage.
#include <signal.h>

#include "e2e/daemon_fixture.h"

namespace tide {
namespace {

const char* kPlan = R"(plan: add_clinic_id
database: app
expand:
  - add_column: {table: patient_offers, column: clinicId, type: text}
  - sql: SELECT pg_sleep(3)
backfill:
  - table: patient_offers
    set:
      clinicId: (SELECT o."clinicId" FROM offers o WHERE o.id = patient_offers."offerId")
    workers: 2
    batch_size: 500
    max_batch_size: 500
    pause_between_batches: 20ms
gates:
  - null_count: {table: patient_offers, column: clinicId}
contract:
  - set_not_null: {table: patient_offers, column: clinicId}
)";

TEST_F(DaemonTest, APostgresCrashDuringAStepAndTheBackfillIsWaitedOut) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kPlan)}).status, 0);
  auto audit_has = [&](const std::string& text) { return ReadAll(dir_ + "/audit.jsonl").find(text) != std::string::npos; };
  ASSERT_TRUE(WaitFor([&] { return audit_has("\"sql\":\"SELECT pg_sleep(3)\""); }, 20s)) << ReadAll(dir_ + "/tided.log");
  std::this_thread::sleep_for(500ms);  // the step is in flight
  PgCluster::Shared().Crash();
  std::this_thread::sleep_for(3s);
  PgCluster::Shared().Restart();

  auto scanned = [&] { return std::stoll("0" + Query("SELECT sum(rows_scanned) FROM tide.backfill")); };
  ASSERT_TRUE(WaitFor([&] { return scanned() >= 20000; }, 90s)) << ReadAll(dir_ + "/tided.log");
  PgCluster::Shared().Crash();
  std::this_thread::sleep_for(20s);  // longer than five retries with backoff
  ASSERT_EQ(::kill(daemon_->pid(), 0), 0) << "tided is still up while the server is down";
  PgCluster::Shared().Restart();

  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 120s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers po JOIN offers o ON o.id = po.\"offerId\" "
                  "WHERE po.\"clinicId\" IS DISTINCT FROM o.\"clinicId\""), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers WHERE updates <> 1"), "0")
      << "every row updated exactly once across both outages";
  const std::string metrics =
      RunCommand({"/usr/bin/curl", "-sf", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"}).output;
  EXPECT_NE(metrics.find("tide_retries_total{kind=\"connection\",plan=\"add_clinic_id\"}"), std::string::npos) << metrics;
  const std::string log = ReadAll(dir_ + "/tided.log");
  EXPECT_NE(log.find("connection"), std::string::npos) << "the outage is visible in the log";
}

}  // namespace
}  // namespace tide
