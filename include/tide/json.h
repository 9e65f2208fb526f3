// A small JSON object writer for audit events and `--json` output. Pure.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tide {

std::string JsonEscape(const std::string& s);  // the string's JSON form, with quotes

class JsonObject {
 public:
  JsonObject& Str(const std::string& key, const std::string& value) {
    return Raw(key, JsonEscape(value));
  }
  JsonObject& Int(const std::string& key, int64_t value) { return Raw(key, std::to_string(value)); }
  JsonObject& Num(const std::string& key, double value);
  JsonObject& Bool(const std::string& key, bool value) { return Raw(key, value ? "true" : "false"); }
  JsonObject& Obj(const std::string& key, const JsonObject& value) { return Raw(key, value.ToString()); }
  // `json` must already be valid JSON.
  JsonObject& Raw(const std::string& key, std::string json) {
    fields_.emplace_back(key, std::move(json));
    return *this;
  }
  bool empty() const { return fields_.empty(); }
  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }
  std::string ToString() const;

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

}  // namespace tide
