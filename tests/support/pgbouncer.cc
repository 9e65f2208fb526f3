#include "support/pgbouncer.h"

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <thread>
#include <vector>

#include <pqxx/pqxx>

#include "support/pg_cluster.h"

namespace tide::testing {

PgBouncer::PgBouncer(int server_port, int pool_size) {
  dir_ = MakeTempDir("tide-pgbouncer");
  port_ = FreePort();
  WriteAll(dir_ + "/users.txt", "\"postgres\" \"\"\n");
  WriteAll(dir_ + "/pgbouncer.ini",
           "[databases]\n* = host=127.0.0.1 port=" + std::to_string(server_port) +
               "\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = " + std::to_string(port_) +
               "\nunix_socket_dir =\nauth_type = trust\nauth_file = " + dir_ +
               "/users.txt\npool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = " +
               std::to_string(pool_size) +
               "\nignore_startup_parameters = extra_float_digits,options\nlogfile = " + dir_ +
               "/pgbouncer.log\n");
  Shell("chmod -R a+rwX " + dir_);
  std::vector<std::string> argv = {"/usr/sbin/pgbouncer", dir_ + "/pgbouncer.ini"};
  if (::geteuid() == 0) {
    argv.insert(argv.begin(), {"/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres",
                               "--init-groups"});
  }
  process_ = std::make_unique<Process>(argv, dir_ + "/stdout.log");
  for (int i = 0; i < 100; ++i) {
    try {
      pqxx::connection c(Dsn("postgres"));
      return;
    } catch (const std::exception&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  std::cerr << "FATAL: pgbouncer did not start (is it installed? deploy/install-deps.sh)\n"
            << ReadAll(dir_ + "/pgbouncer.log") << ReadAll(dir_ + "/stdout.log");
  std::abort();
}

PgBouncer::~PgBouncer() {
  process_.reset();
  Shell("rm -rf " + dir_);
}

std::string PgBouncer::Dsn(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + database + " user=postgres";
}

}  // namespace tide::testing
