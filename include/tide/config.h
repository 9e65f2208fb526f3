// The daemon's configuration (tided.yaml), as plain values.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tide/duration.h"
#include "tide/guards.h"

namespace tide {

// How to reach one database. Exactly one of the three is set. The DSN itself is resolved by
// ResolveDsn (src/pg) so that a password read from a file or the environment never passes
// through the config's value types.
struct DatabaseConfig {
  std::string dsn;
  std::string dsn_file;
  std::string dsn_env;
  // A direct connection to PostgreSQL (not through a pooler), for the statements that cannot
  // run inside a transaction (CREATE INDEX CONCURRENTLY, VACUUM) and the session that watches
  // for blockers. Empty: those use `dsn`, which tide refuses for them when `dsn` reaches a
  // transaction pooler.
  std::string ddl_dsn;
  // How `dsn` reaches PostgreSQL: "" (tide detects a pooler: the port it connects to is not
  // the server's), "transaction" (a transaction pooler, as PgBouncer's pool_mode = transaction),
  // "none" (directly, or a session pooler).
  std::string pooler;
};

struct Defaults {
  Millis lock_timeout{2000};
  Millis statement_timeout{30000};
  Millis gate_timeout{600000};  // the statement_timeout of gate queries and catch-up sweeps
  Millis gate_recheck_interval{5000};
  int64_t ddl_retries = 20;  // lock timeouts of one step, retried with backoff, before failing
  // Backfill tasks, unless the plan says otherwise.
  int64_t batch_size = 1000;
  int64_t workers = 1;
  Millis target_batch_time{500};
  int64_t min_batch_size = 100;
  int64_t max_batch_size = 50000;
  int64_t max_rows_per_second = 0;  // 0: no cap
  Millis pause_between_batches{0};
  // Health limits; 0 (or empty) is off.
  Millis max_replication_lag{10000};
  int64_t max_active_sessions = 50;
  std::string throttle_query;
  double yield_ratio = 4.0;  // see HealthLimits::yield_ratio
  HealthSettings health;     // absent values: the built-in defaults (engine/guards.h)
};

struct Config {
  std::string spool_dir;
  std::string audit_log;
  std::string metrics_listen = "127.0.0.1:9717";
  std::string log_level = "info";
  int64_t max_workers = 4;  // backfill workers across all plans
  // A rollout starts no database on a server whose databases in flight would need more
  // sessions than this (see RolloutMember::sessions); 0: no budget.
  int64_t max_connections_per_server = 0;
  // Run with /bin/sh -c before a plan's first step (a pg_dump wrapper, say), with TIDE_PLAN and
  // TIDE_DATABASE set; a non-zero exit fails the plan before anything changed. Empty: none.
  std::string backup_command;
  // The users whose files in incoming/ are taken; empty: the daemon's own user and root.
  std::vector<std::string> allowed_submitters;
  std::map<std::string, DatabaseConfig> databases;
  // database_groups: a plan whose `database` names a group runs on each of its databases, in
  // this order (a pattern's matches in name order), as its `rollout` says.
  std::map<std::string, std::vector<std::string>> database_groups;
  Defaults defaults;
};

}  // namespace tide
