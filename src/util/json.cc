#include "tide/json.h"

#include <cmath>
#include <cstdio>

namespace tide {

std::string JsonEscape(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
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
