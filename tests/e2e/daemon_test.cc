// tided and tidectl as processes, on a temp spool and a throwaway PostgreSQL.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <pqxx/pqxx>
#include <thread>

#include "e2e/daemon_fixture.h"

namespace tide {
namespace {

const char* kClinicPlan = R"(plan: add_clinic_id
database: app
expand:
  - sql: ALTER TABLE patient_offers ADD COLUMN IF NOT EXISTS "clinicId" text
backfill:
  - table: patient_offers
    set:
      clinicId: (SELECT o."clinicId" FROM offers o WHERE o.id = patient_offers."offerId")
    workers: 3
    batch_size: 200
    max_batch_size: 1000
gates:
  - null_count: {table: patient_offers, column: clinicId}
contract:
  - sql: ALTER TABLE patient_offers ADD CONSTRAINT po_clinic_nn CHECK ("clinicId" IS NOT NULL) NOT VALID
  - sql: ALTER TABLE patient_offers VALIDATE CONSTRAINT po_clinic_nn
  - sql: ALTER TABLE patient_offers ALTER COLUMN "clinicId" SET NOT NULL
  - sql: ALTER TABLE patient_offers DROP CONSTRAINT po_clinic_nn
)";

TEST_F(DaemonTest, SurvivesSigkillDuringBackfillWithoutRedoingAnyBatch) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  StartDaemon();
  auto submit = Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kClinicPlan)});
  ASSERT_EQ(submit.status, 0) << submit.output;

  // Kill the daemon three times, part way through a backfill on three workers.
  for (int kill = 1; kill <= 3; ++kill) {
    const int threshold = kill * 20000;
    ASSERT_TRUE(WaitFor([&] {
      std::string rows = Query("SELECT sum(rows_scanned) FROM tide.backfill WHERE plan = 'add_clinic_id'");
      return !rows.empty() && std::stoll(rows) >= threshold;
    }, 60s)) << ReadAll(dir_ + "/tided.log");
    daemon_->Signal(SIGKILL);
    ASSERT_EQ(daemon_->Wait(10s), 128 + SIGKILL);
    EXPECT_EQ(PlanState("add_clinic_id"), "backfilling");
    EXPECT_EQ(Query("SELECT count(*) < 100000 FROM patient_offers WHERE \"clinicId\" IS NOT NULL"), "t")
        << "the kill came before the backfill finished";
    StartDaemon();
  }

  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 120s))
      << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers po JOIN offers o ON o.id = po.\"offerId\" "
                  "WHERE po.\"clinicId\" = o.\"clinicId\" AND po.updates = 1"),
            "100000")
      << "every row has the right value and was updated exactly once";
  EXPECT_EQ(Query("SELECT sum(rows_updated) FROM tide.backfill WHERE plan = 'add_clinic_id'"), "100000");
  EXPECT_EQ(Query("SELECT count(*) FROM tide.backfill WHERE plan = 'add_clinic_id' AND unit = 'page'"), "4")
      << "three disjoint page ranges and the open tail";
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'patient_offers'::regclass "
                  "AND attname = 'clinicId'"),
            "t");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 'po_clinic_nn'"), "0");
  EXPECT_TRUE(WaitFor([&] { return Exists(dir_ + "/spool/done/clinic.yaml"); }, 5s));
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"event\":\"plan_done\""), std::string::npos);
  EXPECT_NE(audit.find("\"event\":\"plan_resumed\""), std::string::npos);

  auto status = Ctl({"status", "--config", config_});
  EXPECT_EQ(status.status, 0);
  EXPECT_NE(status.output.find("app/add_clinic_id  done"), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("100000 rows updated"), std::string::npos) << status.output;
}

TEST_F(DaemonTest, ABadPlanIsRejectedWithItsErrorAndTheDaemonGoesOn) {
  StartDaemon();
  WriteAll(dir_ + "/spool/incoming/.bad.tmp", "plan: p\ndatabase: app\nbackfil:\n  - table: t\n");
  ASSERT_EQ(::rename((dir_ + "/spool/incoming/.bad.tmp").c_str(),
                     (dir_ + "/spool/incoming/bad.yaml").c_str()), 0);
  ASSERT_TRUE(WaitFor([&] { return Exists(dir_ + "/spool/rejected/bad.yaml.error"); }, 5s))
      << "picked up within a second or so";
  const std::string error = ReadAll(dir_ + "/spool/rejected/bad.yaml.error");
  EXPECT_NE(error.find("bad.yaml:3:1: unknown key `backfil` in the plan; did you mean `backfill`?"),
            std::string::npos)
      << error;
  EXPECT_TRUE(Exists(dir_ + "/spool/rejected/bad.yaml")) << "the file is kept, not lost";

  // Files that are not plans are left alone.
  WriteAll(dir_ + "/spool/incoming/notes.txt", "not a plan");
  // The daemon is still there and runs the next plan.
  PgCluster::Shared().Exec(db_, "CREATE TABLE t (id int PRIMARY KEY)");
  auto ok = Ctl({"submit", "--spool", dir_ + "/spool",
                 WritePlan("good.yaml", "plan: good\ndatabase: app\nexpand:\n  - sql: ALTER TABLE t ADD COLUMN c int\n")});
  ASSERT_EQ(ok.status, 0) << ok.output;
  ASSERT_TRUE(WaitFor([&] { return PlanState("good") == "done"; }, 10s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_TRUE(Exists(dir_ + "/spool/incoming/notes.txt"));
  EXPECT_TRUE(daemon_->running());
}

TEST_F(DaemonTest, AFailingStepFailsOnlyItsPlanWithTheServerError) {
  StartDaemon();
  auto r = Ctl({"submit", "--config", config_,
                WritePlan("broken.yaml", "plan: broken\ndatabase: app\nexpand:\n  - sql: ALTER TABLE missing ADD COLUMN c int\n")});
  ASSERT_EQ(r.status, 0) << r.output;
  ASSERT_TRUE(WaitFor([&] { return Exists(dir_ + "/spool/failed/broken.yaml.error"); }, 10s))
      << ReadAll(dir_ + "/tided.log");
  const std::string error = ReadAll(dir_ + "/spool/failed/broken.yaml.error");
  EXPECT_NE(error.find("expand step 1"), std::string::npos) << error;
  EXPECT_NE(error.find("SQLSTATE 42P01"), std::string::npos) << error;
  EXPECT_EQ(PlanState("broken"), "failed");
  EXPECT_NE(Query("SELECT last_error FROM tide.plans WHERE name = 'broken'").find("42P01"),
            std::string::npos);
  EXPECT_NE(ReadAll(dir_ + "/audit.jsonl").find("\"event\":\"plan_failed\""), std::string::npos);
  auto status = Ctl({"status", "--config", config_});
  EXPECT_NE(status.output.find("failed (in expanding)"), std::string::npos) << status.output;

  // Fixed the cause: `tidectl retry` resumes the plan from the failed step.
  PgCluster::Shared().Exec(db_, "CREATE TABLE missing (id int PRIMARY KEY)");
  r = Ctl({"retry", "broken", "--config", config_});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("from expanding step 1"), std::string::npos) << r.output;
  EXPECT_TRUE(WaitFor([&] { return PlanState("broken") == "done"; }, 10s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Ctl({"retry", "broken", "--config", config_}).status, 1) << "only a failed plan is retried";
}

TEST_F(DaemonTest, AnAppliedPlanIsNotAppliedTwice) {
  PgCluster::Shared().Exec(db_, "CREATE TABLE t (id int PRIMARY KEY)");
  StartDaemon();
  const std::string plan = WritePlan("once.yaml", "plan: once\ndatabase: app\nexpand:\n  - sql: ALTER TABLE t ADD COLUMN c int\n");
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("once") == "done"; }, 10s));
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return Exists(dir_ + "/spool/rejected/once.yaml.error"); }, 10s));
  EXPECT_NE(ReadAll(dir_ + "/spool/rejected/once.yaml.error").find("was already applied"),
            std::string::npos);
  // A different file under the same name names both checksums.
  const std::string other = WritePlan("once.yaml", "plan: once\ndatabase: app\nexpand:\n  - sql: ALTER TABLE t ADD COLUMN d int\n");
  ASSERT_EQ(Ctl({"submit", "--config", config_, other}).status, 0);
  ASSERT_TRUE(WaitFor([&] {
    return ReadAll(dir_ + "/spool/rejected/once.yaml.error").find("this file's") != std::string::npos ||
           testing::Shell("grep -qs \"this file's\" " + dir_ + "/spool/rejected/*.error") == 0;
  }, 10s));
  EXPECT_EQ(Query("SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'd'"), "0");
}

TEST_F(DaemonTest, SigtermStopsCleanlyAndMetricsAreServed) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kClinicPlan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] {
    return std::stoll("0" + Query("SELECT sum(rows_scanned) FROM tide.backfill")) > 0;
  }, 30s));
  auto metrics = RunCommand({"/usr/bin/curl", "-sf", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"});
  ASSERT_EQ(metrics.status, 0) << metrics.output;
  EXPECT_NE(metrics.output.find("tide_plan_state{database=\"app\",plan=\"add_clinic_id\",state=\"backfilling\"} 1"),
            std::string::npos) << metrics.output;
  EXPECT_NE(metrics.output.find("tide_backfill_rows_total{database=\"app\",plan=\"add_clinic_id\",table=\"patient_offers\"}"),
            std::string::npos);
  EXPECT_NE(metrics.output.find("tide_backfill_batch_duration_seconds_bucket"), std::string::npos);

  daemon_->Signal(SIGTERM);
  EXPECT_EQ(daemon_->Wait(15s), 0) << ReadAll(dir_ + "/tided.log");
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"event\":\"daemon_stopped\""), std::string::npos);
  EXPECT_EQ(PlanState("add_clinic_id"), "backfilling") << "stopped, not failed";
  // The checkpoint matches the rows: nothing half-done was left behind.
  EXPECT_EQ(Query("SELECT sum(rows_updated) FROM tide.backfill WHERE plan = 'add_clinic_id'"),
            Query("SELECT count(*) FROM patient_offers WHERE \"clinicId\" IS NOT NULL"));
}

TEST_F(DaemonTest, FinishesWhileTheApplicationKeepsInsertingAndUpdating) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  PgCluster::Shared().Exec(db_, "ALTER TABLE patient_offers ADD COLUMN note text");
  StartDaemon();
  std::atomic<bool> stop{false}, new_version{false};
  std::atomic<int> inserted{0}, app_errors{0};
  std::thread app([&] {
    pqxx::connection c(PgCluster::Shared().Dsn(db_));
    int64_t next = 1000001;
    while (!stop) {
      try {
        pqxx::work w(c);
        // The old application version knows nothing of "clinicId" and leaves it NULL; the new
        // one, deployed once the backfill has run, fills it.
        const std::string clinic = new_version
            ? "(SELECT o.\"clinicId\" FROM offers o WHERE o.id = 1 + g % 1000)" : "NULL";
        w.exec("INSERT INTO patient_offers (id, \"offerId\", \"clinicId\") SELECT g, 1 + g % 1000, " +
               clinic + " FROM generate_series(" + std::to_string(next) + ", " +
               std::to_string(next + 49) + ") g");
        w.exec("UPDATE patient_offers SET note = 'seen' WHERE id IN (SELECT 1 + (random() * 99999)::int "
               "FROM generate_series(1, 20))");
        w.commit();
        next += 50;
        inserted += 50;
      } catch (const pqxx::failure&) {
        // A deadlock with a batch (libpqxx 6 throws deadlock_detected outside sql_error): the
        // application retries, as it would.
        ++app_errors;
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  // The contract waits for the new version: a gate that fails while NULLs still arrive.
  std::string plan = kClinicPlan;
  plan.replace(plan.find("gates:\n"), 7,
               "gates:\n  - sql: SELECT count(*) FROM app_version WHERE version < 2\n    expect: 0\n");
  PgCluster::Shared().Exec(db_, "CREATE TABLE app_version (version int); INSERT INTO app_version VALUES (1)");
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", plan)}).status, 0);
  // The old version writes through the first pass of the backfill and a bit beyond.
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "gating"; }, 60s));
  std::this_thread::sleep_for(1s);
  new_version = true;
  std::this_thread::sleep_for(200ms);  // the last old-version transaction has committed
  PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") != "gating"; }, 60s));
  stop = true;
  app.join();
  ASSERT_GT(inserted, 0);
  EXPECT_LT(app_errors, inserted / 50) << "most application transactions went through";
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 60s))
      << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers WHERE \"clinicId\" IS NULL"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers"), std::to_string(100000 + inserted));
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers po JOIN offers o ON o.id = po.\"offerId\" "
                  "WHERE po.\"clinicId\" <> o.\"clinicId\""), "0");
}

TEST_F(DaemonTest, AUuidKeyedTableFillsOnTwoWorkersWhileTheApplicationInsertsEverywhere) {
  // Random keys: rows the application inserts land in ranges the backfill has already passed.
  PgCluster::Shared().Exec(db_, R"(
    CREATE TABLE events (id uuid PRIMARY KEY, n int NOT NULL, doubled int, updates int NOT NULL DEFAULT 0);
    CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
    CREATE TRIGGER counted BEFORE UPDATE ON events FOR EACH ROW EXECUTE FUNCTION count_updates();
    INSERT INTO events (id, n) SELECT gen_random_uuid(), g FROM generate_series(1, 60000) g;
    ANALYZE events;
    CREATE TABLE app (writing bool); INSERT INTO app VALUES (true);)");
  StartDaemon();
  std::atomic<bool> stop{false};
  std::atomic<int> inserted{0};
  std::thread app([&] {
    pqxx::connection c(PgCluster::Shared().Dsn(db_));
    while (!stop) {
      try {
        pqxx::work w(c);
        w.exec("INSERT INTO events (id, n) SELECT gen_random_uuid(), g FROM generate_series(1, 20) g");
        w.commit();
        inserted += 20;
      } catch (const pqxx::failure&) {
        // Inserts take no lock a batch holds, so nothing is expected here; a failed insert
        // is simply not counted.
      }
      std::this_thread::sleep_for(10ms);
    }
  });
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("events.yaml", R"(plan: double_events
database: app
backfill:
  - table: events
    set: {doubled: n * 2}
    batch_by: key
    workers: 2
    batch_size: 500
    max_batch_size: 2000
gates:
  - null_count: {table: events, column: doubled}
  - sql: SELECT count(*) FROM app WHERE writing
    expect: 0
)")}).status, 0);
  // The application writes through both passes and a few re-checks, then stops.
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/audit.jsonl").find("gate_waiting") !=
                                   std::string::npos; }, 60s))
      << ReadAll(dir_ + "/tided.log");
  std::this_thread::sleep_for(1s);
  stop = true;
  app.join();
  PgCluster::Shared().Exec(db_, "UPDATE app SET writing = false");
  ASSERT_TRUE(WaitFor([&] { return PlanState("double_events") == "done"; }, 60s))
      << ReadAll(dir_ + "/tided.log");
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"ranges\":2,\"batch_by\":\"key\",\"workers\":2"), std::string::npos)
      << "split at a sample of the uuid keys into two ranges";
  EXPECT_NE(audit.find("\"event\":\"backfill_swept\""), std::string::npos)
      << "rows written behind the passes were swept";
  EXPECT_EQ(Query("SELECT count(*) FROM events"), std::to_string(60000 + inserted));
  EXPECT_EQ(Query("SELECT count(*) FROM events WHERE doubled IS DISTINCT FROM n * 2"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM events WHERE updates > 1"), "0") << "no row updated twice";
}

TEST_F(DaemonTest, BatchesThatHitStatementTimeoutAreRetriedSmaller) {
  PgCluster::Shared().Exec(db_, "CREATE TABLE slow (id int PRIMARY KEY, v int NOT NULL, w int)");
  PgCluster::Shared().Exec(db_, "CREATE FUNCTION slow_copy(int) RETURNS int LANGUAGE plpgsql AS "
                                "$$ BEGIN PERFORM pg_sleep(0.001); RETURN $1; END $$");
  PgCluster::Shared().Exec(db_, "INSERT INTO slow SELECT g, g FROM generate_series(1, 3000) g");
  PgCluster::Shared().Exec(db_, "ANALYZE slow");
  StartDaemon();
  // About 1 ms a row: a 1000-row batch takes a second, over the 400 ms statement_timeout.
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("slow.yaml", R"yaml(plan: slow
database: app
settings: {statement_timeout: 400ms}
backfill:
  - table: slow
    set: {w: "slow_copy(v)"}
    batch_size: 1000
    min_batch_size: 10
    target_batch_time: 100ms
)yaml")}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("slow") == "done"; }, 90s)) << ReadAll(dir_ + "/tided.log");
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("SQLSTATE 57014"), std::string::npos) << "a batch timed out";
  EXPECT_NE(audit.find("\"next_batch_size\":500"), std::string::npos) << "and was retried at half the size";
  EXPECT_EQ(Query("SELECT count(*) FROM slow WHERE w = v"), "3000");
}

TEST_F(DaemonTest, TellsSystemdWhenReadyAliveAndStopping) {
  const std::string sock_path = dir_ + "/notify.sock";
  int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path.c_str());
  ASSERT_EQ(::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{0, 200000};
  ::setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string messages;
  auto receive_until = [&](const std::string& what, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (messages.find(what) == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      char buf[4096];
      ssize_t n = ::recv(sock, buf, sizeof buf, 0);
      if (n > 0) messages += std::string(buf, n) + "\n";
    }
    return messages.find(what) != std::string::npos;
  };
  daemon_ = std::make_unique<Process>(
      std::vector<std::string>{TIDED_PATH, "--allow-root", "--config", config_},
      dir_ + "/tided.log",
      std::vector<std::string>{"NOTIFY_SOCKET=" + sock_path, "WATCHDOG_USEC=1000000"});
  EXPECT_TRUE(receive_until("READY=1", 10s)) << messages << ReadAll(dir_ + "/tided.log");
  EXPECT_NE(messages.find("STATUS=0 plan(s) running"), std::string::npos) << messages;
  messages.clear();
  EXPECT_TRUE(receive_until("WATCHDOG=1", 3s)) << "fed every half WatchdogSec";
  daemon_->Signal(SIGTERM);
  EXPECT_TRUE(receive_until("STOPPING=1", 10s)) << messages;
  EXPECT_EQ(daemon_->Wait(10s), 0);
  ::close(sock);
}


TEST_F(DaemonTest, Usr1PausesEverythingUsr2ResumesAndTheAuditNamesTheSender) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  PgCluster::Shared().Exec(db_, "ALTER TABLE patient_offers ADD COLUMN \"clinicId\" text");
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kSlowClinicPlan)}).status, 0);
  auto scanned = [&] { return std::stoll("0" + Query("SELECT sum(rows_scanned) FROM tide.backfill")); };
  ASSERT_TRUE(WaitFor([&] { return scanned() >= 5000; }, 30s)) << ReadAll(dir_ + "/tided.log");
  daemon_->Signal(SIGUSR1);
  std::this_thread::sleep_for(1500ms);  // the batch in flight commits (target_batch_time + 1 s)
  const int64_t held = scanned();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(scanned(), held) << "no batch while paused";
  EXPECT_LT(held, 100000);
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"event\":\"paused\",\"plan\":\"*\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("pid " + std::to_string(::getpid())), std::string::npos)
      << "the sender is this test process";
  auto status = Ctl({"status", "--config", config_});
  EXPECT_NE(status.output.find("paused by "), std::string::npos) << status.output;
  EXPECT_NE(status.output.find("uid " + std::to_string(::getuid())), std::string::npos) << status.output;

  daemon_->Signal(SIGUSR2);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_NE(ReadAll(dir_ + "/audit.jsonl").find("\"event\":\"resumed\""), std::string::npos);
}

TEST_F(DaemonTest, AContractHoldOutlivesARestartAndTidectlResumeReleasesIt) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  PgCluster::Shared().Exec(db_, "ALTER TABLE patient_offers ADD COLUMN \"clinicId\" text");
  StartDaemon();
  auto hold = Ctl({"pause", "add_clinic_id", "--phase", "contract", "--config", config_});
  ASSERT_EQ(hold.status, 0) << hold.output;
  EXPECT_NE(hold.output.find("sent to tided"), std::string::npos) << hold.output;
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kSlowClinicPlan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "contracting"; }, 90s))
      << ReadAll(dir_ + "/tided.log");
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 'po_clinic_nn'"), "0")
      << "held before any constraint goes on";
  auto status = Ctl({"status", "--config", config_});
  EXPECT_NE(status.output.find("held before contract by"), std::string::npos) << status.output;

  daemon_->Signal(SIGKILL);
  daemon_->Wait(10s);
  StartDaemon();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(PlanState("add_clinic_id"), "contracting") << "still held after a restart";
  auto resume = Ctl({"resume", "add_clinic_id", "--config", config_});
  ASSERT_EQ(resume.status, 0) << resume.output;
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 30s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 'po_clinic_nn'"), "1");
}

TEST_F(DaemonTest, SighupReloadsAGoodConfigRefusesABadOneAndTheAuditChainHolds) {
  StartDaemon();
  const std::string good = ReadAll(config_);
  WriteAll(config_, good + "log_level: debug\nmax_workers: 2\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/audit.jsonl").find("config_reloaded") != std::string::npos; }, 10s));
  WriteAll(config_, "spool_dir: [\n");
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/audit.jsonl").find("config_refused") != std::string::npos; }, 10s));
  EXPECT_TRUE(daemon_->running()) << "a bad config never stops the daemon";
  EXPECT_NE(ReadAll(dir_ + "/tided.log").find("the old one stays"), std::string::npos);
  WriteAll(config_, good);
  daemon_->Signal(SIGTERM);
  ASSERT_EQ(daemon_->Wait(15s), 0);

  auto verify = Ctl({"audit", "--file", dir_ + "/audit.jsonl", "--verify"});
  EXPECT_EQ(verify.status, 0) << verify.output;
  std::string log = ReadAll(dir_ + "/audit.jsonl");
  const size_t at = log.find("config_refused");
  ASSERT_NE(at, std::string::npos);
  log.replace(at, 14, "config_removed");
  WriteAll(dir_ + "/audit.jsonl", log);
  auto broken = Ctl({"audit", "--file", dir_ + "/audit.jsonl", "--verify"});
  EXPECT_EQ(broken.status, 1);
  EXPECT_NE(broken.output.find("the audit chain is broken"), std::string::npos) << broken.output;
}

TEST_F(DaemonTest, ALongTransactionInTheWayIsNamedAndTheApplicationNeverWaitsLong) {
  PgCluster::Shared().Exec(db_, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000)");
  StartDaemon();
  // A forgotten transaction holds a lock that ALTER TABLE must wait for.
  pqxx::connection blocker(PgCluster::Shared().Dsn(db_));
  pqxx::work hold(blocker);
  hold.exec("SET application_name = 'report-job'");
  hold.exec("SELECT count(*) FROM t");
  const int64_t blocker_pid = hold.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("alter.yaml",
      "plan: alter\ndatabase: app\nsettings: {lock_timeout: 300ms}\nexpand:\n"
      "  - sql: ALTER TABLE t ADD COLUMN c int\n")}).status, 0);
  // The application keeps reading; each read may queue behind tide's ALTER for at most about
  // lock_timeout, never for the blocker's lifetime.
  std::atomic<bool> stop{false};
  std::atomic<int64_t> worst_ms{0};
  std::thread app([&] {
    pqxx::connection c(PgCluster::Shared().Dsn(db_));
    while (!stop) {
      const auto start = std::chrono::steady_clock::now();
      pqxx::nontransaction n(c);
      n.exec("SELECT count(*) FROM t");
      const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::steady_clock::now() - start).count();
      worst_ms = std::max<int64_t>(worst_ms, ms);
      std::this_thread::sleep_for(20ms);
    }
  });
  ASSERT_TRUE(WaitFor([&] {
    return ReadAll(dir_ + "/audit.jsonl").find("\"event\":\"lock_timeout\"") != std::string::npos;
  }, 20s)) << ReadAll(dir_ + "/tided.log");
  std::this_thread::sleep_for(3s);
  hold.commit();  // the report job finally ends
  ASSERT_TRUE(WaitFor([&] { return PlanState("alter") == "done"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  stop = true;
  app.join();
  const std::string audit = ReadAll(dir_ + "/audit.jsonl");
  EXPECT_NE(audit.find("\"pid\":" + std::to_string(blocker_pid)), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"application_name\":\"report-job\""), std::string::npos);
  EXPECT_LT(worst_ms, 2000) << "an application query waited " << worst_ms << " ms behind tide";
}

TEST_F(DaemonTest, TidectlValidateNamesEveryProblemAndItsPlace) {
  auto good = Ctl({"validate", std::string(TIDE_SOURCE_DIR) + "/plans/add_clinic_id_to_patient_offers.yaml"});
  EXPECT_EQ(good.status, 0) << good.output;
  EXPECT_NE(good.output.find("is valid"), std::string::npos);
  const std::string bad = WritePlan("bad.yaml", "plan: p\ndatabase: billing\nsettings:\n  lock_timeout: 2\n");
  auto r = Ctl({"validate", bad});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.output.find(bad + ":4:17: `lock_timeout` in `settings`: `2` has no unit"), std::string::npos) << r.output;
  auto with_config = Ctl({"validate", WritePlan("db.yaml", "plan: p\ndatabase: billing\n"), "--config", config_});
  EXPECT_EQ(with_config.status, 1);
  EXPECT_NE(with_config.output.find("database `billing` is not in the daemon's config; use one of: app"),
            std::string::npos) << with_config.output;
  EXPECT_EQ(Ctl({"validate", dir_ + "/nope.yaml"}).status, 1);
  EXPECT_EQ(Ctl({"frobnicate"}).status, 2);
}

TEST_F(DaemonTest, AnInvalidConfigIsRefusedWithItsPlace) {
  WriteAll(config_, "spool_dir: /x\naudit_log: /y\ndatabases: {app: {dsn: a}}\ndefaults: {batch_size: zero}\n");
  auto r = RunCommand({TIDED_PATH, "--allow-root", "--config", config_});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.output.find(config_ + ":4:24: `batch_size` in `defaults` is `zero`"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace tide
