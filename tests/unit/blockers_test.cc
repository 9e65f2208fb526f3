// The blocker policy: which sessions blocking a DDL statement tide ends, and how.
#include "engine/blockers.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

BlockerPolicy Policy() {
  BlockerPolicy p;
  p.enabled = true;
  p.terminate_idle_in_transaction = Millis(10000);
  p.cancel_queries_older_than = Millis(300000);
  p.never = {"replicator"};
  return p;
}

SessionFacts IdleInTransaction(int64_t age_ms) {
  SessionFacts s;
  s.pid = 42;
  s.user = "app";
  s.backend_type = "client backend";
  s.state = "idle in transaction";
  s.state_age_ms = age_ms;
  s.transaction_age_ms = age_ms;
  return s;
}

using A = BlockerVerdict::Action;

TEST(BlockersTest, AnIdleTransactionPastTheLimitIsTerminated) {
  EXPECT_EQ(JudgeBlocker(Policy(), IdleInTransaction(12000)).action, A::kTerminate);
  EXPECT_EQ(JudgeBlocker(Policy(), IdleInTransaction(3000)).action, A::kLeave);
  SessionFacts aborted = IdleInTransaction(60000);
  aborted.state = "idle in transaction (aborted)";
  EXPECT_EQ(JudgeBlocker(Policy(), aborted).action, A::kTerminate);
}

TEST(BlockersTest, SuperusersNeverRolesOwnSessionsAndWorkersAreLeftAlone) {
  SessionFacts s = IdleInTransaction(60000);
  s.superuser = true;
  EXPECT_EQ(JudgeBlocker(Policy(), s).action, A::kLeave);
  s = IdleInTransaction(60000);
  s.user = "replicator";
  EXPECT_EQ(JudgeBlocker(Policy(), s).action, A::kLeave);
  s = IdleInTransaction(60000);
  s.application_name = "tided";
  EXPECT_EQ(JudgeBlocker(Policy(), s).action, A::kLeave);
  s = IdleInTransaction(60000);
  s.backend_type = "autovacuum worker";
  EXPECT_EQ(JudgeBlocker(Policy(), s).action, A::kLeave);
  BlockerPolicy off = Policy();
  off.enabled = false;
  EXPECT_EQ(JudgeBlocker(off, IdleInTransaction(60000)).action, A::kLeave);
}

TEST(BlockersTest, AnOldQueryIsCancelledOrTerminatedWhenACancelWouldKeepItsLocks) {
  SessionFacts s;
  s.pid = 7;
  s.user = "report";
  s.backend_type = "client backend";
  s.state = "active";
  s.query_age_ms = 400000;
  s.query_began_transaction = true;
  EXPECT_EQ(JudgeBlocker(Policy(), s).action, A::kCancel);
  s.query_began_transaction = false;
  const BlockerVerdict v = JudgeBlocker(Policy(), s);
  EXPECT_EQ(v.action, A::kTerminate);
  EXPECT_NE(v.why.find("cancel"), std::string::npos);
  s.query_age_ms = 1000;
  EXPECT_EQ(JudgeBlocker(Policy(), s).action, A::kLeave);
  BlockerPolicy no_cancel = Policy();
  no_cancel.cancel_queries_older_than = Millis(0);
  s.query_age_ms = 400000;
  EXPECT_EQ(JudgeBlocker(no_cancel, s).action, A::kLeave);
}

TEST(BlockersTest, ThePlansKeysWinOverTheConfigsAndNeverListsAddUp) {
  StatementSettings plan;
  Defaults defaults;
  EXPECT_FALSE(BlockerPolicyFor(plan, defaults).enabled) << "opt in";
  BlockerSettings d;
  d.terminate_idle_in_transaction = Millis(30000);
  d.never = {"replicator"};
  d.max_per_plan = 2;
  defaults.health.blockers = d;
  BlockerSettings p;
  p.terminate_idle_in_transaction = Millis(10000);
  p.never = {"batch"};
  plan.health.blockers = p;
  const BlockerPolicy policy = BlockerPolicyFor(plan, defaults);
  EXPECT_TRUE(policy.enabled);
  EXPECT_EQ(policy.terminate_idle_in_transaction.count(), 10000);
  EXPECT_EQ(policy.max_per_plan, 2);
  EXPECT_EQ(policy.after_lock_timeouts, 3);
  EXPECT_EQ(policy.never.size(), 2u);
}

TEST(BlockersTest, PidsComeFromALockTimeoutsDetail) {
  EXPECT_EQ(BlockerPids(R"([{"pid":12,"user":"a"},{"pid":13},{"pid":12}])"),
            (std::vector<int64_t>{12, 13}));
  EXPECT_TRUE(BlockerPids("[]").empty());
  EXPECT_TRUE(BlockerPids("").empty());
  EXPECT_TRUE(BlockerPids("not json").empty());
}

}  // namespace
}  // namespace tide

namespace tide {
namespace {
TEST(BlockersTest, EachOutcomeIsReportedWithWhoButNeverWhat) {
  BlockerOutcome o;
  o.session = IdleInTransaction(60000);
  o.session.application_name = "billing";
  o.verdict = JudgeBlocker(Policy(), o.session);
  o.outcome = EndOutcome::kEnded;
  BlockerReport r = ReportBlocker(o, Policy());
  EXPECT_EQ(r.event, "blocker_ended");
  EXPECT_NE(r.details.ToString().find("\"action\":\"terminate\""), std::string::npos);
  EXPECT_NE(r.details.ToString().find("\"application_name\":\"billing\""), std::string::npos);
  EXPECT_EQ(r.details.ToString().find("query"), std::string::npos);
  EXPECT_NE(r.log.find("terminated blocking session pid 42"), std::string::npos);
  o.outcome = EndOutcome::kBudgetSpent;
  EXPECT_EQ(ReportBlocker(o, Policy()).event, "blocker_not_ended");
  o.outcome = EndOutcome::kGone;
  EXPECT_EQ(ReportBlocker(o, Policy()).event, "blocker_left");
  o.error = Status::Fatal("permission denied to terminate process", "42501");
  r = ReportBlocker(o, Policy());
  EXPECT_EQ(r.event, "blocker_not_ended");
  EXPECT_NE(r.details.ToString().find("pg_signal_backend"), std::string::npos);
  o.session.superuser = true;
  o.error = Status::Ok();
  o.verdict = JudgeBlocker(Policy(), o.session);
  EXPECT_EQ(ReportBlocker(o, Policy()).event, "blocker_left");
}
}  // namespace
}  // namespace tide

namespace tide {
namespace {
TEST(BlockersTest, APolicyThatCouldNeverActIsNamedWithWhatToChange) {
  StatementSettings plan;
  Defaults defaults;
  defaults.ddl_retries = 5;
  EXPECT_EQ(BlockerPolicyProblem(plan, defaults), "") << "no policy";
  BlockerSettings b;
  b.after_lock_timeouts = 6;
  plan.health.blockers = b;
  const std::string problem = BlockerPolicyProblem(plan, defaults);
  EXPECT_NE(problem.find("`blockers.after_lock_timeouts` is 6, above `ddl_retries` (5)"), std::string::npos)
      << problem;
  EXPECT_NE(problem.find("lower `after_lock_timeouts` or raise `ddl_retries`"), std::string::npos);
  plan.ddl_retries = 6;
  EXPECT_EQ(BlockerPolicyProblem(plan, defaults), "") << "the plan's ddl_retries counts";
  plan.ddl_retries.reset();
  b.after_lock_timeouts.reset();
  defaults.health.blockers = b;
  plan.health.blockers.reset();
  defaults.ddl_retries = 2;
  EXPECT_NE(BlockerPolicyProblem(plan, defaults), "") << "the default of 3 against 2 retries";
}
}  // namespace
}  // namespace tide
