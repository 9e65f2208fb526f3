// Durations in plans and configs are strings with a unit: "250ms", "2s", "5m", "1h".
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace tide {

using Millis = std::chrono::milliseconds;

// Parses "<digits><unit>" with unit one of ms, s, m, h. Returns nullopt and sets *error to a
// sentence that says what is wrong and what is accepted.
std::optional<Millis> ParseDuration(const std::string& text, std::string* error);

// The shortest exact form: 1500 -> "1500ms", 2000 -> "2s", 120000 -> "2m".
std::string FormatDuration(Millis d);

// Sizes are written as PostgreSQL writes them: "512kB", "64MB", "1GB", "2TB" (powers of 1024),
// or a number of bytes. Returns nullopt and sets *error as ParseDuration does.
std::optional<int64_t> ParseByteSize(const std::string& text, std::string* error);

}  // namespace tide
