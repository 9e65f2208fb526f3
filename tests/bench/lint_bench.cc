// The lint's time per statement (it runs on every plan admission): every statement of
// tests/data/lint/corpus.tsv parsed by PostgreSQL's parser and linted, and each example plan
// of plans/ linted whole, over several rounds; the median of the rounds.
//   bash tests/bench/lint_bench.sh [--rounds R]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "plan/lint.h"
#include "plan/plan_parser.h"
#include "plan/sql_parse.h"

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename Fn>
double MicrosPer(int n, Fn fn) {
  const auto start = std::chrono::steady_clock::now();
  fn();
  return std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count() / n;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 5;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::max(1, std::atoi(argv[i + 1]));
  }
  std::vector<std::pair<std::string, std::string>> statements;  // phase, sql
  std::ifstream in(std::string(TIDE_SOURCE_DIR) + "/tests/data/lint/corpus.tsv");
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t a = line.find('\t'), b = line.find('\t', a + 1);
    statements.emplace_back(line.substr(0, a), line.substr(b + 1));
  }
  std::vector<tide::Plan> plans;
  const std::string dir = std::string(TIDE_SOURCE_DIR) + "/plans";
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() < 6 || n.substr(n.size() - 5) != ".yaml") continue;
      std::ifstream f(dir + "/" + n);
      std::stringstream ss;
      ss << f.rdbuf();
      auto parsed = tide::ParsePlan(ss.str(), n);
      if (parsed.ok()) plans.push_back(parsed.plan);
    }
    closedir(d);
  }
  const int reps = 20;
  std::vector<double> parse_us, lint_us, plan_us;
  for (int r = 0; r < rounds; ++r) {
    // Alternating order, so that neither side always runs on a warm cache.
    auto parse = [&] {
      parse_us.push_back(MicrosPer(reps * static_cast<int>(statements.size()), [&] {
        for (int k = 0; k < reps; ++k) {
          for (const auto& [phase, sql] : statements) (void)tide::ParseSql(sql);
        }
      }));
    };
    auto lint = [&] {
      lint_us.push_back(MicrosPer(reps * static_cast<int>(statements.size()), [&] {
        for (int k = 0; k < reps; ++k) {
          for (const auto& [phase, sql] : statements) (void)tide::LintStep(sql, phase, std::vector<std::string>{});
        }
      }));
    };
    if (r % 2) { lint(); parse(); } else { parse(); lint(); }
    plan_us.push_back(MicrosPer(reps * static_cast<int>(plans.size()), [&] {
      for (int k = 0; k < reps; ++k) {
        for (const auto& p : plans) (void)tide::LintPlan(p);
      }
    }));
  }
  std::printf("%zu statements, %zu example plans, %d rounds of %d repetitions\n", statements.size(),
              plans.size(), rounds, reps);
  std::printf("parse only (libpg_query):      %8.1f us per statement (median)\n", Median(parse_us));
  std::printf("parse and lint:                %8.1f us per statement (median)\n", Median(lint_us));
  std::printf("LintPlan of an example plan:   %8.1f us per plan (median)\n", Median(plan_us));
  std::printf("lint / parse: %.2f\n", Median(lint_us) / Median(parse_us));
  return 0;
}
