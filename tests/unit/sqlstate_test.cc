// What a PostgreSQL error means for the next move: its class, its retry label, and whether it
// is retried after a number of attempts.
#include "engine/sqlstate.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

TEST(Sqlstate, TransientErrorsAreRetryableAndTheRestFatal) {
  for (const char* s : {"40001", "40P01", "55P03", "57014", "08006", "57P01"}) {
    EXPECT_EQ(ClassifySqlstate(s), Status::Code::kRetryable) << s;
  }
  EXPECT_EQ(ClassifySqlstate("40003"), Status::Code::kInDoubt);
  EXPECT_EQ(ClassifySqlstate("42P01"), Status::Code::kFatal);
  EXPECT_EQ(RetryKind(StatusFromSqlstate("55P03", "x")), "lock_timeout");
  EXPECT_EQ(RetryKind(StatusFromSqlstate("08006", "x")), "connection");
}

TEST(Sqlstate, TransientErrorsHaveABudgetButALostServerIsWaitedFor) {
  const Status deadlock = StatusFromSqlstate("40P01", "deadlock detected");
  EXPECT_TRUE(MayRetry(deadlock, 0, 5));
  EXPECT_TRUE(MayRetry(deadlock, 4, 5));
  EXPECT_FALSE(MayRetry(deadlock, 5, 5));
  const Status lost = StatusFromSqlstate("08006", "connection lost");
  EXPECT_TRUE(IsConnectionLoss(lost));
  EXPECT_TRUE(MayRetry(lost, 500, 5)) << "however long the server is away";
  EXPECT_TRUE(MayRetry(StatusFromSqlstate("57P03", "the database system is starting up"), 9, 5));
  EXPECT_TRUE(MayRetry(Status::InDoubt("commit outcome unknown"), 1, 5));
  EXPECT_FALSE(MayRetry(StatusFromSqlstate("42P01", "relation does not exist"), 0, 5));
  EXPECT_FALSE(MayRetry(Status::Fatal("no sqlstate"), 0, 5));
}

TEST(Sqlstate, ErrorMessagesLoseTheLinesThatQuoteRowData) {
  EXPECT_EQ(WithoutRowData("ERROR:  new row for relation \"t\" violates check constraint \"c\"\n"
                           "DETAIL:  Failing row contains (1, alice 123-45-6789)."),
            "ERROR:  new row for relation \"t\" violates check constraint \"c\" (DETAIL withheld: "
            "it may quote row data)");
  EXPECT_EQ(WithoutRowData("ERROR:  duplicate key\nDETAIL:  Key (email)=(a@b.c) already exists.\n"
                           "HINT:  do it differently"),
            "ERROR:  duplicate key\nHINT:  do it differently (DETAIL withheld: it may quote row data)");
  EXPECT_EQ(WithoutRowData("ERROR:  relation \"x\" does not exist"), "ERROR:  relation \"x\" does not exist");
  EXPECT_EQ(WithoutRowData("ERROR:  insert or update violates foreign key\nDETAIL:  Key (a, b)=(1, 2) is "
                           "not present in table \"t\"."),
            "ERROR:  insert or update violates foreign key (DETAIL withheld: it may quote row data)");
  EXPECT_EQ(WithoutRowData("ERROR:  invalid input syntax for type json\nDETAIL:  Token \"alice\" is invalid."),
            "ERROR:  invalid input syntax for type json (DETAIL withheld: it may quote row data)");
  const std::string depends =
      "ERROR:  cannot drop column c of table t because other objects depend on it\nDETAIL:  view v "
      "depends on column c of table t\nHINT:  Use DROP ... CASCADE to drop the dependent objects too.";
  EXPECT_EQ(WithoutRowData(depends), depends) << "naming an object is no row data";
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {
TEST(WithoutRowData, WithholdsTheValueAPrimaryMessageQuotes) {
  EXPECT_EQ(WithoutRowData("ERROR:  invalid input syntax for type integer: \"five stars\""),
            "ERROR:  invalid input syntax for type integer: (value withheld)");
  EXPECT_EQ(WithoutRowData("ERROR:  invalid input value for enum mood: \"sad: \"x\"\""),
            "ERROR:  invalid input value for enum mood: (value withheld)");
  EXPECT_EQ(WithoutRowData("ERROR:  value \"99999999999\" is out of range for type integer"),
            "ERROR:  value (withheld) is out of range for type integer");
  EXPECT_EQ(WithoutRowData("ERROR:  relation \"t\" does not exist"), "ERROR:  relation \"t\" does not exist");
}
}  // namespace
}  // namespace tide
