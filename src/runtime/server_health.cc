#include "runtime/server_health.h"

#include <algorithm>

namespace tide {

bool Covers(const HealthQuestions& had, const HealthQuestions& want) {
  return (had.archive || !want.archive) && (had.slots || !want.slots) && (had.xmin || !want.xmin) &&
         (had.checkpoints || !want.checkpoints);
}

ServerHealth::ServerHealth(Millis max_age, Metrics* metrics) : max_age_(max_age), metrics_(metrics) {}

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

Result<HealthReading> ServerHealth::Read(const std::string& server, HealthQuestions q,
                                         HealthProbe& probe, const StatementLimits& limits,
                                         std::chrono::steady_clock::time_point now) {
  if (server.empty()) return probe.ReadHealth(q, limits);
  q.tide_pids = TidePids(server, q.our_pids);
  Server& s = ServerNamed(server);
  std::lock_guard<std::mutex> reading(s.reading);
  if (s.have && now - s.at < max_age_ && now >= s.at && Covers(s.asked, q)) {
    HealthQuestions own = q;
    own.server = false;
    auto r = probe.ReadHealth(own, limits);
    if (!r.ok()) return r;
    HealthReading merged = s.last;
    merged.blocked_by_us = r->blocked_by_us;
    merged.throttle_query_true = r->throttle_query_true;
    merged.autovacuum = r->autovacuum;
    return merged;
  }
  // What earlier readings asked is asked again, so that one reading serves every backfill.
  if (s.have) {
    q.archive |= s.asked.archive;
    q.slots |= s.asked.slots;
    q.xmin |= s.asked.xmin;
    q.checkpoints |= s.asked.checkpoints;
  }
  auto r = probe.ReadHealth(q, limits);
  if (metrics_) metrics_->CountHealthReading(server);
  if (!r.ok()) {
    s.have = false;  // the next backfill tries for itself
    return r;
  }
  s.have = true;
  s.at = now;
  s.asked = q;
  s.last = *r;
  return r;
}

}  // namespace tide
