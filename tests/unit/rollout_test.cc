#include "engine/rollout.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

std::vector<RolloutMember> Fleet(int n) {
  std::vector<RolloutMember> m;
  for (int i = 1; i <= n; ++i) {
    RolloutMember r;
    r.database = "shard_0" + std::to_string(i);
    r.known = true;
    m.push_back(r);
  }
  return m;
}

void Begin(RolloutMember* m, PlanState s) {
  m->started = true;
  m->state = s;
}

Rollout Spec(int64_t canary, int64_t max_parallel, bool together = false,
             Rollout::OnFailure on_failure = Rollout::OnFailure::kHalt) {
  Rollout r;
  r.canary = canary;
  r.max_parallel = max_parallel;
  r.on_failure = on_failure;
  r.contract = together ? Rollout::Contract::kTogether : Rollout::Contract::kEach;
  return r;
}

TEST(Rollout, TheCanaryRunsAloneToDoneThenMaxParallelInTheGroupsOrder) {
  auto m = Fleet(5);
  const Rollout r = Spec(1, 2);
  EXPECT_EQ(DecideRollout(r, m).start, std::vector<std::string>{"shard_01"});
  Begin(&m[0], PlanState::kBackfilling);
  RolloutDecision d = DecideRollout(r, m);
  EXPECT_TRUE(d.start.empty()) << "nothing else while the canary runs";
  EXPECT_TRUE(d.canary);
  Begin(&m[0], PlanState::kDone);
  d = DecideRollout(r, m);
  EXPECT_FALSE(d.canary);
  EXPECT_EQ(d.start, (std::vector<std::string>{"shard_02", "shard_03"}));
  Begin(&m[1], PlanState::kAccepted);
  Begin(&m[2], PlanState::kExpanding);
  EXPECT_TRUE(DecideRollout(r, m).start.empty()) << "two in flight already";
  Begin(&m[1], PlanState::kDone);
  EXPECT_EQ(DecideRollout(r, m).start, std::vector<std::string>{"shard_04"});
  for (auto& x : m) Begin(&x, PlanState::kDone);
  d = DecideRollout(r, m);
  EXPECT_TRUE(d.over);
  EXPECT_TRUE(d.all_done);
}

TEST(Rollout, AFailureHaltsNewStartsAndContinueGoesOn) {
  auto m = Fleet(4);
  Begin(&m[0], PlanState::kDone);
  Begin(&m[1], PlanState::kFailed);
  Begin(&m[2], PlanState::kBackfilling);
  RolloutDecision d = DecideRollout(Spec(1, 2), m);
  EXPECT_TRUE(d.halted);
  EXPECT_TRUE(d.start.empty());
  EXPECT_FALSE(d.over) << "a failed database waits for a retry";
  d = DecideRollout(Spec(1, 2, false, Rollout::OnFailure::kContinue), m);
  EXPECT_FALSE(d.halted);
  EXPECT_EQ(d.start, std::vector<std::string>{"shard_04"});
  // A failed canary halts whatever on_failure says.
  auto c = Fleet(3);
  Begin(&c[0], PlanState::kFailed);
  d = DecideRollout(Spec(1, 2, false, Rollout::OnFailure::kContinue), c);
  EXPECT_TRUE(d.halted);
  EXPECT_TRUE(d.start.empty());
}

TEST(Rollout, ContractTogetherWaitsForEveryDatabasesGates) {
  auto m = Fleet(3);
  const Rollout r = Spec(1, 3, /*together=*/true);
  Begin(&m[0], PlanState::kGating);
  m[0].ready = m[0].parked = true;
  RolloutDecision d = DecideRollout(r, m);
  EXPECT_FALSE(d.canary) << "a ready canary has done what it can before the others";
  EXPECT_FALSE(d.contract_allowed);
  EXPECT_EQ(d.start, (std::vector<std::string>{"shard_02", "shard_03"}))
      << "a parked database holds no worker";
  Begin(&m[1], PlanState::kGating);
  m[1].ready = true;
  Begin(&m[2], PlanState::kBackfilling);
  EXPECT_FALSE(DecideRollout(r, m).contract_allowed);
  Begin(&m[2], PlanState::kGating);
  m[2].ready = true;
  EXPECT_TRUE(DecideRollout(r, m).contract_allowed);
  m[1].ready = false;
  Begin(&m[1], PlanState::kFailed);
  EXPECT_FALSE(DecideRollout(r, m).contract_allowed) << "a failed database's gates never pass";
  EXPECT_TRUE(DecideRollout(Spec(1, 3), m).contract_allowed) << "contract: each";
}

TEST(Rollout, NothingStartsWhileADatabaseHasNotAnswered) {
  auto m = Fleet(3);
  Begin(&m[0], PlanState::kDone);
  m[2].known = false;
  RolloutDecision d = DecideRollout(Spec(1, 2, true), m);
  EXPECT_TRUE(d.start.empty());
  EXPECT_FALSE(d.contract_allowed);
  // A database without the plan is not part of the rollout.
  m[2].known = true;
  m[2].recorded = false;
  d = DecideRollout(Spec(1, 2), m);
  EXPECT_EQ(d.start, std::vector<std::string>{"shard_02"});
}

TEST(Rollout, AServersConnectionBudgetHoldsBackItsDatabasesNotOthers) {
  auto m = Fleet(6);
  for (size_t i = 0; i < m.size(); ++i) {
    m[i].server = i < 4 ? "pg-a:5432" : "pg-b:5432";
    m[i].sessions = 4;
  }
  Begin(&m[0], PlanState::kDone);  // the canary
  // Budget 8 on each server: two databases of 4 sessions each at a time per server.
  RolloutDecision d = DecideRollout(Spec(1, 10), m, 8);
  EXPECT_EQ(d.start, (std::vector<std::string>{"shard_02", "shard_03", "shard_05", "shard_06"}));
  Begin(&m[1], PlanState::kBackfilling);
  Begin(&m[2], PlanState::kBackfilling);
  d = DecideRollout(Spec(1, 10), m, 8);
  EXPECT_EQ(d.start, (std::vector<std::string>{"shard_05", "shard_06"})) << "pg-a is full";
  // A database that alone needs more than the budget still runs, alone on its server.
  m[3].sessions = 20;
  Begin(&m[1], PlanState::kDone);
  Begin(&m[2], PlanState::kDone);
  d = DecideRollout(Spec(1, 10), m, 8);
  EXPECT_EQ(d.start.front(), "shard_04");
  Plan p;
  BackfillTask t;
  t.workers = 3;
  p.backfill = {t, BackfillTask{}};
  EXPECT_EQ(SessionsOf(p, 1), 7);
  EXPECT_EQ(SessionsOf(Plan{}, 4), 4);
}

TEST(Rollout, SummaryCountsTheDatabasesByStateInPhaseOrder) {
  auto m = Fleet(6);
  Begin(&m[0], PlanState::kDone);
  Begin(&m[1], PlanState::kDone);
  Begin(&m[2], PlanState::kBackfilling);
  Begin(&m[3], PlanState::kFailed);
  m[5].known = false;
  EXPECT_EQ(RolloutSummary(m), "2 done, 1 backfilling, 1 failed, 1 waiting, 1 unreachable");
  EXPECT_EQ(RolloutLabel(m[4]), "waiting");
  m[2].ready = true;
  EXPECT_EQ(RolloutLabel(m[2]), "ready");
}

TEST(Rollout, DatabasesAnotherTidedRunsCountAgainstItsMaxParallelNotThisOnes) {
  auto m = Fleet(6);
  const Rollout r = Spec(1, 2);
  Begin(&m[0], PlanState::kDone);
  Begin(&m[1], PlanState::kBackfilling);
  Begin(&m[2], PlanState::kBackfilling);
  m[1].elsewhere = m[2].elsewhere = true;
  EXPECT_EQ(DecideRollout(r, m).start, (std::vector<std::string>{"shard_04", "shard_05"}))
      << "a second tided adds throughput";
  // The canary another tided runs still runs alone.
  auto c = Fleet(3);
  Begin(&c[0], PlanState::kBackfilling);
  c[0].elsewhere = true;
  EXPECT_TRUE(DecideRollout(r, c).start.empty());
}

TEST(Rollout, DatabasesAnotherTidedRunsCountAgainstTheirServersBudget) {
  auto m = Fleet(4);
  const Rollout r = Spec(0, 4);
  for (auto& x : m) {
    x.server = "pg-a:5432";
    x.sessions = 6;
  }
  Begin(&m[0], PlanState::kBackfilling);
  m[0].elsewhere = true;
  EXPECT_EQ(DecideRollout(r, m, 13).start, std::vector<std::string>{"shard_02"});
}

TEST(Rollout, ReadinessIsReadFromTheStoredWaitingReason) {
  EXPECT_TRUE(ReadyForContract(PlanState::kGating, std::string(kReadyForContract) + "shards` (contract: together)"));
  EXPECT_FALSE(ReadyForContract(PlanState::kGating, "gates fail (null_count:t.b = 3)"));
  EXPECT_FALSE(ReadyForContract(PlanState::kContracting, kReadyForContract));
}

// `n` databases, every one parked ready.
std::vector<RolloutMember> ParkedFleet(int n) {
  auto m = Fleet(n);
  for (auto& x : m) {
    Begin(&x, PlanState::kGating);
    x.ready = x.parked = true;
  }
  return m;
}

TEST(Rollout, ParkedReadyDatabasesStartAgainMaxParallelAtATimeOnceEveryDatabaseIsReady) {
  auto m = ParkedFleet(4);
  const Rollout r = Spec(1, 2, /*together=*/true);
  m[3].ready = m[3].parked = false;  // still backfilling
  m[3].state = PlanState::kBackfilling;
  RolloutDecision d = DecideRollout(r, m);
  EXPECT_FALSE(d.release);
  EXPECT_TRUE(d.start.empty()) << "parked databases wait, holding nothing";
  // The last one ready (in its run, going on to contract): the contract is released; it counts
  // as in flight, and the parked ones go on with what max_parallel leaves.
  m[3].state = PlanState::kGating;
  m[3].ready = true;
  d = DecideRollout(r, m);
  EXPECT_TRUE(d.release);
  EXPECT_TRUE(d.contract_allowed);
  EXPECT_EQ(d.start, (std::vector<std::string>{"shard_01"}));
  m[1].parked = m[1].ready = false;  // one in flight besides
  d = DecideRollout(r, m, 0, true);
  EXPECT_TRUE(d.start.empty());
  m[1].parked = m[1].ready = true;
  // Once released, it stays so: databases re-reading their gates do not hold the rest.
  m[0].parked = m[0].ready = false;
  m[1].parked = m[1].ready = false;
  m[3].ready = false;
  m[3].state = PlanState::kContracting;
  d = DecideRollout(r, m, 0, /*released=*/true);
  EXPECT_TRUE(d.contract_allowed);
  EXPECT_TRUE(d.start.empty()) << "three in flight, max_parallel 2";
  m[0].state = m[1].state = m[3].state = PlanState::kDone;
  EXPECT_EQ(DecideRollout(r, m, 0, true).start, std::vector<std::string>{"shard_03"});
  // A tided that restarted knows the release from a database that is contracting or done, and
  // the canary, read its gates again, holds none back.
  m[0].state = PlanState::kGating;
  m[0].ready = m[0].parked = false;
  d = DecideRollout(r, m);
  EXPECT_TRUE(d.release);
  EXPECT_FALSE(d.canary);
  EXPECT_EQ(d.start, std::vector<std::string>{"shard_03"});
}

TEST(Rollout, ParkedDatabasesRestartWithinTheServersBudget) {
  auto m = ParkedFleet(3);
  const Rollout r = Spec(0, 3, /*together=*/true);
  for (auto& x : m) {
    x.server = "pg-a:5432";
    x.sessions = 6;
  }
  EXPECT_EQ(DecideRollout(r, m, 13).start, (std::vector<std::string>{"shard_01", "shard_02"}));
}

}  // namespace
}  // namespace tide
