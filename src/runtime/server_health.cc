#include "runtime/server_health.h"

#include <algorithm>

namespace tide {

bool Covers(const HealthQuestions& had, const HealthQuestions& want) {
  return (had.archive || !want.archive) && (had.slots || !want.slots) && (had.xmin || !want.xmin) &&
         (had.checkpoints || !want.checkpoints);
}

ServerHealth::ServerHealth(Millis max_age, Metrics* metrics, Clock clock)
    : max_age_(max_age), metrics_(metrics), clock_(std::move(clock)) {}

void ServerHealth::Track(const std::string& server, const void* owner, std::vector<int64_t> pids) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_[owner] = {server, std::move(pids)};
}

void ServerHealth::Forget(const void* owner) {
  std::lock_guard<std::mutex> lock(mu_);
  sessions_.erase(owner);
}

ServerHealth::Server& ServerHealth::ServerNamed(const std::string& server) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& s = servers_[server];
  if (!s) s = std::make_unique<Server>();
  return *s;
}

std::vector<int64_t> ServerHealth::TidePids(const std::string& server, const std::vector<int64_t>& own) {
  std::vector<int64_t> out = own;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [owner, tracked] : sessions_) {
    if (tracked.first == server) out.insert(out.end(), tracked.second.begin(), tracked.second.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::optional<Result<HealthReading>> ServerHealth::Recent(Server& s, const HealthQuestions& q, Millis age) {
  const auto now = clock_();
  std::lock_guard<std::mutex> lock(mu_);
  if (!s.have || now < s.at || now - s.at >= age || !Covers(s.asked, q)) return std::nullopt;
  return s.last;
}

Result<HealthReading> ServerHealth::WithOwn(const Result<HealthReading>& shared, HealthQuestions q,
                                            HealthProbe& probe, const StatementLimits& limits) {
  if (!shared.ok()) return shared;  // the server could not be read: every backfill on it holds
  q.server = false;
  auto own = probe.ReadHealth(q, limits);
  if (!own.ok()) return own;
  HealthReading merged = *shared;
  merged.blocked_by_us = own->blocked_by_us;
  merged.throttle_query_true = own->throttle_query_true;
  merged.autovacuum = own->autovacuum;
  return merged;
}

Result<HealthReading> ServerHealth::Read(const std::string& server, HealthQuestions q,
                                         HealthProbe& probe, const StatementLimits& limits) {
  if (server.empty() || probe.ThroughPooler()) return probe.ReadHealth(q, limits);
  q.tide_pids = TidePids(server, q.our_pids);
  Server& s = ServerNamed(server);
  if (auto r = Recent(s, q, max_age_)) return WithOwn(*r, q, probe, limits);
  std::unique_lock<std::timed_mutex> reading(s.reading, std::try_to_lock);
  if (!reading.owns_lock()) {
    // Another backfill reads the server now: a reading of the last few intervals will do,
    // else this one waits a while for that reading, and holds if it does not come.
    if (auto r = Recent(s, q, max_age_ * 3)) return WithOwn(*r, q, probe, limits);
    if (!reading.try_lock_for(max_age_ * 3)) {
      return Status::Retryable("the server's health reading by another backfill takes too long");
    }
  }
  // A reading may have come between the look above and the lock.
  if (auto r = Recent(s, q, max_age_)) {
    reading.unlock();
    return WithOwn(*r, q, probe, limits);
  }
  // The server's part alone, so that what fails in this backfill's own part is not shared.
  HealthQuestions server_part = q;
  server_part.throttle_query.clear();
  server_part.autovacuum = false;
  auto r = probe.ReadHealth(server_part, limits);
  if (metrics_) metrics_->CountHealthReading(server);
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.have = true;
    s.at = clock_();
    s.asked = server_part;
    s.last = r;
  }
  reading.unlock();
  return WithOwn(r, q, probe, limits);
}

}  // namespace tide
