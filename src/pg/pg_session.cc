// PgPlanDatabase's session: opening the connection, mapping libpqxx's exceptions to Status,
// and PgConnector with the DSN it resolves.
#include "pg/pg_database.h"

#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>

#include "engine/sql_text.h"
#include "engine/sqlstate.h"
#include "pg/pg_internal.h"

namespace tide {

using pg_internal::Trim;

PgPlanDatabase::PgPlanDatabase(std::string dsn, Defaults defaults, std::string lease_owner)
    : dsn_(std::move(dsn)), defaults_(defaults), lease_owner_(std::move(lease_owner)) {}

PgPlanDatabase::~PgPlanDatabase() = default;

Status PgPlanDatabase::Open() { return Connected(); }

Status PgPlanDatabase::Connected() {
  if (conn_ && conn_->is_open()) return Status::Ok();
  conn_.reset();
  try {
    auto c = std::make_unique<pqxx::connection>(dsn_);
    pqxx::nontransaction n(*c);
    // row_security = off: a query that row-level security would filter raises an error
    // instead, so tide never fills, counts or gates on a subset of a table it cannot see.
    n.exec0("SET application_name = 'tided'; SET standard_conforming_strings = on; "
            "SET row_security = off; " +
            SetTimeoutSql("lock_timeout", defaults_.lock_timeout, false) + "; " +
            SetTimeoutSql("statement_timeout", defaults_.statement_timeout, false));
    backend_pid_ = n.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
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
    pqxx::nontransaction n(*conn_);
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
  auto db = std::make_unique<PgPlanDatabase>(*dsn, defaults_, lease_owner_);
  Status s = db->Open();
  if (!s.ok()) return s;
  return db;
}

Result<std::unique_ptr<PlanDatabase>> PgConnector::Connect(const std::string& database) {
  auto db = ConnectPg(database);
  if (!db.ok()) return db.status();
  return std::unique_ptr<PlanDatabase>(std::move(db).value());
}

}  // namespace tide
