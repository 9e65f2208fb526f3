#include "tide/duration.h"

#include <cctype>
#include <limits>

namespace tide {

namespace {
// "250ms" -> 250 and "ms": at most 12 digits, then the unit (possibly empty). False when the
// text does not start with a digit or has too many.
bool SplitNumberUnit(const std::string& text, int64_t* n, std::string* unit) {
  size_t i = 0;
  while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
  if (i == 0 || i > 12) return false;
  *n = std::stoll(text.substr(0, i));
  *unit = text.substr(i);
  return true;
}
}  // namespace

std::optional<Millis> ParseDuration(const std::string& text, std::string* error) {
  const std::string accepted = "write a whole number with a unit: 250ms, 2s, 5m, 1h or 7d";
  int64_t n = 0;
  std::string unit;
  if (!SplitNumberUnit(text, &n, &unit)) {
    *error = "`" + text + "` is not a duration; " + accepted;
    return std::nullopt;
  }
  int64_t scale = 0;
  if (unit == "ms") scale = 1;
  else if (unit == "s") scale = 1000;
  else if (unit == "m") scale = 60 * 1000;
  else if (unit == "h") scale = 3600 * 1000;
  else if (unit == "d") scale = 24 * 3600 * 1000;
  if (scale == 0) {
    *error = unit.empty() ? "`" + text + "` has no unit; " + accepted
                          : "`" + text + "` has an unknown unit `" + unit + "`; " + accepted;
    return std::nullopt;
  }
  return Millis(n * scale);
}

std::string FormatDuration(Millis d) {
  const int64_t ms = d.count();
  if (ms != 0 && ms % 3600000 == 0) return std::to_string(ms / 3600000) + "h";
  if (ms != 0 && ms % 60000 == 0) return std::to_string(ms / 60000) + "m";
  if (ms != 0 && ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::optional<int64_t> ParseByteSize(const std::string& text, std::string* error) {
  const std::string accepted = "write a whole number with a unit: 512kB, 64MB, 1GB or 2TB";
  int64_t n = 0;
  std::string unit;
  if (!SplitNumberUnit(text, &n, &unit)) {
    *error = "`" + text + "` is not a size; " + accepted;
    return std::nullopt;
  }
  int64_t scale = 0;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "kB") scale = int64_t{1} << 10;
  else if (unit == "MB") scale = int64_t{1} << 20;
  else if (unit == "GB") scale = int64_t{1} << 30;
  else if (unit == "TB") scale = int64_t{1} << 40;
  if (scale == 0) {
    *error = "`" + text + "` has an unknown unit `" + unit + "`; " + accepted;
    return std::nullopt;
  }
  if (n > std::numeric_limits<int64_t>::max() / scale) {
    *error = "`" + text + "` is too large";
    return std::nullopt;
  }
  return n * scale;
}

}  // namespace tide
