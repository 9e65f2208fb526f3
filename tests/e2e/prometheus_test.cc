// A real Prometheus scrapes a tided that runs a plan; every query of the Grafana dashboard must
// return data, and every metric it names must be one tided exports.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "support/pg_cluster.h"
#include "support/process.h"
#include "util/json_parse.h"

namespace tide {
namespace {

using namespace std::chrono_literals;
using testing::PgCluster;

bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return cond();
}

std::string Curl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/curl", "-s", "--max-time", "10"};
  argv.insert(argv.end(), args.begin(), args.end());
  return testing::RunCommand(argv).output;
}

// The "expr" strings of the dashboard, in order.
std::vector<std::string> DashboardQueries(const std::string& json) {
  std::vector<std::string> out;
  std::regex expr("\"expr\": \"((?:[^\"\\\\]|\\\\.)*)\"");
  for (std::sregex_iterator it(json.begin(), json.end(), expr), end; it != end; ++it) {
    auto parsed = ParseFlatJson("{\"e\":\"" + (*it)[1].str() + "\"}");
    out.push_back(parsed ? (*parsed)["e"] : (*it)[1].str());
  }
  return out;
}

TEST(Prometheus, EveryDashboardQueryReturnsDataFromARealScrape) {
  PgCluster& pg = PgCluster::Shared();
  const std::string db = pg.CreateDatabase("prom");
  pg.Exec(db, "CREATE TABLE t (id bigint PRIMARY KEY, v int NOT NULL)");
  pg.Exec(db, "INSERT INTO t SELECT g, g FROM generate_series(1, 60000) g; ANALYZE t");
  const std::string dir = testing::MakeTempDir("tide-prom");
  const int metrics_port = testing::FreePort(), prom_port = testing::FreePort();
  testing::WriteAll(dir + "/tided.yaml", "spool_dir: " + dir + "/spool\naudit_log: " + dir +
                                            "/audit.jsonl\nmetrics_listen: 127.0.0.1:" +
                                            std::to_string(metrics_port) + "\ndatabases:\n  app:\n    dsn: \"" +
                                            pg.Dsn(db) + "\"\n");
  testing::WriteAll(dir + "/prometheus.yml",
                    "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
                    "scrape_configs:\n  - job_name: tided\n    static_configs:\n"
                    "      - targets: [\"127.0.0.1:" + std::to_string(metrics_port) + "\"]\n");
  testing::Process prometheus({"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
                               "--storage.tsdb.path=" + dir + "/tsdb",
                               "--web.listen-address=127.0.0.1:" + std::to_string(prom_port)},
                              dir + "/prometheus.log");
  testing::Process tided({TIDED_PATH, "--allow-root", "--config", dir + "/tided.yaml"}, dir + "/tided.log");
  ASSERT_TRUE(WaitFor([&] { return access((dir + "/spool/incoming").c_str(), F_OK) == 0; }, 10s));
  testing::WriteAll(dir + "/plan.yaml", R"(plan: prom
database: app
expand:
  - sql: ALTER TABLE t ADD COLUMN w int
backfill:
  - table: t
    set: {w: v * 2}
    batch_size: 1000
    max_batch_size: 1000
    pause_between_batches: 100ms
gates:
  - null_count: {table: t, column: w}
contract:
  - sql: ALTER TABLE t ADD CONSTRAINT w_nn CHECK (w IS NOT NULL) NOT VALID
)");
  auto submit = testing::RunCommand({TIDECTL_PATH, "submit", "--config", dir + "/tided.yaml", dir + "/plan.yaml"});
  ASSERT_EQ(submit.status, 0) << submit.output;
  const std::string api = "http://127.0.0.1:" + std::to_string(prom_port) + "/api/v1/query";
  // tide.plans exists only once tided has taken the plan in: until then, not done yet.
  auto state = [&]() -> std::string {
    try {
      return pg.Query(db, "SELECT state FROM tide.plans");
    } catch (const std::exception&) {
      return "";
    }
  };
  ASSERT_TRUE(WaitFor([&] { return state() == "done"; }, 120s))
      << testing::ReadAll(dir + "/tided.log");
  std::this_thread::sleep_for(3s);  // a few scrapes after the end

  const std::string exported = Curl({"http://127.0.0.1:" + std::to_string(metrics_port) + "/metrics"});
  std::set<std::string> names;
  std::regex name_re("^(tide_[a-z_]+)", std::regex::multiline);
  for (std::sregex_iterator it(exported.begin(), exported.end(), name_re), end; it != end; ++it) {
    names.insert((*it)[1].str());
  }
  const auto queries = DashboardQueries(testing::ReadAll(std::string(TIDE_SOURCE_DIR) + "/deploy/grafana/tide.json"));
  ASSERT_GE(queries.size(), 12u);
  std::regex metric_re("tide_[a-z_]+");
  for (std::string q : queries) {
    for (std::sregex_iterator it(q.begin(), q.end(), metric_re), end; it != end; ++it) {
      EXPECT_TRUE(names.count((*it)[0].str())) << "the dashboard names " << (*it)[0].str()
                                               << ", which tided does not export";
    }
    q = std::regex_replace(q, std::regex("\\$plan"), ".*");
    const std::string out = Curl({"-G", api, "--data-urlencode", "query=" + q});
    EXPECT_NE(out.find("\"status\":\"success\""), std::string::npos) << q << "\n" << out;
    EXPECT_NE(out.find("\"result\":[{"), std::string::npos) << "no data for: " << q << "\n" << out;
  }
  tided.Signal(SIGTERM);
  EXPECT_EQ(tided.Wait(15s), 0);
  prometheus.Signal(SIGTERM);
  prometheus.Wait(15s);
  testing::Shell("rm -rf " + dir);
}

}  // namespace
}  // namespace tide
