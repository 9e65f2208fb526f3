// Reads one JSON object, as the audit log and the control requests write them (with
// nlohmann-json). Pure.
#pragma once

#include <map>
#include <optional>
#include <string>

namespace tide {

// Values keep their JSON text for numbers, booleans, null, arrays and objects, and are unescaped
// for strings.
using FlatJson = std::map<std::string, std::string>;

std::optional<FlatJson> ParseFlatJson(const std::string& line);

}  // namespace tide
