// One health reading per PostgreSQL server, shared by the backfills of all its databases.
//
// The server's signals (WAL positions and the standbys' replay, the application's sessions, the
// archive, the replication slots, the oldest transaction, the checkpoints) are the same seen from
// any of its databases: they are read once per server and interval, by whichever backfill asks
// first, and every backfill on that server decides from that same reading, so they hold and go
// on together. Each backfill still reads what is its own: the sessions its own sessions block,
// autovacuum on its table, its throttle_query. Every session of tide's on the server (tracked
// here) is left out of the application's sessions, so that the backfills of one server's
// databases do not count each other as load.
//
// Thread-safety: every method may be called from any thread. A reading of a server holds that
// server's own mutex while it runs, so that the backfills asking meanwhile wait for it and take
// it instead of reading again.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "tide/ports.h"

namespace tide {

class ServerHealth {
 public:
  // A reading younger than `max_age` is shared; `metrics` counts the readings of each server.
  explicit ServerHealth(Millis max_age, Metrics* metrics = nullptr);

  // The sessions of `owner` (a backfill) on `server` from now on (replacing earlier ones).
  void Track(const std::string& server, const void* owner, std::vector<int64_t> pids);
  void Forget(const void* owner);

  // The health for `q` on `server` through `probe` (a session on one of its databases): the
  // server's signals from a reading younger than max_age when there is one that asked at least
  // what `q` asks, else read now; `q`'s own questions always read now. An empty `server` shares
  // nothing.
  Result<HealthReading> Read(const std::string& server, HealthQuestions q, HealthProbe& probe,
                             const StatementLimits& limits, std::chrono::steady_clock::time_point now);

 private:
  struct Server {
    std::mutex reading;  // held while this server is read
    bool have = false;   // guarded by reading
    std::chrono::steady_clock::time_point at;
    HealthQuestions asked;
    HealthReading last;
  };
  Server& ServerNamed(const std::string& server);
  std::vector<int64_t> TidePids(const std::string& server, const std::vector<int64_t>& own);

  const Millis max_age_;
  Metrics* const metrics_;
  std::mutex mu_;  // guards servers_ (not their readings) and sessions_
  std::map<std::string, std::unique_ptr<Server>> servers_;
  std::map<const void*, std::pair<std::string, std::vector<int64_t>>> sessions_;
};

// Whether a reading that asked `had` answers what `want` asks of the server.
bool Covers(const HealthQuestions& had, const HealthQuestions& want);

}  // namespace tide
