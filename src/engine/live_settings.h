// Settings an operator changes on a running plan: `tidectl set PLAN key=value ...`. Stored with
// the plan (they outlive a restart) and laid over the plan's own values. Pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/throttle.h"
#include "tide/status.h"

namespace tide {

struct LiveSettings {
  std::optional<int64_t> max_rows_per_second;  // 0: no cap
  std::optional<int64_t> batch_size;           // fixes every batch at this size
  std::optional<Millis> target_batch_time;
  std::optional<int64_t> workers;
  std::optional<double> yield_ratio;
  std::optional<Millis> pause_between_batches;
  std::optional<Millis> max_replication_lag;  // 0: off

  bool empty() const;
};

// The settings tidectl set accepts, in the order Format writes them.
const std::vector<std::string>& LiveSettingKeys();

// A change: "key=value" items (value `default` removes the live value, back to the plan's).
// The error names the item and what is accepted.
struct LiveChange {
  LiveSettings set;
  std::vector<std::string> cleared;  // keys set to `default`
};
Result<LiveChange> ParseLiveChange(const std::vector<std::string>& items);
// The same from the items in one string, separated by spaces (a control request's `settings`).
Result<LiveChange> ParseLiveChange(const std::string& text);
// The change as key=value items, the cleared ones as key=default (for the audit log).
std::string DescribeChange(const LiveChange& change);

// "max_rows_per_second=5000 batch_size=2000": what Parse reads back.
std::string FormatLiveSettings(const LiveSettings& s);
Result<LiveSettings> ParseLiveSettings(const std::string& text);

LiveSettings ApplyChange(LiveSettings s, const LiveChange& change);

// The health limits with the live values over them.
HealthLimits Overlay(HealthLimits l, const LiveSettings& s);
// A task's options with the live values over them: batch_size is where every batch starts and
// its largest size (a statement timeout still halves it).
struct BackfillOptions;
BackfillOptions Overlay(BackfillOptions o, const LiveSettings& s);

// Each live value as a number for the metrics (durations in seconds).
std::vector<std::pair<std::string, double>> LiveValues(const LiveSettings& s);

}  // namespace tide
