// A throwaway PostgreSQL 15 cluster for tests: initdb into a temp folder, started on a free port
// on 127.0.0.1, stopped and deleted at exit. As root it runs as the `postgres` user (the server
// refuses root). Never touches the machine's own cluster.
#pragma once

#include <string>

namespace tide::testing {

class PgCluster {
 public:
  // The cluster shared by every test of this binary, started on first use. Aborts the test run
  // with the server's log when it cannot start: a missing PostgreSQL is a failure, not a skip.
  static PgCluster& Shared();
  // Further clusters (index 1, 2, ...; 0 is Shared()), each started on first use and stopped at
  // exit: for tests of several PostgreSQL servers.
  static PgCluster& Instance(int index);

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  std::string Dsn(const std::string& database) const;

  // A new empty database with a unique name; returns the name.
  std::string CreateDatabase(const std::string& prefix);
  // Runs SQL through libpqxx as the superuser; throws on error.
  void Exec(const std::string& database, const std::string& sql) const;
  // The first column of the first row, as text ("" for NULL).
  std::string Query(const std::string& database, const std::string& sql) const;

  // Starts a streaming standby of this cluster (pg_basebackup over loopback) and returns its
  // port. It reports its replay position every second.
  int StartStandby();
  std::string StandbyDsn(const std::string& database) const;

  // `pg_ctl stop -m immediate` (as a crash: no checkpoint, every session cut), and start
  // again on the same port (crash recovery).
  void Crash();
  void Restart();
  // Promotes the standby (StartStandby) to a primary; returns once it takes writes.
  void PromoteStandby();

  void Stop();
  ~PgCluster();

 private:
  PgCluster() = default;
  void Start();

  std::string dir_;
  int port_ = 0;
  bool running_ = false;
  int next_db_ = 0;
  std::string start_command_;
  std::string standby_dir_;
  int standby_port_ = 0;
};

int FreePort();
// Runs a shell command; returns its exit status.
int Shell(const std::string& command);
// A fresh temp folder that the `postgres` user can traverse.
std::string MakeTempDir(const std::string& prefix);

}  // namespace tide::testing
