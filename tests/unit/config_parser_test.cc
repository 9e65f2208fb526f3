#include "plan/config_parser.h"
#include "engine/guards.h"

#include <dirent.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace tide {
namespace {

TEST(ConfigParser, ReadsTheDocumentedExample) {
  auto r = ParseConfig(R"(spool_dir: /var/spool/tide
audit_log: /var/log/tide/audit.jsonl
metrics_listen: 127.0.0.1:9717
databases:
  app:
    dsn: "host=127.0.0.1 port=5432 dbname=app user=tide"
  crm:
    dsn_file: /etc/tide/crm.dsn
defaults: {lock_timeout: 2s, statement_timeout: 30s, batch_size: 1000}
)",
                       "tided.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.config.spool_dir, "/var/spool/tide");
  EXPECT_EQ(r.config.databases.size(), 2u);
  EXPECT_EQ(r.config.databases.at("crm").dsn_file, "/etc/tide/crm.dsn");
  EXPECT_EQ(r.config.defaults.lock_timeout, Millis(2000));
  EXPECT_EQ(r.config.defaults.batch_size, 1000);
}

TEST(ConfigParser, DatabaseGroupsNameDatabasesOrPatternsInOrder) {
  auto r = ParseConfig(R"(spool_dir: /s
audit_log: /a
databases:
  shard_03: {dsn: "dbname=s3"}
  shard_01: {dsn: "dbname=s1"}
  shard_02: {dsn: "dbname=s2"}
  billing: {dsn: "dbname=b"}
database_groups:
  shards: ["shard_*"]
  mixed: [billing, "shard_0[12]", shard_01]
)", "tided.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.config.database_groups.at("shards"),
            (std::vector<std::string>{"shard_01", "shard_02", "shard_03"}));
  EXPECT_EQ(r.config.database_groups.at("mixed"),
            (std::vector<std::string>{"billing", "shard_01", "shard_02"}));

  auto bad = ParseConfig(R"(spool_dir: /s
audit_log: /a
databases:
  a: {dsn: "dbname=a"}
database_groups:
  a: [a]
  g: [b, "x_*"]
)", "tided.yaml");
  const std::string text = FormatDiagnostics(bad.errors);
  EXPECT_NE(text.find("database group `a` has the name of a database"), std::string::npos) << text;
  EXPECT_NE(text.find("tided.yaml:7:7: database group `g` names `b`, which is not under `databases`"),
            std::string::npos) << text;
  EXPECT_NE(text.find("the pattern `x_*` matches no database"), std::string::npos) << text;
}

TEST(ConfigParser, ADatabaseTakesADdlDsnAndAPoolerOfTransactionOrNone) {
  auto r = ParseConfig(R"(spool_dir: /s
audit_log: /a
databases:
  app: {dsn: "port=6432 dbname=app", ddl_dsn: "port=5432 dbname=app", pooler: transaction}
)", "tided.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.config.databases.at("app").ddl_dsn, "port=5432 dbname=app");
  EXPECT_EQ(r.config.databases.at("app").pooler, "transaction");
  auto bad = ParseConfig(R"(spool_dir: /s
audit_log: /a
databases:
  app: {dsn: "port=6432 dbname=app", pooler: session}
)", "tided.yaml");
  const std::string text = FormatDiagnostics(bad.errors);
  EXPECT_NE(text.find("tided.yaml:4:46: database `app`: `pooler` is `session`; use `transaction`"),
            std::string::npos) << text;
}

TEST(ConfigParser, DefaultsApplyWhenLeftOut) {
  auto r = ParseConfig("spool_dir: /s\naudit_log: /a\ndatabases: {app: {dsn_env: APP_DSN}}\n", "c");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.config.metrics_listen, "127.0.0.1:9717");
  EXPECT_EQ(r.config.defaults.statement_timeout, Millis(30000));
}

TEST(ConfigParser, ADatabaseNeedsExactlyOneDsnSource) {
  auto r = ParseConfig("spool_dir: /s\naudit_log: /a\ndatabases:\n  app: {dsn: x, dsn_env: Y}\n", "c");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("exactly one of"), std::string::npos);
}

TEST(ConfigParser, RejectsUnknownKeysMissingKeysAndBadValues) {
  auto r = ParseConfig("spool: /s\naudit_log: /a\ndatabases: {}\ndefaults: {lock_timeout: 2}\n"
                       "log_level: loud\n", "c");
  std::string all = FormatDiagnostics(r.errors);
  EXPECT_NE(all.find("unknown key `spool`"), std::string::npos) << all;
  EXPECT_NE(all.find("`spool_dir`"), std::string::npos) << all;
  EXPECT_NE(all.find("names no database"), std::string::npos) << all;
  EXPECT_NE(all.find("has no unit"), std::string::npos) << all;
  EXPECT_NE(all.find("log_level"), std::string::npos) << all;
}

// The first diagnostic of a config whose `defaults:` holds the one line `setting` (at line 5,
// column 3), "file:line:column: message", or "accepted".
std::string DefaultsError(const std::string& setting) {
  auto r = ParseConfig("spool_dir: /s\naudit_log: /a\ndatabases: {app: {dsn: x}}\ndefaults:\n  " +
                           setting + "\n",
                       "c.yaml");
  return r.errors.empty() ? "accepted" : r.errors[0].ToString();
}

TEST(ConfigParser, RefusesADefaultLockTimeoutOfZeroBelowTenMillisecondsOrAboveTenMinutes) {
  EXPECT_EQ(DefaultsError("lock_timeout: 0s"),
            "c.yaml:5:17: `lock_timeout` in `defaults` must be between 10ms and 10m, not 0s (0 "
            "would mean no timeout: a DDL statement could wait for ever and every query would "
            "queue behind it)");
  EXPECT_EQ(DefaultsError("lock_timeout: 1ms"),
            "c.yaml:5:17: `lock_timeout` in `defaults` must be between 10ms and 10m, not 1ms");
  EXPECT_EQ(DefaultsError("lock_timeout: 11m"),
            "c.yaml:5:17: `lock_timeout` in `defaults` must be between 10ms and 10m, not 11m");
  EXPECT_EQ(DefaultsError("lock_timeout: 10m"), "accepted");
}

TEST(ConfigParser, RefusesADefaultStatementTimeoutOfZeroBelowOneHundredMillisecondsOrAboveADay) {
  EXPECT_EQ(DefaultsError("statement_timeout: 0ms"),
            "c.yaml:5:22: `statement_timeout` in `defaults` must be between 100ms and 24h, not 0ms "
            "(0 would mean no timeout: a statement could run for ever and hold its locks all that "
            "time)");
  EXPECT_EQ(DefaultsError("statement_timeout: 10ms"),
            "c.yaml:5:22: `statement_timeout` in `defaults` must be between 100ms and 24h, not "
            "10ms");
  EXPECT_EQ(DefaultsError("statement_timeout: 2000m"),
            "c.yaml:5:22: `statement_timeout` in `defaults` must be between 100ms and 24h, not "
            "2000m");
  EXPECT_EQ(DefaultsError("statement_timeout: 100ms"), "accepted");
}

TEST(ConfigParser, TheDefaultGateTimeoutIsTenMinutesAndCanBeSet) {
  auto r = ParseConfig("spool_dir: /s\naudit_log: /a\ndatabases: {app: {dsn: x}}\n", "c.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.config.defaults.gate_timeout, Millis(std::chrono::minutes(10)));
  r = ParseConfig("spool_dir: /s\naudit_log: /a\ndatabases: {app: {dsn: x}}\n"
                  "defaults: {gate_timeout: 1h}\n",
                  "c.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.config.defaults.gate_timeout, Millis(std::chrono::hours(1)));
}

TEST(ConfigParser, RefusesADefaultGateTimeoutOfZeroBelowOneSecondOrAboveADay) {
  EXPECT_EQ(DefaultsError("gate_timeout: 0s"),
            "c.yaml:5:17: `gate_timeout` in `defaults` must be between 1s and 24h, not 0s (0 would "
            "mean no timeout: a gate query or sweep could scan the table for ever)");
  EXPECT_EQ(DefaultsError("gate_timeout: 100ms"),
            "c.yaml:5:17: `gate_timeout` in `defaults` must be between 1s and 24h, not 100ms");
  EXPECT_EQ(DefaultsError("gate_timeout: 25h"),
            "c.yaml:5:17: `gate_timeout` in `defaults` must be between 1s and 24h, not 25h");
  EXPECT_EQ(DefaultsError("gate_timeout: 1s"), "accepted");
}

TEST(ConfigParser, RefusesAGateRecheckIntervalOfZeroBelowOneHundredMillisecondsOrAboveAnHour) {
  EXPECT_EQ(DefaultsError("gate_recheck_interval: 0s"),
            "c.yaml:5:26: `gate_recheck_interval` in `defaults` must be between 100ms and 1h, not "
            "0s (0 would re-check failing gates in a busy loop)");
  EXPECT_EQ(DefaultsError("gate_recheck_interval: 20ms"),
            "c.yaml:5:26: `gate_recheck_interval` in `defaults` must be between 100ms and 1h, not "
            "20ms");
  EXPECT_EQ(DefaultsError("gate_recheck_interval: 2h"),
            "c.yaml:5:26: `gate_recheck_interval` in `defaults` must be between 100ms and 1h, not "
            "2h");
  EXPECT_EQ(DefaultsError("gate_recheck_interval: 200ms"), "accepted");
}

TEST(ConfigParser, RefusesADefaultTargetBatchTimeOfZeroBelowTenMillisecondsOrAboveTenMinutes) {
  EXPECT_EQ(DefaultsError("target_batch_time: 0s"),
            "c.yaml:5:22: `target_batch_time` in `defaults` must be between 10ms and 10m, not 0s "
            "(0 would halve every batch down to `min_batch_size`)");
  EXPECT_EQ(DefaultsError("target_batch_time: 1ms"),
            "c.yaml:5:22: `target_batch_time` in `defaults` must be between 10ms and 10m, not 1ms");
  EXPECT_EQ(DefaultsError("target_batch_time: 1h"),
            "c.yaml:5:22: `target_batch_time` in `defaults` must be between 10ms and 10m, not 1h");
}

TEST(ConfigParser, KeepsZeroWhereItTurnsADefaultOff) {
  EXPECT_EQ(DefaultsError("pause_between_batches: 0ms"), "accepted");
  EXPECT_EQ(DefaultsError("max_replication_lag: 0s"), "accepted");
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {

std::string SlurpConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// tests/data/bad_configs/NAME.yaml holds a bad config; NAME.expect its first error:
// "LINE:COLUMN text" (or "- text" when the error has no position).
TEST(ConfigParser, EveryBadConfigGivesItsExpectedError) {
  const std::string dir = std::string(TIDE_SOURCE_DIR) + "/tests/data/bad_configs";
  std::vector<std::string> files;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 5 && n.substr(n.size() - 5) == ".yaml") files.push_back(dir + "/" + n);
    }
    closedir(d);
  }
  ASSERT_GE(files.size(), 10u);
  for (const auto& f : files) {
    std::string expect = SlurpConfig(f.substr(0, f.size() - 5) + ".expect");
    while (!expect.empty() && expect.back() == '\n') expect.pop_back();
    auto r = ParseConfig(SlurpConfig(f), f);
    ASSERT_FALSE(r.errors.empty()) << f << " was accepted";
    const Diagnostic& d = r.errors[0];
    ASSERT_FALSE(expect.empty()) << "no .expect for " << f << "; first error: " << d.ToString();
    const std::string where = expect.substr(0, expect.find(' '));
    const std::string text = expect.substr(expect.find(' ') + 1);
    if (where != "-") {
      EXPECT_EQ(std::to_string(d.pos.line) + ":" + std::to_string(d.pos.column), where)
          << f << ": " << d.ToString();
    }
    EXPECT_NE(d.ToString().find(text), std::string::npos) << f << ": " << d.ToString();
    EXPECT_EQ(d.ToString().rfind(f, 0), 0u) << "the message must start with the file name";
  }
}

TEST(ConfigParser, TheExampleConfigIsValid) {
  const std::string f = std::string(TIDE_SOURCE_DIR) + "/deploy/config/tided.example.yaml";
  auto r = ParseConfig(SlurpConfig(f), f);
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  EXPECT_EQ(r.config.defaults.gate_timeout, Millis(std::chrono::minutes(10)));
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {

TEST(ConfigParser, HealthSignalDefaultsComeFromTheConfigUnlessThePlanSaysOtherwise) {
  auto r = ParseConfig("spool_dir: /s\naudit_log: /a\ndatabases:\n  app: {dsn: \"dbname=app\"}\n"
                       "defaults: {max_xmin_age: 5m, max_slot_retained_wal: 512MB}\n",
                       "tided.yaml");
  ASSERT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
  StatementSettings plan;
  plan.health.max_xmin_age = Millis(20000);
  const Guards g = EffectiveGuards(plan, r.config.defaults);
  EXPECT_EQ(g.max_xmin_age, Millis(20000));                  // the plan's
  EXPECT_EQ(g.max_slot_retained_wal, int64_t{512} << 20);   // the config's
  EXPECT_EQ(g.max_archive_backlog, 128);                     // the built-in default
  EXPECT_TRUE(g.hold_on_autovacuum);
  EXPECT_EQ(g.throttle_hold, Millis(10000));
  auto bad = ParseConfig("spool_dir: /s\naudit_log: /a\ndatabases:\n  app: {dsn: \"dbname=app\"}\n"
                         "defaults: {max_slot_retained_wal: 1 GB}\n",
                         "tided.yaml");
  EXPECT_NE(FormatDiagnostics(bad.errors).find("tided.yaml:5:"), std::string::npos);
  EXPECT_NE(FormatDiagnostics(bad.errors).find("unknown unit"), std::string::npos);
}

}  // namespace
}  // namespace tide
