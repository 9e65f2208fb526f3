#include "support/pg_cluster.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <mutex>
#include <pqxx/pqxx>
#include <stdexcept>

namespace tide::testing {

namespace {
const char* kPgBin = "/usr/lib/postgresql/15/bin";

std::string AsPostgres(const std::string& cmd) {
  if (::geteuid() != 0) return cmd;
  return "runuser -u postgres -- " + cmd;
}
}  // namespace

int Shell(const std::string& command) {
  int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  if (!::mkdtemp(&tmpl[0])) throw std::runtime_error("mkdtemp failed");
  ::chmod(tmpl.c_str(), 0755);
  return tmpl;
}

PgCluster& PgCluster::Shared() {
  static PgCluster* cluster = [] {
    auto* c = new PgCluster();
    c->Start();
    std::atexit([] { Shared().Stop(); });
    return c;
  }();
  return *cluster;
}

PgCluster& PgCluster::Instance(int index) {
  if (index == 0) return Shared();
  static std::mutex mu;
  static std::map<int, PgCluster*> clusters;
  std::lock_guard<std::mutex> lock(mu);
  auto it = clusters.find(index);
  if (it != clusters.end()) return *it->second;
  auto* c = new PgCluster();
  c->Start();
  if (clusters.empty()) {
    std::atexit([] {
      for (auto& kv : clusters) kv.second->Stop();
    });
  }
  clusters[index] = c;
  return *c;
}

void PgCluster::Start() {
  dir_ = MakeTempDir("tide-pg");
  if (::geteuid() == 0) {
    struct passwd* pw = ::getpwnam("postgres");
    if (!pw || ::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      std::cerr << "FATAL: no `postgres` user to run the test cluster; run deploy/install-deps.sh\n";
      std::abort();
    }
  }
  port_ = FreePort();
  const std::string initdb = AsPostgres(std::string(kPgBin) + "/initdb -D " + dir_ +
                                        "/data -U postgres -A trust --no-sync -E UTF8 > " + dir_ +
                                        "/initdb.log 2>&1");
  if (Shell(initdb) != 0) {
    Shell("cat " + dir_ + "/initdb.log >&2");
    std::cerr << "FATAL: initdb failed; is postgresql-15 installed? (deploy/install-deps.sh)\n";
    std::abort();
  }
  const std::string start =
      AsPostgres(std::string(kPgBin) + "/pg_ctl -D " + dir_ + "/data -l " + dir_ +
                 "/server.log -w -t 60 start -o \"-c listen_addresses=127.0.0.1 -p " +
                 std::to_string(port_) + " -k " + dir_ +
                 " -c fsync=off -c full_page_writes=off -c max_connections=200\" > /dev/null");
  start_command_ = start;
  if (Shell(start) != 0) {
    Shell("cat " + dir_ + "/server.log >&2");
    std::cerr << "FATAL: the test PostgreSQL did not start\n";
    std::abort();
  }
  running_ = true;
}

void PgCluster::Crash() {
  Shell(AsPostgres(std::string(kPgBin) + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop") +
        " > /dev/null 2>&1");
}

void PgCluster::Restart() {
  if (Shell(start_command_) != 0) {
    Shell("tail -50 " + dir_ + "/server.log >&2");
    std::cerr << "FATAL: the test PostgreSQL did not start again\n";
    std::abort();
  }
}

int PgCluster::StartStandby() {
  standby_dir_ = dir_ + "/standby";
  standby_port_ = FreePort();
  const std::string base = AsPostgres(std::string(kPgBin) + "/pg_basebackup -h 127.0.0.1 -p " +
                                      std::to_string(port_) + " -U postgres -D " + standby_dir_ +
                                      " -R -X stream -c fast > " + dir_ + "/basebackup.log 2>&1");
  if (Shell(base) != 0) {
    Shell("cat " + dir_ + "/basebackup.log >&2");
    throw std::runtime_error("pg_basebackup failed");
  }
  const std::string start =
      AsPostgres(std::string(kPgBin) + "/pg_ctl -D " + standby_dir_ + " -l " + dir_ +
                 "/standby.log -w -t 60 start -o \"-c listen_addresses=127.0.0.1 -p " +
                 std::to_string(standby_port_) + " -k " + dir_ +
                 " -c hot_standby=on -c wal_receiver_status_interval=1s -c max_connections=200\" > /dev/null");
  if (Shell(start) != 0) {
    Shell("cat " + dir_ + "/standby.log >&2");
    throw std::runtime_error("the standby did not start");
  }
  return standby_port_;
}

void PgCluster::PromoteStandby() {
  Shell(AsPostgres(std::string(kPgBin) + "/pg_ctl -D " + standby_dir_ + " -w promote") +
        " > /dev/null 2>&1");
}

std::string PgCluster::StandbyDsn(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(standby_port_) + " dbname=" + database +
         " user=postgres";
}

void PgCluster::Stop() {
  if (!running_) return;
  running_ = false;
  if (standby_port_) {
    Shell(AsPostgres(std::string(kPgBin) + "/pg_ctl -D " + standby_dir_ + " -m immediate -w stop") +
          " > /dev/null 2>&1");
  }
  Shell(AsPostgres(std::string(kPgBin) + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop") +
        " > /dev/null 2>&1");
  Shell("rm -rf " + dir_);
}

PgCluster::~PgCluster() { Stop(); }

std::string PgCluster::Dsn(const std::string& database) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + database + " user=postgres";
}

std::string PgCluster::CreateDatabase(const std::string& prefix) {
  const std::string name = prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(next_db_++);
  pqxx::connection c(Dsn("postgres"));
  pqxx::nontransaction n(c);
  n.exec0("CREATE DATABASE " + name);
  return name;
}

void PgCluster::Exec(const std::string& database, const std::string& sql) const {
  pqxx::connection c(Dsn(database));
  pqxx::nontransaction n(c);
  n.exec(sql);
}

std::string PgCluster::Query(const std::string& database, const std::string& sql) const {
  pqxx::connection c(Dsn(database));
  pqxx::nontransaction n(c);
  auto r = n.exec(sql);
  if (r.empty() || r[0][0].is_null()) return "";
  return r[0][0].c_str();
}

}  // namespace tide::testing
