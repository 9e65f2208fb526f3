#include "plan/lint.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

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

TEST(Lint, ATableAnEarlierStepCreatedIsNewAndEmpty) {
  const std::vector<std::string> created = {"CREATE TABLE core.audit (id bigint, body text, at timestamptz)"};
  EXPECT_EQ(Rules("CREATE INDEX audit_at ON core.audit (at)", "expand", created), V{});
  EXPECT_EQ(Rules("ALTER TABLE core.audit ADD CONSTRAINT audit_pk PRIMARY KEY (id)", "expand", created), V{});
  EXPECT_EQ(Rules("ALTER TABLE core.audit ADD CONSTRAINT c CHECK (id > 0), ALTER COLUMN body SET NOT NULL",
                  "expand", created), V{});
  EXPECT_EQ(Rules("ALTER TABLE core.audit ADD COLUMN n int NOT NULL", "expand", created), V{});
  EXPECT_EQ(Rules("ALTER TABLE core.audit ALTER COLUMN body TYPE jsonb USING body::jsonb", "expand", created), V{});
  EXPECT_EQ(Rules("CREATE INDEX audit_at ON audit (at)", "expand", created), V{"require-concurrent-index-creation"})
      << "another table (the search_path's audit, not core.audit)";
  EXPECT_EQ(Rules("CREATE TABLE t (id int); CREATE INDEX i ON t (id)"), V{"one-statement-per-step"});
}

TEST(Lint, SetNotNullNeedsTheValidatedCheckOfThatColumn) {
  const std::vector<std::string> other = {"ALTER TABLE t ADD CONSTRAINT k CHECK (b IS NOT NULL) NOT VALID",
                                          "ALTER TABLE t VALIDATE CONSTRAINT k"};
  EXPECT_EQ(Rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL", "contract", other),
            V{"set-not-null-without-validated-check"});
  const std::vector<std::string> not_validated = {"ALTER TABLE t ADD CONSTRAINT k CHECK (c IS NOT NULL) NOT VALID"};
  EXPECT_EQ(Rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL", "contract", not_validated),
            V{"set-not-null-without-validated-check"});
  const std::vector<std::string> other_table = {"ALTER TABLE u ADD CONSTRAINT k CHECK (c IS NOT NULL)"};
  EXPECT_EQ(Rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL", "contract", other_table),
            V{"set-not-null-without-validated-check"});
  const std::vector<std::string> at_once = {"ALTER TABLE t ADD CONSTRAINT k CHECK (c IS NOT NULL)"};
  EXPECT_EQ(Rules("ALTER TABLE t ALTER COLUMN c SET NOT NULL", "contract", at_once), V{})
      << "validated as it was added (that step is refused on its own)";
}

std::vector<std::string> RulesWith(const std::string& sql, const LintFacts& facts) {
  LintContext ctx;
  ctx.facts = &facts;
  std::vector<std::string> out;
  for (const auto& f : LintStep(sql, "expand", ctx)) out.push_back(f.rule);
  return out;
}

TEST(Lint, TheCatalogTellsWhichTypeChangesRewrite) {
  LintFacts facts;
  facts.column_types = {{"users.name", "character varying(255)"}, {"users.n", "numeric(10,2)"},
                        {"users.id", "integer"}, {"users.ip", "cidr"}, {"users.body", "text"},
                        {"core.users.at", "timestamp(3) without time zone"}};
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN name TYPE text", facts), V{});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN name TYPE varchar(300)", facts), V{});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN name TYPE varchar", facts), V{});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN name TYPE varchar(100)", facts), V{"changing-column-type"})
      << "a shorter limit checks every row";
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN n TYPE numeric(12,2)", facts), V{});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN n TYPE numeric(12,3)", facts), V{"changing-column-type"});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN id TYPE bigint", facts), V{"changing-column-type"});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN ip TYPE inet", facts), V{});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN body TYPE varchar(10)", facts), V{"changing-column-type"});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN name TYPE text USING upper(name)", facts),
            V{"changing-column-type"}) << "USING computes every row";
  EXPECT_EQ(RulesWith("ALTER TABLE core.users ALTER COLUMN at TYPE timestamp(6)", facts), V{});
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN unknown TYPE text", facts), V{"changing-column-type"})
      << "a column the catalog does not know: assume the worst";
}

TEST(Lint, TheCatalogTellsWhichFunctionsAreStableAndHowBigTheTableIs) {
  LintFacts facts;
  facts.volatility = {{"app_default_tenant", 's'}, {"random_code", 'v'}};
  facts.table_sizes = {{"users", "about 50,000 rows, 8 MB"}};
  facts.constraint_types = {{"users.users_email_key", 'u'}, {"users.users_age_check", 'c'}};
  EXPECT_EQ(RulesWith("ALTER TABLE users ADD COLUMN t int DEFAULT app_default_tenant()", facts), V{});
  EXPECT_EQ(RulesWith("ALTER TABLE users ADD COLUMN t text DEFAULT random_code()", facts),
            V{"adding-field-with-volatile-default"});
  EXPECT_EQ(RulesWith("ALTER TABLE users DROP CONSTRAINT users_age_check", facts), V{});
  EXPECT_EQ(RulesWith("ALTER TABLE users DROP CONSTRAINT users_email_key", facts), V{"ban-drop-in-expand"})
      << "the old version's ON CONFLICT needs it";
  LintContext ctx;
  ctx.facts = &facts;
  const auto f = LintStep("CREATE INDEX i ON users (email)", "expand", ctx);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_NE(f[0].ToString("p.yaml").find("(table users, about 50,000 rows, 8 MB; at line 1, column 1 of the step)"),
            std::string::npos) << f[0].ToString("p.yaml");
}

TEST(Lint, QuestionsForTheCatalogComeFromTheRawSteps) {
  auto parsed = ParsePlan(R"(plan: p
database: app
expand:
  - sql: ALTER TABLE core.users ADD COLUMN t int DEFAULT app.pick()
  - sql: ALTER TABLE core.users ALTER COLUMN name TYPE text
  - sql: ALTER TABLE core.users DROP CONSTRAINT users_age_check
)", "p.yaml");
  ASSERT_TRUE(parsed.ok()) << FormatDiagnostics(parsed.errors);
  const LintQuestions q = LintQuestionsOf(parsed.plan);
  EXPECT_EQ(q.functions, std::set<std::string>{"app.pick"});
  EXPECT_EQ(q.tables, std::set<std::string>{"core.users"});
  EXPECT_EQ(q.columns, std::set<std::string>{"core.users.name"});
  EXPECT_EQ(q.constraints, std::set<std::string>{"core.users.users_age_check"});
}

TEST(Lint, DollarQuotingIsOneStatementAndParseErrorsSayWhere) {
  EXPECT_EQ(Rules("CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $body$\nBEGIN\n  NEW.a := 1;\n"
                  "  RETURN NEW;\nEND\n$body$"),
            V{});
  const auto f = LintStep("ALTER TABLE users\n  ADD COLUMN c int DEFALT 0", "expand", std::vector<std::string>{});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].rule, "syntax-error");
  EXPECT_NE(f[0].message.find("syntax error at or near \"DEFALT\""), std::string::npos) << f[0].message;
  EXPECT_EQ(f[0].where, "line 2, column 20");
}

TEST(Lint, AStepThatDoesNotParseIsRefusedEvenWhenMarkedUnsafe) {
  auto parsed = ParsePlan(R"(plan: p
database: app
expand:
  - sql: CREATE INDEX i ON t (c
    unsafe: small table
)", "p.yaml");
  ASSERT_TRUE(parsed.ok()) << FormatDiagnostics(parsed.errors);
  const auto findings = LintPlan(parsed.plan);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].rule, "syntax-error");
}

TEST(Lint, TablesExpandCreatedAreNotNewInContractAndIfNotExistsAsksTheCatalog) {
  auto parsed = ParsePlan(R"(plan: p
database: app
expand:
  - sql: CREATE TABLE audit (id bigint, actor text)
  - sql: CREATE INDEX audit_actor ON audit (actor)
gates:
  - sql: SELECT 0
    expect: 0
contract:
  - sql: CREATE INDEX audit_id ON audit (id)
)", "p.yaml");
  ASSERT_TRUE(parsed.ok()) << FormatDiagnostics(parsed.errors);
  const auto findings = LintPlan(parsed.plan);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0].phase, "contract") << "the application has written it by then";

  const std::vector<std::string> maybe = {"CREATE TABLE IF NOT EXISTS events (id bigint)"};
  const auto offline = LintStep("CREATE INDEX e ON events (id)", "expand", maybe);
  ASSERT_EQ(offline.size(), 1u);
  EXPECT_TRUE(DependsOnCatalog(offline[0])) << "it may have been there already: the catalog decides";
  LintFacts absent;  // events is not in the catalog: the step before created it
  LintContext ctx;
  ctx.facts = &absent;
  ctx.earlier = maybe;
  ctx.maybe_new_tables = {"events"};
  EXPECT_TRUE(LintStep("CREATE INDEX e ON events (id)", "expand", ctx).empty());
  LintFacts there;
  there.table_sizes = {{"events", "about 9,000,000 rows, 2 GB"}};
  ctx.facts = &there;
  EXPECT_EQ(LintStep("CREATE INDEX e ON events (id)", "expand", ctx).size(), 1u);
  EXPECT_EQ(Rules("CREATE INDEX e ON x (id)", "expand", {"CREATE TABLE public.x (id int)"}), V{});
  EXPECT_EQ(Rules("CREATE INDEX e ON t (id)", "expand", {"CREATE TEMP TABLE t (id int)"}),
            V{"require-concurrent-index-creation"}) << "a temporary t only hides the real one";
}

TEST(Lint, AnUpdateOfABigTableIsRefusedEvenWithAWhere) {
  LintFacts facts;
  facts.table_rows = {{"users", 5000000}, {"settings", 12}};
  EXPECT_EQ(RulesWith("UPDATE users SET flag = false WHERE flag IS NULL", facts), V{"ban-unbatched-data-change"});
  EXPECT_EQ(RulesWith("UPDATE settings SET value = 'on' WHERE key = 'x'", facts), V{});
}

TEST(Lint, ABinaryCoercibleChangeOfAColumnWithAnExpressionIndexRebuildsIt) {
  LintFacts facts;
  facts.column_types = {{"users.email", "character varying(255)"}};
  facts.columns_with_dependents = {"users.email"};
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN email TYPE text", facts), V{"changing-column-type"});
}

TEST(Lint, TheCatalogsBinaryCoercibleChangeStillRefusesACollation) {
  LintFacts facts;
  facts.column_types = {{"users.name", "character varying(255)"}};
  EXPECT_EQ(RulesWith("ALTER TABLE users ALTER COLUMN name TYPE text COLLATE \"C\"", facts), V{"changing-column-type"});
}

TEST(Lint, ADeeplyNestedStatementIsRefusedNotACrash) {
  std::string sql = "SELECT 1";
  for (int i = 0; i < 60000; ++i) sql += "+1";
  const auto f = LintStep(sql, "expand", std::vector<std::string>{});
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].rule, "syntax-error");
  EXPECT_NE(f[0].message.find("levels deep"), std::string::npos) << f[0].message;
}

// tests/data/lint/corpus.tsv: PHASE, the rule expected (or `ok`), the SQL.
TEST(Lint, EveryStatementOfTheCorpusGetsItsVerdict) {
  std::ifstream in(std::string(TIDE_SOURCE_DIR) + "/tests/data/lint/corpus.tsv");
  ASSERT_TRUE(in) << "tests/data/lint/corpus.tsv is missing";
  int cases = 0, refused = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    const size_t a = line.find('\t'), b = line.find('\t', a + 1);
    ASSERT_NE(b, std::string::npos) << line;
    const std::string phase = line.substr(0, a), rule = line.substr(a + 1, b - a - 1), sql = line.substr(b + 1);
    ++cases;
    const auto rules = Rules(sql, phase);
    if (rule == "ok") {
      EXPECT_EQ(rules, V{}) << phase << ": " << sql;
    } else {
      ++refused;
      EXPECT_NE(std::find(rules.begin(), rules.end(), rule), rules.end())
          << phase << ": " << sql << "\n  expected " << rule << ", got " << ::testing::PrintToString(rules);
    }
  }
  EXPECT_GE(cases, 150);
  EXPECT_GE(refused, 80);
}

}  // namespace
}  // namespace tide
