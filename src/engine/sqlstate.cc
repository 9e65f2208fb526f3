#include "engine/sqlstate.h"

namespace tide {

Status::Code ClassifySqlstate(const std::string& s) {
  if (s == "40001" || s == "40P01" || s == "55P03" || s == "57014") return Status::Code::kRetryable;
  if (s.rfind("08", 0) == 0) return Status::Code::kRetryable;
  if (s == "57P01" || s == "57P02" || s == "57P03") return Status::Code::kRetryable;
  if (s == "40003") return Status::Code::kInDoubt;
  return Status::Code::kFatal;
}

Status StatusFromSqlstate(const std::string& sqlstate, const std::string& message) {
  switch (ClassifySqlstate(sqlstate)) {
    case Status::Code::kRetryable: return Status::Retryable(message, sqlstate);
    case Status::Code::kInDoubt: return Status::InDoubt(message);
    default: return Status::Fatal(message, sqlstate);
  }
}

}  // namespace tide
