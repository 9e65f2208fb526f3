// alter_column, rename_column, rename_table and add_primary_key: what a plan derives from them,
// and the statements of the switch for given catalog facts.
#include <gtest/gtest.h>

#include "engine/alterations.h"
#include "engine/preflight.h"
#include "plan/plan_parser.h"

namespace tide {
namespace {

Plan Parse(const std::string& yaml) {
  PlanParseResult r = ParsePlan(yaml, "plan.yaml");
  EXPECT_TRUE(r.errors.empty()) << FormatDiagnostics(r.errors);
  return r.plan;
}

std::string Errors(const std::string& yaml) { return FormatDiagnostics(ParsePlan(yaml, "plan.yaml").errors); }

const char* kBigint =
    "plan: accounts_bigint\ndatabase: app\nexpand:\n"
    "  - alter_column: {table: accounts, column: id, type: bigint}\n"
    "  - alter_column: {table: orders, column: account_id, type: bigint}\n";

size_t Find(const std::vector<DdlStatement>& sts, const std::string& text) {
  for (size_t i = 0; i < sts.size(); ++i) {
    if (sts[i].sql.find(text) != std::string::npos) return i;
  }
  return std::string::npos;
}

TEST(Alterations, AlterColumnDerivesTheBackfillTheGatesTheSwitchAndTheUndo) {
  const Plan p = Parse(kBigint);
  ASSERT_EQ(p.expand.size(), 3u);
  EXPECT_EQ(p.expand[2].kind, OpKind::kCreateVersionSchema);
  ASSERT_EQ(p.backfill.size(), 2u);
  EXPECT_EQ(p.backfill[0].table.name, "accounts");
  ASSERT_EQ(p.backfill[0].set.size(), 1u);
  EXPECT_EQ(p.backfill[0].set[0].first, "_tide_new_id");
  EXPECT_EQ(p.backfill[0].set[0].second, "CAST(\"id\" AS bigint)");
  EXPECT_FALSE(p.backfill[0].sync_trigger);  // the alter trigger does it, both ways
  ASSERT_EQ(p.gates.size(), 2u);
  EXPECT_EQ(p.gates[0].Label(0), "agree:accounts.id");
  // Compared as text: types without equality (json) work too.
  EXPECT_EQ(p.gates[0].sql,
            "SELECT count(*) FROM \"accounts\" WHERE \"_tide_new_id\"::text IS DISTINCT FROM "
            "(CAST((CAST(\"id\" AS bigint)) AS bigint))::text");
  EXPECT_EQ(p.backfill[0].where, "(" + Disagrees(p.expand[0]) + ")");
  ASSERT_EQ(p.contract.size(), 1u);
  EXPECT_EQ(p.contract[0].kind, OpKind::kSwitch);
  EXPECT_EQ(p.contract[0].alterations.size(), 2u);
  ASSERT_EQ(p.rollback.size(), 1u);
  EXPECT_EQ(p.rollback[0].kind, OpKind::kUndoAlterations);
}

TEST(Alterations, TwoColumnsOfOneTableShareOneTask) {
  const Plan p = Parse(
      "plan: p\ndatabase: app\nexpand:\n"
      "  - alter_column: {table: t, column: a, type: bigint}\n"
      "  - alter_column: {table: t, column: b, type: text, up: \"b::text\"}\n");
  ASSERT_EQ(p.backfill.size(), 1u);
  EXPECT_EQ(p.backfill[0].set.size(), 2u);
  EXPECT_NE(p.backfill[0].where.find(" OR "), std::string::npos);
}

TEST(Alterations, TheSwitchGoesAfterLeadingSetNotNullsAndBeforeTheRest) {
  const Plan p = Parse(
      "plan: p\ndatabase: app\nexpand:\n"
      "  - alter_column: {table: t, column: a, type: bigint}\n"
      "  - add_column: {table: t, column: c, type: int}\n"
      "backfill:\n  - table: t\n    set: {c: \"1\"}\n"
      "gates:\n  - null_count: {table: t, column: c}\n"
      "contract:\n  - set_not_null: {table: t, column: c}\n  - drop_column: {table: t, column: z}\n");
  ASSERT_EQ(p.contract.size(), 3u);
  EXPECT_EQ(p.contract[0].kind, OpKind::kSetNotNull);
  EXPECT_EQ(p.contract[1].kind, OpKind::kSwitch);
  EXPECT_EQ(p.contract[2].kind, OpKind::kDropColumn);
  EXPECT_EQ(GateChecks(p).size(), 1u);
}

TEST(Alterations, RenamesDeriveViewsAndTheSwitchButNoBackfill) {
  const Plan p = Parse(
      "plan: p\ndatabase: app\nexpand:\n"
      "  - rename_column: {table: employees, from: role, to: job_title}\n"
      "  - rename_table: {from: fruits, to: produce}\n");
  EXPECT_TRUE(p.backfill.empty());
  EXPECT_TRUE(p.gates.empty());
  ASSERT_EQ(p.contract.size(), 1u);
  const auto views = CompileStep(p.expand.back());
  ASSERT_EQ(views.size(), 1u);
  EXPECT_NE(views[0].sql.find("\"p\".\"produce\""), std::string::npos) << views[0].sql;
  EXPECT_NE(views[0].sql.find("\"job_title\""), std::string::npos) << views[0].sql;
  EXPECT_NE(views[0].sql.find("security_invoker"), std::string::npos);
  std::string problem;
  const auto sw = CompileSwitch(p.contract[0], {}, &problem);
  EXPECT_EQ(problem, "");
  ASSERT_FALSE(sw.empty());
  EXPECT_NE(sw.back().sql.find("ALTER TABLE \"employees\" RENAME COLUMN \"role\" TO \"job_title\""),
            std::string::npos);
  EXPECT_NE(sw.back().sql.find("ALTER TABLE \"fruits\" RENAME TO \"produce\""), std::string::npos);
}

TEST(Alterations, ParserRefusesWhatCannotWork) {
  EXPECT_NE(Errors("plan: p\ndatabase: app\nexpand:\n  - add_column: {table: t, column: c, type: int}\n"
                   "contract:\n  - alter_column: {table: t, column: a, type: bigint}\n"
                   "gates:\n  - sql: select 0\n    expect: 0\n")
                .find("belongs in `expand`"),
            std::string::npos);
  EXPECT_NE(Errors("plan: p\ndatabase: app\nexpand:\n  - alter_column: {table: t, column: a}\n")
                .find("changes nothing"),
            std::string::npos);
  EXPECT_NE(Errors("plan: p\ndatabase: app\nexpand:\n"
                   "  - alter_column: {table: t, column: a, type: bigint}\n"
                   "  - alter_column: {table: t, column: a, not_null: true}\n")
                .find("altered twice"),
            std::string::npos);
  EXPECT_NE(Errors("plan: p\ndatabase: app\nexpand:\n"
                   "  - alter_column: {table: t, column: a, type: bigint NOT NULL}\n")
                .find("holds `NOT NULL`"),
            std::string::npos);
  EXPECT_NE(Errors("plan: p\ndatabase: app\nexpand:\n"
                   "  - alter_column: {table: t, column: a, type: bigint}\n"
                   "  - rename_column: {table: t, from: a, to: b}\n")
                .find("both altered and renamed"),
            std::string::npos);
  EXPECT_NE(Errors("plan: p\ndatabase: app\nexpand:\n  - rename_column: {table: t, from: a, to: a}\n")
                .find("to itself"),
            std::string::npos);
}

TEST(Alterations, TheTriggerWritesTheShadowForTheOldVersionAndTheOldColumnForTheNew) {
  const Plan p = Parse(
      "plan: reviews_int\ndatabase: app\nexpand:\n"
      "  - alter_column: {table: reviews, column: rating, type: integer, up: \"CAST(rating AS "
      "integer)\", down: \"CAST(rating AS text)\"}\n");
  const auto sts = CompileStep(p.expand[0]);
  ASSERT_EQ(sts.size(), 2u);
  EXPECT_NE(sts[0].sql.find("ADD COLUMN IF NOT EXISTS %I %s%s', '\"reviews\"', '_tide_new_rating', 'integer', "),
            std::string::npos) << sts[0].sql;
  EXPECT_NE(sts[0].sql.find(" COLLATE "), std::string::npos) << "the old column's collation is kept";
  EXPECT_FALSE(sts[0].refuse_if.empty());  // a column of the same name that is not ours
  const std::string& trigger = sts[1].sql;
  EXPECT_NE(trigger.find("'reviews_int' = ANY (string_to_array("), std::string::npos) << trigger;
  EXPECT_NE(trigger.find("NEW.\"_tide_new_rating\" := (SELECT (CAST(rating AS integer))"), std::string::npos);
  EXPECT_NE(trigger.find("NEW.\"rating\" := (SELECT (SELECT (CAST(rating AS text)) FROM (SELECT "
                         "(NEW).\"_tide_new_rating\" AS \"rating\") AS tide_new)"),
            std::string::npos)
      << trigger;
  // A value `up` cannot convert never fails the application's write.
  EXPECT_NE(trigger.find("EXCEPTION WHEN OTHERS THEN"), std::string::npos);
}

TEST(Alterations, WithoutATypeTheShadowTakesTheOldColumnsType) {
  const Plan p = Parse(
      "plan: p\ndatabase: app\nexpand:\n"
      "  - alter_column: {table: t, column: a, not_null: true, up: \"COALESCE(a, 0)\"}\n");
  const auto sts = CompileStep(p.expand[0]);
  EXPECT_NE(sts[0].sql.find("format_type(a.atttypid, a.atttypmod)"), std::string::npos);
  // NOT NULL: the gate also waits for a value in every row.
  EXPECT_EQ(p.gates[0].sql, "SELECT count(*) FROM \"t\" WHERE \"_tide_new_a\"::text IS DISTINCT FROM "
                            "((COALESCE(a, 0)))::text OR \"_tide_new_a\" IS NULL");
}

ColumnFacts AccountsId() {
  ColumnFacts f;
  f.exists = true;
  f.shadow_exists = true;
  f.schema = "public";
  f.type = "integer";
  f.not_null = true;
  f.default_expr = "nextval('accounts_id_seq'::regclass)";
  f.owned_sequence = "public.accounts_id_seq";
  f.sequence_type = "integer";
  IndexFacts pk;
  pk.name = "accounts_pkey";
  pk.unique = true;
  pk.method = "btree";
  pk.columns = {"id"};
  pk.options = {""};
  pk.constraint_type = 'p';
  pk.constraint_name = "accounts_pkey";
  f.indexes.push_back(pk);
  f.checks.push_back({"accounts_id_check", "CHECK ((id > 0))"});
  ForeignKeyFacts fk;
  fk.name = "orders_account_id_fkey";
  fk.table = {"public", "orders"};
  fk.columns = {"account_id"};
  fk.ref_table = {"public", "accounts"};
  fk.ref_columns = {"id"};
  fk.actions = " ON DELETE CASCADE";
  f.foreign_keys.push_back(fk);
  return f;
}

ColumnFacts OrdersAccountId() {
  ColumnFacts f;
  f.exists = true;
  f.shadow_exists = true;
  f.schema = "public";
  f.type = "integer";
  f.not_null = true;
  IndexFacts idx;
  idx.name = "orders_account_id_idx";
  idx.method = "btree";
  idx.columns = {"account_id"};
  idx.options = {"DESC"};
  idx.predicate = "(account_id > 0)";
  f.indexes.push_back(idx);
  f.foreign_keys.push_back(AccountsId().foreign_keys[0]);
  return f;
}

TEST(Alterations, TheSwitchBuildsEverythingFirstThenSwapsInOneTransaction) {
  const Plan p = Parse(kBigint);
  SwitchFacts facts = {{"accounts.id", AccountsId()}, {"orders.account_id", OrdersAccountId()}};
  std::string problem;
  const auto sts = CompileSwitch(p.contract[0], facts, &problem);
  ASSERT_EQ(problem, "");
  ASSERT_GE(sts.size(), 2u);
  const size_t pk = Find(sts, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"accounts_pkey_tide\" "
                              "ON \"public\".\"accounts\" USING btree (\"_tide_new_id\")");
  const size_t idx = Find(sts, "\"orders_account_id_idx_tide\" ON \"public\".\"orders\" USING btree "
                               "(\"_tide_new_account_id\" DESC) WHERE ((\"_tide_new_account_id\" > 0))");
  const size_t fk = Find(sts, "ADD CONSTRAINT \"orders_account_id_fkey_tide\" FOREIGN KEY "
                              "(\"_tide_new_account_id\") REFERENCES \"public\".\"accounts\" "
                              "(\"_tide_new_id\") ON DELETE CASCADE NOT VALID");
  const size_t check = Find(sts, "ADD CONSTRAINT \"accounts_id_check_tide\" CHECK ((\"_tide_new_id\" > 0)) NOT VALID");
  ASSERT_NE(pk, std::string::npos);
  ASSERT_NE(idx, std::string::npos);
  ASSERT_NE(fk, std::string::npos);
  ASSERT_NE(check, std::string::npos);
  EXPECT_FALSE(sts[pk].transactional);  // CONCURRENTLY
  EXPECT_LT(pk, fk);  // the foreign key needs the unique index it references
  EXPECT_NE(Find(sts, "VALIDATE CONSTRAINT \"orders_account_id_fkey_tide\""), std::string::npos);
  // The foreign key (deduplicated: it is a fact of both columns) is built once.
  EXPECT_EQ(Find(std::vector<DdlStatement>(sts.begin() + fk + 1, sts.end()),
                 "ADD CONSTRAINT \"orders_account_id_fkey_tide\" FOREIGN KEY"),
            std::string::npos);

  const DdlStatement& sw = sts.back();
  EXPECT_TRUE(sw.transactional);
  EXPECT_TRUE(sw.reports_lock_held);
  const std::string& sql = sw.sql;
  // lock_timeout (2 s here) shared out over 2 tables, their 2 views and the sequence.
  EXPECT_EQ(sql.find("SET LOCAL lock_timeout = '400ms';"), 0u) << sql;
  EXPECT_LT(sql.find("'\"public\".\"accounts\", \"public\".\"orders\"' || ' IN ACCESS EXCLUSIVE MODE'"),
            sql.find("DROP CONSTRAINT")) << sql;
  EXPECT_NE(sql.find("ERRCODE = 'serialization_failure'"), std::string::npos) << "the facts are checked under the locks";
  EXPECT_NE(sw.refuse_if.find("IS DISTINCT FROM"), std::string::npos) << "every row must agree first";
  // The triggers turn strict before anything else: no value `up` cannot convert arrives unseen.
  EXPECT_EQ(sts[0].sql.find("EXCEPTION WHEN OTHERS"), std::string::npos);
  EXPECT_NE(sts[0].sql.find("CREATE OR REPLACE FUNCTION"), std::string::npos);
  auto at = [&](const std::string& text) {
    const size_t i = sql.find(text);
    EXPECT_NE(i, std::string::npos) << text << "\n" << sql;
    return i;
  };
  // The sequence moves to the shadow before the old column (which would take it along) goes.
  EXPECT_LT(at("ALTER SEQUENCE public.accounts_id_seq OWNED BY \"public\".\"accounts\".\"_tide_new_id\""),
            at("ALTER TABLE \"public\".\"accounts\" RENAME COLUMN \"id\" TO \"_tide_old_id\""));
  at("ALTER SEQUENCE public.accounts_id_seq AS bigint");
  EXPECT_LT(at("DROP CONSTRAINT \"orders_account_id_fkey\""), at("RENAME COLUMN \"id\" TO \"_tide_old_id\""));
  EXPECT_LT(at("RENAME COLUMN \"_tide_new_id\" TO \"id\""),
            at("ADD CONSTRAINT \"accounts_pkey\" PRIMARY KEY USING INDEX \"accounts_pkey_tide\""));
  at("ALTER COLUMN \"id\" SET DEFAULT (CAST((nextval('accounts_id_seq'::regclass)) AS bigint))");
  EXPECT_LT(at("ALTER COLUMN \"id\" SET NOT NULL"), at("PRIMARY KEY USING INDEX"));
  at("ALTER INDEX \"public\".\"orders_account_id_idx_tide\" RENAME TO \"orders_account_id_idx\"");
  at("RENAME CONSTRAINT \"accounts_id_check_tide\" TO \"accounts_id_check\"");
  at("RENAME CONSTRAINT \"orders_account_id_fkey_tide\" TO \"orders_account_id_fkey\"");
  at("THEN DROP SCHEMA \"accounts_bigint\" CASCADE");
  at("DROP TRIGGER IF EXISTS \"" + AlterTriggerName("accounts_bigint", {"", "accounts"}, "id") + "\"");
  EXPECT_EQ(sql.find("CONCURRENTLY"), std::string::npos);
  EXPECT_NE(sw.skip_if.find("_tide_new_id"), std::string::npos);
}

TEST(Alterations, TheSwitchKeepsTheOldColumnUnderAnotherNameInStepByATrigger) {
  const Plan p = Parse(std::string(kBigint) + "settings: {retention: 2h}\n");
  ASSERT_TRUE(p.retention.has_value());
  ASSERT_EQ(p.revert.size(), 1u);
  EXPECT_EQ(p.revert[0].kind, OpKind::kRevertSwitch);
  SwitchFacts facts = {{"accounts.id", AccountsId()}, {"orders.account_id", OrdersAccountId()}};
  std::string problem;
  const auto sts = CompileSwitch(p.contract[0], facts, &problem);
  ASSERT_EQ(problem, "");
  const std::string& sw = sts.back().sql;
  // Not dropped: stripped of what would fail the new version's writes, and renamed.
  EXPECT_EQ(sw.find("DROP COLUMN \"id\""), std::string::npos) << sw;
  const size_t pk = sw.find("DROP CONSTRAINT IF EXISTS \"accounts_pkey\"");
  const size_t not_null = sw.find("ALTER COLUMN \"id\" DROP NOT NULL");
  const size_t rename = sw.find("RENAME COLUMN \"id\" TO \"_tide_old_id\"");
  ASSERT_NE(pk, std::string::npos) << sw;
  ASSERT_NE(not_null, std::string::npos) << sw;
  ASSERT_NE(rename, std::string::npos) << sw;
  EXPECT_LT(pk, not_null);  // a primary key column cannot drop NOT NULL
  EXPECT_NE(sw.find("ALTER COLUMN \"id\" DROP DEFAULT"), std::string::npos)
      << "a serial's nextval would take a second value on every insert";
  // The new column takes the name, then the trigger fills the kept one from it (a cast back).
  EXPECT_LT(sw.find("RENAME COLUMN \"_tide_new_id\" TO \"id\""), sw.find("tide_keep_id_"));
  EXPECT_NE(sw.find("\"_tide_old_id\" := (SELECT (CAST(\"id\" AS integer))"), std::string::npos) << sw;
  EXPECT_NE(sw.find("EXCEPTION WHEN OTHERS THEN"), std::string::npos) << "lenient: writes never fail";
  EXPECT_NE(sw.find("INSERT INTO tide.retained_columns"), std::string::npos);
  EXPECT_NE(sw.find("interval '7200000 milliseconds'"), std::string::npos);
  // Without a retention it is kept too, until `tidectl finalize` (retain_until NULL).
  const Plan untimed = Parse(kBigint);
  EXPECT_FALSE(untimed.retention.has_value());
  ASSERT_EQ(untimed.revert.size(), 1u);
  const auto plain = CompileSwitch(untimed.contract[0], facts, &problem);
  ASSERT_EQ(problem, "");
  EXPECT_EQ(plain.back().sql.find("DROP COLUMN \"id\""), std::string::npos) << plain.back().sql;
  EXPECT_NE(plain.back().sql.find("RENAME COLUMN \"id\" TO \"_tide_old_id\""), std::string::npos);
  EXPECT_NE(plain.back().sql.find(", NULL) ON CONFLICT"), std::string::npos) << plain.back().sql;
  EXPECT_EQ(plain.back().sql.find("milliseconds'"), std::string::npos);
}

TEST(Alterations, RetentionTakesDays) {
  const Plan p = Parse(std::string(kBigint) + "settings: {retention: 7d}\n");
  ASSERT_TRUE(p.retention.has_value());
  EXPECT_EQ(p.retention->count(), 7LL * 24 * 3600 * 1000);
  EXPECT_NE(Errors(std::string(kBigint) + "settings: {retention: 400d}\n").find("retention"),
            std::string::npos);
}

TEST(Alterations, TheRevertIsTheSwitchTheOtherWayFromTheKeptColumns) {
  const Plan p = Parse(
      "plan: p\ndatabase: app\nsettings: {retention: 24h}\nexpand:\n"
      "  - alter_column: {table: reviews, column: rating, type: integer, up: \"CAST(rating AS integer)\", "
      "down: \"CAST(rating AS text)\", unique: {name: reviews_rating_key}}\n"
      "  - rename_column: {table: reviews, from: body, to: text}\n"
      "  - rename_table: {from: reviews, to: ratings}\n");
  RetainedColumn kept;
  kept.plan = "p";
  kept.table = "\"public\".\"ratings\"";
  kept.table_display = "ratings";
  kept.column = "rating";
  kept.kept = "_tide_old_rating";
  kept.trigger = "tide_keep_rating_1";
  kept.old_type = "text";
  kept.old_default = "'none'::text";
  kept.old_not_null = true;
  std::string problem;
  const Step shape = RevertShape(p.revert[0], {kept}, &problem);
  ASSERT_EQ(problem, "");
  ASSERT_EQ(shape.alterations.size(), 3u);
  const Step& a = shape.alterations[0];
  EXPECT_EQ(a.table.name, "ratings");  // by the name it has now
  EXPECT_EQ(a.shadow, "_tide_old_rating");
  EXPECT_EQ(a.type, "text");
  EXPECT_EQ(a.up, "CAST(rating AS text)");  // the old value from the new one: `down`
  EXPECT_TRUE(a.not_null);
  EXPECT_EQ(shape.alterations[1].column, "text");
  EXPECT_EQ(shape.alterations[1].to, "body");
  EXPECT_EQ(shape.alterations[2].table.name, "ratings");
  EXPECT_EQ(shape.alterations[2].to, "reviews");

  ColumnFacts now;
  now.exists = true;
  now.schema = "public";
  now.type = "integer";
  now.shadow_exists = true;
  now.default_expr = "0";
  IndexFacts added;  // the plan's `unique`: it goes with the new column
  added.name = "reviews_rating_key";
  added.unique = true;
  added.columns = {"rating"};
  added.constraint_type = 'u';
  added.constraint_name = "reviews_rating_key";
  IndexFacts plain;
  plain.name = "reviews_rating_idx";
  plain.columns = {"rating"};
  now.indexes = {added, plain};
  const auto sts = CompileRevert(shape, {{"ratings.rating", now}}, {kept}, &problem, Millis(1000),
                                 Millis(5000));
  ASSERT_EQ(problem, "");
  EXPECT_NE(Find(sts, "\"reviews_rating_idx_tide\" ON \"public\".\"ratings\" USING btree (\"_tide_old_rating\")"),
            std::string::npos);
  EXPECT_EQ(Find(sts, "reviews_rating_key_tide"), std::string::npos);
  // Writes the kept column's trigger could not convert: refused before the locks, named.
  ASSERT_FALSE(sts.empty());
  EXPECT_NE(sts.back().refuse_if.find("\"_tide_old_rating\" IS NULL AND \"rating\" IS NOT NULL"),
            std::string::npos);
  const std::string& sw = sts.back().sql;
  EXPECT_NE(sw.find("DROP TRIGGER IF EXISTS \"tide_keep_rating_1\""), std::string::npos);
  EXPECT_NE(sw.find("DROP COLUMN \"rating\""), std::string::npos);
  EXPECT_NE(sw.find("RENAME COLUMN \"_tide_old_rating\" TO \"rating\""), std::string::npos);
  EXPECT_NE(sw.find("SET DEFAULT ('none'::text)"), std::string::npos) << sw;
  EXPECT_NE(sw.find("SET NOT NULL"), std::string::npos);
  EXPECT_LT(sw.find("RENAME COLUMN \"text\" TO \"body\""), sw.find("RENAME TO \"reviews\""));
  EXPECT_NE(sw.find("DELETE FROM tide.retained_columns WHERE plan = 'p'"), std::string::npos);
  EXPECT_EQ(sw.find("INSERT INTO tide.retained_columns"), std::string::npos);

  // A finalized plan keeps nothing to switch back to.
  RevertShape(p.revert[0], {}, &problem);
  EXPECT_NE(problem.find("not kept"), std::string::npos);
}

TEST(Alterations, FinalizeDropsTheKeptColumnsInOneShortTransaction) {
  RetainedColumn kept;
  kept.table = "\"public\".\"accounts\"";
  kept.kept = "_tide_old_id";
  kept.trigger = "tide_keep_id_1";
  RetainedColumn rename;  // a plan's row for its renames: nothing to drop
  const auto sts = CompileFinalize("p", {kept, rename}, Millis(800));
  ASSERT_EQ(sts.size(), 1u);
  EXPECT_TRUE(sts[0].transactional);
  const std::string& sql = sts[0].sql;
  EXPECT_EQ(sql.find("SET LOCAL lock_timeout = '800ms'"), 0u) << sql;
  EXPECT_NE(sql.find("LOCK TABLE \"public\".\"accounts\" IN ACCESS EXCLUSIVE MODE"), std::string::npos);
  EXPECT_NE(sql.find("DROP COLUMN \"_tide_old_id\""), std::string::npos);
  EXPECT_NE(sql.find("DROP TRIGGER IF EXISTS \"tide_keep_id_1\""), std::string::npos);
  EXPECT_NE(sql.find("DELETE FROM tide.retained_columns WHERE plan = 'p'"), std::string::npos);
}

TEST(Alterations, RetentionNeedsAnAlteration) {
  EXPECT_NE(Errors("plan: p\ndatabase: app\nsettings: {retention: 1h}\nexpand:\n"
                   "  - add_column: {table: t, column: c, type: int}\n")
                .find("`retention` keeps the old columns"),
            std::string::npos);
}

TEST(Alterations, AnIdentityStartsAgainOnTheNewColumnWhereItStopped) {
  const Plan p = Parse("plan: p\ndatabase: app\nexpand:\n"
                       "  - alter_column: {table: core.tenants, column: id, type: bigint}\n");
  ColumnFacts f = AccountsId();
  f.schema = "core";
  f.default_expr = "";
  f.identity = 'd';
  f.owned_sequence = "core.tenants_id_seq";
  f.foreign_keys.clear();
  std::string problem;
  const auto sts = CompileSwitch(p.contract[0], {{"core.tenants.id", f}}, &problem);
  ASSERT_EQ(problem, "");
  const std::string& sql = sts.back().sql;
  const size_t read = sql.find("last_value");
  const size_t drop = sql.find("DROP COLUMN \"id\"");
  const size_t add = sql.find("ADD GENERATED BY DEFAULT AS IDENTITY (START WITH ");
  ASSERT_NE(read, std::string::npos) << sql;
  ASSERT_NE(add, std::string::npos) << sql;
  EXPECT_LT(read, drop);
  EXPECT_LT(sql.find("SET NOT NULL"), add);
  EXPECT_EQ(sql.find("OWNED BY"), std::string::npos) << "an identity's sequence cannot change owner";
}

TEST(Alterations, AReferencingColumnThatStaysReferencesTheShadow) {
  const Plan p = Parse("plan: p\ndatabase: app\nexpand:\n"
                       "  - alter_column: {table: accounts, column: id, type: bigint}\n");
  std::string problem;
  const auto sts = CompileSwitch(p.contract[0], {{"accounts.id", AccountsId()}}, &problem);
  ASSERT_EQ(problem, "");
  EXPECT_NE(Find(sts, "FOREIGN KEY (\"account_id\") REFERENCES \"public\".\"accounts\" (\"_tide_new_id\")"),
            std::string::npos);
}

TEST(Alterations, TheSwitchRefusesWhatTheCatalogForbids) {
  const Plan p = Parse("plan: p\ndatabase: app\nexpand:\n"
                       "  - alter_column: {table: accounts, column: id, type: bigint}\n");
  ColumnFacts f = AccountsId();
  f.blockers.push_back("view v depends on it");
  std::string problem;
  EXPECT_TRUE(CompileSwitch(p.contract[0], {{"accounts.id", f}}, &problem).empty());
  EXPECT_NE(problem.find("view v depends on it"), std::string::npos);
  f = AccountsId();
  f.shadow_exists = false;
  problem.clear();
  EXPECT_TRUE(CompileSwitch(p.contract[0], {{"accounts.id", f}}, &problem).empty());
  EXPECT_NE(problem.find("missing"), std::string::npos);
  problem.clear();
  EXPECT_TRUE(CompileSwitch(p.contract[0], {}, &problem).empty());
  EXPECT_NE(problem.find("does not exist"), std::string::npos);
}

TEST(Alterations, AValidateShowsTheSwitchButNeverRunsIt) {
  const Plan p = Parse(kBigint);
  const auto described = CompileStep(p.contract[0]);
  ASSERT_FALSE(described.empty());
  for (const auto& st : described) EXPECT_TRUE(st.describes_only);
  bool listed = false;
  for (const auto& ps : PlannedStatements(p)) listed |= ps.phase == "contract" && ps.sql.find("LOCK TABLE") != std::string::npos;
  EXPECT_TRUE(listed);
}

TEST(Alterations, AddPrimaryKeyValidatesNotNullFirstAndUsesTheIndex) {
  const Plan p = Parse("plan: p\ndatabase: app\nexpand:\n  - add_primary_key: {table: events, columns: [id]}\n");
  const auto sts = CompileStep(p.expand[0]);
  const size_t check = Find(sts, "CHECK (\"id\" IS NOT NULL) NOT VALID");
  const size_t validate = Find(sts, "VALIDATE CONSTRAINT");
  const size_t index = Find(sts, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"events_pkey\"");
  const size_t pk = Find(sts, "ADD CONSTRAINT \"events_pkey\" PRIMARY KEY USING INDEX \"events_pkey\"");
  ASSERT_NE(pk, std::string::npos);
  EXPECT_LT(check, validate);
  EXPECT_LT(validate, index);
  EXPECT_LT(index, pk);
  for (const auto& st : sts) EXPECT_FALSE(st.skip_if.empty()) << st.sql;  // resumable
}

TEST(Alterations, ReplaceIdentifierLeavesLiteralsAndOtherNamesAlone) {
  EXPECT_EQ(ReplaceIdentifier("CHECK ((id > 0 AND name <> 'id'))", "id", "_tide_new_id"),
            "CHECK ((\"_tide_new_id\" > 0 AND name <> 'id'))");
  EXPECT_EQ(ReplaceIdentifier("\"Id\" > 0 AND ID < 9 AND idx = 1", "id", "s"), "\"Id\" > 0 AND \"s\" < 9 AND idx = 1");
  EXPECT_EQ(ReplaceIdentifier("\"Id\" > 0", "Id", "s"), "\"s\" > 0");
  EXPECT_EQ(ReplaceIdentifier("x::id", "id", "s"), "x::id");
  EXPECT_EQ(ReplaceIdentifier("'it''s id' || id", "id", "s"), "'it''s id' || \"s\"");
}

TEST(Alterations, MadeUpNamesStayWithinPostgresLimits) {
  const std::string long_column(60, 'c');
  EXPECT_LE(ShadowColumn(long_column).size(), 63u);
  EXPECT_NE(ShadowColumn(long_column), ShadowColumn(long_column + "d"));
  const std::string t = AlterTriggerName(std::string(63, 'p'), {"", "t"}, long_column);
  EXPECT_LE(t.size(), 63u);
  EXPECT_NE(AlterTriggerName("plan_a", {"", "t"}, "c"), AlterTriggerName("plan_b", {"", "t"}, "c"));
}

}  // namespace
}  // namespace tide
