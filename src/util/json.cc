#include "tide/json.h"

#include <cmath>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace tide {

std::string JsonEscape(const std::string& s) {
  // Bytes that are not UTF-8 (a client's text, say) become U+FFFD rather than an unreadable line.
  return nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

JsonObject& JsonObject::Num(const std::string& key, double value) {
  if (!std::isfinite(value)) return Raw(key, "null");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", value);
  return Raw(key, buf);
}

std::string JsonObject::ToString() const {
  std::string out = "{";
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (i) out += ",";
    out += JsonEscape(fields_[i].first) + ":" + fields_[i].second;
  }
  return out + "}";
}

}  // namespace tide
