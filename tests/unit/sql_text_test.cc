#include "engine/sql_text.h"

#include <gtest/gtest.h>

#include "plan/lint.h"

namespace tide {
namespace {

TEST(SqlText, QuotesIdentifiersAndLiterals) {
  EXPECT_EQ(QuoteIdent("clinicId"), "\"clinicId\"");
  EXPECT_EQ(QuoteIdent("a\"b"), "\"a\"\"b\"");
  EXPECT_EQ(QuoteLiteral("it's"), "'it''s'");
  EXPECT_EQ(QuoteName({"core", "users"}), "\"core\".\"users\"");
  EXPECT_EQ(QuoteName({"", "users; DROP TABLE users"}), "\"users; DROP TABLE users\"");
}

BatchStatement ClinicBatch() {
  return BatchStatement{{"", "patient_offers"},
                        {{"id", "bigint"}},
                        {{"clinicId", "(SELECT 1)"}},
                        ""};
}

TEST(SqlText, TheFirstBatchFindsItsLastKeyByOffset) {
  EXPECT_EQ(BatchBoundSql(ClinicBatch(), false, false, false),
            "SELECT \"id\"::text AS tide_k1 FROM \"patient_offers\" ORDER BY \"id\" LIMIT 1 OFFSET $1::bigint");
}

TEST(SqlText, LaterBatchesStartAfterTheLastKeyWithTypedParameters) {
  EXPECT_EQ(BatchBoundSql(ClinicBatch(), true, false, false),
            "SELECT \"id\"::text AS tide_k1 FROM \"patient_offers\" WHERE (\"id\") > ($1::bigint) ORDER BY "
            "\"id\" LIMIT 1 OFFSET $2::bigint");
  EXPECT_EQ(BatchBoundSql(ClinicBatch(), true, false, true),
            "SELECT \"id\"::text AS tide_k1 FROM \"patient_offers\" WHERE (\"id\") > ($1::bigint) ORDER BY "
            "\"id\" DESC LIMIT 1");
}

TEST(SqlText, AWorkersRangeBoundsTheKeysFromBothSides) {
  EXPECT_EQ(BatchBoundSql(ClinicBatch(), true, true, false),
            "SELECT \"id\"::text AS tide_k1 FROM \"patient_offers\" WHERE (\"id\") > ($1::bigint) AND "
            "(\"id\") <= ($2::bigint) ORDER BY \"id\" LIMIT 1 OFFSET $3::bigint");
  EXPECT_EQ(BatchBoundSql(ClinicBatch(), false, true, true),
            "SELECT \"id\"::text AS tide_k1 FROM \"patient_offers\" WHERE (\"id\") <= ($1::bigint) ORDER BY "
            "\"id\" DESC LIMIT 1");
}

TEST(SqlText, TheUpdateIsBoundedByAKeyRangeKeepsValuesAlreadyThereAndCountsRowsLeftUnfilled) {
  EXPECT_EQ(BatchUpdateSql(ClinicBatch(), true),
            "WITH tide_updated AS (UPDATE \"patient_offers\" SET \"clinicId\" = "
            "COALESCE(\"clinicId\", ((SELECT 1))) WHERE (\"id\") > ($1::bigint) AND (\"id\") <= "
            "($2::bigint) AND (\"clinicId\" IS NULL) RETURNING (\"clinicId\" IS NULL) AS "
            "tide_unfilled) SELECT count(*) FILTER (WHERE NOT tide_unfilled), count(*) FILTER "
            "(WHERE tide_unfilled) FROM tide_updated");
  EXPECT_EQ(BatchUpdateSql(ClinicBatch(), false),
            "WITH tide_updated AS (UPDATE \"patient_offers\" SET \"clinicId\" = "
            "COALESCE(\"clinicId\", ((SELECT 1))) WHERE (\"id\") <= ($1::bigint) AND "
            "(\"clinicId\" IS NULL) RETURNING (\"clinicId\" IS NULL) AS tide_unfilled) SELECT "
            "count(*) FILTER (WHERE NOT tide_unfilled), count(*) FILTER (WHERE tide_unfilled) FROM "
            "tide_updated");
  EXPECT_EQ(BatchCountSql(ClinicBatch(), true),
            "SELECT count(*) FROM \"patient_offers\" WHERE (\"id\") > ($1::bigint) AND (\"id\") <= "
            "($2::bigint)");
}

TEST(SqlText, APageBatchReadsATidRangeAndKeepsTheFilter) {
  EXPECT_EQ(PageBatchUpdateSql(ClinicBatch(), false),
            "WITH tide_updated AS (UPDATE ONLY \"patient_offers\" SET \"clinicId\" = "
            "COALESCE(\"clinicId\", ((SELECT 1))) WHERE ctid >= $1::tid AND ctid < $2::tid AND "
            "(\"clinicId\" IS NULL) RETURNING (\"clinicId\" IS NULL) AS tide_unfilled) SELECT "
            "count(*) FILTER (WHERE NOT tide_unfilled), count(*) FILTER (WHERE tide_unfilled) FROM "
            "tide_updated");
  // The open tail takes only rows the update would change: a row whose expression yields NULL
  // is not rewritten each time the tail passes it.
  EXPECT_NE(PageBatchUpdateSql(ClinicBatch(), true)
                .find("AND (\"clinicId\" IS NULL) AND ((\"clinicId\" IS NULL AND ((SELECT 1)) IS NOT NULL))"),
            std::string::npos)
      << PageBatchUpdateSql(ClinicBatch(), true);
  EXPECT_EQ(HeapPagesSql({"core", "users"}),
            "SELECT pg_relation_size('\"core\".\"users\"'::regclass) / "
            "current_setting('block_size')::bigint");
}

TEST(SqlText, ASweepTakesOnlyRowsTheUpdateWouldChange) {
  // Rows whose expression yields NULL are never taken again: they would be rewritten to the
  // same NULL for ever and crowd fillable rows out of the LIMIT.
  EXPECT_EQ(ChangeFilter(ClinicBatch()),
            "((\"clinicId\" IS NULL AND ((SELECT 1)) IS NOT NULL))");
  EXPECT_NE(SweepSql(ClinicBatch()).find(ChangeFilter(ClinicBatch())), std::string::npos);
  EXPECT_EQ(UnfillableSql(ClinicBatch()),
            "SELECT (SELECT count(*) FROM \"patient_offers\" WHERE (\"clinicId\" IS NULL) AND NOT "
            "((\"clinicId\" IS NULL AND ((SELECT 1)) IS NOT NULL))), ARRAY(SELECT \"id\"::text AS tide_keys FROM "
            "\"patient_offers\" WHERE (\"clinicId\" IS NULL) AND NOT ((\"clinicId\" IS NULL AND "
            "((SELECT 1)) IS NOT NULL)) ORDER BY \"id\" LIMIT 5)::text");
}

TEST(SqlText, AWhereTasksChangeIsJudgedOnTheValueCastToTheColumnsType) {
  BatchStatement b{{"", "grades"}, {{"id", "integer"}}, {{"pct", "score * 100 / max"}}, "pct IS NULL",
                   {{"pct", "numeric(5,2)"}}};
  EXPECT_EQ(ChangeFilter(b),
            "((CAST((score * 100 / max) AS numeric(5,2))::text IS DISTINCT FROM \"pct\"::text))");
}

TEST(SqlText, SyncTriggerNamesOfPlansWithACommonPrefixDiffer) {
  const std::string a = SyncTriggerName("backfill_patient_offers_clinic_identifier_2024_06_01_a", 0);
  const std::string b = SyncTriggerName("backfill_patient_offers_clinic_identifier_2024_06_01_b", 0);
  EXPECT_NE(a, b);
  EXPECT_LE(a.size(), 63u);
  EXPECT_NE(SyncTriggerName("p", 0), SyncTriggerName("p", 1));
  EXPECT_EQ(a, SyncTriggerName("backfill_patient_offers_clinic_identifier_2024_06_01_a", 0))
      << "stable across runs";
  BackfillTask task;
  task.table = {"", "ca"};
  task.set = {{"y", "x"}};
  const SyncTriggerSql sql = MakeSyncTrigger("p", 0, task);
  EXPECT_EQ(sql.create.rfind("DO $tide_clash$", 0), 0u) << "a clash is refused before anything is replaced";
  EXPECT_NE(sql.create.find("COMMENT ON FUNCTION"), std::string::npos);
}

TEST(SqlText, ASweepFindsPendingRowsByScanAndRechecksThemInTheUpdate) {
  BatchStatement b{{"", "grades"},
                   {{"survey_id", "integer"}, {"student_id", "integer"}},
                   {{"score_percent", "score / max_score"}},
                   "score_percent IS NULL"};
  EXPECT_EQ(SweepSql(b),
            "WITH tide_pending AS (SELECT \"survey_id\", \"student_id\" FROM \"grades\" WHERE "
            "(score_percent IS NULL) AND (((score / max_score)::text IS DISTINCT FROM \"score_percent\"::text)) "
            "LIMIT $1::bigint), tide_updated AS (UPDATE \"grades\" SET "
            "\"score_percent\" = (score / max_score) WHERE (\"survey_id\", \"student_id\") IN "
            "(SELECT \"survey_id\", \"student_id\" FROM tide_pending) AND (score_percent IS NULL) "
            "RETURNING 1) SELECT (SELECT count(*) FROM tide_pending), (SELECT count(*) FROM "
            "tide_updated)");
  EXPECT_EQ(SampleKeysSql(b.table, b.key),
            "SELECT \"survey_id\"::text AS tide_k1, \"student_id\"::text AS tide_k2 FROM \"grades\" "
            "TABLESAMPLE SYSTEM ($1::real) ORDER BY \"survey_id\", \"student_id\"");
}

TEST(SqlText, CompositeKeysUseRowComparison) {
  BatchStatement b{{"", "grades"},
                   {{"survey_id", "integer"}, {"student_id", "integer"}},
                   {{"score_percent", "score / max_score"}},
                   "score_percent IS NULL"};
  EXPECT_EQ(BatchBoundSql(b, true, false, true),
            "SELECT \"survey_id\"::text AS tide_k1, \"student_id\"::text AS tide_k2 FROM \"grades\" WHERE "
            "(\"survey_id\", \"student_id\") > ($1::integer, $2::integer) ORDER BY \"survey_id\" "
            "DESC, \"student_id\" DESC LIMIT 1");
  // An explicit `where` is used as written and the value is not wrapped in COALESCE.
  EXPECT_EQ(BatchUpdateSql(b, true),
            "WITH tide_updated AS (UPDATE \"grades\" SET \"score_percent\" = (score / max_score) "
            "WHERE (\"survey_id\", \"student_id\") > ($1::integer, $2::integer) AND (\"survey_id\", "
            "\"student_id\") <= ($3::integer, $4::integer) AND (score_percent IS NULL) RETURNING "
            "(score_percent IS NULL) AS tide_unfilled) SELECT count(*) FILTER (WHERE NOT "
            "tide_unfilled), count(*) FILTER (WHERE tide_unfilled) FROM tide_updated");
}

TEST(SqlText, DefaultFilterTakesRowsWithAnySetColumnNull) {
  BatchStatement b{{"core", "users"}, {{"id", "integer"}}, {{"a", "1"}, {"b", "2"}}, ""};
  EXPECT_EQ(PendingFilter(b), "(\"a\" IS NULL OR \"b\" IS NULL)");
  EXPECT_NE(BatchUpdateSql(b, false).find("UPDATE \"core\".\"users\" SET \"a\" = COALESCE(\"a\", (1)), "
                                         "\"b\" = COALESCE(\"b\", (2))"),
            std::string::npos);
}

TEST(SqlText, NullCountGate) {
  EXPECT_EQ(NullCountSql({"core", "users"}, "displayName"),
            "SELECT count(*) FROM \"core\".\"users\" WHERE \"displayName\" IS NULL");
}

TEST(SqlText, KnowsWhichStatementsCannotRunInATransaction) {
  EXPECT_TRUE(RunsOutsideTransactionBlock("CREATE INDEX CONCURRENTLY i ON t (c)"));
  EXPECT_TRUE(RunsOutsideTransactionBlock("drop index concurrently if exists i"));
  EXPECT_TRUE(RunsOutsideTransactionBlock("  VACUUM (ANALYZE) t"));
  EXPECT_FALSE(RunsOutsideTransactionBlock("ALTER TABLE t ADD COLUMN concurrently_seen int"));
  EXPECT_FALSE(RunsOutsideTransactionBlock("ALTER TABLE t ADD COLUMN c int"));
  EXPECT_FALSE(RunsOutsideTransactionBlock("CREATE INDEX i ON t (c)"));
}

TEST(SqlText, TimeoutsAndArrays) {
  EXPECT_EQ(SetTimeoutSql("lock_timeout", Millis(2000), true), "SET LOCAL lock_timeout = '2000ms'");
  EXPECT_EQ(SetTimeoutSql("statement_timeout", Millis(5), false),
            "SET statement_timeout = '5ms'");
  EXPECT_EQ(TextArrayLiteral({}), "{}");
  EXPECT_EQ(TextArrayLiteral({"1", "a \"q\" \\ b"}), "{\"1\",\"a \\\"q\\\" \\\\ b\"}");
}

TEST(SqlText, AShareOfAPageBatchIsTheHashOfTheKeyColumnsThatHaveAStableOne) {
  BatchStatement b = ClinicBatch();
  EXPECT_EQ(ShareOf(b, 10), "(((pg_catalog.hashint8(\"id\"::bigint) % 10) % 10 + 10) % 10)");
  b.key = {{"tenant", "integer"}, {"id", "uuid"}, {"code", "character varying(20)"}};
  EXPECT_EQ(ShareOf(b, 10),
            "(((pg_catalog.hashint8(\"tenant\"::bigint) % 10 + pg_catalog.uuid_hash(\"id\") % 10 + "
            "pg_catalog.hashtext(\"code\"::text) % 10) % 10 + 10) % 10)");
  // A date's or a timestamp's text depends on DateStyle and TimeZone: such a column takes no
  // part, and a key of nothing else has no share.
  b.key = {{"account", "numeric(12,0)"}, {"day", "date"}};
  EXPECT_EQ(ShareOf(b, 10), "(((pg_catalog.hash_numeric(\"account\") % 10) % 10 + 10) % 10)");
  b.key = {{"at", "timestamp with time zone"}, {"ratio", "double precision"}};
  EXPECT_EQ(ShareOf(b, 10), "");
  EXPECT_NE(PageBatchUpdateSql(ClinicBatch(), false, 10)
                .find("WHERE ctid >= $1::tid AND ctid < $2::tid AND (((pg_catalog.hashint8(\"id\"::bigint) "
                      "% 10) % 10 + 10) % 10) = $3::int AND (\"clinicId\" IS NULL)"),
            std::string::npos)
      << PageBatchUpdateSql(ClinicBatch(), false, 10);
}

}  // namespace
}  // namespace tide
