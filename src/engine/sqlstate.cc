#include "engine/sqlstate.h"

namespace tide {

Status::Code ClassifySqlstate(const std::string& s) {
  if (s == "40001" || s == "40P01" || s == "55P03" || s == "57014") return Status::Code::kRetryable;
  if (s.rfind("08", 0) == 0) return Status::Code::kRetryable;
  if (s == "57P01" || s == "57P02" || s == "57P03") return Status::Code::kRetryable;
  if (s == "40003") return Status::Code::kInDoubt;
  return Status::Code::kFatal;
}

std::string RetryKind(const Status& s) {
  const std::string& c = s.sqlstate();
  if (c == "55P03") return "lock_timeout";
  if (c == "57014") return "statement_timeout";
  if (c == "40001") return "serialization";
  if (c == "40P01") return "deadlock";
  if (c.rfind("08", 0) == 0 || c.rfind("57P0", 0) == 0) return "connection";
  if (s.code() == Status::Code::kInDoubt) return "in_doubt";
  return "other";
}

bool IsConnectionLoss(const Status& s) {
  const std::string& c = s.sqlstate();
  return c.rfind("08", 0) == 0 || c == "57P01" || c == "57P02" || c == "57P03";
}

bool MayRetry(const Status& s, int attempts, int limit) {
  const bool transient = s.code() == Status::Code::kRetryable || s.code() == Status::Code::kInDoubt;
  return transient && (attempts < limit || IsConnectionLoss(s));
}

Status StatusFromSqlstate(const std::string& sqlstate, const std::string& message) {
  switch (ClassifySqlstate(sqlstate)) {
    case Status::Code::kRetryable: return Status::Retryable(message, sqlstate);
    case Status::Code::kInDoubt: return Status::InDoubt(message);
    default: return Status::Fatal(message, sqlstate);
  }
}

namespace {
// A primary message that quotes the value it could not take: `invalid input syntax for type
// integer: "five stars"`, `invalid input value for enum mood: "x"`, `value "99999999999" is out
// of range for type integer`. The value is withheld, the rest kept.
std::string WithoutQuotedValue(std::string line) {
  for (const char* head : {"invalid input syntax for type ", "invalid input value for enum ",
                           "invalid input syntax for "}) {
    const size_t at = line.find(head);
    if (at == std::string::npos) continue;
    const size_t colon = line.find(": \"", at);
    if (colon == std::string::npos) continue;
    const size_t close = line.rfind('"');
    if (close <= colon + 2) continue;
    return line.substr(0, colon) + ": (value withheld)" + line.substr(close + 1);
  }
  const size_t value = line.find("value \"");
  const size_t range = line.find("\" is out of range for type ");
  if (value != std::string::npos && range != std::string::npos && range > value) {
    return line.substr(0, value) + "value (withheld)" + line.substr(range + 1);
  }
  return line;
}
}  // namespace

std::string WithoutRowData(const std::string& message) {
  std::string out;
  bool withheld = false;
  size_t start = 0;
  while (start < message.size()) {
    size_t end = message.find('\n', start);
    if (end == std::string::npos) end = message.size();
    const std::string line = message.substr(start, end - start);
    // DETAIL lines that quote values: a failing row, a key and its value, a JSON token.
    const bool quotes_row = line.rfind("DETAIL:", 0) == 0 &&
                            (line.find("Failing row contains") != std::string::npos ||
                             line.find("Key (") != std::string::npos ||
                             line.find(")=(") != std::string::npos ||
                             line.find("Token \"") != std::string::npos);
    if (quotes_row) {
      withheld = true;
    } else {
      out += (out.empty() ? "" : "\n") + WithoutQuotedValue(line);
    }
    start = end + 1;
  }
  if (withheld) out += " (DETAIL withheld: it may quote row data)";
  return out;
}

}  // namespace tide
