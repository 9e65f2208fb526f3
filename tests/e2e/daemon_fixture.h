// The fixture of the end-to-end tests: tided and tidectl as processes, on a temp spool and a
// throwaway PostgreSQL database of the shared test cluster.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <map>
#include <random>
#include <memory>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "support/pg_cluster.h"
#include "support/process.h"

namespace tide {

using namespace std::chrono_literals;
using testing::PgCluster;
using testing::Process;
using testing::ReadAll;
using testing::RunCommand;
using testing::WriteAll;

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = PgCluster::Shared().CreateDatabase("e2e");
    dir_ = testing::MakeTempDir("tide-e2e");
    config_ = dir_ + "/tided.yaml";
    metrics_port_ = testing::FreePort();
    WriteAll(config_, ConfigYaml("", metrics_port_, "  app:\n    dsn: \"" + PgCluster::Shared().Dsn(db_) + "\"\n"));
  }

  // A tided config in dir_: spool `spool<suffix>`, audit log `audit<suffix>.jsonl`, metrics on
  // `port`, and `databases` (the lines under `databases:`).
  std::string ConfigYaml(const std::string& suffix, int port, const std::string& databases) {
    return "spool_dir: " + dir_ + "/spool" + suffix + "\naudit_log: " + dir_ + "/audit" + suffix +
           ".jsonl\nmetrics_listen: 127.0.0.1:" + std::to_string(port) + "\ndatabases:\n" +
           databases + "defaults: {gate_recheck_interval: 200ms}\n";
  }

  void TearDown() override {
    daemon_.reset();
    if (!HasFailure()) testing::Shell("rm -rf " + dir_);
    else std::cerr << "kept " << dir_ << " for inspection\n";
  }

  void StartDaemon() {
    daemon_ = std::make_unique<Process>(
        std::vector<std::string>{TIDED_PATH, "--allow-root", "--config", config_, "--foreground"},
        dir_ + "/tided.log");
    // tided writes its pid once it reads signals, so tidectl's requests reach it from then on
    // (a killed daemon's pid file may still be there).
    const std::string pid = std::to_string(daemon_->pid()) + "\n";
    ASSERT_TRUE(WaitFor([&] {
      return access((dir_ + "/spool/incoming").c_str(), F_OK) == 0 &&
             ReadAll(dir_ + "/spool/tided.pid") == pid;
    }, 10s)) << ReadAll(dir_ + "/tided.log");
  }

  testing::CommandResult Ctl(std::vector<std::string> args) {
    args.insert(args.begin(), TIDECTL_PATH);
    return RunCommand(args);
  }

  bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (cond()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return cond();
  }

  // The first value of `sql`; "" also before the daemon has created the tide schema.
  std::string Query(const std::string& sql) {
    try {
      return PgCluster::Shared().Query(db_, sql);
    } catch (const pqxx::undefined_table&) {
      return "";
    }
  }
  std::string PlanState(const std::string& plan) {
    return Query("SELECT state FROM tide.plans WHERE name = '" + plan + "'");
  }
  bool Exists(const std::string& path) { return access(path.c_str(), F_OK) == 0; }

  std::string WritePlan(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    WriteAll(path, text);
    return path;
  }

  // SIGKILL of tided `kills` times while `plan` runs, shared out over `phases` (a state and the
  // usual length of its window, in ms): each kill waits (polling every 2 ms) until the plan is
  // seen in its phase, then strikes at a random instant within the window, and tided starts
  // again. Prints where the kills struck.
  struct KillPhase {
    const char* state;
    int max_delay_ms;
  };
  void KillAcrossPhases(const std::string& plan, const std::vector<KillPhase>& phases, int kills,
                        std::mt19937* rng) {
    auto rank = [&](const std::string& state) {
      for (size_t i = 0; i < phases.size(); ++i) {
        if (state == phases[i].state) return static_cast<int>(i);
      }
      return state == "done" ? 100 : -1;  // "": not admitted yet
    };
    std::map<std::string, int> killed_in;  // state -> kills
    int done_kills = 0;
    const int n = static_cast<int>(phases.size());
    for (int p = 0; p < n && PlanState(plan) != "done"; ++p) {
      const int share = kills / n + (p < kills % n);
      for (int k = 0; k < share; ++k) {
        const auto deadline = std::chrono::steady_clock::now() + 30s;
        while (rank(PlanState(plan)) < p && std::chrono::steady_clock::now() < deadline) {
          std::this_thread::sleep_for(2ms);
        }
        if (rank(PlanState(plan)) > p) break;  // the phase is over
        std::this_thread::sleep_for(std::chrono::milliseconds(
            std::uniform_int_distribution<int>(0, phases[p].max_delay_ms)(*rng)));
        const std::string state = PlanState(plan);
        daemon_->Signal(SIGKILL);
        daemon_->Wait(10s);
        ++done_kills;
        killed_in[state.empty() ? "submitted" : state]++;
        StartDaemon();
      }
    }
    std::string seen;
    for (const auto& [state, count] : killed_in) seen += state + ":" + std::to_string(count) + " ";
    std::cerr << plan << ": " << done_kills << " kills, in " << seen << "\n";
  }

  std::string db_, dir_, config_;
  int metrics_port_ = 0;
  std::unique_ptr<Process> daemon_;
};

// 1,000 offers of 50 clinics and `rows` patient offers, with a trigger that counts the updates
// of each row (so a test can prove every row was updated exactly once).
// A trigger on table t counting, in its column tide_updates, the updates made by tide's
// batches and sweeps (they set tide.backfill), not the application's.
inline const char* kCountTideUpdatesOnT = R"SQL(
CREATE FUNCTION count_tide_updates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF coalesce(current_setting('tide.backfill', true), '') NOT IN ('', '-') THEN
    NEW.tide_updates := OLD.tide_updates + 1;
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER counted BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION count_tide_updates();
)SQL";

inline std::string OffersSchema(int rows) {
  return R"SQL(
CREATE TABLE offers (id bigint PRIMARY KEY, "clinicId" text NOT NULL);
CREATE TABLE patient_offers (id bigint PRIMARY KEY, "offerId" bigint NOT NULL REFERENCES offers (id),
                             updates int NOT NULL DEFAULT 0);
INSERT INTO offers SELECT g, 'clinic-' || (g % 50) FROM generate_series(1, 1000) g;
INSERT INTO patient_offers (id, "offerId") SELECT g, 1 + g % 1000 FROM generate_series(1, )SQL" +
         std::to_string(rows) + R"SQL() g;
CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS
  $$ BEGIN NEW.updates := OLD.updates + 1; RETURN NEW; END $$;
CREATE TRIGGER counted BEFORE UPDATE ON patient_offers FOR EACH ROW EXECUTE FUNCTION count_updates();
ANALYZE;
)SQL";
}
inline const std::string kOffersSchema = OffersSchema(100000);

// A backfill slow enough to watch, pause and break in the middle of.
inline const char* kSlowClinicPlan = R"(plan: add_clinic_id
database: app
backfill:
  - table: patient_offers
    set:
      clinicId: (SELECT o."clinicId" FROM offers o WHERE o.id = patient_offers."offerId")
    batch_size: 500
    max_batch_size: 500
    pause_between_batches: 20ms
gates:
  - null_count: {table: patient_offers, column: clinicId}
contract:
  - sql: ALTER TABLE patient_offers ADD CONSTRAINT po_clinic_nn CHECK ("clinicId" IS NOT NULL) NOT VALID
)";

}  // namespace tide
