#include "plan/lint.h"

#include <gtest/gtest.h>

#include "plan/plan_parser.h"

namespace tide {
namespace {

std::vector<std::string> Rules(const std::string& sql, const std::string& phase = "expand",
                               const std::vector<std::string>& earlier = {}) {
  std::vector<std::string> out;
  for (const auto& f : LintStep(sql, phase, earlier)) out.push_back(f.rule);
  return out;
}

using V = std::vector<std::string>;

TEST(Lint, CreateIndexNeedsConcurrently) {
  EXPECT_EQ(Rules("CREATE INDEX i ON t (c)"), V{"require-concurrent-index-creation"});
  EXPECT_EQ(Rules("create unique index i on t (c)"), V{"require-concurrent-index-creation"});
  EXPECT_EQ(Rules("CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (c)"), V{});
}

TEST(Lint, ConcurrentlyCannotRunInATransaction) {
  EXPECT_EQ(Rules("BEGIN; CREATE INDEX CONCURRENTLY i ON t (c); COMMIT"),
            (V{"one-statement-per-step", "ban-concurrent-index-creation-in-transaction",
               "transaction-nesting"}));
}

TEST(Lint, NotNullColumnsNeedADefault) {
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN c int NOT NULL"), V{"adding-not-nullable-field"});
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN c int NOT NULL DEFAULT 0"), V{});
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN c int"), V{});
}

TEST(Lint, VolatileDefaultsRewriteTheTable) {
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN u uuid DEFAULT gen_random_uuid()"),
            V{"adding-field-with-volatile-default"});
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN at timestamptz DEFAULT clock_timestamp()"),
            V{"adding-field-with-volatile-default"});
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now()"), V{})
      << "now() is stable: evaluated once, no rewrite";
}

TEST(Lint, ChangingAColumnTypeRewritesTheTable) {
  EXPECT_EQ(Rules("ALTER TABLE t ALTER COLUMN c TYPE bigint"), V{"changing-column-type"});
  EXPECT_EQ(Rules("ALTER TABLE t ALTER c SET DATA TYPE text"), V{"changing-column-type"});
}

TEST(Lint, SetNotNullNeedsAValidatedCheckFirst) {
  EXPECT_EQ(Rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL", "contract"),
            V{"set-not-null-without-validated-check"});
  EXPECT_EQ(Rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL", "contract",
                  {"ALTER TABLE t ADD CONSTRAINT k CHECK (c IS NOT NULL) NOT VALID",
                   "ALTER TABLE t VALIDATE CONSTRAINT k"}),
            V{});
}

TEST(Lint, ForeignKeysAndChecksGoInNotValid) {
  EXPECT_EQ(Rules("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (a) REFERENCES u (id)"),
            V{"constraint-missing-not-valid"});
  EXPECT_EQ(Rules("ALTER TABLE t ADD CONSTRAINT k CHECK (a > 0)"), V{"constraint-missing-not-valid"});
  EXPECT_EQ(Rules("ALTER TABLE t ADD CONSTRAINT k CHECK (a > 0) NOT VALID"), V{});
}

TEST(Lint, RenamesBreakTheApplication) {
  EXPECT_EQ(Rules("ALTER TABLE t RENAME COLUMN a TO b"), V{"renaming-column"});
  EXPECT_EQ(Rules("ALTER TABLE t RENAME TO u"), V{"renaming-table"});
  EXPECT_EQ(Rules("ALTER TABLE t RENAME CONSTRAINT a TO b"), V{}) << "catalog only; applications do not name checks";
}

TEST(Lint, DropsBelongInContract) {
  EXPECT_EQ(Rules("ALTER TABLE t DROP COLUMN a"), V{"ban-drop-in-expand"});
  EXPECT_EQ(Rules("DROP INDEX CONCURRENTLY IF EXISTS i"), V{"ban-drop-in-expand"});
  EXPECT_EQ(Rules("ALTER TABLE t DROP COLUMN a", "contract"), V{});
}

TEST(Lint, TableRewritesAndExplicitLocksAreRefused) {
  EXPECT_EQ(Rules("TRUNCATE t"), V{"ban-truncate"});
  EXPECT_EQ(Rules("VACUUM (FULL) t"), V{"ban-vacuum-full"});
  EXPECT_EQ(Rules("VACUUM FULL t"), V{"ban-vacuum-full"});
  EXPECT_EQ(Rules("VACUUM t"), V{});
  EXPECT_EQ(Rules("CLUSTER t USING i"), V{"ban-cluster"});
  EXPECT_EQ(Rules("LOCK TABLE t IN ACCESS EXCLUSIVE MODE"), V{"ban-lock-table"});
}

TEST(Lint, KeywordsInsideStringsAndQuotedNamesDoNotCount) {
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN \"rename\" text DEFAULT 'DROP TABLE; TRUNCATE'"), V{});
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN c int; "), V{}) << "a trailing semicolon is one statement";
  EXPECT_EQ(Rules("ALTER TABLE t ADD COLUMN c int -- CREATE INDEX i ON t (c)"), V{});
}

TEST(Lint, UnsafeStepsAreSkippedAndFindingsNameTheirPlace) {
  auto parsed = ParsePlan(R"(plan: p
database: app
expand:
  - sql: CREATE INDEX i ON t (c)
  - sql: CREATE INDEX j ON t (d)
    unsafe: the table has 40 rows
)", "p.yaml");
  ASSERT_TRUE(parsed.ok()) << FormatDiagnostics(parsed.errors);
  auto findings = LintPlan(parsed.plan);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].ToString("p.yaml"),
            "p.yaml:4:5: expand step 1: require-concurrent-index-creation: CREATE INDEX without "
            "CONCURRENTLY blocks every write to the table while it builds (table t; at line 1, "
            "column 1 of the step); use `create_index: "
            "{table, name, columns}` (CREATE INDEX CONCURRENTLY, cleaned up and retried if the "
            "build fails), or write CREATE INDEX CONCURRENTLY IF NOT EXISTS (or mark the step "
            "`unsafe: \"why\"` to run it as written)");
}

}  // namespace
}  // namespace tide
