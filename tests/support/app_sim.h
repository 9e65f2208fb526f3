// A simulated application for end-to-end tests: threads that keep inserting, updating,
// deleting and reading one table, each on its own libpqxx connection, while tide changes the
// table under them. It runs one of two versions of its SQL at a time: the old version (the code
// deployed before the change, which knows only the old columns) until the test calls
// SwitchToNew(), then the new version (which writes the new columns too).
//
// Every statement is its own transaction. The simulation records every error with its
// SQLSTATE and message, counts the statements of each version, and keeps the longest wall time
// any single statement took (queued behind a lock included). The ids it inserts come from a
// range per thread above every seeded row, so the application never collides with itself: an
// error it records is one the schema change caused.
//
// Thread-safety: Start, SwitchToNew and Stop are called from one thread (the test's);
// Report may be called from any thread at any time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tide::testing {

// The SQL of each operation of one version of the application. Placeholders, each replaced by
// a decimal number:
//   {id}   a fresh id, used by no thread before (for INSERT)
//   {row}  an existing id: one of the seeded rows 1..seeded_rows, or a row this thread
//          inserted and has not deleted
//   {own}  a row this thread inserted and has not deleted yet; the row is forgotten after the
//          statement (for DELETE; the operation is skipped while the thread has none)
//   {v}    a random number in 0..999999
// An empty statement skips that operation.
struct AppStatements {
  std::string insert;
  std::string update;
  std::string remove;
  std::string read;
};

struct AppOptions {
  std::string dsn;
  int threads = 2;
  int64_t seeded_rows = 0;        // ids 1..seeded_rows exist when the application starts
  int64_t first_id = 1000000;     // thread i inserts first_id + i * ids_per_thread, + 1, ...
  int64_t ids_per_thread = 1000000;
  std::chrono::milliseconds pause{5};  // between two statements of a thread
};

struct AppError {
  std::string version;    // "old" or "new"
  std::string operation;  // insert, update, remove, read, connect
  std::string sqlstate;   // "" when the failure carries none
  std::string message;
  std::string statement;
};

struct AppReport {
  int64_t old_statements = 0;  // run to completion (committed or failed) by each version
  int64_t new_statements = 0;
  int64_t inserted = 0;        // rows inserted and committed
  int64_t deleted = 0;
  std::vector<AppError> errors;
  int64_t longest_ms = 0;      // the longest single statement, commit included
  std::string longest_statement;

  // The counts, the longest statement and up to `max_errors` errors, one a line.
  std::string Describe(size_t max_errors = 20) const;
};

class AppSim {
 public:
  AppSim(AppOptions options, AppStatements old_version, AppStatements new_version);
  ~AppSim();  // stops the threads
  AppSim(const AppSim&) = delete;
  AppSim& operator=(const AppSim&) = delete;

  // Connects every thread and starts the old version. Throws when a connection fails.
  void Start();
  // From now on every thread runs the new version; returns once no statement of the old
  // version is in flight any more.
  void SwitchToNew();
  // Stops the threads after their statement in flight; idempotent.
  void Stop();
  AppReport Report() const;

 private:
  struct Worker;
  void Run(Worker* w);
  bool Bind(Worker* w, std::string* sql, int64_t* own, int64_t* fresh);
  bool Reconnect(Worker* w, const std::string& version);
  void Execute(Worker* w, bool new_version, const char* operation, const std::string& sql,
               int64_t own);
  void Record(const AppError& e);

  const AppOptions options_;
  const AppStatements old_, new_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> new_version_{false};
  mutable std::mutex mu_;  // guards report_
  AppReport report_;
};

}  // namespace tide::testing
