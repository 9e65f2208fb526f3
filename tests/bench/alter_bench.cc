// The integer-to-bigint change of a table with a foreign key, side by side: a plain
// `ALTER TABLE ... ALTER COLUMN ... TYPE bigint` (both columns, one transaction) against tide's
// alter_column plan, on the same private PostgreSQL 15 and fresh copies of the same data, in
// alternating order over several rounds. A simulated application (tests/support/app_sim.h)
// inserts, updates and reads throughout; what it measures is the longest time any of its
// statements waited: the whole ALTER for the plain one, the switch (and the brief locks before
// it) for tide.
//   build/tide_alter_bench [--rows N] [--rounds R]      (tests/bench/alter_bench.sh runs it)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/app_sim.h"
#include "support/pg_cluster.h"
#include "support/process.h"

namespace {

using namespace std::chrono_literals;
using tide::testing::AppOptions;
using tide::testing::AppSim;
using tide::testing::AppStatements;
using tide::testing::PgCluster;

struct Run {
  double seconds = 0;
  int64_t longest_ms = 0;
  int64_t lock_held_ms = -1;
  size_t errors = 0;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t rows = 1000000;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--rows") rows = std::atoll(argv[i + 1]);
    else if (a == "--rounds") rounds = std::atoi(argv[i + 1]);
  }
  PgCluster& pg = PgCluster::Shared();
  const std::string db = pg.CreateDatabase("alter_bench");
  const std::string n = std::to_string(rows);
  pg.Exec(db, "CREATE TABLE accounts_template AS SELECT g AS id, 'account ' || g AS name FROM "
              "generate_series(1, " + n + ") g; CREATE TABLE orders_template AS SELECT g AS id, "
              "(1 + (g::bigint * 7919) % " + n + ")::int AS account_id, g % 1000 AS amount FROM generate_series(1, " + n + ") g");
  const std::string dir = tide::testing::MakeTempDir("tide-alter-bench");
  const std::string config = dir + "/tided.yaml";
  tide::testing::WriteAll(config, "spool_dir: " + dir + "/spool\naudit_log: " + dir +
                                      "/audit.jsonl\nmetrics_listen: 127.0.0.1:" +
                                      std::to_string(tide::testing::FreePort()) +
                                      "\ndatabases:\n  app:\n    dsn: \"" + pg.Dsn(db) +
                                      "\"\ndefaults: {gate_recheck_interval: 200ms}\n");
  tide::testing::Process tided({TIDED_PATH, "--allow-root", "--config", config, "--foreground"},
                               dir + "/tided.log");
  std::this_thread::sleep_for(1s);

  auto reset = [&] {
    pg.Exec(db, "DROP TABLE IF EXISTS orders, accounts; "
                "CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL); "
                "INSERT INTO accounts SELECT * FROM accounts_template; "
                "SELECT setval('accounts_id_seq', " + n + "); "
                "CREATE TABLE orders (id serial PRIMARY KEY, account_id integer NOT NULL, amount int NOT NULL); "
                "INSERT INTO orders SELECT * FROM orders_template; "
                "SELECT setval('orders_id_seq', " + n + "); "
                "ALTER TABLE orders ADD CONSTRAINT orders_account_id_fkey FOREIGN KEY (account_id) "
                "REFERENCES accounts (id); CREATE INDEX orders_account_id_idx ON orders (account_id)");
    pg.Exec(db, "VACUUM ANALYZE accounts");
    pg.Exec(db, "VACUUM ANALYZE orders");
    pg.Exec(db, "CHECKPOINT");
  };
  AppStatements app_sql{
      "INSERT INTO orders (account_id, amount) VALUES (1 + {v} % " + n + ", 1)",
      "UPDATE orders SET amount = {v} % 1000 WHERE id = {row}", "",
      "SELECT a.name FROM orders o JOIN accounts a ON a.id = o.account_id WHERE o.id = {row}"};
  auto measure = [&](const std::function<int64_t()>& op) {
    AppOptions options;
    options.dsn = pg.Dsn(db) + " application_name=bench_app";
    options.seeded_rows = rows;
    AppSim app(options, app_sql, app_sql);
    app.Start();
    std::this_thread::sleep_for(1s);
    Run r;
    const auto start = std::chrono::steady_clock::now();
    r.lock_held_ms = op();
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::this_thread::sleep_for(500ms);
    app.Stop();
    const auto report = app.Report();
    r.longest_ms = report.longest_ms;
    r.errors = report.errors.size();
    return r;
  };
  auto plain = [&] {
    pg.Exec(db, "BEGIN; ALTER TABLE orders ALTER COLUMN account_id TYPE bigint; ALTER TABLE "
                "accounts ALTER COLUMN id TYPE bigint; ALTER SEQUENCE accounts_id_seq AS bigint; COMMIT");
    return int64_t{-1};
  };
  int plan_no = 0;
  auto tide_run = [&] {
    const std::string name = "bench_bigint_" + std::to_string(++plan_no);
    const std::string plan = dir + "/" + name + ".yaml";
    tide::testing::WriteAll(plan, "plan: " + name + "\ndatabase: app\nsettings: {lock_timeout: 500ms, "
                                  "statement_timeout: 10m}\nexpand:\n"
                                  "  - alter_column: {table: accounts, column: id, type: bigint}\n"
                                  "  - alter_column: {table: orders, column: account_id, type: bigint}\n");
    auto submit = tide::testing::RunCommand({TIDECTL_PATH, "submit", "--config", config, plan});
    if (submit.status != 0) {
      std::cerr << submit.output;
      std::exit(1);
    }
    for (;;) {
      std::string state;
      try {
        state = pg.Query(db, "SELECT state FROM tide.plans WHERE name = '" + name + "'");
      } catch (const std::exception&) {
      }
      if (state == "done") break;
      if (state == "failed") {
        std::cerr << "plan failed: " << pg.Query(db, "SELECT last_error FROM tide.plans WHERE name = '" + name + "'") << "\n";
        std::exit(1);
      }
      std::this_thread::sleep_for(50ms);
    }
    std::istringstream audit(tide::testing::ReadAll(dir + "/audit.jsonl"));
    int64_t held = -1;
    const std::regex re("\"lock_held_ms\":([0-9]+)");
    for (std::string line; std::getline(audit, line);) {
      std::smatch m;
      if (line.find("\"event\":\"switch_finished\"") != std::string::npos &&
          line.find("\"plan\":\"" + name + "\"") != std::string::npos && std::regex_search(line, m, re)) {
        held = std::stoll(m[1]);
      }
    }
    return held;
  };

  std::vector<Run> plains, tides;
  for (int round = 1; round <= rounds; ++round) {
    // Alternating order: plain first in odd rounds, tide first in even ones.
    for (int k = 0; k < 2; ++k) {
      const bool plain_now = (round % 2 == 1) == (k == 0);
      reset();
      std::cerr << "round " << round << ": " << (plain_now ? "plain ALTER" : "tide") << "\n";
      (plain_now ? plains : tides).push_back(measure(plain_now ? std::function<int64_t()>(plain)
                                                               : std::function<int64_t()>(tide_run)));
    }
  }
  std::printf("\ninteger to bigint, %lld accounts + %lld orders with a foreign key, %d rounds "
              "(alternating order)\n",
              static_cast<long long>(rows), static_cast<long long>(rows), rounds);
  std::printf("%-8s %12s %14s %12s %16s %14s %8s\n", "round", "ALTER s", "ALTER block ms", "tide s",
              "tide block ms", "switch lock ms", "errors");
  std::vector<double> total_ratio, block_ratio, a_s, t_s, a_b, t_b, held;
  for (int i = 0; i < rounds; ++i) {
    const Run& a = plains[i];
    const Run& t = tides[i];
    std::printf("%-8d %12.1f %14lld %12.1f %16lld %14lld %4zu/%zu\n", i + 1, a.seconds,
                static_cast<long long>(a.longest_ms), t.seconds, static_cast<long long>(t.longest_ms),
                static_cast<long long>(t.lock_held_ms), a.errors, t.errors);
    total_ratio.push_back(t.seconds / a.seconds);
    block_ratio.push_back(static_cast<double>(a.longest_ms) / std::max<int64_t>(1, t.longest_ms));
    a_s.push_back(a.seconds);
    t_s.push_back(t.seconds);
    a_b.push_back(static_cast<double>(a.longest_ms));
    t_b.push_back(static_cast<double>(t.longest_ms));
    held.push_back(static_cast<double>(t.lock_held_ms));
  }
  std::printf("%-8s %12.1f %14.0f %12.1f %16.0f %14.0f\n", "median", Median(a_s), Median(a_b),
              Median(t_s), Median(t_b), Median(held));
  std::printf("tide's total time / the plain ALTER's: %.2f (median of the rounds' ratios)\n",
              Median(total_ratio));
  std::printf("the plain ALTER's longest application wait / tide's: %.1f\n", Median(block_ratio));
  tided.Signal(15);
  tided.Wait(10s);
  return 0;
}
