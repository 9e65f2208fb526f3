// A throwaway PgBouncer for tests, in front of a test PostgreSQL cluster: pool_mode =
// transaction, trust authentication, on a free port on 127.0.0.1, with a small pool so that its
// clients share server connections. As root it runs as the `postgres` user (PgBouncer refuses
// root). Stopped when destroyed.
#pragma once

#include <memory>
#include <string>

#include "support/process.h"

namespace tide::testing {

class PgBouncer {
 public:
  // Starts it in front of the cluster listening on `server_port`; aborts the test run with its
  // log when it cannot start (a missing pgbouncer is a failure, not a skip).
  PgBouncer(int server_port, int pool_size = 4);
  ~PgBouncer();

  int port() const { return port_; }
  // A DSN for `database` through the bouncer.
  std::string Dsn(const std::string& database) const;

 private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace tide::testing
