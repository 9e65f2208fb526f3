#include "obs/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>

#include "util/sha256.h"

namespace tide {

std::string NowRfc3339() {
  using namespace std::chrono;
  const auto now = system_clock::now();
  const std::time_t secs = system_clock::to_time_t(now);
  const auto ms = duration_cast<milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03dZ", buf, static_cast<int>(ms));
  return out;
}

namespace {

// The seq and hash of the last line of an existing log; false for a new or empty one.
bool LastLine(int fd, int64_t* seq, std::string* hash) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || st.st_size == 0) return false;
  const off_t len = std::min<off_t>(st.st_size, 65536);
  std::string tail(static_cast<size_t>(len), '\0');
  if (::pread(fd, &tail[0], tail.size(), st.st_size - len) != len) return false;
  while (!tail.empty() && tail.back() == '\n') tail.pop_back();
  const size_t start = tail.rfind('\n');
  const std::string line = tail.substr(start == std::string::npos ? 0 : start + 1);
  const size_t at = line.find("\"seq\":");
  if (at == std::string::npos) return false;
  *seq = std::strtoll(line.c_str() + at + 6, nullptr, 10);
  *hash = AuditLineHash(line);
  return true;
}

}  // namespace

AuditLog::~AuditLog() {
  if (fd_ >= 0) ::close(fd_);
}

Status AuditLog::Open() {
  std::lock_guard<std::mutex> lock(mu_);
  return OpenLocked();
}

Status AuditLog::OpenLocked() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = ::open(path_.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
  if (fd_ < 0) {
    return Status::Io("cannot open audit log " + path_ + ": " + std::strerror(errno) +
                      "; check that its folder exists and is writable by tided");
  }
  // A reopened file that logrotate emptied keeps the chain and seq of the one before.
  int64_t seq = 0;
  std::string hash;
  if (LastLine(fd_, &seq, &hash)) {
    seq_ = seq;
    last_hash_ = hash;
  }
  return Status::Ok();
}

Status AuditLog::Check() {
  std::lock_guard<std::mutex> lock(mu_);
  return CheckLocked();
}

// The file at path_ must be the one open: a log that was removed or replaced is opened (created)
// again, the chain going on from the last line written.
Status AuditLog::CheckLocked() {
  struct stat at_path, open_file;
  const bool same = fd_ >= 0 && ::stat(path_.c_str(), &at_path) == 0 &&
                    ::fstat(fd_, &open_file) == 0 && at_path.st_ino == open_file.st_ino &&
                    at_path.st_dev == open_file.st_dev && S_ISREG(at_path.st_mode);
  return same ? Status::Ok() : OpenLocked();
}

Status AuditLog::Write(const AuditEvent& event) {
  std::lock_guard<std::mutex> lock(mu_);
  if (Status s = CheckLocked(); !s.ok()) return s;
  std::string line = FormatAuditLine(seq_ + 1, NowRfc3339(), event, last_hash_);
  const std::string hash = line.substr(line.size() - 66, 64);
  line += "\n";
  struct stat before;
  const bool sized = ::fstat(fd_, &before) == 0;
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n != static_cast<ssize_t>(line.size())) {
    const std::string why = n < 0 ? std::strerror(errno) : "short write (is the disk full?)";
    // Never leave half a line: the next attempt writes the whole event again.
    if (n > 0 && sized && ::ftruncate(fd_, before.st_size) != 0) {
      return Status::Io("cannot append to audit log " + path_ + " (" + why + ") nor remove the "
                        "partial line: " + std::strerror(errno));
    }
    return Status::Io("cannot append to audit log " + path_ + ": " + why);
  }
  if (::fdatasync(fd_) != 0) {
    return Status::Io("cannot sync audit log " + path_ + ": " + std::strerror(errno));
  }
  ++seq_;
  last_hash_ = hash;
  return Status::Ok();
}

}  // namespace tide
