// tided.yaml text -> Config. Pure.
#pragma once

#include <string>
#include <vector>

#include "tide/config.h"
#include "tide/plan.h"

namespace tide {

struct ConfigParseResult {
  Config config;
  std::vector<Diagnostic> errors;
  bool ok() const { return errors.empty(); }
};

ConfigParseResult ParseConfig(const std::string& text, const std::string& file);

}  // namespace tide
