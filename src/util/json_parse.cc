#include "util/json_parse.h"

#include <nlohmann/json.hpp>

namespace tide {

std::optional<FlatJson> ParseFlatJson(const std::string& line) {
  const nlohmann::ordered_json j = nlohmann::ordered_json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  FlatJson out;
  for (auto it = j.begin(); it != j.end(); ++it) {
    out[it.key()] = it->is_string() ? it->get<std::string>()
                                    : it->dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  }
  return out;
}

}  // namespace tide
