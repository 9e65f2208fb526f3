// What a PostgreSQL error means for the next move. Pure; the one place SQLSTATEs are classified.
#pragma once

#include <string>

#include "tide/status.h"

namespace tide {

// 40001 serialization failure, 40P01 deadlock, 55P03 lock not available (lock_timeout),
// 57014 query canceled (statement_timeout), 08xxx connection exceptions, 57P01..57P03 server
// shutting down or not yet up: kRetryable. 40003 statement completion unknown: kInDoubt.
// Everything else: kFatal.
Status::Code ClassifySqlstate(const std::string& sqlstate);

// A short, bounded label for a retried error, for metrics: lock_timeout, statement_timeout,
// serialization, deadlock, connection, in_doubt, other.
std::string RetryKind(const Status& s);

// True when the server went away or is not up (08xxx, 57P01..57P03): tide waits for it, retrying
// with capped backoff for as long as it takes, rather than counting it against a retry budget.
bool IsConnectionLoss(const Status& s);

// Whether an error is retried after `attempts` earlier tries, with a budget of `limit`: a
// transient error (kRetryable, kInDoubt) within the budget, and a lost server whatever the count.
bool MayRetry(const Status& s, int attempts, int limit);

// A Status of the right class for a server error.
Status StatusFromSqlstate(const std::string& sqlstate, const std::string& message);

// A server's error message without the DETAIL lines that quote row data ("Failing row
// contains (...)", "Key (email)=(...) already exists"), so that no row, possibly personal data,
// reaches the audit log, last_error or failed/*.error. The message, its HINT and DETAIL lines
// that name objects ("view v depends on column c") stay.
std::string WithoutRowData(const std::string& message);

}  // namespace tide
