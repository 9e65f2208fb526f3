#include "engine/live_settings.h"

#include "engine/backfill.h"

#include <algorithm>
#include <sstream>

namespace tide {

namespace {

std::optional<int64_t> WholeNumber(const std::string& v, int64_t min, int64_t max) {
  try {
    size_t used = 0;
    const long long n = std::stoll(v, &used, 10);
    if (used == v.size() && n >= min && n <= max) return n;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

std::string FormatRatio(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// Sets `key` of *s from `value`; "" when it could, else what is wrong.
std::string SetOne(LiveSettings* s, const std::string& key, const std::string& value) {
  auto Int = [&](std::optional<int64_t>* field, int64_t min, int64_t max) -> std::string {
    auto n = WholeNumber(value, min, max);
    if (!n) return "`" + key + "=" + value + "`: not a whole number in " + std::to_string(min) +
                   ".." + std::to_string(max);
    *field = *n;
    return "";
  };
  auto Dur = [&](std::optional<Millis>* field, Millis min, Millis max) -> std::string {
    std::string error;
    auto d = ParseDuration(value, &error);
    if (!d) return "`" + key + "=" + value + "`: " + error;
    if (*d < min || *d > max) {
      return "`" + key + "=" + value + "`: must be between " + FormatDuration(min) + " and " +
             FormatDuration(max);
    }
    *field = *d;
    return "";
  };
  if (key == "max_rows_per_second") return Int(&s->max_rows_per_second, 0, 100000000);
  if (key == "batch_size") return Int(&s->batch_size, 1, 1000000);
  if (key == "workers") return Int(&s->workers, 1, 64);
  if (key == "target_batch_time") {
    return Dur(&s->target_batch_time, Millis(10), std::chrono::minutes(10));
  }
  if (key == "pause_between_batches") {
    return Dur(&s->pause_between_batches, Millis(0), std::chrono::minutes(10));
  }
  if (key == "max_replication_lag") {
    return Dur(&s->max_replication_lag, Millis(0), std::chrono::hours(24));
  }
  if (key == "yield_ratio") {
    try {
      size_t used = 0;
      const double v = std::stod(value, &used);
      if (used == value.size() && v >= 0 && v <= 10) return s->yield_ratio = v, "";
    } catch (const std::exception&) {
    }
    return "`" + key + "=" + value + "`: not a number from 0 to 10";
  }
  std::string known;
  for (const auto& k : LiveSettingKeys()) known += (known.empty() ? "" : ", ") + k;
  return "`" + key + "` is not a setting that can change while a plan runs; these can: " + known;
}

void Clear(LiveSettings* s, const std::string& key) {
  if (key == "max_rows_per_second") s->max_rows_per_second.reset();
  if (key == "batch_size") s->batch_size.reset();
  if (key == "workers") s->workers.reset();
  if (key == "target_batch_time") s->target_batch_time.reset();
  if (key == "pause_between_batches") s->pause_between_batches.reset();
  if (key == "max_replication_lag") s->max_replication_lag.reset();
  if (key == "yield_ratio") s->yield_ratio.reset();
}

}  // namespace

bool LiveSettings::empty() const { return FormatLiveSettings(*this).empty(); }

const std::vector<std::string>& LiveSettingKeys() {
  static const std::vector<std::string> keys = {
      "max_rows_per_second", "batch_size", "target_batch_time", "workers",
      "yield_ratio", "pause_between_batches", "max_replication_lag"};
  return keys;
}

Result<LiveChange> ParseLiveChange(const std::vector<std::string>& items) {
  if (items.empty()) return Status::Invalid("no setting given; write key=value, e.g. max_rows_per_second=5000");
  LiveChange c;
  for (const auto& item : items) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::Invalid("`" + item + "` is not key=value; e.g. max_rows_per_second=5000");
    }
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (value == "default") {
      const auto& keys = LiveSettingKeys();
      if (std::find(keys.begin(), keys.end(), key) == keys.end()) {
        LiveSettings probe;
        return Status::Invalid(SetOne(&probe, key, value));
      }
      c.cleared.push_back(key);
      Clear(&c.set, key);
      continue;
    }
    const std::string why = SetOne(&c.set, key, value);
    if (!why.empty()) return Status::Invalid(why);
    c.cleared.erase(std::remove(c.cleared.begin(), c.cleared.end(), key), c.cleared.end());
  }
  return c;
}

std::string FormatLiveSettings(const LiveSettings& s) {
  std::string out;
  auto Add = [&](const std::string& key, const std::string& value) {
    out += (out.empty() ? "" : " ") + key + "=" + value;
  };
  if (s.max_rows_per_second) Add("max_rows_per_second", std::to_string(*s.max_rows_per_second));
  if (s.batch_size) Add("batch_size", std::to_string(*s.batch_size));
  if (s.target_batch_time) Add("target_batch_time", FormatDuration(*s.target_batch_time));
  if (s.workers) Add("workers", std::to_string(*s.workers));
  if (s.yield_ratio) Add("yield_ratio", FormatRatio(*s.yield_ratio));
  if (s.pause_between_batches) Add("pause_between_batches", FormatDuration(*s.pause_between_batches));
  if (s.max_replication_lag) Add("max_replication_lag", FormatDuration(*s.max_replication_lag));
  return out;
}

Result<LiveChange> ParseLiveChange(const std::string& text) {
  std::vector<std::string> items;
  std::istringstream in(text);
  for (std::string item; in >> item;) items.push_back(item);
  return ParseLiveChange(items);
}

Result<LiveSettings> ParseLiveSettings(const std::string& text) {
  if (text.find_first_not_of(" \t\n") == std::string::npos) return LiveSettings{};
  auto c = ParseLiveChange(text);
  if (!c.ok()) return c.status();
  return c->set;
}

LiveSettings ApplyChange(LiveSettings s, const LiveChange& change) {
  for (const auto& key : change.cleared) Clear(&s, key);
  const LiveSettings& n = change.set;
  if (n.max_rows_per_second) s.max_rows_per_second = n.max_rows_per_second;
  if (n.batch_size) s.batch_size = n.batch_size;
  if (n.target_batch_time) s.target_batch_time = n.target_batch_time;
  if (n.workers) s.workers = n.workers;
  if (n.yield_ratio) s.yield_ratio = n.yield_ratio;
  if (n.pause_between_batches) s.pause_between_batches = n.pause_between_batches;
  if (n.max_replication_lag) s.max_replication_lag = n.max_replication_lag;
  return s;
}

BackfillOptions Overlay(BackfillOptions o, const LiveSettings& s) {
  if (s.max_rows_per_second) o.max_rows_per_second = *s.max_rows_per_second;
  if (s.batch_size) {
    // The size every batch starts from and never exceeds; a statement timeout still halves it.
    o.sizer.initial = o.sizer.max = *s.batch_size;
    o.sizer.min = std::min(o.sizer.min, *s.batch_size);
  }
  if (s.target_batch_time) o.sizer.target = *s.target_batch_time;
  if (s.workers) o.workers = static_cast<int>(*s.workers);
  if (s.pause_between_batches) o.pause_between_batches = *s.pause_between_batches;
  o.health = Overlay(o.health, s);
  return o;
}

std::string DescribeChange(const LiveChange& c) {
  std::string out = FormatLiveSettings(c.set);
  for (const auto& key : c.cleared) out += (out.empty() ? "" : " ") + key + "=default";
  return out;
}

HealthLimits Overlay(HealthLimits l, const LiveSettings& s) {
  if (s.yield_ratio) l.yield_ratio = *s.yield_ratio;
  if (s.max_replication_lag) l.max_replication_lag = *s.max_replication_lag;
  return l;
}

std::vector<std::pair<std::string, double>> LiveValues(const LiveSettings& s) {
  std::vector<std::pair<std::string, double>> out;
  auto Sec = [](Millis m) { return static_cast<double>(m.count()) / 1000.0; };
  if (s.max_rows_per_second) out.emplace_back("max_rows_per_second", static_cast<double>(*s.max_rows_per_second));
  if (s.batch_size) out.emplace_back("batch_size", static_cast<double>(*s.batch_size));
  if (s.target_batch_time) out.emplace_back("target_batch_time", Sec(*s.target_batch_time));
  if (s.workers) out.emplace_back("workers", static_cast<double>(*s.workers));
  if (s.yield_ratio) out.emplace_back("yield_ratio", *s.yield_ratio);
  if (s.pause_between_batches) out.emplace_back("pause_between_batches", Sec(*s.pause_between_batches));
  if (s.max_replication_lag) out.emplace_back("max_replication_lag", Sec(*s.max_replication_lag));
  return out;
}

}  // namespace tide
