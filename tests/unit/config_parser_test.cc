#include "plan/config_parser.h"

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

}  // namespace
}  // namespace tide
