// Typed operations and the preflight against a real PostgreSQL 15: what each leaves in
// pg_catalog on a populated table, resuming after a crash at any statement, a failed concurrent
// index build cleaned up and retried, and a dry run that changes nothing.
#include <gtest/gtest.h>

#include <chrono>
#include <pqxx/pqxx>
#include <thread>

#include "engine/operations.h"
#include "pg/pg_database.h"
#include "plan/plan_parser.h"
#include "support/pg_cluster.h"

namespace tide {
namespace {

using testing::PgCluster;

class OperationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_name_ = PgCluster::Shared().CreateDatabase("ops");
    db_ = std::make_unique<PgPlanDatabase>(PgCluster::Shared().Dsn(db_name_), Defaults{});
    ASSERT_TRUE(db_->Open().ok());
    ASSERT_TRUE(db_->EnsureSchema().ok());
    PlanRecord r;
    r.name = "p";
    r.checksum = "abc";
    r.file_name = "p.yaml";
    r.source = "plan: p";
    ASSERT_TRUE(db_->InsertPlan(r).ok());
    Exec("CREATE TABLE customers (id bigint PRIMARY KEY, email text NOT NULL)");
    Exec("INSERT INTO customers SELECT g, 'c' || g || '@example.com' FROM generate_series(1, 1000) g");
    Exec("CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint, total numeric, number int, "
         "legacy text)");
    Exec("INSERT INTO orders SELECT g, 1 + g % 1000, g % 97, g, 'x' FROM generate_series(1, 20000) g");
    Exec("ANALYZE");
  }

  void Exec(const std::string& sql) { PgCluster::Shared().Exec(db_name_, sql); }
  std::string Query(const std::string& sql) { return PgCluster::Shared().Query(db_name_, sql); }

  // The one step of `yaml` (a list item under `expand:` or `contract:`), parsed as tide does.
  static Step ParseStep(const std::string& item, const std::string& phase = "contract") {
    const std::string text = "plan: p\ndatabase: app\ngates:\n  - sql: SELECT 0\n    expect: 0\n" +
                             phase + ":\n  - " + item + "\n";
    auto r = ParsePlan(text, "p.yaml");
    EXPECT_TRUE(r.ok()) << FormatDiagnostics(r.errors);
    return phase == "expand" ? r.plan.expand.at(0) : r.plan.contract.at(0);
  }

  Result<std::vector<StatementOutcome>> Run(const std::vector<DdlStatement>& statements,
                                            StatementLimits limits = {Millis(2000), Millis(30000)}) {
    return db_->RunStatements("p", statements, limits, std::nullopt);
  }
  Result<std::vector<StatementOutcome>> Run(const Step& step) { return Run(CompileStep(step)); }

  std::string db_name_;
  std::unique_ptr<PgPlanDatabase> db_;
};

TEST_F(OperationsTest, EachTypedOperationLeavesTheCatalogAsPromised) {
  auto ok = [&](const std::string& item, const std::string& phase = "contract") {
    auto r = Run(ParseStep(item, phase));
    ASSERT_TRUE(r.ok()) << item << ": " << r.status().ToString();
  };
  ok("add_column: {table: orders, column: status, type: text, default: \"'new'\", not_null: true}", "expand");
  EXPECT_EQ(Query("SELECT count(*) FROM orders WHERE status = 'new'"), "20000");
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status'"), "t");

  ok("create_index: {table: orders, name: orders_customer_idx, columns: [customer_id]}", "expand");
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_customer_idx'::regclass"), "t");

  ok("set_not_null: {table: orders, column: customer_id}");
  EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'customer_id'"), "t");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c'"), "0")
      << "the helper check is gone once NOT NULL holds";

  ok("add_foreign_key: {table: orders, columns: [customer_id], references: {table: customers, columns: [id]}}");
  EXPECT_EQ(Query("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_customer_id_fkey'"), "t");

  ok("add_check: {table: orders, name: orders_total_positive, expression: total >= 0}");
  EXPECT_EQ(Query("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_total_positive'"), "t");

  ok("add_unique: {table: orders, name: orders_number_key, columns: [number]}");
  EXPECT_EQ(Query("SELECT contype FROM pg_constraint WHERE conname = 'orders_number_key'"), "u");
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_number_key'::regclass"), "t");

  ok("drop_column: {table: orders, column: legacy}");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'legacy' AND NOT attisdropped"), "0");
  ok("drop_index: {name: orders_customer_idx}");
  EXPECT_EQ(Query("SELECT to_regclass('orders_customer_idx') IS NULL"), "t");

  // The application cannot break what was promised.
  EXPECT_THROW(Exec("INSERT INTO orders (id, customer_id, total, number) VALUES (0, NULL, 1, -1)"), std::exception);
  EXPECT_THROW(Exec("INSERT INTO orders (id, customer_id, total, number) VALUES (0, 99999, 1, -1)"), std::exception);
  EXPECT_THROW(Exec("INSERT INTO orders (id, customer_id, total, number) VALUES (0, 1, -5, -1)"), std::exception);
  EXPECT_THROW(Exec("INSERT INTO orders (id, customer_id, total, number) VALUES (0, 1, 1, 1)"), std::exception);
}

TEST_F(OperationsTest, ACrashAtAnyStatementResumesToTheSameResult) {
  const std::vector<std::string> ops = {
      "set_not_null: {table: orders, column: customer_id}",
      "add_foreign_key: {table: orders, columns: [customer_id], references: {table: customers, columns: [id]}}",
      "add_unique: {table: orders, name: orders_number_key, columns: [number]}",
  };
  for (const auto& op : ops) {
    const auto statements = CompileStep(ParseStep(op));
    for (size_t done = 0; done <= statements.size(); ++done) {
      SetUp();  // a fresh database for each crash point
      // The statements before the crash ran; the rest did not.
      auto first = Run(std::vector<DdlStatement>(statements.begin(), statements.begin() + done));
      ASSERT_TRUE(first.ok()) << op << " after " << done << ": " << first.status().ToString();
      auto resumed = Run(statements);
      ASSERT_TRUE(resumed.ok()) << op << " resumed after " << done << ": " << resumed.status().ToString();
      for (size_t i = 0; i < done && i < resumed->size(); ++i) {
        EXPECT_TRUE((*resumed)[i].skipped || statements[i].skip_if.empty())
            << op << ": statement " << i + 1 << " ran twice";
      }
      EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND NOT convalidated"), "0")
          << op << " after " << done;
      EXPECT_EQ(Query("SELECT count(*) FROM pg_index WHERE indrelid = 'orders'::regclass AND NOT indisvalid"), "0")
          << op << " after " << done;
    }
    if (op.rfind("set_not_null", 0) == 0) {
      EXPECT_EQ(Query("SELECT attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'customer_id'"), "t");
      EXPECT_EQ(Query("SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c'"), "0");
    }
  }
}

TEST_F(OperationsTest, AFailedConcurrentIndexBuildIsDroppedAndRetried) {
  const Step step = ParseStep("create_index: {table: orders, name: orders_total_idx, columns: [total]}", "expand");
  {
    // A transaction with an old snapshot: the build waits for it in its last phase, gives up at
    // lock_timeout, and leaves an INVALID index behind, which tide drops.
    pqxx::connection old(PgCluster::Shared().Dsn(db_name_));
    pqxx::transaction<pqxx::repeatable_read> snapshot(old, "old");
    snapshot.exec("SELECT count(*) FROM customers");
    auto r = Run(CompileStep(step), {Millis(300), Millis(30000)});
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().sqlstate(), "55P03") << r.status().ToString();
    EXPECT_EQ(r.status().code(), Status::Code::kRetryable);
    EXPECT_EQ(Query("SELECT count(*) FROM pg_index WHERE indrelid = 'orders'::regclass AND NOT indisvalid"), "0")
        << "the failed build's leftover is dropped";
    snapshot.abort();
  }
  auto retried = Run(step);
  ASSERT_TRUE(retried.ok()) << retried.status().ToString();
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_total_idx'::regclass"), "t");

  // A leftover from someone else's failed build (a unique index on duplicates) is dropped
  // before tide builds the index under that name, where IF NOT EXISTS would keep it.
  EXPECT_THROW(Exec("CREATE UNIQUE INDEX CONCURRENTLY orders_cust_idx ON orders (customer_id)"), std::exception);
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_cust_idx'::regclass"), "f");
  auto rebuilt = Run(ParseStep("create_index: {table: orders, name: orders_cust_idx, columns: [customer_id]}", "expand"));
  ASSERT_TRUE(rebuilt.ok()) << rebuilt.status().ToString();
  EXPECT_TRUE(rebuilt->at(0).dropped_invalid_index);
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_cust_idx'::regclass"), "t");
}

TEST_F(OperationsTest, ABuildThatOutlivedItsClientIsWaitedForNotDroppedUnderIt) {
  // tided killed during a CONCURRENTLY build: its session goes on building inside the server,
  // and the index is INVALID until it ends. The next tided waits for it, then finds it built.
  const Step step = ParseStep("create_index: {table: orders, name: orders_total_idx, columns: [total]}", "expand");
  const auto statements = CompileStep(step);
  pqxx::connection old(PgCluster::Shared().Dsn(db_name_));
  pqxx::transaction<pqxx::repeatable_read> snapshot(old, "old");
  snapshot.exec("SELECT count(*) FROM customers");
  std::thread earlier([&] {
    pqxx::connection c(PgCluster::Shared().Dsn(db_name_));
    pqxx::nontransaction n(c);
    n.exec(statements.at(0).sql);
  });
  // The earlier build is in the catalog, INVALID, waiting for the old snapshot.
  for (int i = 0; i < 100 && Query("SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('orders_total_idx') AND NOT indisvalid") != "1"; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(Query("SELECT count(*) FROM pg_index WHERE indexrelid = to_regclass('orders_total_idx') AND NOT indisvalid"), "1");
  std::thread release([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    snapshot.abort();
  });
  auto r = Run(statements);
  release.join();
  earlier.join();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->at(0).skipped) << "the earlier build finished the index";
  EXPECT_FALSE(r->at(0).dropped_invalid_index);
  EXPECT_EQ(Query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'orders_total_idx'::regclass"), "t");
}

const char* kPlan = R"(plan: orders_status
database: app
expand:
  - add_column: {table: orders, column: status, type: text}
  - create_index: {table: orders, name: orders_status_idx, columns: [status]}
backfill:
  - table: orders
    set: {status: "CASE WHEN total > 50 THEN 'big' ELSE 'small' END"}
    max_rows_per_second: 10000
gates:
  - null_count: {table: orders, column: status}
contract:
  - set_not_null: {table: orders, column: status}
)";

TEST_F(OperationsTest, PreflightReportsRowsSizeTimeAndLocks) {
  auto plan = ParsePlan(kPlan, "p.yaml");
  ASSERT_TRUE(plan.ok()) << FormatDiagnostics(plan.errors);
  auto r = db_->Preflight(plan.plan, false, {Millis(2000), Millis(30000)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->ok()) << FormatPreflight(*r);
  ASSERT_EQ(r->tasks.size(), 1u);
  EXPECT_EQ(r->tasks[0].estimated_rows, 20000);
  EXPECT_GT(r->tasks[0].total_bytes, 500000);
  EXPECT_EQ(r->tasks[0].key, "id bigint");
  EXPECT_EQ(r->tasks[0].time, "about 2s at 10000 rows/s (max_rows_per_second)");
  const std::string text = FormatPreflight(*r);
  EXPECT_NE(text.find("expand 2: CREATE INDEX CONCURRENTLY IF NOT EXISTS \"orders_status_idx\""), std::string::npos) << text;
  EXPECT_NE(text.find("gate 1: ALTER TABLE \"orders\" ADD CONSTRAINT \"orders_status_not_null\""), std::string::npos) << text;
  EXPECT_NE(text.find("lock: SHARE UPDATE EXCLUSIVE on orders while it scans"), std::string::npos) << text;
}

TEST_F(OperationsTest, PreflightFindsWhatWouldFail) {
  auto plan = ParsePlan(R"(plan: broken
database: app
expand:
  - add_column: {table: orders, column: region, type: text, not_null: true}
  - add_column: {table: invoices, column: paid, type: bool}
backfill:
  - table: orders
    set: {regoin: "'eu'"}
)", "p.yaml");
  ASSERT_TRUE(plan.ok()) << FormatDiagnostics(plan.errors);
  auto r = db_->Preflight(plan.plan, false, {Millis(2000), Millis(30000)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string text = FormatPreflight(*r);
  ASSERT_EQ(r->problems.size(), 3u) << text;
  EXPECT_NE(text.find("column `regoin` does not exist and no expand step adds it"), std::string::npos) << text;
  EXPECT_NE(text.find("a NOT NULL column without a default cannot be added"), std::string::npos) << text;
  EXPECT_NE(text.find("table `invoices` does not exist"), std::string::npos) << text;
}

TEST_F(OperationsTest, ADryRunExplainsEverythingAndChangesNothing) {
  auto plan = ParsePlan(kPlan, "p.yaml");
  ASSERT_TRUE(plan.ok());
  const std::string before = Query("SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o");
  auto r = db_->Preflight(plan.plan, true, {Millis(2000), Millis(30000)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const std::string text = FormatPreflight(*r);
  EXPECT_TRUE(r->ok()) << text;
  EXPECT_NE(text.find("expand step 1: ran, then rolled back"), std::string::npos) << text;
  EXPECT_NE(text.find("expand step 2: not tried (runs outside a transaction)"), std::string::npos) << text;
  EXPECT_NE(r->tasks[0].explain.find("Update on orders"), std::string::npos) << r->tasks[0].explain;
  // Its expand statement holds ACCESS EXCLUSIVE on orders until the rollback: the first batch is
  // planned, never run under it (that would hold the application up for a whole batch).
  EXPECT_EQ(r->tasks[0].explain.find("actual rows"), std::string::npos) << r->tasks[0].explain;
  EXPECT_EQ(r->tasks[0].measured_rows_per_second, 0);
  EXPECT_NE(text.find("planned, not run"), std::string::npos) << text;
  ASSERT_EQ(r->gate_explains.size(), 1u);
  EXPECT_NE(r->gate_explains[0].find("Aggregate"), std::string::npos);
  // Nothing changed: no column, the same rows, no index, no lock left behind.
  EXPECT_EQ(Query("SELECT count(*) FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'status'"), "0");
  EXPECT_EQ(Query("SELECT md5(string_agg(o::text, ',' ORDER BY id)) FROM orders o"), before);
  EXPECT_EQ(Query("SELECT to_regclass('orders_status_idx') IS NULL"), "t");
  EXPECT_EQ(Query("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = 'orders'"), "0");
}

TEST_F(OperationsTest, ADryRunWithoutExpandStatementsRunsTheFirstBatchAndMeasuresIt) {
  Exec("ALTER TABLE orders ADD COLUMN status text");
  auto plan = ParsePlan(R"(plan: orders_status
database: app
backfill:
  - table: orders
    set: {status: "CASE WHEN total > 50 THEN 'big' ELSE 'small' END"}
    batch_size: 1000
)", "p.yaml");
  ASSERT_TRUE(plan.ok());
  auto r = db_->Preflight(plan.plan, true, {Millis(2000), Millis(30000)});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_NE(r->tasks[0].explain.find("actual rows"), std::string::npos) << r->tasks[0].explain;
  EXPECT_GT(r->tasks[0].measured_rows_per_second, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM orders WHERE status IS NOT NULL"), "0") << "rolled back";
}

}  // namespace
}  // namespace tide
