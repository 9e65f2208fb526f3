#include "engine/phase.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

Step Raw(const std::string& sql) {
  Step s;
  s.sql = sql;
  return s;
}

Plan FullPlan() {
  Plan p;
  p.expand = {Raw("e1"), Raw("e2")};
  p.backfill.resize(1);
  p.gates.resize(1);
  p.contract = {Raw("c1")};
  return p;
}

TEST(Phase, AcceptedPlanStartsWithTheFirstExpandStep) {
  const Plan p = FullPlan();
  PlanCursor c = Normalize(p, {PlanState::kAccepted, 0, false});
  EXPECT_EQ(c.state, PlanState::kExpanding);
  Action a = NextAction(p, c);
  EXPECT_EQ(a.kind, Action::Kind::kRunExpandStep);
  EXPECT_EQ(a.index, 0u);
}

TEST(Phase, WalksThroughEveryPhaseInOrder) {
  const Plan p = FullPlan();
  PlanCursor c = Normalize(p, {});
  std::vector<Action::Kind> seen;
  for (int i = 0; i < 20 && !IsFinal(c.state); ++i) {
    Action a = NextAction(p, c);
    seen.push_back(a.kind);
    c = AfterSuccess(p, c);
  }
  using K = Action::Kind;
  EXPECT_EQ(seen, (std::vector<K>{K::kRunExpandStep, K::kRunExpandStep, K::kRunBackfillTask,
                                  K::kCheckGates, K::kRunContractStep, K::kFinish}));
  EXPECT_EQ(c.state, PlanState::kDone);
}

TEST(Phase, EmptyPhasesAreSkipped) {
  Plan p;
  p.contract = {Raw("c")};
  p.gates.resize(1);
  PlanCursor c = Normalize(p, {});
  EXPECT_EQ(c.state, PlanState::kGating);
  Plan nothing;
  EXPECT_EQ(NextAction(nothing, Normalize(nothing, {})).kind, Action::Kind::kFinish);
}

TEST(Phase, ResumesAtTheStoredStepNotFromTheStart) {
  const Plan p = FullPlan();
  PlanCursor c = Normalize(p, {PlanState::kExpanding, 1, false});
  EXPECT_EQ(NextAction(p, c).index, 1u);
}

TEST(Phase, AFailedGateBackfillsOnceMoreThenWaits) {
  const Plan p = FullPlan();
  PlanCursor gating{PlanState::kGating, 0, false};
  PlanCursor again = AfterGateFailure(gating);
  EXPECT_EQ(again.state, PlanState::kBackfilling);
  EXPECT_TRUE(again.catch_up);
  // After the catch-up pass the gates are checked again...
  PlanCursor after_backfill = AfterSuccess(p, again);
  EXPECT_EQ(after_backfill.state, PlanState::kGating);
  EXPECT_TRUE(after_backfill.catch_up);
  // ...and a second failure stays in gating: contract never starts.
  EXPECT_EQ(AfterGateFailure(after_backfill), after_backfill);
}

TEST(Phase, FinalStatesHaveNothingToDo) {
  const Plan p = FullPlan();
  EXPECT_EQ(NextAction(p, {PlanState::kDone, 0, false}).kind, Action::Kind::kNothing);
  EXPECT_EQ(NextAction(p, {PlanState::kFailed, 1, false}).kind, Action::Kind::kNothing);
}

TEST(Phase, ARevertRunsTheRevertStepsThenEndsReverted) {
  Plan plan;
  plan.revert.resize(1);
  PlanCursor c{PlanState::kReverting, 0, false};
  EXPECT_EQ(NextAction(plan, Normalize(plan, c)).kind, Action::Kind::kRunRevertStep);
  c = AfterSuccess(plan, c);
  EXPECT_EQ(NextAction(plan, c).kind, Action::Kind::kFinishReverted);
  c = AfterSuccess(plan, c);
  EXPECT_EQ(c.state, PlanState::kReverted);
  EXPECT_TRUE(IsFinal(PlanState::kReverted));
  EXPECT_FALSE(IsFinal(PlanState::kReverting));
  EXPECT_STREQ(PhaseOf(PlanState::kReverting), "revert");
}

TEST(Phase, RevertOnlyOfADonePlanThatKeptItsOldColumns) {
  Plan plan;
  EXPECT_NE(RevertRefusal(plan, PlanState::kDone, PlanState::kAccepted, true), "");  // nothing to revert
  plan.revert.resize(1);
  EXPECT_EQ(RevertRefusal(plan, PlanState::kDone, PlanState::kAccepted, true), "");
  EXPECT_NE(RevertRefusal(plan, PlanState::kDone, PlanState::kAccepted, false).find("finalized"),
            std::string::npos);
  EXPECT_NE(RevertRefusal(plan, PlanState::kGating, PlanState::kAccepted, true).find("abort"),
            std::string::npos);
  EXPECT_EQ(RevertRefusal(plan, PlanState::kFailed, PlanState::kReverting, true), "")
      << "a failed revert can be asked again";
  EXPECT_NE(RevertRefusal(plan, PlanState::kReverted, PlanState::kAccepted, true), "");
  EXPECT_NE(AbortRefusal(PlanState::kReverting, PlanState::kAccepted), "");
}

TEST(Phase, StateNamesRoundTrip) {
  for (PlanState s : AllPlanStates()) EXPECT_EQ(PlanStateFromString(ToString(s)), s);
  EXPECT_FALSE(PlanStateFromString("paused").has_value());
}

TEST(Phase, APauseOfOneDatabaseHoldsThatDatabasesCopyOfTheGroupsPlanOnly) {
  EXPECT_TRUE(PauseCovers("p", "", "p", "backfill"));
  EXPECT_TRUE(PauseCovers("*", "contract", "p", "contract", "shard_01"));
  EXPECT_TRUE(PauseCovers(PauseTarget("p", "shard_01"), "", "p", "backfill", "shard_01"));
  EXPECT_FALSE(PauseCovers(PauseTarget("p", "shard_01"), "", "p", "backfill", "shard_02"));
  EXPECT_FALSE(PauseCovers(PauseTarget("p", "shard_01"), "", "p", "backfill"));
  EXPECT_FALSE(PauseCovers(PauseTarget("p", "shard_01"), "contract", "p", "backfill", "shard_01"));
  EXPECT_EQ(PauseTarget("p", ""), "p");
}

}  // namespace
}  // namespace tide
