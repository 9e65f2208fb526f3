// Reading whole files, and the daemon's config file.
#pragma once

#include <string>

#include "tide/config.h"
#include "tide/status.h"

namespace tide {

// The file's contents, or an error if it cannot be read or is larger than `max_bytes`.
Result<std::string> ReadFile(const std::string& path, size_t max_bytes);

// Writes `text` to `path` through a temporary file and rename, so readers never see half.
Status WriteFileAtomically(const std::string& path, const std::string& text);

// Reads and parses tided.yaml; the error lists every problem with line and column.
Result<Config> LoadConfigFile(const std::string& path);

}  // namespace tide
