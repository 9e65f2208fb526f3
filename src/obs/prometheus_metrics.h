// Metrics on prometheus-cpp. The registry is exposed by tided's single Exposer. Thread-safe.
#pragma once

#include <memory>
#include <set>
#include <map>
#include <mutex>
#include <string>

#include "tide/ports.h"

namespace prometheus {
class Registry;
}

namespace tide {

class PrometheusMetrics : public Metrics {
 public:
  PrometheusMetrics();
  ~PrometheusMetrics() override;

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }

  void SetPlanState(const std::string& plan, const std::string& database,
                    PlanState state) override;
  void SetBackfillEstimate(const std::string& plan, const std::string& database,
                           const std::string& table, int64_t rows) override;
  void RecordBatch(const std::string& plan, const std::string& database, const std::string& table,
                   int64_t rows, double seconds, const std::string& outcome) override;
  void SetBackfillShape(const std::string& plan, const std::string& database,
                        const std::string& table, int64_t batch_size, int workers,
                        int64_t eta_seconds) override;
  void SetThrottled(const std::string& plan, const std::string& reason, bool active,
                    double seconds) override;
  void SetYield(const std::string& plan, int64_t sessions, double rest) override;
  void SetReplicationLag(const std::string& database, double seconds) override;
  void SetGateRemaining(const std::string& plan, const std::string& gate, int64_t value) override;
  void SetUnfillable(const std::string& plan, const std::string& table, int64_t rows) override;
  void RecordSwitch(const std::string& plan, double lock_held_seconds) override;
  void SetLiveSettings(const std::string& plan,
                       const std::vector<std::pair<std::string, double>>& values) override;
  void CountBlockerEnded(const std::string& plan, const std::string& action) override;
  void CountVacuum(const std::string& plan, const std::string& table) override;
  void SetVerifyDiffering(const std::string& plan, const std::string& table, int64_t rows) override;
  void RecordDdl(const std::string& plan, const std::string& phase, double seconds) override;
  void CountLockTimeout(const std::string& plan) override;
  void CountRetry(const std::string& plan, const std::string& kind) override;
  void MarkProgress(const std::string& plan) override;
  void SetPaused(const std::string& plan, bool paused) override;
  void PlanStarted(const std::string& plan) override;
  void SetAuditWritable(bool writable) override;
  void PlanFinished(const std::string& database, const std::string& outcome) override;
  void SetRollout(const std::string& plan, const std::string& group,
                  const std::map<std::string, int>& databases, bool halted) override;
  void CountHealthReading(const std::string& server) override;

 private:
  std::mutex rollout_mu_;
  std::map<std::string, std::set<std::string>> rollout_states_;  // per plan: states shown
  struct Families;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<Families> f_;
};

}  // namespace tide
