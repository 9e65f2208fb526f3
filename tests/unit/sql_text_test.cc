#include "engine/sql_text.h"

#include <gtest/gtest.h>

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

TEST(SqlText, FirstBatchHasNoLowerBound) {
  const std::string sql = BatchSql(ClinicBatch(), false);
  EXPECT_EQ(sql,
            "WITH tide_batch AS (SELECT \"id\" AS tide_k1 FROM \"patient_offers\" ORDER BY \"id\" "
            "LIMIT $1::bigint), tide_updated AS (UPDATE \"patient_offers\" SET \"clinicId\" = "
            "COALESCE(\"clinicId\", ((SELECT 1))) FROM tide_batch WHERE \"patient_offers\".\"id\" = "
            "tide_batch.tide_k1 AND (\"clinicId\" IS NULL) RETURNING 1) SELECT (SELECT count(*) "
            "FROM tide_updated), (SELECT count(*) FROM tide_batch), (SELECT tide_k1::text FROM "
            "tide_batch ORDER BY tide_batch.tide_k1 DESC LIMIT 1)");
}

TEST(SqlText, LaterBatchesStartAfterTheLastKeyWithTypedParameters) {
  const std::string sql = BatchSql(ClinicBatch(), true);
  EXPECT_NE(sql.find("WHERE (\"id\") > ($1::bigint) ORDER BY \"id\" LIMIT $2::bigint"),
            std::string::npos)
      << sql;
}

TEST(SqlText, AWorkersRangeBoundsTheKeysfromBothSides) {
  const std::string sql = BatchSql(ClinicBatch(), true, true);
  EXPECT_NE(sql.find("WHERE (\"id\") > ($1::bigint) AND (\"id\") <= ($2::bigint) ORDER BY \"id\" "
                     "LIMIT $3::bigint"),
            std::string::npos)
      << sql;
  const std::string first = BatchSql(ClinicBatch(), false, true);
  EXPECT_NE(first.find("WHERE (\"id\") <= ($1::bigint) ORDER BY \"id\" LIMIT $2::bigint"),
            std::string::npos)
      << first;
}

TEST(SqlText, CompositeKeysUseRowComparisonAndReturnEveryKeyColumn) {
  BatchStatement b{{"", "grades"},
                   {{"survey_id", "integer"}, {"student_id", "integer"}},
                   {{"score_percent", "score / max_score"}},
                   "score_percent IS NULL"};
  const std::string sql = BatchSql(b, true);
  EXPECT_NE(sql.find("(\"survey_id\", \"student_id\") > ($1::integer, $2::integer)"),
            std::string::npos)
      << sql;
  EXPECT_NE(sql.find("LIMIT $3::bigint"), std::string::npos);
  EXPECT_NE(sql.find("\"grades\".\"survey_id\" = tide_batch.tide_k1 AND \"grades\".\"student_id\" "
                     "= tide_batch.tide_k2"),
            std::string::npos);
  // An explicit `where` is used as written and the value is not wrapped in COALESCE.
  EXPECT_NE(sql.find("AND (score_percent IS NULL)"), std::string::npos);
  EXPECT_NE(sql.find("SET \"score_percent\" = (score / max_score)"), std::string::npos);
  EXPECT_NE(sql.find("SELECT tide_k2::text FROM tide_batch ORDER BY tide_batch.tide_k1 DESC, "
                     "tide_batch.tide_k2 DESC LIMIT 1"),
            std::string::npos);
}

TEST(SqlText, DefaultFilterTakesRowsWithAnySetColumnNull) {
  BatchStatement b{{"core", "users"}, {{"id", "integer"}}, {{"a", "1"}, {"b", "2"}}, ""};
  EXPECT_EQ(PendingFilter(b), "(\"a\" IS NULL OR \"b\" IS NULL)");
  const std::string sql = BatchSql(b, false);
  EXPECT_NE(sql.find("UPDATE \"core\".\"users\" SET \"a\" = COALESCE(\"a\", (1)), \"b\" = "
                     "COALESCE(\"b\", (2))"),
            std::string::npos)
      << sql;
  EXPECT_NE(sql.find("\"users\".\"id\" = tide_batch.tide_k1"), std::string::npos);
}

TEST(SqlText, NullCountGate) {
  EXPECT_EQ(NullCountSql({"core", "users"}, "displayName"),
            "SELECT count(*) FROM \"core\".\"users\" WHERE \"displayName\" IS NULL");
}

TEST(SqlText, KnowsWhichStatementsCannotRunInATransaction) {
  EXPECT_TRUE(RunsOutsideTransaction("CREATE INDEX CONCURRENTLY i ON t (c)"));
  EXPECT_TRUE(RunsOutsideTransaction("drop index concurrently if exists i"));
  EXPECT_TRUE(RunsOutsideTransaction("  VACUUM (ANALYZE) t"));
  EXPECT_FALSE(RunsOutsideTransaction("ALTER TABLE t ADD COLUMN concurrently_seen int"));
  EXPECT_FALSE(RunsOutsideTransaction("ALTER TABLE t ADD COLUMN c int"));
  EXPECT_FALSE(RunsOutsideTransaction("CREATE INDEX i ON t (c)"));
}

TEST(SqlText, TimeoutsAndArrays) {
  EXPECT_EQ(SetTimeoutSql("lock_timeout", Millis(2000), true), "SET LOCAL lock_timeout = '2000ms'");
  EXPECT_EQ(SetTimeoutSql("statement_timeout", Millis(5), false),
            "SET statement_timeout = '5ms'");
  EXPECT_EQ(TextArrayLiteral({}), "{}");
  EXPECT_EQ(TextArrayLiteral({"1", "a \"q\" \\ b"}), "{\"1\",\"a \\\"q\\\" \\\\ b\"}");
}

}  // namespace
}  // namespace tide
