// The settings of tide/guards.h, read the same way from a plan's `settings` and the config's
// `defaults`. Pure.
#pragma once

#include <string>
#include <vector>

#include "plan/yaml_reader.h"
#include "tide/guards.h"

namespace tide {

// The keys ParseGuards reads, for ExpectMap's list of what a map may hold.
const std::vector<std::string>& GuardKeys();

// Reads the health signals of `node` (a `settings` or `defaults` map).
void ParseGuards(YamlReader& r, const YAML::Node& node, const std::string& what,
                 HealthSettings* health);

}  // namespace tide
