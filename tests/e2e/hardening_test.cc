// What a local user or a hostile file cannot make tided do: run as root unasked, take plans from
// a spool anyone can write, follow links, read fifos, take files from users not allowed, or
// show a database password anywhere.
#include <signal.h>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "e2e/daemon_fixture.h"

namespace tide {
namespace {

const char* kPlan = R"(plan: add_note
database: app
expand:
  - add_column: {table: notes_target, column: note, type: text}
)";

class HardeningTest : public DaemonTest {};

TEST_F(HardeningTest, RefusesToRunAsRootUnlessTold) {
  auto r = RunCommand({TIDED_PATH, "--config", config_});
  if (::geteuid() == 0) {
    EXPECT_EQ(r.status, 2) << r.output;
    EXPECT_NE(r.output.find("refusing to run as root"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("--allow-root"), std::string::npos) << r.output;
  } else {
    EXPECT_EQ(r.output.find("refusing to run as root"), std::string::npos) << r.output;
  }
}

TEST_F(HardeningTest, RefusesASpoolEveryUserCanWriteTo) {
  ASSERT_EQ(testing::Shell("mkdir -p " + dir_ + "/spool/incoming && chmod 0777 " + dir_ + "/spool/incoming"), 0);
  auto r = RunCommand({TIDED_PATH, "--allow-root", "--config", config_});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(dir_ + "/spool/incoming is writable by every user (mode 0777)"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("chmod o-w"), std::string::npos) << r.output;
}

TEST_F(HardeningTest, LinksFifosHardLinksAndStrangersFilesAreRejectedUnread) {
  PgCluster::Shared().Exec(db_, "CREATE TABLE notes_target (id int PRIMARY KEY)");
  StartDaemon();
  const std::string in = dir_ + "/spool/incoming/";
  const std::string outside = WritePlan("outside.yaml", kPlan);
  ASSERT_EQ(symlink(outside.c_str(), (in + "link.yaml").c_str()), 0);
  ASSERT_EQ(mkfifo((in + "fifo.yaml").c_str(), 0644), 0);
  ASSERT_EQ(link(outside.c_str(), (in + "hard.yaml").c_str()), 0);
  WriteAll(dir_ + "/stranger.yaml", kPlan);
  ASSERT_EQ(chown((dir_ + "/stranger.yaml").c_str(), 54321, 54321), 0);
  ASSERT_EQ(rename((dir_ + "/stranger.yaml").c_str(), (in + "stranger.yaml").c_str()), 0);

  const std::string rejected = dir_ + "/spool/rejected/";
  for (const char* name : {"link.yaml", "fifo.yaml", "hard.yaml", "stranger.yaml"}) {
    ASSERT_TRUE(WaitFor([&] { return Exists(rejected + name + ".error"); }, 10s))
        << name << "\n" << ReadAll(dir_ + "/tided.log");
  }
  EXPECT_NE(ReadAll(rejected + "link.yaml.error").find("is a symbolic link, which tide never follows"), std::string::npos);
  EXPECT_NE(ReadAll(rejected + "fifo.yaml.error").find("is a fifo, not a regular file"), std::string::npos);
  EXPECT_NE(ReadAll(rejected + "hard.yaml.error").find("has 2 hard links"), std::string::npos);
  EXPECT_NE(ReadAll(rejected + "stranger.yaml.error").find("uid 54321), who is not in the config's allowed_submitters"),
            std::string::npos);
  struct stat st;
  ASSERT_EQ(lstat((rejected + "link.yaml").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the link itself was moved, not what it points to";
  EXPECT_EQ(ReadAll(outside), kPlan) << "the file behind the link is untouched";
  EXPECT_EQ(PlanState("add_note"), "") << "no rejected file was run";
  EXPECT_EQ(Query("SELECT count(*) FROM pg_attribute WHERE attrelid = 'notes_target'::regclass AND attname = 'note'"), "0");

  // The daemon goes on: a proper submission runs.
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("ok.yaml", kPlan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_note") == "done"; }, 20s)) << ReadAll(dir_ + "/tided.log");
}

TEST_F(HardeningTest, ADatabasePasswordAppearsNowhere) {
  const std::string secret = "S3cr3t-pa55word";
  PgCluster::Shared().Exec(db_, "CREATE TABLE notes_target (id int PRIMARY KEY)");
  // The test cluster trusts local connections, so the password is sent and ignored; a second
  // database that is down makes tided report connection errors too.
  WriteAll(config_, ConfigYaml("", metrics_port_,
                                "  app:\n    dsn: \"" + PgCluster::Shared().Dsn(db_) + " password=" +
                                    secret + "\"\n  down:\n    dsn: \"host=127.0.0.1 port=" +
                                    std::to_string(testing::FreePort()) +
                                    " dbname=x user=tide password=" + secret + "\"\n"));
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("ok.yaml", kPlan)}).status, 0);
  ASSERT_EQ(Ctl({"submit", "--config", config_,
                 WritePlan("bad.yaml", "plan: broken\ndatabase: app\nexpand:\n  - sql: ALTER TABLE nope ADD COLUMN c int\n")})
                .status,
            0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_note") == "done" && PlanState("broken") == "failed"; }, 30s))
      << ReadAll(dir_ + "/tided.log");
  std::string seen;
  seen += Ctl({"status", "--config", config_}).output;
  seen += Ctl({"status", "--config", config_, "--json"}).output;
  seen += Ctl({"history", "--config", config_}).output;
  seen += Ctl({"audit", "--config", config_}).output;
  seen += RunCommand({"/usr/bin/curl", "-s", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"}).output;
  daemon_->Signal(SIGHUP);  // a reload logs the config it read
  std::this_thread::sleep_for(500ms);
  daemon_->Signal(SIGTERM);
  daemon_->Wait(10s);
  seen += ReadAll(dir_ + "/tided.log") + ReadAll(dir_ + "/audit.jsonl") +
          ReadAll(dir_ + "/spool/failed/bad.yaml.error");
  EXPECT_NE(seen.find("down"), std::string::npos) << "the unreachable database was reported";
  EXPECT_NE(seen.find("relation \"nope\" does not exist"), std::string::npos);
  EXPECT_EQ(seen.find(secret), std::string::npos) << seen;
}


TEST_F(HardeningTest, NoWorkStartsWhileTheAuditLogCannotBeWritten) {
  PgCluster::Shared().Exec(db_, kOffersSchema);
  PgCluster::Shared().Exec(db_, "ALTER TABLE patient_offers ADD COLUMN \"clinicId\" text");
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kSlowClinicPlan)}).status, 0);
  auto scanned = [&] { return std::stoll("0" + Query("SELECT sum(rows_scanned) FROM tide.backfill")); };
  ASSERT_TRUE(WaitFor([&] { return scanned() >= 5000; }, 30s)) << ReadAll(dir_ + "/tided.log");
  // The log is removed and a directory takes its name: it cannot be created again.
  ASSERT_EQ(testing::Shell("rm " + dir_ + "/audit.jsonl && mkdir " + dir_ + "/audit.jsonl"), 0);
  auto metrics = [&] {
    return RunCommand({"/usr/bin/curl", "-sf", "http://127.0.0.1:" + std::to_string(metrics_port_) + "/metrics"}).output;
  };
  ASSERT_TRUE(WaitFor([&] { return metrics().find("tide_audit_log_writable 0") != std::string::npos; }, 10s));
  std::this_thread::sleep_for(1s);  // a batch in flight commits
  const int64_t held = scanned();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(scanned(), held) << "no batch started while nothing could be recorded";
  EXPECT_NE(ReadAll(dir_ + "/tided.log").find("tide starts no new work"), std::string::npos);

  ASSERT_EQ(testing::Shell("rmdir " + dir_ + "/audit.jsonl"), 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_NE(metrics().find("tide_audit_log_writable 1"), std::string::npos);
  EXPECT_NE(ReadAll(dir_ + "/audit.jsonl").find("\"event\":\"audit_log_recovered\""), std::string::npos);
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers WHERE updates <> 1"), "0");
}

TEST_F(HardeningTest, TidedsOwnEventsWaitInOrderWithTheOthersWhileTheAuditLogCannotBeWritten) {
  StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/audit.jsonl").find("daemon_started") != std::string::npos; }, 10s));
  ASSERT_EQ(testing::Shell("rm " + dir_ + "/audit.jsonl && mkdir " + dir_ + "/audit.jsonl"), 0);
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/tided.log").find("tide starts no new work") != std::string::npos; }, 10s));
  auto logged = [&](const std::string& text) {
    return WaitFor([&] { return ReadAll(dir_ + "/tided.log").find(text) != std::string::npos; }, 10s);
  };
  daemon_->Signal(SIGUSR1);  // the orchestrator's event
  ASSERT_TRUE(logged("pause of every plan"));
  const std::string good = ReadAll(config_);
  WriteAll(config_, good + "no_such_setting: 1\n");
  daemon_->Signal(SIGHUP);  // tided's own events
  ASSERT_TRUE(logged("the new config is refused"));
  WriteAll(config_, good);
  daemon_->Signal(SIGHUP);
  ASSERT_TRUE(logged("config reloaded"));
  daemon_->Signal(SIGUSR2);
  ASSERT_TRUE(logged("resume of every plan"));

  ASSERT_EQ(testing::Shell("rmdir " + dir_ + "/audit.jsonl"), 0);
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/audit.jsonl").find("audit_log_recovered") != std::string::npos; }, 10s));
  daemon_->Signal(SIGTERM);
  ASSERT_EQ(daemon_->Wait(20s), 0) << ReadAll(dir_ + "/tided.log");

  std::vector<std::string> events;
  std::istringstream in(ReadAll(dir_ + "/audit.jsonl"));
  int64_t last_seq = 0;
  for (std::string line; std::getline(in, line);) {
    const size_t e = line.find("\"event\":\"") + 9;
    events.push_back(line.substr(e, line.find('"', e) - e));
    const int64_t seq = std::stoll(line.substr(7));
    if (last_seq != 0) {
      EXPECT_EQ(seq, last_seq + 1) << line;
    }
    last_seq = seq;
  }
  EXPECT_EQ(events, (std::vector<std::string>{"paused", "config_refused", "config_reloaded", "resumed",
                                              "audit_log_recovered", "daemon_stopping", "daemon_stopped"}));
  auto verify = Ctl({"audit", "--verify", "--file", dir_ + "/audit.jsonl"});
  EXPECT_EQ(verify.status, 0) << verify.output;
}

TEST_F(HardeningTest, ASecondTidedOnTheSameSpoolRefusesToStartAndTheFirstGoesOn) {
  PgCluster::Shared().Exec(db_, OffersSchema(40000));
  PgCluster::Shared().Exec(db_, "ALTER TABLE patient_offers ADD COLUMN \"clinicId\" text");
  StartDaemon();
  const std::string first = std::to_string(daemon_->pid());
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kSlowClinicPlan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return std::stoll("0" + Query("SELECT sum(rows_scanned) FROM tide.backfill")) > 0; }, 30s))
      << ReadAll(dir_ + "/tided.log");
  // The lease owner is this process: host (with its machine id):spool:pid.
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  const std::string owner = Query("SELECT owner FROM tide.leases WHERE plan = 'add_clinic_id'");
  EXPECT_EQ(owner.rfind(host, 0), 0u) << owner;
  const std::string tail = ":" + dir_ + "/spool:" + first;
  EXPECT_TRUE(owner.size() > tail.size() && owner.compare(owner.size() - tail.size(), tail.size(), tail) == 0)
      << owner;

  // Only the spool is shared: the second has its own metrics port and audit log.
  std::string config = ReadAll(config_);
  const std::string port = "127.0.0.1:" + std::to_string(metrics_port_);
  config.replace(config.find(port), port.size(), "127.0.0.1:" + std::to_string(testing::FreePort()));
  config.replace(config.find("/audit.jsonl"), 12, "/audit2.jsonl");
  WriteAll(dir_ + "/second.yaml", config);
  Process second({TIDED_PATH, "--allow-root", "--config", dir_ + "/second.yaml"}, dir_ + "/second.log");
  EXPECT_EQ(second.Wait(15s), 1) << "the second tided ran beside the first\n" << ReadAll(dir_ + "/second.log");
  EXPECT_NE(ReadAll(dir_ + "/second.log").find("another tided (pid " + first + ") is running on spool " + dir_ +
                                               "/spool; stop it first or give this one its own spool_dir"),
            std::string::npos)
      << ReadAll(dir_ + "/second.log");
  EXPECT_FALSE(Exists(dir_ + "/audit2.jsonl")) << "the second one stopped before it opened anything";
  EXPECT_EQ(ReadAll(dir_ + "/spool/tided.pid"), first + "\n");
  EXPECT_EQ(ReadAll(dir_ + "/spool/tided.lock"), first + "\n");

  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 90s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_TRUE(daemon_->running());
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers WHERE updates <> 1"), "0");
}

TEST_F(HardeningTest, WarnsWhenMetricsListenBeyondLoopback) {
  std::string config = ReadAll(config_);
  const std::string loopback = "metrics_listen: 127.0.0.1:";
  config.replace(config.find(loopback), loopback.size(), "metrics_listen: 0.0.0.0:");
  WriteAll(config_, config);
  StartDaemon();
  ASSERT_TRUE(WaitFor([&] { return ReadAll(dir_ + "/tided.log").find("started") != std::string::npos; }, 10s));
  EXPECT_NE(ReadAll(dir_ + "/tided.log").find("reachable from other hosts"), std::string::npos)
      << ReadAll(dir_ + "/tided.log");
}


TEST_F(HardeningTest, AnUnknownSubmitterInTheConfigStopsTheStart) {
  WriteAll(config_, ReadAll(config_) + "allowed_submitters: [root, no_such_user_here]\n");
  auto r = RunCommand({TIDED_PATH, "--allow-root", "--config", config_});
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("allowed_submitters names `no_such_user_here`, which is not a user on this machine"),
            std::string::npos) << r.output;
}

}  // namespace
}  // namespace tide
