#include "runtime/server_health.h"

#include <gtest/gtest.h>

namespace tide {
namespace {

using Clock = std::chrono::steady_clock;

// Answers every reading with its own count, and records what each reading asked.
class CountingProbe : public HealthProbe {
 public:
  Result<int64_t> QueryNumber(const std::string&, const StatementLimits&) override { return 0; }
  Result<int64_t> BackendPid() override { return 1; }
  Result<HealthReading> ReadHealth(const HealthQuestions& q, const StatementLimits&) override {
    asked.push_back(q);
    if (fail) return Status::Retryable("connection lost", "08006");
    HealthReading h;
    if (q.server) {
      ++server_readings;
      h.current_lsn = 1000 * server_readings;
      h.active_sessions = server_readings;
    }
    h.blocked_by_us = blocked;
    h.autovacuum = q.autovacuum;
    return h;
  }
  std::vector<HealthQuestions> asked;
  int server_readings = 0;
  int64_t blocked = 0;
  bool fail = false;
};

class CountingMetrics : public NullMetrics {
 public:
  void CountHealthReading(const std::string& server) override { ++readings[server]; }
  std::map<std::string, int> readings;
};

const StatementLimits kLimits{Millis(1000), Millis(5000)};

TEST(ServerHealth, TwoDatabasesOnOneServerShareOneReadingPerInterval) {
  CountingMetrics metrics;
  ServerHealth board(Millis(900), &metrics);
  CountingProbe a, b;
  const auto t0 = Clock::now();
  HealthQuestions q;
  ASSERT_TRUE(board.Read("pg-a:5432", q, a, kLimits, t0).ok());
  b.blocked = 3;
  auto second = board.Read("pg-a:5432", q, b, kLimits, t0 + Millis(300));
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(a.server_readings + b.server_readings, 1);
  EXPECT_EQ(second->current_lsn, 1000) << "the first reading's server signals";
  EXPECT_EQ(second->blocked_by_us, 3) << "its own blocked sessions, read now";
  EXPECT_FALSE(b.asked.back().server);
  EXPECT_EQ(metrics.readings["pg-a:5432"], 1);
  // Once the reading is older than the interval, the next asker reads the server again.
  ASSERT_TRUE(board.Read("pg-a:5432", q, b, kLimits, t0 + Millis(1000)).ok());
  EXPECT_EQ(b.server_readings, 1);
  EXPECT_EQ(metrics.readings["pg-a:5432"], 2);
}

TEST(ServerHealth, DatabasesOnOtherServersReadTheirOwn) {
  ServerHealth board(Millis(900));
  CountingProbe a, b;
  const auto t0 = Clock::now();
  ASSERT_TRUE(board.Read("pg-a:5432", {}, a, kLimits, t0).ok());
  ASSERT_TRUE(board.Read("pg-b:5432", {}, b, kLimits, t0).ok());
  EXPECT_EQ(a.server_readings, 1);
  EXPECT_EQ(b.server_readings, 1);
}

TEST(ServerHealth, EveryTideSessionOnTheServerIsLeftOutOfTheApplications) {
  ServerHealth board(Millis(900));
  int owner_a = 0, owner_b = 0, owner_c = 0;
  board.Track("pg-a:5432", &owner_a, {11, 12});
  board.Track("pg-a:5432", &owner_b, {21});
  board.Track("pg-b:5432", &owner_c, {31});
  CountingProbe p;
  HealthQuestions q;
  q.our_pids = {11, 12};
  ASSERT_TRUE(board.Read("pg-a:5432", q, p, kLimits, Clock::now()).ok());
  EXPECT_EQ(p.asked.back().our_pids, (std::vector<int64_t>{11, 12})) << "blocked: its own sessions";
  EXPECT_EQ(p.asked.back().tide_pids, (std::vector<int64_t>{11, 12, 21}));
  board.Forget(&owner_b);
  ASSERT_TRUE(board.Read("pg-a:5432", q, p, kLimits, Clock::now() + Millis(2000)).ok());
  EXPECT_EQ(p.asked.back().tide_pids, (std::vector<int64_t>{11, 12}));
}

TEST(ServerHealth, AReadingThatAskedLessIsNotShared) {
  ServerHealth board(Millis(900));
  CountingProbe a, b;
  const auto t0 = Clock::now();
  ASSERT_TRUE(board.Read("s", {}, a, kLimits, t0).ok());
  HealthQuestions slots;
  slots.slots = true;
  ASSERT_TRUE(board.Read("s", slots, b, kLimits, t0 + Millis(100)).ok());
  EXPECT_EQ(b.server_readings, 1) << "the slots were not read before";
  EXPECT_TRUE(b.asked.back().slots);
  // From now on, a reading asks what either asked, and serves both.
  CountingProbe c;
  ASSERT_TRUE(board.Read("s", {}, c, kLimits, t0 + Millis(1500)).ok());
  EXPECT_TRUE(c.asked.back().slots);
  ASSERT_TRUE(board.Read("s", slots, a, kLimits, t0 + Millis(1600)).ok());
  EXPECT_FALSE(a.asked.back().server);
}

TEST(ServerHealth, AFailedReadingIsNotSharedAndTheNextAskerReads) {
  ServerHealth board(Millis(900));
  CountingProbe a, b;
  const auto t0 = Clock::now();
  a.fail = true;
  EXPECT_FALSE(board.Read("s", {}, a, kLimits, t0).ok());
  ASSERT_TRUE(board.Read("s", {}, b, kLimits, t0 + Millis(10)).ok());
  EXPECT_EQ(b.server_readings, 1);
  // A failed reading of its own parts fails the asker, even with a fresh server reading.
  a.fail = true;
  EXPECT_FALSE(board.Read("s", {}, a, kLimits, t0 + Millis(20)).ok());
}

TEST(ServerHealth, WithoutAServerNothingIsShared) {
  ServerHealth board(Millis(900));
  CountingProbe a;
  const auto t0 = Clock::now();
  ASSERT_TRUE(board.Read("", {}, a, kLimits, t0).ok());
  ASSERT_TRUE(board.Read("", {}, a, kLimits, t0).ok());
  EXPECT_EQ(a.server_readings, 2);
}

}  // namespace
}  // namespace tide
