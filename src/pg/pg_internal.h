// Helpers shared by the files of PgPlanDatabase (src/pg/pg_*.cc). Private to src/pg.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <pqxx/pqxx>

#include "engine/sql_text.h"
#include "tide/ports.h"

namespace tide::pg_internal {

// A transaction of tide's that begins with `locals` (SET LOCAL statements; "" for none): through a
// transaction pooler, where each transaction may land on another server connection and a
// session's settings do not follow, a transaction brings its settings with it and they end
// with it.
class Work : public pqxx::work {
 public:
  Work(pqxx::connection& c, const std::string& locals)
      : pqxx::internal::namedclass("transaction"), pqxx::work(c) {
    if (!locals.empty()) exec0(locals);
  }
};

// SET LOCAL of both timeouts, for the start of a transaction.
inline std::string LimitsSql(const StatementLimits& l) {
  return SetTimeoutSql("lock_timeout", l.lock_timeout, true) + "; " +
         SetTimeoutSql("statement_timeout", l.statement_timeout, true);
}

// A text[] field's elements (NULLs left out).
inline std::vector<std::string> TextArray(const pqxx::field& f) {
  std::vector<std::string> out;
  auto parser = f.as_array();
  for (auto item = parser.get_next(); item.first != pqxx::array_parser::done;
       item = parser.get_next()) {
    if (item.first == pqxx::array_parser::string_value) out.push_back(item.second);
  }
  return out;
}

// A row's fields as text (a key's values).
inline std::vector<std::string> RowText(const pqxx::row& row) {
  std::vector<std::string> out;
  for (const auto& f : row) out.push_back(f.c_str());
  return out;
}

// Stores the cursor inside `txn`. For a failure, `c` is where the plan stood when it failed.
// With `lease_owner` set, nothing is stored while another daemon holds the plan's lease: the
// transaction is then rolled back by the exception, the step it records with it.
inline void WriteCursor(pqxx::transaction_base& txn, const std::string& lease_owner,
                        const std::string& plan, const PlanCursor& c,
                        const std::string& error = "", bool failed = false) {
  auto r = txn.exec_params(
      "UPDATE tide.plans SET "
      "state = CASE WHEN $6 THEN 'failed' ELSE $2 END, "
      "failed_in = CASE WHEN $6 THEN $2 END, step = $3, catch_up = $4, "
      "last_error = CASE WHEN $6 THEN $5 END, "
      "waiting_reason = CASE WHEN state = CASE WHEN $6 THEN 'failed' ELSE $2 END "
      "THEN waiting_reason ELSE '' END, "
      "started_at = COALESCE(started_at, now()), "
      "finished_at = CASE WHEN $6 OR $2 IN ('done', 'aborted') THEN now() END, "
      "updated_at = now() WHERE name = $1 AND ($7 = '' OR NOT EXISTS (SELECT 1 FROM tide.leases "
      "WHERE plan = $1 AND owner <> $7))",
      plan, ToString(c.state), c.step, c.catch_up, error, failed, lease_owner);
  if (r.affected_rows() != 1 && !lease_owner.empty()) {
    throw std::runtime_error("plan " + plan + ": its lease is held by another tided; nothing "
                             "recorded here");
  }
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
