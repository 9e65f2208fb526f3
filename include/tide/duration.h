// Durations in plans and configs are strings with a unit: "250ms", "2s", "5m", "1h".
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace tide {

using Millis = std::chrono::milliseconds;

// Parses "<digits><unit>" with unit one of ms, s, m, h. Returns nullopt and sets *error to a
// sentence that says what is wrong and what is accepted.
std::optional<Millis> ParseDuration(const std::string& text, std::string* error);

// The shortest exact form: 1500 -> "1500ms", 2000 -> "2s", 120000 -> "2m".
std::string FormatDuration(Millis d);

}  // namespace tide
