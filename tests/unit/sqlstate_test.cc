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

}  // namespace
}  // namespace tide
