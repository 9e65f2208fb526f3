// One health reading per PostgreSQL server, shared by the backfills of all its databases.
//
// The server's signals (WAL positions and the standbys' replay, the application's sessions, the
// archive, the replication slots, the oldest transaction, the checkpoints) are the same seen from
// any of its databases: they are read once per server and interval, by whichever backfill asks
// first, and every backfill on that server decides from that same reading, so they hold and go
// on together. A failed reading is shared too: they all hold (health_unknown) until the next.
// Each backfill still reads what is its own: the sessions its own sessions block, autovacuum on
// its table, its throttle_query. Every session of tide's on the server (tracked here) is left
// out of the application's sessions, so that the backfills of one server's databases do not
// count each other as load. A database reached through a transaction pooler shares nothing: the
// server behind the pooler is not known.
//
// Thread-safety: every method may be called from any thread. One backfill at a time reads a
// server; one that asks meanwhile takes the last reading if it is recent (3 intervals), else
// waits for the reading under way. Its own questions are read outside every lock.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "tide/ports.h"

namespace tide {

class ServerHealth {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  // A reading younger than `max_age` is shared; `metrics` counts the readings of each server.
  ServerHealth(Millis max_age, Metrics* metrics = nullptr, Clock clock = std::chrono::steady_clock::now);

  // The sessions of `owner` (a backfill) on `server` from now on (replacing earlier ones).
  void Track(const std::string& server, const void* owner, std::vector<int64_t> pids);
  void Forget(const void* owner);

  // The health for `q` on `server` through `probe` (a session on one of its databases): the
  // server's signals from a reading younger than max_age when there is one that asked at least
  // what `q` asks, else read now; `q`'s own questions always read now. An empty `server`, or a
  // probe through a pooler, shares nothing.
  Result<HealthReading> Read(const std::string& server, HealthQuestions q, HealthProbe& probe,
                             const StatementLimits& limits);

 private:
  struct Server {
    std::timed_mutex reading;  // held by the backfill reading this server now
    // Guarded by ServerHealth::mu_:
    bool have = false;
    std::chrono::steady_clock::time_point at;
    HealthQuestions asked;
    Result<HealthReading> last = Status::Fatal("not read");
  };
  Server& ServerNamed(const std::string& server);
  std::vector<int64_t> TidePids(const std::string& server, const std::vector<int64_t>& own);
  // The last reading of `s` if it answers `q` and is younger than `age`.
  std::optional<Result<HealthReading>> Recent(Server& s, const HealthQuestions& q, Millis age);
  // `shared`'s server signals with `q`'s own questions read now.
  Result<HealthReading> WithOwn(const Result<HealthReading>& shared, HealthQuestions q,
                                HealthProbe& probe, const StatementLimits& limits);

  const Millis max_age_;
  Metrics* const metrics_;
  const Clock clock_;
  std::mutex mu_;  // guards servers_ (and each Server's reading, not its `reading` mutex), sessions_
  std::map<std::string, std::unique_ptr<Server>> servers_;
  std::map<const void*, std::pair<std::string, std::vector<int64_t>>> sessions_;
};

// Whether a reading that asked `had` answers what `want` asks of the server.
bool Covers(const HealthQuestions& had, const HealthQuestions& want);

}  // namespace tide
