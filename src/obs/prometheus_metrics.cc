#include "obs/prometheus_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "tide/version.h"

namespace tide {

struct PrometheusMetrics::Families {
  prometheus::Family<prometheus::Gauge>& plan_state;
  prometheus::Family<prometheus::Counter>& rows;
  prometheus::Family<prometheus::Gauge>& rows_estimated;
  prometheus::Family<prometheus::Counter>& batches;
  prometheus::Family<prometheus::Histogram>& batch_duration;
  prometheus::Family<prometheus::Counter>& plans;
  prometheus::Family<prometheus::Gauge>& build_info;
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
  });
  f_->build_info.Add({{"version", kTideVersion}}).Set(1);
}

PrometheusMetrics::~PrometheusMetrics() = default;

void PrometheusMetrics::SetPlanState(const std::string& plan, const std::string& database,
                                     PlanState state) {
  for (PlanState s : AllPlanStates()) {
    f_->plan_state.Add({{"plan", plan}, {"database", database}, {"state", ToString(s)}})
        .Set(s == state ? 1 : 0);
  }
}

void PrometheusMetrics::SetBackfillEstimate(const std::string& plan, const std::string& table,
                                            int64_t rows) {
  f_->rows_estimated.Add({{"plan", plan}, {"table", table}}).Set(static_cast<double>(rows));
}

void PrometheusMetrics::RecordBatch(const std::string& plan, const std::string& table,
                                    int64_t rows, double seconds) {
  f_->rows.Add({{"plan", plan}, {"table", table}}).Increment(static_cast<double>(rows));
  f_->batches.Add({{"plan", plan}, {"table", table}, {"outcome", "committed"}}).Increment();
  static const prometheus::Histogram::BucketBoundaries buckets = {
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  f_->batch_duration.Add({{"plan", plan}, {"table", table}}, buckets).Observe(seconds);
}

void PrometheusMetrics::PlanFinished(const std::string& database, const std::string& outcome) {
  f_->plans.Add({{"database", database}, {"outcome", outcome}}).Increment();
}

}  // namespace tide
