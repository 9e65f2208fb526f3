#include "obs/prometheus_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "engine/live_settings.h"
#include "tide/version.h"

#include <algorithm>
#include <chrono>
#include <map>

namespace tide {

struct PrometheusMetrics::Families {
  prometheus::Family<prometheus::Gauge>& plan_state;
  prometheus::Family<prometheus::Counter>& rows;
  prometheus::Family<prometheus::Gauge>& rows_estimated;
  prometheus::Family<prometheus::Counter>& batches;
  prometheus::Family<prometheus::Histogram>& batch_duration;
  prometheus::Family<prometheus::Counter>& plans;
  prometheus::Family<prometheus::Gauge>& build_info;
  prometheus::Family<prometheus::Gauge>& batch_size;
  prometheus::Family<prometheus::Gauge>& workers;
  prometheus::Family<prometheus::Gauge>& eta;
  prometheus::Family<prometheus::Gauge>& throttled;
  prometheus::Family<prometheus::Counter>& throttle_seconds;
  prometheus::Family<prometheus::Gauge>& yield_sessions;
  prometheus::Family<prometheus::Gauge>& yield_rest;
  prometheus::Family<prometheus::Gauge>& replication_lag;
  prometheus::Family<prometheus::Gauge>& gate_remaining;
  prometheus::Family<prometheus::Histogram>& ddl_duration;
  prometheus::Family<prometheus::Counter>& lock_timeouts;
  prometheus::Family<prometheus::Counter>& retries;
  prometheus::Family<prometheus::Gauge>& last_progress;
  prometheus::Family<prometheus::Gauge>& paused;
  prometheus::Family<prometheus::Gauge>& audit_writable;
  prometheus::Family<prometheus::Gauge>& unfillable;
  prometheus::Family<prometheus::Gauge>& switch_lock;
  prometheus::Family<prometheus::Gauge>& live_setting;
  prometheus::Family<prometheus::Counter>& blockers_ended;
  prometheus::Family<prometheus::Counter>& vacuums;
  prometheus::Family<prometheus::Gauge>& verify_differing;
  prometheus::Family<prometheus::Gauge>& rollout_databases;
  prometheus::Family<prometheus::Gauge>& rollout_halted;
  prometheus::Family<prometheus::Counter>& health_readings;
};

PrometheusMetrics::PrometheusMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  f_.reset(new Families{
      prometheus::BuildGauge()
          .Name("tide_plan_state")
          .Help("1 for the plan's current state, 0 for the others")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_backfill_rows_total")
          .Help("Rows updated by backfill batches")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_backfill_rows_estimated")
          .Help("Estimated rows of the backfilled table (pg_class.reltuples)")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_backfill_batches_total")
          .Help("Backfill batches by outcome")
          .Register(r),
      prometheus::BuildHistogram()
          .Name("tide_backfill_batch_duration_seconds")
          .Help("Duration of one backfill batch, update and checkpoint")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_plans_total")
          .Help("Plans finished, by outcome")
          .Register(r),
      prometheus::BuildGauge().Name("tide_build_info").Help("tide's version").Register(r),
      prometheus::BuildGauge()
          .Name("tide_backfill_batch_size")
          .Help("Rows the next backfill batch will take")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_backfill_workers")
          .Help("Workers filling the task now")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_backfill_eta_seconds")
          .Help("Estimated seconds to the end of the task, at the rate of the last minute of "
                "unthrottled work; -1 when unknown")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_throttled")
          .Help("1 while the plan is slowed down or waiting, by reason")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_throttle_seconds_total")
          .Help("Seconds the plan was throttled, by reason")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_yielding_sessions")
          .Help("Other sessions in a transaction that the plan's backfill yields to (smaller "
                "batches, a rest after each); 0 at full speed")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_yield_rest_ratio")
          .Help("The rest after each batch while the backfill yields, in multiples of the "
                "batch's duration (yield_ratio x sessions, at most 20); 0 at full speed")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_replication_lag_seconds")
          .Help("Replay lag of the slowest standby, as tide measures it")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_gate_remaining")
          .Help("The last value of the gate's query (null_count: rows still NULL)")
          .Register(r),
      prometheus::BuildHistogram()
          .Name("tide_ddl_statement_duration_seconds")
          .Help("Duration of each expand and contract step")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_ddl_lock_timeouts_total")
          .Help("Steps that gave up waiting for a lock (lock_timeout)")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_retries_total")
          .Help("Retried errors by kind")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_last_progress_timestamp_seconds")
          .Help("Unix time of the plan's last committed batch")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_plan_paused")
          .Help("1 while the plan is paused by an operator")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_audit_log_writable")
          .Help("0 while the audit log cannot be written; tide then starts no new work")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_backfill_rows_unfillable")
          .Help("Rows still pending whose expression yields NULL, as the last sweep found them; "
                "they are not rewritten, and a null_count gate on them waits")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_switch_lock_held_seconds")
          .Help("How long the switch of alter_column and rename steps held its ACCESS EXCLUSIVE "
                "locks, the last time it ran")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_live_setting")
          .Help("A setting an operator changed on the running plan (tidectl set), by name; "
                "durations in seconds")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_blocking_sessions_ended_total")
          .Help("Sessions the blocker policy cancelled or terminated, by action")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_vacuums_total")
          .Help("VACUUMs tide ran between backfill batches")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_verify_differing_rows")
          .Help("Rows whose stored value differs from their expression, as the last "
                "verification found them; contract waits while it is above 0")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_rollout_databases")
          .Help("The databases of a plan's rollout over a database group, by state "
                "(waiting, backfilling, ready, done, failed...)")
          .Register(r),
      prometheus::BuildGauge()
          .Name("tide_rollout_halted")
          .Help("1 while a plan's rollout is halted by a failed database")
          .Register(r),
      prometheus::BuildCounter()
          .Name("tide_server_health_readings_total")
          .Help("Readings of a server's health signals, shared by the backfills of its databases")
          .Register(r),
  });
  f_->build_info.Add({{"version", kTideVersion}}).Set(1);
  f_->audit_writable.Add({}).Set(1);
}

PrometheusMetrics::~PrometheusMetrics() = default;

void PrometheusMetrics::SetPlanState(const std::string& plan, const std::string& database,
                                     PlanState state) {
  for (PlanState s : AllPlanStates()) {
    f_->plan_state.Add({{"plan", plan}, {"database", database}, {"state", ToString(s)}})
        .Set(s == state ? 1 : 0);
  }
}

void PrometheusMetrics::SetBackfillEstimate(const std::string& plan, const std::string& database,
                                            const std::string& table, int64_t rows) {
  f_->rows_estimated.Add({{"plan", plan}, {"database", database}, {"table", table}})
      .Set(static_cast<double>(rows));
}

void PrometheusMetrics::SetBackfillShape(const std::string& plan, const std::string& database,
                                         const std::string& table, int64_t batch_size,
                                         int workers, int64_t eta_seconds) {
  const std::map<std::string, std::string> labels = {
      {"plan", plan}, {"database", database}, {"table", table}};
  f_->batch_size.Add(labels).Set(static_cast<double>(batch_size));
  f_->workers.Add(labels).Set(workers);
  f_->eta.Add(labels).Set(static_cast<double>(eta_seconds));
}

void PrometheusMetrics::SetThrottled(const std::string& plan, const std::string& reason,
                                     bool active, double seconds) {
  f_->throttled.Add({{"plan", plan}, {"reason", reason}}).Set(active ? 1 : 0);
  f_->throttle_seconds.Add({{"plan", plan}, {"reason", reason}}).Increment(seconds);
}

void PrometheusMetrics::SetYield(const std::string& plan, int64_t sessions, double rest) {
  f_->yield_sessions.Add({{"plan", plan}}).Set(static_cast<double>(sessions));
  f_->yield_rest.Add({{"plan", plan}}).Set(rest);
}

void PrometheusMetrics::SetReplicationLag(const std::string& database, double seconds) {
  f_->replication_lag.Add({{"database", database}}).Set(seconds);
}

void PrometheusMetrics::RecordBatch(const std::string& plan, const std::string& database,
                                    const std::string& table, int64_t rows, double seconds,
                                    const std::string& outcome) {
  f_->batches.Add({{"plan", plan}, {"database", database}, {"table", table}, {"outcome", outcome}})
      .Increment();
  if (outcome != "committed") return;
  const std::map<std::string, std::string> labels = {
      {"plan", plan}, {"database", database}, {"table", table}};
  f_->rows.Add(labels).Increment(static_cast<double>(rows));
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  f_->batch_duration.Add(labels, buckets).Observe(seconds);
}

void PrometheusMetrics::SetGateRemaining(const std::string& plan, const std::string& gate,
                                         int64_t value) {
  f_->gate_remaining.Add({{"plan", plan}, {"gate", gate}}).Set(static_cast<double>(value));
}

void PrometheusMetrics::RecordSwitch(const std::string& plan, double lock_held_seconds) {
  f_->switch_lock.Add({{"plan", plan}}).Set(lock_held_seconds);
}

void PrometheusMetrics::SetLiveSettings(const std::string& plan,
                                        const std::vector<std::pair<std::string, double>>& values) {
  for (const auto& key : LiveSettingKeys()) {
    auto it = std::find_if(values.begin(), values.end(), [&](const auto& v) { return v.first == key; });
    const std::map<std::string, std::string> labels{{"plan", plan}, {"setting", key}};
    if (it != values.end()) {
      f_->live_setting.Add(labels).Set(it->second);
    } else if (f_->live_setting.Has(labels)) {
      f_->live_setting.Remove(&f_->live_setting.Add(labels));
    }
  }
}

void PrometheusMetrics::CountBlockerEnded(const std::string& plan, const std::string& action) {
  f_->blockers_ended.Add({{"plan", plan}, {"action", action}}).Increment();
}

void PrometheusMetrics::CountVacuum(const std::string& plan, const std::string& table) {
  f_->vacuums.Add({{"plan", plan}, {"table", table}}).Increment();
}

void PrometheusMetrics::SetVerifyDiffering(const std::string& plan, const std::string& table,
                                           int64_t rows) {
  f_->verify_differing.Add({{"plan", plan}, {"table", table}}).Set(static_cast<double>(rows));
}

void PrometheusMetrics::SetUnfillable(const std::string& plan, const std::string& table,
                                      int64_t rows) {
  f_->unfillable.Add({{"plan", plan}, {"table", table}}).Set(static_cast<double>(rows));
}

void PrometheusMetrics::RecordDdl(const std::string& plan, const std::string& phase,
                                  double seconds) {
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 300, 1800};
  f_->ddl_duration.Add({{"plan", plan}, {"phase", phase}}, buckets).Observe(seconds);
}

void PrometheusMetrics::CountLockTimeout(const std::string& plan) {
  f_->lock_timeouts.Add({{"plan", plan}}).Increment();
}

void PrometheusMetrics::CountRetry(const std::string& plan, const std::string& kind) {
  f_->retries.Add({{"plan", plan}, {"kind", kind}}).Increment();
}

void PrometheusMetrics::MarkProgress(const std::string& plan) {
  const double now = std::chrono::duration<double>(
                         std::chrono::system_clock::now().time_since_epoch()).count();
  f_->last_progress.Add({{"plan", plan}}).Set(now);
}

void PrometheusMetrics::SetPaused(const std::string& plan, bool paused) {
  f_->paused.Add({{"plan", plan}}).Set(paused ? 1 : 0);
}

void PrometheusMetrics::SetAuditWritable(bool writable) {
  f_->audit_writable.Add({}).Set(writable ? 1 : 0);
}

void PrometheusMetrics::PlanStarted(const std::string& plan) {
  f_->paused.Add({{"plan", plan}});
  f_->lock_timeouts.Add({{"plan", plan}});
  f_->yield_sessions.Add({{"plan", plan}});
  f_->yield_rest.Add({{"plan", plan}});
  for (const char* kind : {"lock_timeout", "statement_timeout", "serialization", "deadlock",
                           "connection", "in_doubt", "other"}) {
    f_->retries.Add({{"plan", plan}, {"kind", kind}});
  }
  for (const char* reason : {"replication_lag", "active_sessions", "blocking", "throttle_query",
                             "health_unknown"}) {
    f_->throttled.Add({{"plan", plan}, {"reason", reason}});
    f_->throttle_seconds.Add({{"plan", plan}, {"reason", reason}});
  }
}

void PrometheusMetrics::PlanFinished(const std::string& database, const std::string& outcome) {
  f_->plans.Add({{"database", database}, {"outcome", outcome}}).Increment();
}

void PrometheusMetrics::SetRollout(const std::string& plan, const std::string& group,
                                   const std::map<std::string, int>& databases, bool halted) {
  std::lock_guard<std::mutex> lock(rollout_mu_);
  auto& known = rollout_states_[plan];
  for (const auto& [state, n] : databases) known.insert(state);
  for (const auto& state : known) {
    auto it = databases.find(state);
    f_->rollout_databases.Add({{"plan", plan}, {"group", group}, {"state", state}})
        .Set(it == databases.end() ? 0 : it->second);
  }
  f_->rollout_halted.Add({{"plan", plan}, {"group", group}}).Set(halted ? 1 : 0);
}

void PrometheusMetrics::CountHealthReading(const std::string& server) {
  f_->health_readings.Add({{"server", server}}).Increment();
}

}  // namespace tide
