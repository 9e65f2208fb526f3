// PgPlanDatabase's steps: DDL statements with their timeouts, the sessions that block them, and
// the leftovers of failed index builds.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <pqxx/pqxx>
#include <spdlog/spdlog.h>
#include <thread>

#include "engine/operations.h"
#include "engine/sql_text.h"
#include "pg/pg_database.h"
#include "pg/pg_internal.h"

namespace tide {

using pg_internal::LimitsSql;
using pg_internal::WriteCursor;

void PgPlanDatabase::WatchBlockers(int64_t pid, const std::function<void()>& work,
                                   std::string* out) {
  std::atomic<bool> done{false};
  std::mutex mu;
  std::string seen = "[]";
  // Its own session: `ddl_dsn`'s when there is one; through a pooler, each look is a
  // transaction with its own SET LOCAL, so no setting of tide's stays on a pooled connection.
  const bool direct = !config_.ddl_dsn.empty() || !pooled_;
  if (!direct) {
    // Through the pooler each look would wait for a server connection, and the step's commit
    // for the look: with the pool full of sessions queued behind the step's lock, never. The
    // blockers go unnamed (the policy cannot act) without `ddl_dsn`.
    work();
    *out = "[]";
    return;
  }
  const std::string dsn = config_.ddl_dsn.empty() ? dsn_ : config_.ddl_dsn;
  std::thread watcher([&] {
    try {
      pqxx::connection c(dsn);
      if (direct) {
        pqxx::nontransaction s(c);
        s.exec0("SET application_name = 'tided watcher'; SET statement_timeout = '1s'");
      }
      while (!done) {
        pg_internal::Work n(c, direct ? "" : "SET LOCAL statement_timeout = '1s'");
        auto r = n.exec_params(
            "SELECT a.pid, COALESCE(a.usename, ''), COALESCE(a.application_name, ''), "
            "COALESCE(a.state, ''), COALESCE(EXTRACT(epoch FROM now() - a.xact_start), 0)::bigint, "
            "COALESCE(host(a.client_addr), ''), COALESCE(a.backend_type, '') FROM pg_stat_activity a "
            "WHERE a.pid = ANY (pg_blocking_pids($1))",
            pid);
        if (!r.empty()) {
          std::string json = "[";
          for (const auto& row : r) {
            json += (json.size() > 1 ? "," : "") +
                    JsonObject()
                        .Int("pid", row[0].as<int64_t>())
                        .Str("user", row[1].c_str())
                        .Str("application_name", row[2].c_str())
                        .Str("state", row[3].c_str())
                        .Int("transaction_age_s", row[4].as<int64_t>())
                        .Str("client_addr", row[5].c_str())
                        .Str("backend_type", row[6].c_str())
                        .ToString();
          }
          std::lock_guard<std::mutex> l(mu);
          seen = json + "]";
        }
        for (int i = 0; i < 10 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    } catch (const std::exception&) {
      // Naming the blocker is best effort; the step's own error is what counts.
    }
  });
  auto finish = [&] {
    done = true;
    watcher.join();
    std::lock_guard<std::mutex> l(mu);
    *out = seen;
  };
  try {
    work();
  } catch (...) {
    finish();
    throw;
  }
  finish();
}

Result<std::vector<StatementOutcome>> PgPlanDatabase::RunStatements(
    const std::string& plan, const std::vector<DdlStatement>& statements,
    const StatementLimits& limits, const std::optional<PlanCursor>& after) {
  TIDE_CONNECTED();
  std::string blockers;
  try {
    std::vector<StatementOutcome> out;
    for (size_t i = 0; i < statements.size(); ++i) {
      const bool last = i + 1 == statements.size();
      if (statements[i].describes_only) {
        return Status::Fatal("internal error: a description was about to run: " + statements[i].sql);
      }
      if (!statements[i].refuse_if.empty()) {
        pg_internal::Work w(*conn_, TxLocals());
        w.exec0(LimitsSql(limits));
        const std::string why = w.exec1(statements[i].refuse_if)[0].c_str();
        w.commit();
        if (!why.empty()) return Status::Fatal(why);
      }
      if (!statements[i].invalid_index.empty()) {
        Status earlier = AwaitEarlierBuild(statements[i].invalid_index, limits);
        if (!earlier.ok()) return earlier;
      }
      out.push_back(RunStatement(plan, statements[i], limits, last ? after : std::nullopt,
                                 &blockers));
    }
    if (statements.empty() && after) {
      pg_internal::Work w(*conn_, TxLocals());
      WriteCursor(w, lease_owner_, plan, *after);
      w.commit();
    }
    return out;
  } catch (...) {
    Status s = FromCurrentException();
    if (s.sqlstate() == "55P03") return s.WithDetail(blockers);
    return s;
  }
}

StatementOutcome PgPlanDatabase::RunStatement(const std::string& plan, const DdlStatement& st,
                                              const StatementLimits& limits,
                                              const std::optional<PlanCursor>& after,
                                              std::string* blockers) {
  StatementOutcome out;
  out.sql = st.sql;
  const auto start = std::chrono::steady_clock::now();
  auto finish = [&] {
    out.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - start).count();
  };
  if (st.transactional) {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec0(LimitsSql(limits));
    // Through a pooler the transaction's server session is its own: the one blockers block.
    if (pooled_) backend_pid_ = w.exec1("SELECT pg_backend_pid()")[0].as<int64_t>();
    out.skipped = !st.skip_if.empty() && w.exec1(st.skip_if)[0].as<bool>();
    if (!out.skipped) {
      WatchBlockers(backend_pid_, 
          [&] {
            const pqxx::result r = w.exec(st.sql);
            if (st.reports_lock_held && !r.empty() && !r[0][0].is_null()) {
              out.lock_held_ms = r[0][0].as<int64_t>();
            }
          },
          blockers);
    }
    if (after) WriteCursor(w, lease_owner_, plan, *after);
    w.commit();
    return finish(), out;
  }
  {
    pg_internal::Work n(*conn_, TxLocals());
    out.skipped = !st.skip_if.empty() && n.exec1(st.skip_if)[0].as<bool>();
  }
  if (!out.skipped) {
    if (!st.invalid_index.empty()) out.dropped_invalid_index = DropInvalidIndex(st.invalid_index, limits);
    try {
      ExecOnSession(st.sql, limits, blockers);
    } catch (const pqxx::broken_connection&) {
      throw;
    } catch (...) {
      // A failed CONCURRENTLY build leaves an INVALID index that would make the next
      // `IF NOT EXISTS` skip the build; drop it now (and again before the retry, if this fails).
      if (!st.invalid_index.empty()) {
        try {
          DropInvalidIndex(st.invalid_index, limits);
        } catch (const std::exception&) {
        }
      }
      throw;
    }
  }
  if (after) {
    pg_internal::Work w(*conn_, TxLocals());
    WriteCursor(w, lease_owner_, plan, *after);
    w.commit();
  }
  return finish(), out;
}

Status PgPlanDatabase::AwaitEarlierBuild(const std::string& index, const StatementLimits& limits) {
  // A build by a session whose client is gone (tided killed during the step) goes on inside the
  // server; its index is INVALID until it ends, and dropping or building it meanwhile fails with
  // "tuple concurrently updated". Its own statement_timeout bounds it. This wait is at most 30 s
  // at a time (a shutdown or an abort is not held up longer); then the step is retried.
  const Millis bound = std::min(limits.statement_timeout, Millis(30000));
  const auto deadline = std::chrono::steady_clock::now() + bound;
  bool told = false;
  while (true) {
    pqxx::result r;
    {
      pg_internal::Work n(*conn_, TxLocals());
      r = n.exec(IndexBuildsSql(index));
    }
    if (r.empty()) return Status::Ok();
    const int64_t pid = r[0][0].as<int64_t>();
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status::Retryable("index " + index + " is still being built by session pid " +
                               std::to_string(pid) + " (running " + r[0][1].c_str() +
                               " s); tide builds it once that session ends, or after "
                               "SELECT pg_cancel_backend(" + std::to_string(pid) + ")");
    }
    if (!told) {
      spdlog::info("index {} is being built by session pid {} (an earlier attempt whose client is "
                   "gone); waiting for it to end", index, pid);
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

bool PgPlanDatabase::DropInvalidIndex(const std::string& index, const StatementLimits& limits) {
  {
    pg_internal::Work n(*conn_, TxLocals());
    if (!n.exec1(IndexIsInvalidSql(index))[0].as<bool>()) return false;
  }
  std::string ignored;
  ExecOnSession(DropIndexSql(index), limits, &ignored);
  return true;
}

void PgPlanDatabase::ExecOnSession(const std::string& sql, const StatementLimits& limits,
                                   std::string* blockers) {
  const std::string restore =
      SetTimeoutSql("lock_timeout", defaults_.lock_timeout, false) + "; " +
      SetTimeoutSql("statement_timeout", defaults_.statement_timeout, false);
  // The statement's first words ("CREATE INDEX CONCURRENTLY"), for the refusal.
  std::string words;
  for (size_t at = 0, n = 0; at < sql.size() && n < 4; ++n) {
    const size_t end = std::min(sql.find(' ', at), sql.size());
    words += (words.empty() ? "" : " ") + sql.substr(at, end - at);
    at = end + 1;
  }
  pqxx::nontransaction n(OwnSession("`" + words + " ...`"));
  n.exec0(SetTimeoutSql("lock_timeout", limits.lock_timeout, false) + "; " +
          SetTimeoutSql("statement_timeout", limits.statement_timeout, false));
  try {
    WatchBlockers(OwnSessionPid(), [&] { n.exec(sql); }, blockers);
  } catch (const pqxx::broken_connection&) {
    throw;
  } catch (...) {
    n.exec0(restore);
    throw;
  }
  n.exec0(restore);
}

Status PgPlanDatabase::Execute(const std::string& sql, const StatementLimits& limits) {
  TIDE_CONNECTED();
  try {
    pg_internal::Work w(*conn_, TxLocals());
    w.exec0(LimitsSql(limits));
    w.exec(sql);
    w.commit();
    return Status::Ok();
  } catch (...) {
    return FromCurrentException();
  }
}

}  // namespace tide
