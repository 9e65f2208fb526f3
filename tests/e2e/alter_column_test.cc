// Changing columns the application already uses: alter_column (int to bigint keys with a serial
// and a foreign key whose column changes too, text to integer with up/down), rename_column and
// rename_table, add_primary_key, with the application under test (tests/support/app_sim.h)
// writing and reading throughout: the old version through expand, the backfill and the gates,
// the new version through the plan's version schema (its search_path) from the gates on, and on
// the switched tables after contract.
//
// Each scenario asserts: the plan is done; the application saw no error; no statement of it
// waited longer than lock_timeout plus a margin; every row is right; nothing of tide's is left
// (shadows, triggers, the version schema, NOT VALID constraints, invalid indexes).
#include <atomic>

#include "e2e/application_fixture.h"

namespace tide {
namespace {

// The plans' only gate: the new version's deploy.
std::string Gates() { return std::string("gates:\n") + kDeployGate; }

class AlterColumnTest : public ApplicationTest {
 protected:
  std::string Audit() { return ReadAll(dir_ + "/audit.jsonl"); }
};

// An integer primary key with a serial default and a foreign key from another table, whose
// column changes too: at the end both are bigint, the sequence is bigint, the foreign key and
// the primary key are there and valid, and every row is unchanged.
Scenario IntToBigint() {
  Scenario s;
  s.seeded_rows = 5000;
  s.both_versions = 1s;
  s.plan_name = "accounts_bigint";
  s.schema = R"SQL(
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL, CHECK (id > 0));
CREATE TABLE orders (id serial PRIMARY KEY, account_id integer NOT NULL REFERENCES accounts (id),
                     amount int NOT NULL);
CREATE INDEX orders_account_id_idx ON orders (account_id);
INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, 5000) g;
INSERT INTO orders (account_id, amount) SELECT 1 + g % 5000, g FROM generate_series(1, 20000) g;
CREATE TABLE orders_before AS SELECT id, account_id FROM orders;
CREATE TABLE accounts_before AS SELECT id, name FROM accounts;
)SQL";
  s.plan = std::string(
               "plan: accounts_bigint\ndatabase: app\nsettings: {lock_timeout: 500ms}\n"
               "expand:\n"
               "  - alter_column: {table: accounts, column: id, type: bigint}\n"
               "  - alter_column: {table: orders, column: account_id, type: bigint}\n") +
           Gates();
  s.old_version.insert = "INSERT INTO orders (account_id, amount) VALUES ({row}, {v})";
  s.old_version.update = "UPDATE orders SET amount = {v} WHERE id = {row}";
  s.old_version.read =
      "SELECT count(*) FROM orders o JOIN accounts a ON a.id = o.account_id WHERE a.id = {row}";
  const std::string path = "SET search_path TO accounts_bigint, public; ";
  s.new_version.insert = path + "WITH a AS (INSERT INTO accounts (name) VALUES ('n{v}') RETURNING id) "
                                "INSERT INTO orders (account_id, amount) SELECT id, {v} FROM a";
  s.new_version.update = path + "UPDATE orders SET amount = {v} WHERE account_id = {row}";
  s.new_version.read = path +
      "SELECT count(*) FROM orders o JOIN accounts a ON a.id = o.account_id WHERE a.id = {row}";
  s.checks = {
      "SELECT count(*) FROM information_schema.columns WHERE (table_name, column_name) IN "
      "(('accounts', 'id'), ('orders', 'account_id')) AND data_type <> 'bigint'",
      "SELECT count(*) FROM pg_sequence WHERE seqrelid = 'accounts_id_seq'::regclass AND seqtypid "
      "<> 'bigint'::regtype",
      "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'f' "
      "AND conname = 'orders_account_id_fkey' AND convalidated AND confrelid = 'accounts'::regclass",
      "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = "
      "'p' AND conname = 'accounts_pkey'",
      "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 'accounts'::regclass AND contype = "
      "'c' AND conname = 'accounts_id_check'",
      "SELECT 1 - count(*) FROM pg_indexes WHERE indexname = 'orders_account_id_idx' AND indexdef "
      "LIKE '%(account_id)'",
      "SELECT count(*) FROM orders_before b LEFT JOIN orders o USING (id) WHERE o.account_id IS "
      "DISTINCT FROM b.account_id",
      "SELECT count(*) FROM accounts_before b LEFT JOIN accounts a USING (id) WHERE a.name IS "
      "DISTINCT FROM b.name",
      "SELECT count(*) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'id' "
      "AND NOT attnotnull",
      // Every order the application wrote points at an account.
      "SELECT count(*) FROM orders o LEFT JOIN accounts a ON a.id = o.account_id WHERE a.id IS NULL",
  };
  return s;
}

TEST_F(AlterColumnTest, IntegerKeyToBigintWithSerialAndForeignKeyUnderTheApplication) {
  Scenario s = IntToBigint();
  s.schema += kAppVersion;
  RunScenario(s);
  // After the switch, keys beyond the old type's range work.
  PgCluster::Shared().Exec(db_, "SELECT setval('accounts_id_seq', 3000000000)");
  EXPECT_EQ(Query("WITH a AS (INSERT INTO accounts (name) VALUES ('big') RETURNING id) "
                  "INSERT INTO orders (account_id, amount) SELECT id, 1 FROM a RETURNING account_id"),
            "3000000001");
  // The switch's lock hold time is in the audit log.
  EXPECT_NE(Audit().find("\"lock_held_ms\""), std::string::npos) << Audit();
}

// With `retention`, the switch keeps the old columns (renamed, filled from the new ones by a
// trigger); `tidectl revert` then switches back while the new version goes on writing: both
// columns integer again, the sequence, the primary key, the check, the foreign key and the index
// back on them, every row (those written after the switch too) right, no application error.
TEST_F(AlterColumnTest, RevertAfterTheSwitchKeepsEveryWriteMadeMeanwhile) {
  Scenario s = IntToBigint();
  s.plan = std::regex_replace(s.plan, std::regex("settings: \\{lock_timeout: 500ms\\}"),
                              "settings: {lock_timeout: 500ms, retention: 1h}");
  s.schema += kAppVersion;
  s.final_state = "reverted";
  std::string kept_after_switch, ids_after_switch;
  s.after_done = [&] {
    kept_after_switch = Query(
        "SELECT string_agg(attrelid::regclass || '.' || attname || ' ' || format_type(atttypid, "
        "atttypmod), ', ' ORDER BY 1) FROM pg_attribute WHERE attname LIKE '\\_tide\\_old\\_%' "
        "AND NOT attisdropped");
    std::this_thread::sleep_for(1s);  // the new version writes on the switched tables
    ids_after_switch = Query("SELECT count(*) FROM accounts");
    auto revert = Ctl({"revert", "accounts_bigint", "--config", config_});
    ASSERT_EQ(revert.status, 0) << revert.output;
    ASSERT_TRUE(WaitFor([&] {
      const std::string st = PlanState("accounts_bigint");
      return st == "reverted" || st == "failed";
    }, 60s)) << Diagnostics("accounts_bigint");
    std::this_thread::sleep_for(500ms);  // the new version on the reverted tables
  };
  for (auto& c : s.checks) {
    if (c.find("data_type <> 'bigint'") != std::string::npos) {
      c = std::regex_replace(c, std::regex("data_type <> 'bigint'"), "data_type <> 'integer'");
    }
    if (c.find("seqtypid") != std::string::npos) c = "SELECT 0";  // stays bigint: harmless
  }
  RunScenario(s);
  EXPECT_EQ(kept_after_switch, "accounts._tide_old_id integer, orders._tide_old_account_id integer");
  EXPECT_GT(std::stoll(Query("SELECT count(*) FROM accounts")), std::stoll(ids_after_switch) - 1);
  EXPECT_EQ(Query("SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef WHERE adrelid = "
                  "'accounts'::regclass"), "nextval('accounts_id_seq'::regclass)");
  EXPECT_EQ(Query("SELECT pg_get_serial_sequence('accounts', 'id')"), "public.accounts_id_seq");
  const std::string audit = Audit();
  EXPECT_NE(audit.find("\"event\":\"plan_reverted\""), std::string::npos) << audit;
  // Nothing left to revert or finalize.
  auto again = Ctl({"finalize", "accounts_bigint", "--config", config_});
  EXPECT_NE(again.status, 0) << again.output;
}

// SIGKILL of tided again and again while it reverts (the kept columns' index builds, the checks
// and foreign keys, the transaction): each run resumes the revert, which ends with every row
// right and nothing left over, the application writing throughout.
TEST_F(AlterColumnTest, SurvivesSigkillWhileItReverts) {
  const unsigned seed = std::random_device{}() & 0x7fffffff;
  std::cerr << "seed " << seed << "\n";
  std::mt19937 rng(seed);
  Scenario s = IntToBigint();
  s.plan = std::regex_replace(s.plan, std::regex("settings: \\{lock_timeout: 500ms\\}"),
                              "settings: {lock_timeout: 500ms, retention: 1h}");
  s.schema += kAppVersion;
  s.final_state = "reverted";
  int kills = 0;
  s.after_done = [&] {
    auto status = Ctl({"status", "--config", config_});
    EXPECT_NE(status.output.find("keeps the old accounts._tide_old_id, orders._tide_old_account_id"),
              std::string::npos) << status.output;
    auto revert = Ctl({"revert", "accounts_bigint", "--config", config_});
    ASSERT_EQ(revert.status, 0) << revert.output;
    for (int k = 0; k < 5 && PlanState("accounts_bigint") != "reverted"; ++k) {
      std::this_thread::sleep_for(
          std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 200)(rng)));
      if (PlanState("accounts_bigint") == "reverted") break;
      daemon_->Signal(SIGKILL);
      daemon_->Wait(10s);
      ++kills;
      StartDaemon();
      // A request taken but not yet acknowledged (the plan still done) dies with the process:
      // the operator asks again, as after any crash.
      std::this_thread::sleep_for(1s);
      if (PlanState("accounts_bigint") == "done") {
        Ctl({"revert", "accounts_bigint", "--config", config_});
      }
    }
    ASSERT_TRUE(WaitFor([&] {
      const std::string st = PlanState("accounts_bigint");
      return st == "reverted" || st == "failed";
    }, 90s)) << Diagnostics("accounts_bigint");
  };
  for (auto& c : s.checks) {
    if (c.find("data_type <> 'bigint'") != std::string::npos) {
      c = std::regex_replace(c, std::regex("data_type <> 'bigint'"), "data_type <> 'integer'");
    }
    if (c.find("seqtypid") != std::string::npos) c = "SELECT 0";
  }
  RunScenario(s);
  std::cerr << kills << " kills while reverting\n";
}

// `retention: 0s`: the old columns go right after the switch; revert is refused then, saying why.
TEST_F(AlterColumnTest, RetentionZeroFinalizesAtOnceAndRevertIsRefused) {
  Scenario s = IntToBigint();
  s.plan = std::regex_replace(s.plan, std::regex("settings: \\{lock_timeout: 500ms\\}"),
                              "settings: {lock_timeout: 500ms, retention: 0s}");
  s.schema += kAppVersion;
  s.after_done = [&] {
    EXPECT_TRUE(WaitFor([&] {
      return Query("SELECT count(*) FROM pg_attribute WHERE attname LIKE '\\_tide\\_old\\_%' "
                   "AND NOT attisdropped") == "0";
    }, 30s)) << Diagnostics("accounts_bigint");
  };
  RunScenario(s);
  EXPECT_NE(Audit().find("\"event\":\"finalized\""), std::string::npos) << Audit();
  auto revert = Ctl({"revert", "accounts_bigint", "--config", config_});
  EXPECT_NE(revert.status, 0) << revert.output;
  EXPECT_NE(revert.output.find("finalized"), std::string::npos) << revert.output;
}

// A value written after the switch that `down` cannot convert back (a key beyond integer):
// the kept column stays empty for it and the write succeeds; `tidectl revert` then refuses before
// it changes anything, naming the rows, and `tidectl finalize` gives the revert up: the plan is
// done again, on the new column, the old one dropped.
TEST_F(AlterColumnTest, ARevertThatWouldLoseAWriteIsRefusedAndFinalizeGivesItUp) {
  PgCluster::Shared().Exec(db_, std::string(R"SQL(
CREATE TABLE tallies (id bigint PRIMARY KEY, total integer NOT NULL);
INSERT INTO tallies SELECT g, g FROM generate_series(1, 2000) g;
)SQL") + kAppVersion);
  StartDaemon();
  const std::string plan = "plan: tallies_bigint\ndatabase: app\nexpand:\n"
                           "  - alter_column: {table: tallies, column: total, type: bigint}\n" + Gates();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("tallies_bigint.yaml", plan)}).status, 0);
  PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
  ASSERT_TRUE(WaitFor([&] { return PlanState("tallies_bigint") == "done"; }, 60s)) << Diagnostics("tallies_bigint");
  EXPECT_EQ(Query("SELECT count(*) FROM tallies WHERE _tide_old_total IS DISTINCT FROM total"), "0")
      << "kept in step until finalize";
  EXPECT_EQ(Query("INSERT INTO tallies (id, total) VALUES (5000, 3000000000) RETURNING total"), "3000000000");
  EXPECT_EQ(Query("UPDATE tallies SET total = 7 WHERE id = 1 RETURNING _tide_old_total"), "7");

  auto revert = Ctl({"revert", "tallies_bigint", "--config", config_});
  EXPECT_NE(revert.status, 0) << revert.output;
  EXPECT_NE(revert.output.find("could not convert back"), std::string::npos) << revert.output;
  EXPECT_EQ(Query("SELECT data_type FROM information_schema.columns WHERE table_name = 'tallies' "
                  "AND column_name = 'total'"), "bigint") << "nothing switched back";
  EXPECT_EQ(Query("INSERT INTO tallies (id, total) VALUES (5001, 4000000000) RETURNING total"), "4000000000")
      << "the refused revert changed nothing: such writes still succeed";

  auto finalize = Ctl({"finalize", "tallies_bigint", "--config", config_});
  EXPECT_EQ(finalize.status, 0) << finalize.output;
  EXPECT_EQ(PlanState("tallies_bigint"), "done");
  EXPECT_EQ(Query("SELECT total FROM tallies WHERE id = 5000"), "3000000000");
  EXPECT_NE(Audit().find("\"revert_given_up\":true"), std::string::npos) << Audit();
  ExpectNoLeftovers("tallies_bigint");
}

// A long reader holds the tables when contract starts: every statement of tide's that needs a
// lock the reader holds times out after lock_timeout and is retried with the reader named in the
// audit log, and no statement of the application waits longer than lock_timeout (plus a margin)
// at a time, however long the reader stays.
TEST_F(AlterColumnTest, ALongReaderDelaysTheSwitchButNeverBlocksTheApplication) {
  Scenario s = IntToBigint();
  s.plan = std::regex_replace(s.plan, std::regex("lock_timeout: 500ms"),
                              "lock_timeout: 500ms, ddl_retries: 100");
  std::thread reader;
  std::atomic<int64_t> reader_pid{0};
  s.at_deploy = [&] {
    reader = std::thread([&] {
      pqxx::connection c(PgCluster::Shared().Dsn(db_) + " application_name=long_reader");
      pqxx::work w(c);
      reader_pid = w.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
      // Idle in a READ COMMITTED transaction that read both tables: it holds ACCESS SHARE on
      // them and no snapshot.
      w.exec("SELECT count(*) FROM accounts, (SELECT 1 FROM orders LIMIT 1) o");
      std::this_thread::sleep_for(4s);
      w.commit();
    });
    while (reader_pid == 0) std::this_thread::sleep_for(10ms);
  };
  s.schema += kAppVersion;
  RunScenario(s);
  if (reader.joinable()) reader.join();
  const std::string audit = Audit();
  EXPECT_NE(audit.find("\"event\":\"lock_timeout\""), std::string::npos) << audit;
  EXPECT_NE(audit.find("\"pid\":" + std::to_string(reader_pid.load())), std::string::npos)
      << "the blocker is named in the audit log\n" << audit;
}

// SIGKILL of tided at random instants of expand, the backfill, the gates and the switch (its
// index builds, its checks and foreign keys, its transaction), again and again: each run resumes
// where the last one stopped, and the plan ends with every row right and nothing left over.
TEST_F(AlterColumnTest, SurvivesSigkillInEveryPhaseOfABigintSwitch) {
  const unsigned seed = std::random_device{}() & 0x7fffffff;
  std::cerr << "seed " << seed << "\n";
  std::mt19937 rng(seed);
  PgCluster::Shared().Exec(db_, R"SQL(
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (id serial PRIMARY KEY, account_id integer NOT NULL REFERENCES accounts (id),
                     amount int NOT NULL);
CREATE INDEX orders_account_id_idx ON orders (account_id);
INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, 20000) g;
INSERT INTO orders (account_id, amount) SELECT 1 + g % 20000, g FROM generate_series(1, 100000) g;
CREATE TABLE orders_before AS SELECT id, account_id FROM orders;
ANALYZE;
)SQL");
  const std::string plan = WritePlan("chaos_bigint.yaml", R"(plan: chaos_bigint
database: app
expand:
  - sql: SELECT pg_sleep(0.3)
  - alter_column: {table: accounts, column: id, type: bigint}
  - alter_column: {table: orders, column: account_id, type: bigint}
gates:
  - sql: SELECT count(*) FROM pg_sleep(1)
    expect: 1
)");
  StartDaemon();
  ASSERT_EQ(Ctl({"submit", "--config", config_, plan}).status, 0);
  KillAcrossPhases("chaos_bigint", {{"accepted", 250}, {"expanding", 300}, {"backfilling", 300},
                                    {"gating", 900}, {"contracting", 80}},
                   15, &rng);
  ASSERT_TRUE(WaitFor([&] { return PlanState("chaos_bigint") == "done"; }, 180s))
      << Diagnostics("chaos_bigint");
  EXPECT_EQ(Query("SELECT count(*) FROM information_schema.columns WHERE (table_name, column_name) "
                  "IN (('accounts', 'id'), ('orders', 'account_id')) AND data_type <> 'bigint'"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM orders_before b LEFT JOIN orders o USING (id) WHERE "
                  "o.account_id IS DISTINCT FROM b.account_id"), "0");
  EXPECT_EQ(Query("SELECT count(*) FROM accounts"), "20000");
  EXPECT_EQ(Query("SELECT string_agg(conname, ',' ORDER BY conname) FROM pg_constraint WHERE "
                  "conrelid IN ('accounts'::regclass, 'orders'::regclass)"),
            "accounts_pkey,orders_account_id_fkey,orders_pkey");
  EXPECT_EQ(Query("SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text) FROM pg_index "
                  "WHERE indrelid IN ('accounts'::regclass, 'orders'::regclass)"),
            "accounts_pkey,orders_account_id_idx,orders_pkey");
  EXPECT_EQ(Query("SELECT string_agg(kept_column, ',' ORDER BY kept_column) FROM tide.retained_columns "
                  "WHERE plan = 'chaos_bigint' AND retain_until IS NULL"),
            ",_tide_old_account_id,_tide_old_id")
      << "kept until `tidectl finalize`";
  Finalize("chaos_bigint");
  ExpectNoLeftovers("chaos_bigint");
  auto verify = Ctl({"audit", "--verify", "--file", dir_ + "/audit.jsonl"});
  EXPECT_EQ(verify.status, 0) << verify.output;
}

// text to integer with up and down: the old version writes text, the new one integers through
// the version schema; both see their own type throughout.
TEST_F(AlterColumnTest, TextToIntegerWithUpAndDownBothVersionsAtOnce) {
  Scenario s;
  s.seeded_rows = 5000;
  s.both_versions = 1s;
  s.plan_name = "reviews_rating_int";
  s.schema = R"SQL(
CREATE TABLE reviews (id bigint PRIMARY KEY, rating text, body text NOT NULL DEFAULT '');
INSERT INTO reviews (id, rating, body) SELECT g, (1 + g % 5)::text, 'b' FROM generate_series(1, 5000) g;
UPDATE reviews SET rating = NULL WHERE id % 100 = 0;
)SQL";
  s.plan = std::string(
               "plan: reviews_rating_int\ndatabase: app\nsettings: {lock_timeout: 500ms}\n"
               "expand:\n"
               "  - alter_column: {table: reviews, column: rating, type: integer, up: "
               "\"CAST(rating AS integer)\", down: \"CAST(rating AS text)\"}\n") +
           Gates();
  s.old_version.insert = "INSERT INTO reviews (id, rating) VALUES ({id}, (1 + {v} % 5)::text)";
  s.old_version.update = "UPDATE reviews SET rating = (1 + {v} % 5)::text WHERE id = {row}";
  s.old_version.remove = "DELETE FROM reviews WHERE id = {own}";
  s.old_version.read = "SELECT length(rating) FROM reviews WHERE id = {row}";
  const std::string path = "SET search_path TO reviews_rating_int, public; ";
  s.new_version.insert = path + "INSERT INTO reviews (id, rating) VALUES ({id}, 1 + {v} % 5)";
  s.new_version.update = path + "UPDATE reviews SET rating = 1 + {v} % 5 WHERE id = {row}";
  s.new_version.remove = path + "DELETE FROM reviews WHERE id = {own}";
  s.new_version.read = path + "SELECT rating + 1 FROM reviews WHERE id = {row}";
  s.checks = {
      "SELECT count(*) FROM information_schema.columns WHERE table_name = 'reviews' AND "
      "column_name = 'rating' AND data_type <> 'integer'",
      "SELECT count(*) FROM reviews WHERE rating NOT BETWEEN 1 AND 5",
      "SELECT 5000 - count(*) FROM reviews WHERE id <= 5000",
  };
  s.schema += kAppVersion;
  RunScenario(s);
}

// Nullability, a default, a check and a unique constraint in one alter_column: `up` turns the
// old version's NULLs into values, so the new column can be NOT NULL while the old version
// still writes NULL; at the end the column has all four, and the old NULLs have their values.
TEST_F(AlterColumnTest, NotNullDefaultCheckAndUniqueOnAColumnTheOldVersionWritesNullInto) {
  Scenario s;
  s.seeded_rows = 5000;
  s.both_versions = 1s;
  s.plan_name = "users_email_required";
  s.schema = R"SQL(
CREATE TABLE users (id bigint PRIMARY KEY, email varchar(100));
INSERT INTO users SELECT g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'u' || g || '@example.org' END
  FROM generate_series(1, 5000) g;
)SQL";
  s.plan = std::string(
               "plan: users_email_required\ndatabase: app\nsettings: {lock_timeout: 500ms}\n"
               "expand:\n"
               "  - alter_column:\n"
               "      table: users\n      column: email\n      type: text\n"
               "      up: \"COALESCE(email, 'user' || id || '@unknown.invalid')\"\n"
               "      not_null: true\n      default: \"'nobody@unknown.invalid'\"\n"
               "      check: {name: users_email_has_at, expression: \"email LIKE '%@%'\"}\n"
               "      unique: {name: users_email_key}\n") +
           Gates();
  s.old_version.insert = "INSERT INTO users (id, email) VALUES ({id}, CASE WHEN {v} % 2 = 0 THEN NULL ELSE 'o' || {id} || '@example.org' END)";
  s.old_version.update = "UPDATE users SET email = 'x' || id || '@example.org' WHERE id = {row}";
  s.old_version.remove = "DELETE FROM users WHERE id = {own}";
  s.old_version.read = "SELECT email FROM users WHERE id = {row}";
  const std::string path = "SET search_path TO users_email_required, public; ";
  s.new_version.insert = path + "INSERT INTO users (id, email) VALUES ({id}, 'n' || {id} || '@example.org')";
  s.new_version.update = path + "UPDATE users SET email = 'y' || id || '@example.org' WHERE id = {row}";
  s.new_version.remove = path + "DELETE FROM users WHERE id = {own}";
  s.new_version.read = path + "SELECT email FROM users WHERE id = {row}";
  s.checks = {
      "SELECT count(*) FROM users WHERE email IS NULL",
      "SELECT count(*) FROM pg_attribute WHERE attrelid = 'users'::regclass AND attname = 'email' "
      "AND NOT attnotnull",
      "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = "
      "'email' AND (data_type <> 'text' OR column_default IS DISTINCT FROM "
      "'''nobody@unknown.invalid''::text')",
      "SELECT 2 - count(*) FROM pg_constraint WHERE conrelid = 'users'::regclass AND conname IN "
      "('users_email_has_at', 'users_email_key') AND convalidated",
      "SELECT count(*) FROM users WHERE id <= 5000 AND id % 10 = 0 AND email NOT LIKE '%@unknown.invalid' "
      "AND email NOT LIKE 'x%' AND email NOT LIKE 'y%'",
  };
  s.schema += kAppVersion;
  RunScenario(s);
  EXPECT_EQ(Query("INSERT INTO users (id) VALUES (-1) RETURNING email"), "nobody@unknown.invalid");
}

// The old version writes a value `up` cannot convert: its write succeeds all the same (the
// trigger leaves the shadow empty), and the plan stops before contract with PostgreSQL's error
// instead of switching a column that would lose the value.
TEST_F(AlterColumnTest, AValueUpCannotConvertNeverFailsTheWriteAndStopsThePlan) {
  PgCluster::Shared().Exec(db_, std::string(R"SQL(
CREATE TABLE reviews (id bigint PRIMARY KEY, rating text);
INSERT INTO reviews SELECT g, (1 + g % 5)::text FROM generate_series(1, 2000) g;
)SQL") + kAppVersion);
  StartDaemon();
  const std::string plan =
      "plan: reviews_bad_value\ndatabase: app\nexpand:\n"
      "  - alter_column: {table: reviews, column: rating, type: integer}\n" + Gates();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("reviews_bad_value.yaml", plan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("reviews_bad_value") == "gating"; }, 60s))
      << Diagnostics("reviews_bad_value");
  EXPECT_EQ(Query("INSERT INTO reviews (id, rating) VALUES (5000, 'five stars') RETURNING id"), "5000");
  EXPECT_EQ(Query("SELECT _tide_new_rating IS NULL FROM reviews WHERE id = 5000"), "t");
  PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
  ASSERT_TRUE(WaitFor([&] { return PlanState("reviews_bad_value") == "failed"; }, 90s))
      << Diagnostics("reviews_bad_value");
  const std::string error = Query("SELECT last_error FROM tide.plans WHERE name = 'reviews_bad_value'");
  EXPECT_NE(error.find("invalid input syntax for type integer"), std::string::npos) << error;
  EXPECT_EQ(error.find("five stars"), std::string::npos) << "row data in the error: " << error;
  EXPECT_EQ(Query("SELECT data_type FROM information_schema.columns WHERE table_schema = 'public' "
                  "AND table_name = 'reviews' AND column_name = 'rating'"), "text") << "no switch";
  EXPECT_EQ(Query("SELECT rating FROM reviews WHERE id = 5000"), "five stars");
}

// Writes that do not say which version made them, while a plan waits at its gates: a
// new-version update of another column of a row the backfill has not reached, a new-version
// write to the base table by its qualified name, a cascade of a foreign key, an insert through
// the view that leaves the column to its default. Each keeps exactly what was written.
TEST_F(AlterColumnTest, EveryWriteKeepsWhatItWroteWhicheverWayItCame) {
  PgCluster::Shared().Exec(db_, std::string(R"SQL(
CREATE TABLE p (id int PRIMARY KEY);
INSERT INTO p SELECT generate_series(1, 10);
CREATE TABLE scores (id bigint PRIMARY KEY, score int DEFAULT 0, label text,
                     pid int REFERENCES p (id) ON DELETE SET NULL);
INSERT INTO scores SELECT g, g * 10, 'l', 1 + g % 10 FROM generate_series(1, 3000) g;
)SQL") + kAppVersion);
  StartDaemon();
  const std::string plan = "plan: scores_bigint\ndatabase: app\nsettings: {lock_timeout: 500ms}\nexpand:\n"
                           "  - alter_column: {table: scores, column: score, type: bigint}\n"
                           "  - alter_column: {table: scores, column: pid, type: bigint}\n" + Gates();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("scores_bigint.yaml", plan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("scores_bigint") == "gating"; }, 60s)) << Diagnostics("scores_bigint");
  const std::string v2 = "SET search_path TO scores_bigint, public; ";
  // A row as if the backfill had not reached it yet.
  PgCluster::Shared().Exec(db_, "ALTER TABLE scores DISABLE TRIGGER USER; UPDATE scores SET "
                                "_tide_new_score = NULL WHERE id = 1; ALTER TABLE scores ENABLE TRIGGER USER");
  PgCluster::Shared().Exec(db_, v2 + "UPDATE scores SET label = 'renamed' WHERE id = 1");
  EXPECT_EQ(Query("SELECT score FROM scores WHERE id = 1"), "10") << "the old value survives";
  PgCluster::Shared().Exec(db_, v2 + "UPDATE public.scores SET score = 99 WHERE id = 2");
  EXPECT_EQ(Query("SELECT score || ' ' || _tide_new_score FROM scores WHERE id = 2"), "99 99");
  PgCluster::Shared().Exec(db_, v2 + "DELETE FROM p WHERE id = 4");  // scores.pid = 4 -> NULL
  EXPECT_EQ(Query("SELECT count(*) FROM scores WHERE pid = 4 OR _tide_new_pid = 4"), "0");
  // The new version writing the table by its own name (as COPY must) keeps its value too.
  PgCluster::Shared().Exec(db_, v2 + "INSERT INTO public.scores (id, score, label) VALUES (5000, 42, 'n')");
  EXPECT_EQ(Query("SELECT score || ' ' || _tide_new_score FROM scores WHERE id = 5000"), "42 42");
  PgCluster::Shared().Exec(db_, v2 + "INSERT INTO scores (id, label) VALUES (5001, 'd')");
  EXPECT_EQ(Query("SELECT score || ' ' || _tide_new_score FROM scores WHERE id = 5001"), "0 0")
      << "a column the new version leaves out gets the old column's default";
  PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
  ASSERT_TRUE(WaitFor([&] { return PlanState("scores_bigint") == "done"; }, 60s)) << Diagnostics("scores_bigint");
  EXPECT_EQ(Query("SELECT string_agg(id || ':' || coalesce(score::text, '-'), ',' ORDER BY id) FROM scores "
                  "WHERE id IN (1, 2, 5000, 5001)"), "1:10,2:99,5000:42,5001:0");
  EXPECT_EQ(Query("SELECT count(*) FROM scores WHERE id <= 3000 AND id > 2 AND score <> id * 10"), "0");
}

// A value `up` cannot convert that the old version writes after the gates passed (contract is
// held here, so the write lands between the gates and the switch): the switch never runs over
// it. The triggers turn strict when contract starts, and the switch checks that every row agrees
// before it takes its locks; the plan stops, the column and the value stay.
TEST_F(AlterColumnTest, AValueArrivingAfterTheGatesPassedIsNeverLostByTheSwitch) {
  PgCluster::Shared().Exec(db_, std::string(R"SQL(
CREATE TABLE ratings (id bigint PRIMARY KEY, stars text);
INSERT INTO ratings SELECT g, (1 + g % 5)::text FROM generate_series(1, 2000) g;
)SQL") + kAppVersion);
  StartDaemon();
  const std::string plan = "plan: ratings_int\ndatabase: app\nexpand:\n"
                           "  - alter_column: {table: ratings, column: stars, type: integer}\n" + Gates();
  ASSERT_EQ(Ctl({"pause", "ratings_int", "--phase", "contract", "--config", config_}).status, 0);
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("ratings_int.yaml", plan)}).status, 0);
  PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
  ASSERT_TRUE(WaitFor([&] { return Audit().find("\"event\":\"plan_held\"") != std::string::npos; }, 60s))
      << Diagnostics("ratings_int");
  EXPECT_EQ(Query("INSERT INTO ratings VALUES (5000, 'five') RETURNING id"), "5000")
      << "the old version's write succeeds";
  ASSERT_EQ(Ctl({"resume", "ratings_int", "--phase", "contract", "--config", config_}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("ratings_int") == "failed"; }, 60s)) << Diagnostics("ratings_int");
  EXPECT_EQ(Query("SELECT data_type FROM information_schema.columns WHERE table_schema = 'public' "
                  "AND table_name = 'ratings' AND column_name = 'stars'"), "text") << "no switch";
  EXPECT_EQ(Query("SELECT stars FROM ratings WHERE id = 5000"), "five");
  EXPECT_EQ(Query("SELECT count(*) FROM ratings"), "2001");
}

// What the column is besides its type goes over to the new column: its collation (and so its
// unique index stays case-insensitive), an index's operator class, a deferrable unique
// constraint, column privileges, its comment and statistics target.
TEST_F(AlterColumnTest, TheNewColumnKeepsCollationOperatorClassPrivilegesAndComment) {
  PgCluster::Shared().Exec(db_, std::string(R"SQL(
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE people (id bigint PRIMARY KEY, email varchar(100) COLLATE ci NOT NULL, handle varchar(50));
CREATE UNIQUE INDEX people_email_key ON people (email);
CREATE INDEX people_handle_pattern ON people (handle text_pattern_ops);
ALTER TABLE people ADD CONSTRAINT people_handle_key UNIQUE (handle) DEFERRABLE INITIALLY DEFERRED;
INSERT INTO people SELECT g, 'p' || g || '@example.org', 'h' || g FROM generate_series(1, 1000) g;
DO $$ BEGIN CREATE ROLE reporter; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
GRANT SELECT (id, email) ON people TO reporter;
COMMENT ON COLUMN people.email IS 'where we write';
ALTER TABLE people ALTER COLUMN email SET STATISTICS 500;
)SQL") + kAppVersion);
  StartDaemon();
  const std::string plan = "plan: people_text\ndatabase: app\nexpand:\n"
                           "  - alter_column: {table: people, column: email, type: text}\n"
                           "  - alter_column: {table: people, column: handle, type: text}\n" + Gates();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("people_text.yaml", plan)}).status, 0);
  PgCluster::Shared().Exec(db_, "UPDATE app_version SET version = 2");
  ASSERT_TRUE(WaitFor([&] { return PlanState("people_text") == "done"; }, 60s)) << Diagnostics("people_text");
  EXPECT_EQ(Query("SELECT collation_name || ' ' || data_type FROM information_schema.columns WHERE "
                  "table_name = 'people' AND column_name = 'email'"), "ci text");
  EXPECT_ANY_THROW(PgCluster::Shared().Exec(db_, "INSERT INTO people VALUES (5000, 'P1@EXAMPLE.ORG', 'x')"))
      << "the unique index is still case-insensitive";
  EXPECT_NE(Query("SELECT pg_get_indexdef('people_handle_pattern'::regclass)").find("text_pattern_ops"),
            std::string::npos);
  EXPECT_EQ(Query("SELECT condeferrable AND condeferred FROM pg_constraint WHERE conname = 'people_handle_key'"), "t");
  EXPECT_EQ(Query("SELECT has_column_privilege('reporter', 'people', 'email', 'SELECT')"), "t");
  EXPECT_EQ(Query("SELECT col_description('people'::regclass, (SELECT attnum FROM pg_attribute WHERE "
                  "attrelid = 'people'::regclass AND attname = 'email'))"), "where we write");
  EXPECT_EQ(Query("SELECT attstattarget FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'email'"), "500");
  Finalize("people_text");
  ExpectNoLeftovers("people_text");
}

// What the switch's DROP COLUMN would trip over is refused before anything runs: a trigger with
// a WHEN on the column, a constrained domain as the new type.
TEST_F(AlterColumnTest, RefusesWhatTheSwitchCouldNotDropOrAddWithoutARewrite) {
  PgCluster::Shared().Exec(db_, R"SQL(
CREATE TABLE w (id bigint PRIMARY KEY, score int);
CREATE FUNCTION w_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER w_touch BEFORE UPDATE ON w FOR EACH ROW WHEN (OLD.score IS DISTINCT FROM NEW.score)
  EXECUTE FUNCTION w_touch();
CREATE DOMAIN posint AS bigint CHECK (VALUE > 0);
CREATE TABLE d (id bigint PRIMARY KEY, n int);
CREATE TABLE r (id bigint PRIMARY KEY, n int);
CREATE TABLE r_log (n int);
CREATE RULE r_copy AS ON INSERT TO r DO ALSO INSERT INTO r_log VALUES (NEW.n);
)SQL");
  auto rule = Ctl({"validate", WritePlan("r.yaml", "plan: r_bigint\ndatabase: app\nexpand:\n"
                                                   "  - alter_column: {table: r, column: n, type: bigint}\n"),
                   "--db", "app", "--config", config_});
  EXPECT_NE(rule.status, 0) << rule.output;
  EXPECT_NE(rule.output.find("rule r_copy on r depends on it"), std::string::npos) << rule.output;
  auto r = Ctl({"validate", WritePlan("w.yaml", "plan: w_bigint\ndatabase: app\nexpand:\n"
                                                "  - alter_column: {table: w, column: score, type: bigint}\n"),
                "--db", "app", "--config", config_});
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("trigger w_touch on table w depends on it"), std::string::npos) << r.output;
  r = Ctl({"validate", WritePlan("d.yaml", "plan: d_posint\ndatabase: app\nexpand:\n"
                                           "  - alter_column: {table: d, column: n, type: posint}\n"),
           "--db", "app", "--config", config_});
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("domain with constraints"), std::string::npos) << r.output;
}

// json has no `=`: the trigger, the gate and the backfill compare as text, so the old version's
// updates go on working through json to jsonb, and every document arrives.
TEST_F(AlterColumnTest, JsonToJsonbWithTheOldVersionUpdating) {
  Scenario s;
  s.seeded_rows = 3000;
  s.both_versions = 1s;
  s.plan_name = "docs_jsonb";
  s.schema = R"SQL(
CREATE TABLE docs (id bigint PRIMARY KEY, body json, note text);
INSERT INTO docs SELECT g, json_build_object('n', g), 'x' FROM generate_series(1, 3000) g;
)SQL";
  s.plan = std::string("plan: docs_jsonb\ndatabase: app\nsettings: {lock_timeout: 500ms}\nexpand:\n"
                       "  - alter_column: {table: docs, column: body, type: jsonb}\n") + Gates();
  s.old_version.insert = "INSERT INTO docs (id, body) VALUES ({id}, json_build_object('n', {id}))";
  s.old_version.update = "UPDATE docs SET note = 'u{v}', body = json_build_object('n', id) WHERE id = {row}";
  s.old_version.read = "SELECT body->>'n' FROM docs WHERE id = {row}";
  const std::string path = "SET search_path TO docs_jsonb, public; ";
  s.new_version.insert = path + "INSERT INTO docs (id, body) VALUES ({id}, jsonb_build_object('n', {id}))";
  s.new_version.update = path + "UPDATE docs SET note = 'v{v}' WHERE id = {row}";
  s.new_version.read = path + "SELECT body->>'n' FROM docs WHERE id = {row}";
  s.checks = {"SELECT count(*) FROM docs WHERE (body->>'n')::bigint IS DISTINCT FROM id",
              "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' AND "
              "table_name = 'docs' AND column_name = 'body' AND data_type <> 'jsonb'"};
  s.schema += kAppVersion;
  RunScenario(s);
}

// A rename: the old version writes `role`, the new version `job_title` through the version
// schema, at the same time; after contract the column is `job_title`. A table rename likewise.
TEST_F(AlterColumnTest, RenameColumnAndTableWithBothVersionsWriting) {
  Scenario s;
  s.seeded_rows = 5000;
  s.both_versions = 1s;
  s.plan_name = "employees_job_title";
  s.schema = R"SQL(
CREATE TABLE employees (id bigint PRIMARY KEY, role text NOT NULL);
INSERT INTO employees SELECT g, 'r' || g FROM generate_series(1, 5000) g;
CREATE TABLE fruits (id bigint PRIMARY KEY, name text);
INSERT INTO fruits SELECT g, 'f' || g FROM generate_series(1, 5000) g;
)SQL";
  s.plan = std::string(
               "plan: employees_job_title\ndatabase: app\nsettings: {lock_timeout: 500ms}\n"
               "expand:\n"
               "  - rename_column: {table: employees, from: role, to: job_title}\n"
               "  - rename_table: {from: fruits, to: produce}\n") +
           Gates();
  s.old_version.insert = "INSERT INTO employees (id, role) VALUES ({id}, 'x{v}')";
  s.old_version.update = "UPDATE employees SET role = 'u{v}' WHERE id = {row}";
  s.old_version.read = "SELECT role FROM employees e JOIN fruits f USING (id) WHERE id = {row}";
  const std::string path = "SET search_path TO employees_job_title, public; ";
  s.new_version.insert = path + "INSERT INTO employees (id, job_title) VALUES ({id}, 'y{v}')";
  s.new_version.update = path + "UPDATE produce SET name = 'p{v}' WHERE id = {row}";
  s.new_version.read = path + "SELECT job_title FROM employees e JOIN produce p USING (id) WHERE id = {row}";
  s.checks = {
      "SELECT 1 - count(*) FROM information_schema.columns WHERE table_name = 'employees' AND "
      "column_name = 'job_title'",
      "SELECT count(*) FROM employees WHERE job_title IS NULL",
      "SELECT 1 - count(*) FROM pg_class WHERE relname = 'produce' AND relkind = 'r'",
  };
  s.schema += kAppVersion;
  RunScenario(s);
}

// Abort before contract takes away everything expand added: the shadow, the trigger, the views.
TEST_F(AlterColumnTest, AbortBeforeContractRemovesShadowTriggerAndViews) {
  PgCluster::Shared().Exec(db_, std::string(R"SQL(
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL);
INSERT INTO accounts (name) SELECT 'a' || g FROM generate_series(1, 2000) g;
)SQL") + kAppVersion);
  StartDaemon();
  const std::string plan =
      std::string("plan: abort_bigint\ndatabase: app\nexpand:\n"
                  "  - alter_column: {table: accounts, column: id, type: bigint}\n") +
      Gates();
  ASSERT_EQ(Ctl({"submit", "--config", config_, WritePlan("abort_bigint.yaml", plan)}).status, 0);
  ASSERT_TRUE(WaitFor([&] { return PlanState("abort_bigint") == "gating"; }, 60s))
      << Diagnostics("abort_bigint");
  EXPECT_EQ(Query("SELECT count(*) FROM accounts WHERE _tide_new_id IS DISTINCT FROM id"), "0");
  auto abort = Ctl({"abort", "abort_bigint", "--config", config_});
  ASSERT_EQ(abort.status, 0) << abort.output;
  ASSERT_TRUE(WaitFor([&] { return PlanState("abort_bigint") == "aborted"; }, 30s))
      << Diagnostics("abort_bigint");
  ExpectNoLeftovers("abort_bigint");
  EXPECT_EQ(Query("SELECT data_type FROM information_schema.columns WHERE table_name = 'accounts' "
                  "AND column_name = 'id'"), "integer");
  EXPECT_EQ(Query("INSERT INTO accounts (name) VALUES ('after') RETURNING id"), "2001");
}

// What the switch cannot carry over is refused at submission, with the reason.
TEST_F(AlterColumnTest, RefusesAColumnAViewDependsOn) {
  PgCluster::Shared().Exec(db_, R"SQL(
CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL);
CREATE VIEW account_names AS SELECT id, name FROM accounts;
)SQL");
  const std::string plan =
      "plan: refused_bigint\ndatabase: app\nexpand:\n"
      "  - alter_column: {table: accounts, column: id, type: bigint}\n";
  auto r = Ctl({"validate", WritePlan("refused_bigint.yaml", plan), "--db", "app", "--config", config_});
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("view account_names depends on it"), std::string::npos) << r.output;
}

// `validate --db` lists every statement the switch would run now, each with its lock.
TEST_F(AlterColumnTest, ValidateWithTheDatabaseListsTheSwitchStatementByStatement) {
  PgCluster::Shared().Exec(db_, IntToBigint().schema);
  auto r = Ctl({"validate", WritePlan("accounts_bigint.yaml", IntToBigint().plan), "--db", "app",
                "--config", config_});
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* text :
       {"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"accounts_pkey_tide\"",
        "FOREIGN KEY (\"_tide_new_account_id\") REFERENCES \"public\".\"accounts\" (\"_tide_new_id\")",
        "'\"public\".\"accounts\", \"public\".\"orders\"' || ' IN ACCESS EXCLUSIVE MODE'",
        "ALTER SEQUENCE public.accounts_id_seq AS bigint", "for one short transaction"}) {
    EXPECT_NE(r.output.find(text), std::string::npos) << text << "\n" << r.output;
  }
}

// add_primary_key on a table without one, with the application writing: the index is built
// CONCURRENTLY and the key added USING INDEX.
TEST_F(AlterColumnTest, AddPrimaryKeyUnderTheApplication) {
  Scenario s;
  s.seeded_rows = 5000;
  s.both_versions = 1s;
  s.plan_name = "events_pkey";
  s.schema = R"SQL(
CREATE TABLE events (id bigint NOT NULL, payload text);
INSERT INTO events SELECT g, 'p' FROM generate_series(1, 5000) g;
)SQL";
  s.plan = std::string(
               "plan: events_pkey\ndatabase: app\nsettings: {lock_timeout: 500ms}\n"
               "expand:\n"
               "  - add_primary_key: {table: events, columns: [id]}\n") +
           Gates();
  s.old_version.insert = "INSERT INTO events (id, payload) VALUES ({id}, 'x')";
  s.old_version.update = "UPDATE events SET payload = 'u{v}' WHERE id = {row}";
  s.old_version.read = "SELECT payload FROM events WHERE id = {row}";
  s.new_version = s.old_version;
  s.checks = {
      "SELECT 1 - count(*) FROM pg_constraint WHERE conrelid = 'events'::regclass AND contype = "
      "'p' AND conname = 'events_pkey'",
  };
  s.schema += kAppVersion;
  RunScenario(s);
}

}  // namespace
}  // namespace tide
