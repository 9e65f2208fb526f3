// The corpus of hostile schemas in tests/data/schemas/. Each entry <name> is three files:
//   <name>.sql        the schema and its rows, loaded as the superuser into a fresh database
//   <name>.plan.yaml  the plan, dropped into tided's spool
//   <name>.expect     what an experienced DBA demands of it, one `key: value` a line:
//     outcome: done | rejected | failed | waiting   (alternatives joined by ` or `)
//     reason:  a substring that a refusal, failure or wait must name: the .error file of a
//              rejected plan, the last error of a failed one, the gate_waiting events and
//              `tidectl status` of a waiting one (several `reason` lines: any one of them)
//     check:   SQL that returns 0 when every row is right; run when the plan ends done
//     intact:  SQL that returns 0 when nothing was lost or broken; run whatever the outcome
//     role:    the role tide's DSN connects as (default: the superuser)
//   Lines starting with # are comments. `reason`, `check` and `intact` may repeat.
// The test follows the plan to a final state (done, failed or rejected; for `waiting`, 10 s
// spent in gating), then asserts the outcome, the reason, and that the plan never ended
// `done` with a row wrong.
#include <dirent.h>

#include <algorithm>
#include <iostream>
#include <optional>
#include <set>
#include <sstream>

#include "e2e/daemon_fixture.h"

namespace tide {
namespace {

const std::string kCorpus = std::string(TIDE_SOURCE_DIR) + "/tests/data/schemas";
const std::set<std::string> kOutcomes = {"done", "rejected", "failed", "waiting"};

struct Expectation {
  std::set<std::string> outcomes;
  std::vector<std::string> reasons;  // any one of them
  std::vector<std::string> checks, intact;
  std::string role;
};

std::string Trimmed(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  const size_t e = s.find_last_not_of(" \t\r");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Parses an .expect file; *error says what is wrong with it.
Expectation ParseExpectation(const std::string& text, std::string* error) {
  Expectation e;
  std::istringstream in(text);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    line = Trimmed(line);
    if (line.empty() || line[0] == '#') continue;
    const size_t colon = line.find(':');
    if (colon == std::string::npos) {
      *error = "line " + std::to_string(n) + " is not `key: value`";
      return e;
    }
    const std::string key = line.substr(0, colon), value = Trimmed(line.substr(colon + 1));
    if (key == "outcome") {
      for (size_t at = 0; at <= value.size();) {
        const size_t next = std::min(value.find(" or ", at), value.size());
        const std::string one = Trimmed(value.substr(at, next - at));
        if (!kOutcomes.count(one)) *error = "unknown outcome `" + one + "`";
        e.outcomes.insert(one);
        at = next + 4;
      }
    } else if (key == "reason") {
      e.reasons.push_back(value);
    } else if (key == "check") {
      e.checks.push_back(value);
    } else if (key == "intact") {
      e.intact.push_back(value);
    } else if (key == "role") {
      e.role = value;
    } else {
      *error = "unknown key `" + key + "` on line " + std::to_string(n);
    }
  }
  if (e.outcomes.empty()) *error = "no `outcome:`";
  if (e.checks.empty()) *error = "no `check:` (what every row right means)";
  const bool refusal = e.outcomes.size() > e.outcomes.count("done");
  if (refusal && e.reasons.empty()) *error = "an outcome other than done needs a `reason:`";
  return e;
}

// The corpus entries, sorted: every <name>.expect in tests/data/schemas.
std::vector<std::string> Entries() {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(kCorpus.c_str())) {
    while (const dirent* f = ::readdir(d)) {
      const std::string name = f->d_name;
      const std::string suffix = ".expect";
      if (name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
        out.push_back(name.substr(0, name.size() - suffix.size()));
      }
    }
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The value of the plan's top-level `plan:` key.
std::string PlanName(const std::string& yaml) {
  std::istringstream in(yaml);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("plan:", 0) == 0) return Trimmed(line.substr(5));
  }
  return "";
}

struct Outcome {
  std::string outcome;  // done, rejected, failed, waiting, or "still <state>" at the deadline
  std::string reason;   // what tide said about it
};

class HostileSchemaTest : public DaemonTest, public ::testing::WithParamInterface<std::string> {
 protected:
  // tided connects as `role` instead of the superuser.
  void UseRole(const std::string& role) {
    std::string dsn = PgCluster::Shared().Dsn(db_);
    dsn.replace(dsn.find("user=postgres"), 13, "user=" + role);
    WriteAll(config_, ConfigYaml("", metrics_port_, "  app:\n    dsn: \"" + dsn + "\"\n"));
  }

  // Straight into the spool, as `tidectl submit` would after its offline checks, so that
  // what tided refuses ends in rejected/ with its .error.
  void Drop(const std::string& file, const std::string& text) {
    const std::string tmp = dir_ + "/spool/incoming/." + file + ".tmp";
    WriteAll(tmp, text);
    ASSERT_EQ(::rename(tmp.c_str(), (dir_ + "/spool/incoming/" + file).c_str()), 0);
  }

  // Follows the plan until it is rejected, done, failed or aborted, or (when `waiting` is
  // expected) has spent 10 s in gating; gives up at the deadline.
  Outcome Follow(const std::string& plan, const std::string& file, bool until_waiting) {
    const auto deadline = std::chrono::steady_clock::now() + (until_waiting ? 45s : 20s);
    std::optional<std::chrono::steady_clock::time_point> gating_since;
    std::string state;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Exists(dir_ + "/spool/rejected/" + file + ".error")) {
        return {"rejected", ReadAll(dir_ + "/spool/rejected/" + file + ".error")};
      }
      state = PlanState(plan);
      if (state == "done") return {"done", ""};
      if (state == "failed" || state == "aborted") {
        return {state, SafeQuery("SELECT last_error FROM tide.plans WHERE name = '" + plan + "'") +
                           "\n" + ReadAll(dir_ + "/spool/failed/" + file + ".error")};
      }
      // A plan without a backfill keeps its state while its gates wait; its audit says so.
      if (!gating_since && (state == "gating" || !WaitReasonInAudit().empty())) {
        gating_since = std::chrono::steady_clock::now();
      }
      if (until_waiting && gating_since && std::chrono::steady_clock::now() - *gating_since >= 10s) {
        return {"waiting", WaitReason()};
      }
      std::this_thread::sleep_for(100ms);
    }
    return {"still " + (state.empty() ? std::string("not accepted") : state) + " at the deadline",
            SafeQuery("SELECT last_error FROM tide.plans WHERE name = '" + plan + "'") + "\n" + WaitReason()};
  }

  // The gate_waiting events of the audit log.
  std::string WaitReasonInAudit() {
    std::string out;
    std::istringstream audit(ReadAll(dir_ + "/audit.jsonl"));
    for (std::string line; std::getline(audit, line);) {
      if (line.find("\"event\":\"gate_waiting\"") != std::string::npos) out += line + "\n";
    }
    return out;
  }

  // The gate_waiting events and `tidectl status`.
  std::string WaitReason() { return WaitReasonInAudit() + Ctl({"status", "--config", config_}).output; }

  // The first value of `sql`, or the error it raised (a dropped column, a dropped view).
  std::string SafeQuery(const std::string& sql) {
    try {
      return PgCluster::Shared().Query(db_, sql);
    } catch (const std::exception& e) {
      return std::string("error: ") + e.what();
    }
  }
};

TEST_P(HostileSchemaTest, EndsWithEveryRowRightOrAClearRefusal) {
  const std::string base = kCorpus + "/" + GetParam();
  std::string error;
  const Expectation expect = ParseExpectation(ReadAll(base + ".expect"), &error);
  ASSERT_TRUE(error.empty()) << base << ".expect: " << error;
  const std::string plan_text = ReadAll(base + ".plan.yaml");
  ASSERT_FALSE(plan_text.empty()) << base << ".plan.yaml";
  PgCluster::Shared().Exec(db_, ReadAll(base + ".sql"));
  if (!expect.role.empty()) UseRole(expect.role);
  StartDaemon();
  const std::string file = GetParam() + ".yaml";
  Drop(file, plan_text);

  const Outcome o = Follow(PlanName(plan_text), file, expect.outcomes.count("waiting") > 0);
  std::string wanted;
  for (const auto& w : expect.outcomes) wanted += (wanted.empty() ? "" : " or ") + w;
  std::cout << "  " << GetParam() << ": " << o.outcome << " (expected " << wanted << ")"
            << (o.reason.empty() ? "" : ": " + o.reason.substr(0, o.reason.find('\n'))) << "\n";
  EXPECT_TRUE(expect.outcomes.count(o.outcome))
      << "expected " << wanted << ", the plan ended " << o.outcome << "\n" << o.reason;
  if (o.outcome != "done" && expect.outcomes.count(o.outcome)) {
    std::string named;
    bool found = false;
    for (const auto& r : expect.reasons) {
      found |= o.reason.find(r) != std::string::npos;
      named += (named.empty() ? "`" : " or `") + r + "`";
    }
    EXPECT_TRUE(found) << "the reason should name " << named << ":\n" << o.reason;
  }
  if (o.outcome == "done") {
    for (const auto& check : expect.checks) {
      EXPECT_EQ(SafeQuery(check), "0") << "the plan ended done with rows wrong: " << check;
    }
  }
  for (const auto& check : expect.intact) EXPECT_EQ(SafeQuery(check), "0") << check;
}

INSTANTIATE_TEST_SUITE_P(Corpus, HostileSchemaTest, ::testing::ValuesIn(Entries()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

TEST(HostileSchemaCorpus, EveryEntryHasASchemaAPlanAndAValidExpectation) {
  const auto entries = Entries();
  EXPECT_GE(entries.size(), 18u);
  for (const auto& name : entries) {
    const std::string base = kCorpus + "/" + name;
    EXPECT_FALSE(ReadAll(base + ".sql").empty()) << base << ".sql";
    EXPECT_FALSE(PlanName(ReadAll(base + ".plan.yaml")).empty()) << base << ".plan.yaml";
    std::string error;
    ParseExpectation(ReadAll(base + ".expect"), &error);
    EXPECT_TRUE(error.empty()) << base << ".expect: " << error;
  }
}

}  // namespace
}  // namespace tide
