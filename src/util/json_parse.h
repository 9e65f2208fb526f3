// Reads one flat JSON object (string, number, boolean and null values), as the audit log
// writes them. Pure.
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
