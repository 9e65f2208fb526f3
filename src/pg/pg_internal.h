// Helpers shared by the files of PgPlanDatabase (src/pg/pg_*.cc). Private to src/pg.
#pragma once

#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "engine/sql_text.h"
#include "tide/ports.h"

namespace tide::pg_internal {

// SET LOCAL of both timeouts, for the start of a transaction.
inline std::string LimitsSql(const StatementLimits& l) {
  return SetTimeoutSql("lock_timeout", l.lock_timeout, true) + "; " +
         SetTimeoutSql("statement_timeout", l.statement_timeout, true);
}

// A row's fields as text (a key's values).
inline std::vector<std::string> RowText(const pqxx::row& row) {
  std::vector<std::string> out;
  for (const auto& f : row) out.push_back(f.c_str());
  return out;
}

// Stores the cursor inside `txn`. For a failure, `c` is where the plan stood when it failed.
inline void WriteCursor(pqxx::transaction_base& txn, const std::string& plan, const PlanCursor& c,
                        const std::string& error = "", bool failed = false) {
  txn.exec_params0(
      "UPDATE tide.plans SET "
      "state = CASE WHEN $6 THEN 'failed' ELSE $2 END, "
      "failed_in = CASE WHEN $6 THEN $2 END, step = $3, catch_up = $4, "
      "last_error = CASE WHEN $6 THEN $5 END, "
      "waiting_reason = CASE WHEN state = CASE WHEN $6 THEN 'failed' ELSE $2 END "
      "THEN waiting_reason ELSE '' END, "
      "started_at = COALESCE(started_at, now()), "
      "finished_at = CASE WHEN $6 OR $2 IN ('done', 'aborted') THEN now() END, "
      "updated_at = now() WHERE name = $1",
      plan, ToString(c.state), c.step, c.catch_up, error, failed);
}

// `s` without its trailing newlines, spaces and carriage returns.
inline std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Why a throttle_query's result is not one boolean (one row, one non-NULL boolean column); ""
// when it is. A health reading tide cannot read holds the backfill.
std::string ThrottleAnswerProblem(const pqxx::result& r);

}  // namespace tide::pg_internal

// In a PgPlanDatabase method returning Status or Result: (re)opens the session, or returns why
// it cannot.
#define TIDE_CONNECTED()          \
  do {                            \
    Status s_ = Connected();      \
    if (!s_.ok()) return s_;      \
  } while (0)
