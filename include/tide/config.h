// The daemon's configuration (tided.yaml), as plain values.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "tide/duration.h"

namespace tide {

// How to reach one database. Exactly one of the three is set. The DSN itself is resolved by
// ResolveDsn (src/pg) so that a password read from a file or the environment never passes
// through the config's value types.
struct DatabaseConfig {
  std::string dsn;
  std::string dsn_file;
  std::string dsn_env;
};

struct Defaults {
  Millis lock_timeout{2000};
  Millis statement_timeout{30000};
  int64_t batch_size = 1000;
  Millis gate_recheck_interval{5000};
};

struct Config {
  std::string spool_dir;
  std::string audit_log;
  std::string metrics_listen = "127.0.0.1:9717";
  std::string log_level = "info";
  std::map<std::string, DatabaseConfig> databases;
  Defaults defaults;
};

}  // namespace tide
