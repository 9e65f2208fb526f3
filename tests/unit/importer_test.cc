#include "plan/importer.h"

#include <gtest/gtest.h>

#include "plan/lint.h"
#include "plan/plan_parser.h"

namespace tide {
namespace {

ImportResult Import(const std::string& up, const std::string& down = "") {
  ImportOptions o;
  o.file = "migrations/042_change.sql";
  return ImportSql(up, down, o);
}

// The imported plan parses, and its own lint has nothing to say.
Plan Valid(const ImportResult& r) {
  auto parsed = ParsePlan(r.yaml, "plan.yaml");
  EXPECT_TRUE(parsed.ok()) << FormatDiagnostics(parsed.errors) << "\n" << r.yaml;
  for (const auto& f : LintPlan(parsed.plan)) ADD_FAILURE() << f.ToString("plan.yaml") << "\n" << r.yaml;
  return parsed.plan;
}

TEST(Import, NamesPlansAfterTheVersionTheirToolRecords) {
  EXPECT_EQ(PlanNameForMigration("migrations/019_users_display_name.sql"), "019_users_display_name");
  EXPECT_EQ(PlanNameForMigration("019_Users-Display.up.sql"), "019_users_display");
  EXPECT_EQ(PlanNameForMigration("prisma/migrations/20250720211648_add_clinicid/migration.sql"),
            "20250720211648_add_clinicid");
}

TEST(Import, EachStatementGoesWhereItBelongsAsATypedOperation) {
  const auto r = Import(
      "BEGIN;\n"
      "ALTER TABLE orders ADD COLUMN note text;\n"
      "CREATE UNIQUE INDEX orders_ref_key ON orders (ref) WHERE ref IS NOT NULL;\n"
      "ALTER TABLE orders ADD CONSTRAINT orders_customer_fkey FOREIGN KEY (customer_id) REFERENCES customers (id) ON DELETE CASCADE;\n"
      "ALTER TABLE orders ADD CONSTRAINT orders_qty_check CHECK (qty > 0 AND (qty < 1000));\n"
      "ALTER TABLE orders ADD CONSTRAINT orders_code_key UNIQUE (code);\n"
      "ALTER TABLE orders ALTER COLUMN total TYPE bigint USING total::bigint;\n"
      "ALTER TABLE orders RENAME COLUMN note TO remark;\n"
      "DROP INDEX orders_old_idx;\n"
      "COMMIT;\n");
  ASSERT_EQ(r.error, "");
  const Plan p = Valid(r);
  ASSERT_GE(p.expand.size(), 4u);
  EXPECT_EQ(p.expand[0].kind, OpKind::kSql);
  EXPECT_EQ(p.expand[1].kind, OpKind::kCreateIndex);
  EXPECT_TRUE(p.expand[1].unique);
  EXPECT_EQ(p.expand[1].where, "ref IS NOT NULL");
  EXPECT_EQ(p.expand[2].kind, OpKind::kAlterColumn);
  EXPECT_EQ(p.expand[2].up, "total::bigint");
  EXPECT_EQ(p.expand[3].kind, OpKind::kRenameColumn);
  std::vector<OpKind> contract;
  for (const auto& s : p.contract) {
    contract.push_back(s.kind);
  }
  EXPECT_NE(std::find(contract.begin(), contract.end(), OpKind::kAddForeignKey), contract.end());
  EXPECT_NE(std::find(contract.begin(), contract.end(), OpKind::kAddCheck), contract.end());
  EXPECT_NE(std::find(contract.begin(), contract.end(), OpKind::kAddUnique), contract.end());
  EXPECT_NE(std::find(contract.begin(), contract.end(), OpKind::kDropIndex), contract.end());
  EXPECT_NE(r.yaml.find("expression: qty > 0 AND (qty < 1000)"), std::string::npos) << r.yaml;
  EXPECT_NE(r.yaml.find("on_delete: cascade"), std::string::npos) << r.yaml;
}

TEST(Import, AnUpdateBecomesABackfillTaskAndANotNullItsGate) {
  const auto r = Import(
      "ALTER TABLE users ADD COLUMN display_name text;\n"
      "ALTER TABLE users ADD COLUMN flag boolean;\n"
      "UPDATE users SET display_name = COALESCE(name, 'x'), flag = (a, b) IS NULL;\n"
      "ALTER TABLE users ALTER COLUMN display_name SET NOT NULL;\n");
  const Plan p = Valid(r);
  ASSERT_EQ(p.backfill.size(), 1u);
  ASSERT_EQ(p.backfill[0].set.size(), 2u);
  EXPECT_EQ(p.backfill[0].set[0].second, "COALESCE(name, 'x')");
  EXPECT_EQ(p.backfill[0].set[1].second, "(a, b) IS NULL");
  EXPECT_EQ(p.contract[0].kind, OpKind::kSetNotNull);
  EXPECT_EQ(p.gates[0].kind, Gate::Kind::kNullCount);
}

TEST(Import, UpdateFromAJoinBecomesFromOnTheTaskWithTheAliasResolved) {
  const auto r = Import(
      "ALTER TABLE patient_offers ADD COLUMN \"clinicId\" text;\n"
      "UPDATE \"patient_offers\" po SET \"clinicId\" = o.\"clinicId\" FROM offers o WHERE o.id = po.\"offerId\";\n");
  const Plan p = Valid(r);
  ASSERT_EQ(p.backfill.size(), 1u);
  EXPECT_EQ(p.backfill[0].from, "offers o");
  EXPECT_EQ(p.backfill[0].set[0].first, "clinicId");
  EXPECT_EQ(p.backfill[0].set[0].second,
            "(SELECT o.\"clinicId\" FROM offers o WHERE o.id = patient_offers.\"offerId\" LIMIT 1)");
}

TEST(Import, ANotNullColumnWithoutAValueIsAddedNullableAndSaysWhatIsMissing) {
  const auto r = Import("ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL;\n");
  const Plan p = Valid(r);
  EXPECT_EQ(p.expand[0].kind, OpKind::kAddColumn);
  EXPECT_FALSE(p.expand[0].not_null);
  EXPECT_EQ(p.contract[0].kind, OpKind::kSetNotNull);
  ASSERT_FALSE(r.notes.empty());
  EXPECT_TRUE(r.notes[0].needs_review);
  EXPECT_NE(r.notes[0].text.find("add a backfill task"), std::string::npos) << r.notes[0].text;
}

TEST(Import, WhatItCannotConvertStaysWithItsFindingAndADropNeedsAGate) {
  const auto r = Import("VACUUM FULL users;\nALTER TABLE users DROP COLUMN legacy;\n");
  ASSERT_EQ(r.notes.size(), 3u);
  EXPECT_TRUE(r.notes[1].needs_review);
  EXPECT_NE(r.notes[1].text.find("ban-vacuum-full"), std::string::npos) << r.notes[1].text;
  EXPECT_NE(r.notes[2].text.find("drop_column in contract"), std::string::npos);
  EXPECT_TRUE(r.notes[0].needs_review) << "contract without a gate: " << r.notes[0].text;
}

TEST(Import, AFileThatDoesNotParseSaysWhere) {
  const auto r = Import("ALTER TABLE users ADD COLUMN x int;\nALTER TABLE users ADD COLUM y int;\n");
  EXPECT_NE(r.error.find("line 2"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("syntax error"), std::string::npos) << r.error;
}

TEST(Import, FromNeedsItsJoin) {
  auto parsed = ParsePlan("plan: p\ndatabase: app\nbackfill:\n  - table: t\n    from: o\n    set: {c: o.c}\n", "p.yaml");
  EXPECT_NE(FormatDiagnostics(parsed.errors).find("`from` in backfill task 1 needs `where`"), std::string::npos)
      << FormatDiagnostics(parsed.errors);
}

TEST(Import, AnUpdateOfExistingValuesStaysInItsPlaceForReview) {
  const auto r = Import("ALTER TABLE accounts ADD COLUMN tier text;\nUPDATE accounts SET plan = 'free';\n"
                        "UPDATE accounts SET tier = 'gold' WHERE spend > 1000;\n");
  auto parsed = ParsePlan(r.yaml, "plan.yaml");
  ASSERT_TRUE(parsed.ok()) << FormatDiagnostics(parsed.errors) << r.yaml;
  ASSERT_EQ(parsed.plan.expand.size(), 2u);
  EXPECT_NE(parsed.plan.expand[1].sql.find("SET plan = 'free'"), std::string::npos) << "after the ADD COLUMN, as in the file";
  ASSERT_EQ(parsed.plan.backfill.size(), 1u);
  EXPECT_EQ(parsed.plan.backfill[0].where, "spend > 1000");
  EXPECT_NE(r.yaml.find("WHERE (spend > 1000) AND (tier IS DISTINCT FROM ('gold'))"), std::string::npos)
      << "a gate that can pass: " << r.yaml;
  bool review = false;
  for (const auto& n : r.notes) review |= n.statement == 2 && n.needs_review;
  EXPECT_TRUE(review);
}

TEST(Import, ADropOfWhatALaterStatementMakesAgainStaysInPlace) {
  const auto r = Import("DROP TRIGGER IF EXISTS users_touch ON users;\n"
                        "CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();\n"
                        "-- a comment's ' does not hide the WHERE\n"
                        "ALTER TABLE users ADD COLUMN c int;\nUPDATE users SET c = 1 /* where not */ WHERE c IS NULL;\n");
  auto parsed = ParsePlan(r.yaml, "plan.yaml");
  ASSERT_TRUE(parsed.ok()) << FormatDiagnostics(parsed.errors) << r.yaml;
  ASSERT_GE(parsed.plan.expand.size(), 2u);
  EXPECT_NE(parsed.plan.expand[0].sql.find("DROP TRIGGER"), std::string::npos) << r.yaml;
  EXPECT_TRUE(parsed.plan.contract.empty()) << r.yaml;
  ASSERT_EQ(parsed.plan.backfill.size(), 1u);
  EXPECT_EQ(parsed.plan.backfill[0].where, "c IS NULL");
}

}  // namespace
}  // namespace tide
