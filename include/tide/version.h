#pragma once

namespace tide {
constexpr const char* kTideVersion = "0.1.0";
}  // namespace tide
