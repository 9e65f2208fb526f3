// PgPlanDatabase's session: opening the connection, mapping libpqxx's exceptions to Status,
// and PgConnector with the DSN it resolves.
#include "pg/pg_database.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <libpq-fe.h>
#include <pqxx/pqxx>
#include <sstream>

#include "engine/sql_text.h"
#include "engine/sqlstate.h"
#include "pg/pg_internal.h"

namespace tide {

using pg_internal::Trim;

PgPlanDatabase::PgPlanDatabase(std::string dsn, Defaults defaults, std::string lease_owner,
                               DatabaseConfig config, std::string name)
    : dsn_(std::move(dsn)),
      defaults_(defaults),
      lease_owner_(std::move(lease_owner)),
      config_(std::move(config)),
      name_(std::move(name)) {}

namespace {

// The settings of every session of tide's; SET LOCAL ones (`local`) for a transaction.
std::string SessionSettingsSql(const Defaults& d, bool local) {
  const std::string set = local ? "SET LOCAL " : "SET ";
  // row_security = off: a query that row-level security would filter raises an error
  // instead, so tide never fills, counts or gates on a subset of a table it cannot see.
  return set + "row_security = off; " + SetTimeoutSql("lock_timeout", d.lock_timeout, local) +
         "; " + SetTimeoutSql("statement_timeout", d.statement_timeout, local);
}

// Whether a session reaches PostgreSQL through a transaction pooler: the config says so, or
// the port the client connected to is not the one the server listens on (PgBouncer listens on
// its own). Over a Unix socket the server's port is unknown: `pooler: transaction` says it.
bool Pooled(const DatabaseConfig& config, pqxx::connection& c, const pqxx::field& server_port) {
  if (config.pooler == "transaction") return true;
  if (config.pooler == "none" || server_port.is_null()) return false;
  const char* port = c.port();
  return port && *port && server_port.as<std::string>() != port;
}

}  // namespace

std::string PgPlanDatabase::TxLocals() const {
  // Also on a direct session: libpqxx may reopen a lost connection by itself, and a session
  // thought direct may be pooled after all; a transaction's own settings hold either way.
  return SessionSettingsSql(defaults_, true) +
         (pooled_ ? "; SET LOCAL application_name = 'tided'" : "");
}

pqxx::connection& PgPlanDatabase::OwnSession(const std::string& what) {
  if (!config_.ddl_dsn.empty()) {
    if (!ddl_conn_ || !ddl_conn_->is_open()) {
      ddl_conn_.reset();
      auto c = std::make_unique<pqxx::connection>(config_.ddl_dsn);
      pqxx::nontransaction n(*c);
      n.exec0("SET application_name = 'tided ddl'; SET standard_conforming_strings = on; " +
              SessionSettingsSql(defaults_, false));
      ddl_pid_ = n.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
      ddl_conn_ = std::move(c);
    }
    return *ddl_conn_;
  }
  if (pooled_) {
    throw std::runtime_error(
        what + " cannot run inside a transaction, and database `" + name_ +
        "` is reached through a transaction pooler, where a session's settings (its "
        "lock_timeout) would not hold for it: add `ddl_dsn:` (a direct connection to "
        "PostgreSQL, not through the pooler) to database `" + name_ + "` in tided.yaml");
  }
  return *conn_;
}

int64_t PgPlanDatabase::OwnSessionPid() const {
  return config_.ddl_dsn.empty() ? backend_pid_ : ddl_pid_;
}

PgPlanDatabase::~PgPlanDatabase() = default;

Status PgPlanDatabase::Open() { return Connected(); }

Status PgPlanDatabase::Connected() {
  if (conn_ && conn_->is_open()) return Status::Ok();
  conn_.reset();
  try {
    auto c = std::make_unique<pqxx::connection>(dsn_);
    pqxx::nontransaction n(*c);
    const pqxx::row r = n.exec1("SELECT pg_backend_pid(), inet_server_port()");
    backend_pid_ = r[0].as<int64_t>();
    pooled_ = Pooled(config_, *c, r[1]);
    // The settings come with each transaction (TxLocals); a direct session also carries its
    // name, for pg_stat_activity. Through a pooler it carries nothing: that would stay on the
    // server connection for whichever client gets it next.
    if (!pooled_) n.exec0("SET application_name = 'tided'");
    conn_ = std::move(c);
    return Status::Ok();
  } catch (const pqxx::broken_connection& e) {
    return Status::Retryable("cannot connect: " + Trim(e.what()), "08001");
  } catch (...) {
    return FromCurrentException();
  }
}

Status PgPlanDatabase::FromCurrentException() {
  try {
    throw;
  } catch (const pqxx::in_doubt_error& e) {
    conn_.reset();
    return Status::InDoubt(Trim(e.what()));
  } catch (const pqxx::broken_connection& e) {
    conn_.reset();
    return Status::Retryable("connection lost: " + Trim(e.what()), "08006");
  } catch (const pqxx::sql_error& e) {
    return StatusFromSqlstate(e.sqlstate(), WithoutRowData(Trim(e.what())));
  } catch (const pqxx::deadlock_detected& e) {
    // libpqxx 6 throws these outside sql_error and without their SQLSTATE.
    return StatusFromSqlstate("40P01", Trim(e.what()));
  } catch (const pqxx::serialization_failure& e) {
    return StatusFromSqlstate("40001", Trim(e.what()));
  } catch (const pqxx::statement_completion_unknown& e) {
    conn_.reset();
    return Status::InDoubt(Trim(e.what()));
  } catch (const std::exception& e) {
    if (conn_ && !conn_->is_open()) conn_.reset();
    return Status::Fatal(WithoutRowData(Trim(e.what())));
  }
}

Result<int64_t> PgPlanDatabase::BackendPid() {
  TIDE_CONNECTED();
  try {
    pg_internal::Work n(*conn_, TxLocals());
    return n.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
  } catch (...) {
    return FromCurrentException();
  }
}

Result<std::string> ResolveDsn(const std::string& name, const DatabaseConfig& c) {
  if (!c.dsn.empty()) return c.dsn;
  if (!c.dsn_env.empty()) {
    const char* v = std::getenv(c.dsn_env.c_str());
    if (!v || !*v) {
      return Status::Invalid("database `" + name + "`: environment variable " + c.dsn_env +
                             " is not set");
    }
    return std::string(v);
  }
  struct stat st;
  if (::stat(c.dsn_file.c_str(), &st) != 0) {
    return Status::Invalid("database `" + name + "`: cannot read dsn_file " + c.dsn_file);
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    return Status::Invalid("database `" + name + "`: dsn_file " + c.dsn_file +
                           " is readable by group or others; run `chmod 600 " + c.dsn_file + "`");
  }
  std::ifstream in(c.dsn_file);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string dsn = Trim(ss.str());
  if (dsn.empty()) return Status::Invalid("database `" + name + "`: dsn_file " + c.dsn_file + " is empty");
  return dsn;
}

Result<std::unique_ptr<PgPlanDatabase>> PgConnector::ConnectPg(const std::string& database) {
  auto it = databases_.find(database);
  if (it == databases_.end()) return Status::Invalid("database `" + database + "` is not in the config");
  auto dsn = ResolveDsn(database, it->second);
  if (!dsn.ok()) return dsn.status();
  DatabaseConfig config = it->second;
  auto db = std::make_unique<PgPlanDatabase>(*dsn, defaults_, lease_owner_, config, database);
  Status s = db->Open();
  if (!s.ok()) return s;
  return db;
}

std::string PgConnector::ServerOf(const std::string& database) {
  auto it = databases_.find(database);
  if (it == databases_.end()) return "";
  auto dsn = ResolveDsn(database, it->second);
  if (!dsn.ok()) return "";
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(dsn->c_str(), &error);
  if (!options) {
    PQfreemem(error);
    return "";
  }
  std::string host, port;
  for (PQconninfoOption* o = options; o->keyword; ++o) {
    if (!o->val) continue;
    if (std::string(o->keyword) == "host" || (host.empty() && std::string(o->keyword) == "hostaddr")) host = o->val;
    if (std::string(o->keyword) == "port") port = o->val;
  }
  PQconninfoFree(options);
  return (host.empty() ? "localhost" : host) + ":" + (port.empty() ? "5432" : port);
}

Result<std::unique_ptr<PlanDatabase>> PgConnector::Connect(const std::string& database) {
  auto db = ConnectPg(database);
  if (!db.ok()) return db.status();
  return std::unique_ptr<PlanDatabase>(std::move(db).value());
}

}  // namespace tide
