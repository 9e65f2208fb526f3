#include "support/app_sim.h"

#include <pqxx/pqxx>
#include <random>
#include <stdexcept>

namespace tide::testing {

struct AppSim::Worker {
  int index = 0;
  std::unique_ptr<pqxx::connection> conn;
  std::mutex in_flight;      // held while a statement runs (SwitchToNew waits on it)
  std::vector<int64_t> own;  // ids this thread inserted and has not deleted
  int64_t next_id = 0;
  std::mt19937_64 rng;
  std::thread thread;
};

namespace {

// The message on one line: PostgreSQL's DETAIL and HINT follow the error on lines of their own.
std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

void ReplaceAll(std::string* text, const std::string& from, const std::string& to) {
  for (size_t at = text->find(from); at != std::string::npos; at = text->find(from, at + to.size())) {
    text->replace(at, from.size(), to);
  }
}

bool Uses(const std::string& sql, const char* placeholder) {
  return sql.find(placeholder) != std::string::npos;
}

// The SQLSTATE a libpqxx 6 exception stands for. deadlock_detected, serialization_failure and
// the other transaction_rollback classes are not sql_error in libpqxx 6 and carry no state.
struct Failure {
  std::string sqlstate;
  std::string message;
  bool connection_lost = false;
};

Failure CurrentFailure() {
  try {
    throw;
  } catch (const pqxx::sql_error& e) {
    return {e.sqlstate(), Trim(e.what())};
  } catch (const pqxx::deadlock_detected& e) {
    return {"40P01", Trim(e.what())};
  } catch (const pqxx::serialization_failure& e) {
    return {"40001", Trim(e.what())};
  } catch (const pqxx::statement_completion_unknown& e) {
    return {"40003", Trim(e.what())};
  } catch (const pqxx::transaction_rollback& e) {
    return {"40000", Trim(e.what())};
  } catch (const pqxx::in_doubt_error& e) {
    return {"08007", Trim(e.what()), true};
  } catch (const pqxx::broken_connection& e) {
    return {"08006", Trim(e.what()), true};
  } catch (const pqxx::failure& e) {
    return {"", Trim(e.what())};
  } catch (const std::exception& e) {
    return {"", Trim(e.what())};
  }
}

int64_t Pick(std::mt19937_64& rng, int64_t n) {
  return std::uniform_int_distribution<int64_t>(0, n - 1)(rng);
}

}  // namespace

std::string AppReport::Describe(size_t max_errors) const {
  std::string out = "application: " + std::to_string(old_statements) + " old-version and " +
                    std::to_string(new_statements) + " new-version statements, " +
                    std::to_string(inserted) + " rows inserted, " + std::to_string(deleted) +
                    " deleted; longest statement " + std::to_string(longest_ms) + " ms (" +
                    longest_statement + "); " + std::to_string(errors.size()) + " error(s)\n";
  for (size_t i = 0; i < errors.size() && i < max_errors; ++i) {
    const AppError& e = errors[i];
    out += "  [" + e.version + " " + e.operation + "] SQLSTATE " +
           (e.sqlstate.empty() ? "none" : e.sqlstate) + ": " + e.message + "\n    in: " +
           e.statement + "\n";
  }
  if (errors.size() > max_errors) {
    out += "  ... and " + std::to_string(errors.size() - max_errors) + " more\n";
  }
  return out;
}

AppSim::AppSim(AppOptions options, AppStatements old_version, AppStatements new_version)
    : options_(std::move(options)), old_(std::move(old_version)), new_(std::move(new_version)) {}

AppSim::~AppSim() { Stop(); }

void AppSim::Start() {
  for (int i = 0; i < options_.threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->index = i;
    w->conn = std::make_unique<pqxx::connection>(options_.dsn);
    w->next_id = options_.first_id + i * options_.ids_per_thread;
    w->rng.seed(0x9e3779b97f4a7c15ULL * (i + 1));
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) w->thread = std::thread([this, p = w.get()] { Run(p); });
}

void AppSim::SwitchToNew() {
  new_version_ = true;
  // A statement that read the old version holds its thread's mutex until it ends.
  for (auto& w : workers_) std::lock_guard<std::mutex> wait(w->in_flight);
}

void AppSim::Stop() {
  stop_ = true;
  for (auto& w : workers_) {
    if (w->thread.joinable()) w->thread.join();
  }
}

AppReport AppSim::Report() const {
  std::lock_guard<std::mutex> lock(mu_);
  return report_;
}

void AppSim::Record(const AppError& e) {
  std::lock_guard<std::mutex> lock(mu_);
  report_.errors.push_back(e);
}

void AppSim::Run(Worker* w) {
  static const char* kOperations[] = {"insert", "update", "read", "insert", "update", "remove"};
  for (size_t turn = 0; !stop_; ++turn) {
    const std::string operation = kOperations[turn % 6];
    {
      std::lock_guard<std::mutex> lock(w->in_flight);
      const bool new_version = new_version_;
      const AppStatements& s = new_version ? new_ : old_;
      std::string sql = operation == "insert" ? s.insert
                        : operation == "update" ? s.update
                        : operation == "read"   ? s.read
                                                : s.remove;
      int64_t own = -1, fresh = -1;
      if (!sql.empty() && Bind(w, &sql, &own, &fresh)) {
        Execute(w, new_version, operation.c_str(), sql, operation == "insert" ? fresh : own);
      }
    }
    std::this_thread::sleep_for(options_.pause);
  }
}

// Fills in the placeholders of *sql; false when it names a row the worker does not have yet.
// *own is the row {own} took (forgotten by the worker from now on), *fresh the id {id} took.
bool AppSim::Bind(Worker* w, std::string* sql, int64_t* own, int64_t* fresh) {
  const bool need_own = Uses(*sql, "{own}"), need_row = Uses(*sql, "{row}");
  if (need_own && w->own.empty()) return false;
  if (need_row && w->own.empty() && options_.seeded_rows == 0) return false;
  if (need_row) {
    const bool from_own = !w->own.empty() && (options_.seeded_rows == 0 || Pick(w->rng, 2) == 0);
    const int64_t row = from_own ? w->own[Pick(w->rng, static_cast<int64_t>(w->own.size()))]
                                 : 1 + Pick(w->rng, options_.seeded_rows);
    ReplaceAll(sql, "{row}", std::to_string(row));
  }
  if (need_own) {
    const int64_t at = Pick(w->rng, static_cast<int64_t>(w->own.size()));
    *own = w->own[at];
    w->own[at] = w->own.back();
    w->own.pop_back();
    ReplaceAll(sql, "{own}", std::to_string(*own));
  }
  ReplaceAll(sql, "{v}", std::to_string(Pick(w->rng, 1000000)));
  if (Uses(*sql, "{id}")) {
    *fresh = w->next_id++;
    ReplaceAll(sql, "{id}", std::to_string(*fresh));
  }
  return true;
}

// Connects a worker that lost its connection; false (the failure recorded) when it cannot.
bool AppSim::Reconnect(Worker* w, const std::string& version) {
  if (w->conn) return true;
  try {
    w->conn = std::make_unique<pqxx::connection>(options_.dsn);
    return true;
  } catch (...) {
    const Failure f = CurrentFailure();
    Record({version, "connect", f.sqlstate, f.message, ""});
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return false;
  }
}

// Runs `sql` as one transaction on the worker's connection. `own` is the row an INSERT added
// (kept on success) or the row a DELETE removed (kept back on failure); -1 otherwise.
void AppSim::Execute(Worker* w, bool new_version, const char* operation, const std::string& sql,
                     int64_t own) {
  const std::string version = new_version ? "new" : "old";
  const std::string op = operation;
  if (!Reconnect(w, version)) {
    if (op == "remove" && own >= 0) w->own.push_back(own);
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  bool ok = true;
  Failure failure;
  try {
    pqxx::work tx(*w->conn);
    tx.exec(sql);
    tx.commit();
  } catch (...) {
    ok = false;
    failure = CurrentFailure();
  }
  const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - start).count();
  if (ok && op == "insert" && own >= 0) w->own.push_back(own);
  if (!ok && op == "remove" && own >= 0) w->own.push_back(own);
  if (!ok && (failure.connection_lost || !w->conn->is_open())) w->conn.reset();
  std::lock_guard<std::mutex> lock(mu_);
  (new_version ? report_.new_statements : report_.old_statements)++;
  if (ok && op == "insert") ++report_.inserted;
  if (ok && op == "remove") ++report_.deleted;
  if (!ok) report_.errors.push_back({version, op, failure.sqlstate, failure.message, sql});
  if (ms > report_.longest_ms) {
    report_.longest_ms = ms;
    report_.longest_statement = "[" + version + " " + op + "] " + sql;
  }
}

}  // namespace tide::testing
