#include "runtime/server_health.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <thread>

namespace tide {
namespace {

using Clock = std::chrono::steady_clock;

// Answers every reading, counting those of the server's signals, and records what each asked.
class CountingProbe : public HealthProbe {
 public:
  Result<int64_t> QueryNumber(const std::string&, const StatementLimits&) override { return 0; }
  Result<int64_t> BackendPid() override { return 1; }
  bool ThroughPooler() const override { return pooled; }
  Result<HealthReading> ReadHealth(const HealthQuestions& q, const StatementLimits&) override {
    asked.push_back(q);
    if (q.server && fail_server) return Status::Retryable("connection lost", "08006");
    if (!q.server && fail_own) return Status::Fatal("throttle_query failed");
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
  bool fail_server = false, fail_own = false, pooled = false;
};

class CountingMetrics : public NullMetrics {
 public:
  void CountHealthReading(const std::string& server) override { ++readings[server]; }
  std::map<std::string, int> readings;
};

const StatementLimits kLimits{Millis(1000), Millis(5000)};

class ServerHealthTest : public ::testing::Test {
 protected:
  Clock::time_point now_ = Clock::now();
  CountingMetrics metrics_;
  ServerHealth board_{Millis(900), &metrics_, [this] { return now_; }};
};

TEST_F(ServerHealthTest, TwoDatabasesOnOneServerShareOneReadingPerInterval) {
  CountingProbe a, b;
  HealthQuestions q;
  ASSERT_TRUE(board_.Read("pg-a:5432", q, a, kLimits).ok());
  now_ += Millis(300);
  b.blocked = 3;
  auto second = board_.Read("pg-a:5432", q, b, kLimits);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(a.server_readings + b.server_readings, 1);
  EXPECT_EQ(second->current_lsn, 1000) << "the first reading's server signals";
  EXPECT_EQ(second->blocked_by_us, 3) << "its own blocked sessions, read now";
  EXPECT_FALSE(b.asked.back().server);
  EXPECT_EQ(metrics_.readings["pg-a:5432"], 1);
  // Once the reading is older than the interval, the next asker reads the server again.
  now_ += Millis(700);
  ASSERT_TRUE(board_.Read("pg-a:5432", q, b, kLimits).ok());
  EXPECT_EQ(b.server_readings, 1);
  EXPECT_EQ(metrics_.readings["pg-a:5432"], 2);
}

TEST_F(ServerHealthTest, DatabasesOnOtherServersReadTheirOwn) {
  CountingProbe a, b;
  ASSERT_TRUE(board_.Read("pg-a:5432", {}, a, kLimits).ok());
  ASSERT_TRUE(board_.Read("pg-b:5432", {}, b, kLimits).ok());
  EXPECT_EQ(a.server_readings, 1);
  EXPECT_EQ(b.server_readings, 1);
}

TEST_F(ServerHealthTest, EveryTideSessionOnTheServerIsLeftOutOfTheApplications) {
  int owner_a = 0, owner_b = 0, owner_c = 0;
  board_.Track("pg-a:5432", &owner_a, {11, 12});
  board_.Track("pg-a:5432", &owner_b, {21});
  board_.Track("pg-b:5432", &owner_c, {31});
  CountingProbe p;
  HealthQuestions q;
  q.our_pids = {11, 12};
  ASSERT_TRUE(board_.Read("pg-a:5432", q, p, kLimits).ok());
  EXPECT_EQ(p.asked.back().our_pids, (std::vector<int64_t>{11, 12})) << "blocked: its own sessions";
  EXPECT_EQ(p.asked.front().tide_pids, (std::vector<int64_t>{11, 12, 21}));
  board_.Forget(&owner_b);
  now_ += Millis(2000);
  ASSERT_TRUE(board_.Read("pg-a:5432", q, p, kLimits).ok());
  EXPECT_EQ(p.asked.back().tide_pids, (std::vector<int64_t>{11, 12}));
}

TEST_F(ServerHealthTest, AReadingThatAskedLessIsNotShared) {
  CountingProbe a, b;
  ASSERT_TRUE(board_.Read("s", {}, a, kLimits).ok());
  HealthQuestions slots;
  slots.slots = true;
  now_ += Millis(100);
  ASSERT_TRUE(board_.Read("s", slots, b, kLimits).ok());
  EXPECT_EQ(b.server_readings, 1) << "the slots were not read before";
  now_ += Millis(100);
  ASSERT_TRUE(board_.Read("s", {}, a, kLimits).ok());
  EXPECT_EQ(a.server_readings, 1) << "the reading with the slots answers a backfill that asks less";
}

TEST_F(ServerHealthTest, AFailedServerReadingHoldsEveryBackfillOnItUntilTheNext) {
  CountingProbe a, b;
  a.fail_server = true;
  EXPECT_FALSE(board_.Read("s", {}, a, kLimits).ok());
  now_ += Millis(10);
  EXPECT_FALSE(board_.Read("s", {}, b, kLimits).ok()) << "the failed reading holds b too";
  EXPECT_EQ(b.server_readings, 0);
  now_ += Millis(1000);
  ASSERT_TRUE(board_.Read("s", {}, b, kLimits).ok());
  EXPECT_EQ(b.server_readings, 1);
}

TEST_F(ServerHealthTest, AFailureOfOneBackfillsOwnQuestionsIsNotShared) {
  CountingProbe a, b;
  a.fail_own = true;
  EXPECT_FALSE(board_.Read("s", {}, a, kLimits).ok());
  now_ += Millis(10);
  EXPECT_TRUE(board_.Read("s", {}, b, kLimits).ok());
  EXPECT_EQ(a.server_readings + b.server_readings, 1);
}

TEST_F(ServerHealthTest, WithoutAServerOrThroughAPoolerNothingIsShared) {
  CountingProbe a, p;
  ASSERT_TRUE(board_.Read("", {}, a, kLimits).ok());
  ASSERT_TRUE(board_.Read("", {}, a, kLimits).ok());
  EXPECT_EQ(a.server_readings, 2);
  p.pooled = true;
  ASSERT_TRUE(board_.Read("bouncer:6432", {}, p, kLimits).ok());
  ASSERT_TRUE(board_.Read("bouncer:6432", {}, p, kLimits).ok());
  EXPECT_EQ(p.server_readings, 2);
}

// A probe whose server reading waits until released, to hold it in flight.
class SlowProbe : public CountingProbe {
 public:
  Result<HealthReading> ReadHealth(const HealthQuestions& q, const StatementLimits& l) override {
    if (q.server) {
      std::unique_lock<std::mutex> lock(mu);
      in_flight = true;
      cv.notify_all();
      cv.wait(lock, [&] { return released; });
    }
    std::lock_guard<std::mutex> lock(count_mu);
    return CountingProbe::ReadHealth(q, l);
  }
  std::mutex mu, count_mu;
  std::condition_variable cv;
  bool in_flight = false, released = false;
};

TEST_F(ServerHealthTest, WhileOneBackfillReadsTheServerOthersTakeARecentReadingWithoutWaiting) {
  SlowProbe slow;
  CountingProbe other;
  ASSERT_TRUE(board_.Read("s", {}, other, kLimits).ok());  // a reading at t0
  now_ += Millis(1000);                                     // stale for sharing, recent for waiting
  std::thread reader([&] { EXPECT_TRUE(board_.Read("s", {}, slow, kLimits).ok()); });
  {
    std::unique_lock<std::mutex> lock(slow.mu);
    slow.cv.wait(lock, [&] { return slow.in_flight; });
  }
  auto r = board_.Read("s", {}, other, kLimits);  // does not block on the slow reading
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->current_lsn, 1000);
  {
    std::lock_guard<std::mutex> lock(slow.mu);
    slow.released = true;
  }
  slow.cv.notify_all();
  reader.join();
  EXPECT_EQ(slow.server_readings, 1);
}

}  // namespace
}  // namespace tide
