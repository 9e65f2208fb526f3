// Status and Result: errors as values.
//
// Inside tide, a function that can fail returns a Status (or a Result<T>); exceptions are caught
// at the edges (libpqxx, yaml-cpp, the filesystem) and turned into these. A Status carries a
// class that tells the caller what to do next: retry, re-check before retrying, or give up.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace tide {

class Status {
 public:
  enum class Code {
    kOk,
    kInvalid,    // bad input: a plan, a config, an argument; fix the input
    kNotFound,   // the thing asked for does not exist
    kRetryable,  // transient: lock timeout, serialization failure, deadlock, lost connection
    kInDoubt,    // a COMMIT whose outcome is unknown: re-read the state before retrying
    kFatal,      // anything else: the operation cannot succeed as it is
    kIo,         // a local file or socket failed
  };

  Status() = default;
  static Status Ok() { return Status(); }
  static Status Invalid(std::string msg) { return Status(Code::kInvalid, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Retryable(std::string msg, std::string sqlstate = "") {
    return Status(Code::kRetryable, std::move(msg), std::move(sqlstate));
  }
  static Status InDoubt(std::string msg) { return Status(Code::kInDoubt, std::move(msg)); }
  static Status Fatal(std::string msg, std::string sqlstate = "") {
    return Status(Code::kFatal, std::move(msg), std::move(sqlstate));
  }
  static Status Io(std::string msg) { return Status(Code::kIo, std::move(msg)); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // The PostgreSQL SQLSTATE when the error came from the server, else empty.
  const std::string& sqlstate() const { return sqlstate_; }
  // Structured facts about the error, as a JSON value (for example the sessions that held a
  // lock tide waited for); empty when there are none.
  const std::string& detail() const { return detail_; }
  Status WithDetail(std::string json) const {
    Status s = *this;
    s.detail_ = std::move(json);
    return s;
  }
  // "message" or "SQLSTATE 42P01: message".
  std::string ToString() const {
    if (ok()) return "ok";
    if (sqlstate_.empty()) return message_;
    return "SQLSTATE " + sqlstate_ + ": " + message_;
  }

 private:
  Status(Code code, std::string msg, std::string sqlstate = "")
      : code_(code), message_(std::move(msg)), sqlstate_(std::move(sqlstate)) {}

  Code code_ = Code::kOk;
  std::string message_;
  std::string sqlstate_;
  std::string detail_;
};

// A value or the Status that explains why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {}  // NOLINT: implicit by design

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // REQUIRES: ok()
  const T& value() const& { return *value_; }
  T& value() & { return *value_; }
  T&& value() && { return std::move(*value_); }
  const T* operator->() const { return &*value_; }
  const T& operator*() const { return *value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace tide
