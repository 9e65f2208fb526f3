#include "engine/key_ranges.h"

namespace tide {

bool SplitsByValue(const std::vector<KeyColumn>& key) {
  if (key.size() != 1) return false;
  const std::string& t = key[0].type;
  return t == "smallint" || t == "integer" || t == "bigint";
}

std::vector<KeyRange> SplitIntegerRange(std::optional<int64_t> min, std::optional<int64_t> max,
                                        int parts) {
  if (!min || !max || parts <= 1 || *max <= *min) return {KeyRange{}};
  // Width computed in long double: max - min can overflow int64.
  const long double span = static_cast<long double>(*max) - static_cast<long double>(*min);
  if (span < parts) parts = static_cast<int>(span);
  std::vector<KeyRange> out;
  std::vector<std::string> lower;
  for (int i = 1; i <= parts; ++i) {
    KeyRange r;
    r.lower = lower;
    if (i < parts) {
      const int64_t bound = *min + static_cast<int64_t>(span * i / parts);
      r.upper = {std::to_string(bound)};
      lower = r.upper;
    }
    out.push_back(r);
  }
  return out;
}

}  // namespace tide
