// Signals that arrive together: a `kill -USR1` or `-USR2` and a tidectl request pending at the
// same time both take effect, whichever came first (tidectl's is a real-time signal, queued, so
// the kernel never merges it with a SIGUSR1); the older tidectl form still works; and a pid file
// naming a process that is not tided does not get that process signalled.
#include <signal.h>

#include "e2e/daemon_fixture.h"
#include "runtime/control.h"
#include "runtime/files.h"

namespace tide {
namespace {

class SignalsTest : public DaemonTest {
 protected:
  std::string Audit() { return ReadAll(dir_ + "/audit.jsonl"); }
  // How many `event` lines of `plan` (and `phase`) the audit log holds.
  size_t Count(const std::string& event, const std::string& plan, const std::string& phase = "") {
    const std::string needle = "\"event\":\"" + event + "\",\"plan\":\"" + plan + "\",\"phase\":\"" + phase + "\"";
    const std::string audit = Audit();
    size_t n = 0;
    for (size_t at = audit.find(needle); at != std::string::npos; at = audit.find(needle, at + 1)) ++n;
    return n;
  }
  // Stops tided (SIGSTOP) and waits until it is stopped: signals sent meanwhile stay pending.
  void Freeze() {
    ASSERT_EQ(::kill(daemon_->pid(), SIGSTOP), 0);
    ASSERT_TRUE(WaitFor([&] {
      return ReadAll("/proc/" + std::to_string(daemon_->pid()) + "/status").find("State:\tT") != std::string::npos;
    }, 5s));
  }
  void Thaw() { ASSERT_EQ(::kill(daemon_->pid(), SIGCONT), 0); }
};

TEST_F(SignalsTest, AKillAndATidectlRequestPendingTogetherBothTakeEffect) {
  PgCluster::Shared().Exec(db_, OffersSchema(40000));
  PgCluster::Shared().Exec(db_, "ALTER TABLE patient_offers ADD COLUMN \"clinicId\" text");
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("clinic.yaml", kSlowClinicPlan)}).status, 0);
  auto scanned = [&] { return std::stoll("0" + Query("SELECT sum(rows_scanned) FROM tide.backfill")); };
  ASSERT_TRUE(WaitFor([&] { return scanned() >= 2000; }, 30s)) << ReadAll(dir_ + "/tided.log");

  // The kill first, then tidectl's request, while tided cannot read either.
  Freeze();
  ASSERT_EQ(::kill(daemon_->pid(), SIGUSR1), 0);
  auto pause = Ctl({"pause", "add_clinic_id", "--config", config_});
  ASSERT_EQ(pause.status, 0) << pause.output;
  EXPECT_NE(pause.output.find("sent to tided (pid " + std::to_string(daemon_->pid()) + ")"), std::string::npos)
      << pause.output;
  Thaw();
  ASSERT_TRUE(WaitFor([&] { return Count("paused", "*") == 1 && Count("paused", "add_clinic_id") == 1; }, 10s))
      << Audit();
  auto status = Ctl({"status", "--config", config_});
  EXPECT_NE(status.output.find("paused by "), std::string::npos) << status.output;

  // tidectl's request first, then the kill.
  Freeze();
  auto resume = Ctl({"resume", "add_clinic_id", "--config", config_});
  ASSERT_EQ(resume.status, 0) << resume.output;
  ASSERT_EQ(::kill(daemon_->pid(), SIGUSR2), 0);
  Thaw();
  ASSERT_TRUE(WaitFor([&] { return Count("resumed", "add_clinic_id") == 1 && Count("resumed", "*") == 1; }, 10s))
      << Audit();

  // The form older tidectl sends, SIGUSR1 queued with kControlSignalValue, reads the control
  // folder and pauses nothing else.
  ControlRequest hold;
  hold.action = "pause";
  hold.plan = "add_clinic_id";
  hold.phase = "contract";
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/spool/control/0-older-tidectl.json", FormatControlRequest(hold)).ok());
  union sigval value;
  value.sival_int = kControlSignalValue;
  ASSERT_EQ(::sigqueue(daemon_->pid(), SIGUSR1, value), 0);
  ASSERT_TRUE(WaitFor([&] { return Count("paused", "add_clinic_id", "contract") == 1; }, 10s)) << Audit();
  EXPECT_EQ(Count("paused", "*"), 1u) << "a SIGUSR1 carrying the value is not a pause of everything";

  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "contracting"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conname = 'po_clinic_nn'"), "0") << "held before contract";
  ASSERT_EQ(Ctl({"resume", "add_clinic_id", "--config", config_}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("add_clinic_id") == "done"; }, 60s)) << ReadAll(dir_ + "/tided.log");
  EXPECT_EQ(Query("SELECT count(*) FROM patient_offers WHERE updates <> 1"), "0");
}

TEST_F(SignalsTest, TidectlDoesNotSignalAProcessThatIsNotTided) {
  // A pid file left behind, its pid now another program's (which either signal would end).
  Process other({"/bin/sleep", "30"}, dir_ + "/sleep.log");
  ASSERT_EQ(testing::Shell("mkdir -p " + dir_ + "/spool/control"), 0);
  WriteAll(dir_ + "/spool/tided.pid", std::to_string(other.pid()) + "\n");
  auto r = Ctl({"pause", "--all", "--spool", dir_ + "/spool"});
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("tided is not running"), std::string::npos) << r.output;
  std::this_thread::sleep_for(300ms);
  EXPECT_TRUE(other.running()) << "the other program got a signal";
  EXPECT_EQ(testing::Shell("test \"$(ls " + dir_ + "/spool/control | wc -l)\" = 1"), 0)
      << "the request waits for tided";
}

}  // namespace
}  // namespace tide
