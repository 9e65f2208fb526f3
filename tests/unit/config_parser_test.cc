#include "plan/config_parser.h"

#include <gtest/gtest.h>

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
