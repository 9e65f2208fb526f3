#include "obs/audit_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
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

constexpr off_t kTailBlock = 64 * 1024;

// Reads the bytes [from, to) of the file.
bool ReadRange(int fd, off_t from, off_t to, std::string* out) {
  out->resize(static_cast<size_t>(to - from));
  size_t done = 0;
  while (done < out->size()) {
    const ssize_t n = ::pread(fd, &(*out)[done], out->size() - done, from + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// The 1-based number of the line that begins at byte `offset`.
int64_t LineNumberAt(int fd, off_t offset) {
  int64_t newlines = 0;
  std::string block;
  for (off_t at = 0; at < offset; at += kTailBlock) {
    if (!ReadRange(fd, at, std::min(offset, at + kTailBlock), &block)) break;
    newlines += std::count(block.begin(), block.end(), '\n');
  }
  return newlines + 1;
}

// The beginning of a line, printable, for an error message.
std::string Excerpt(const std::string& line) {
  std::string out = line.substr(0, 80);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
  }
  return line.size() > out.size() ? out + "..." : out;
}

}  // namespace

Result<std::optional<AuditLink>> ReadAuditTail(int fd, const std::string& path) {
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    return Status::Io("cannot stat audit log " + path + ": " + std::strerror(errno));
  }
  // `tail` holds the file from `from` to its end. It grows backwards, by blocks that double,
  // until it holds the newline before the last line, or the whole file.
  std::string tail, chunk;
  off_t from = st.st_size;
  size_t begin = 0, end = 0;  // the last line, in tail
  for (off_t block = kTailBlock;; block *= 2) {
    if (from == 0) return std::optional<AuditLink>();  // no line: a new (or emptied) log
    const off_t next = from > block ? from - block : 0;
    errno = 0;
    if (!ReadRange(fd, next, from, &chunk)) {
      return Status::Io("cannot read audit log " + path + ": " +
                        (errno ? std::strerror(errno) : "the file shrank while it was read"));
    }
    tail.insert(0, chunk);
    from = next;
    const size_t last = tail.find_last_not_of('\n');
    if (last == std::string::npos) continue;  // only newlines so far
    const size_t newline = tail.rfind('\n', last);
    if (newline == std::string::npos && from > 0) continue;
    begin = newline == std::string::npos ? 0 : newline + 1;
    end = last + 1;
    break;
  }
  const std::string line = tail.substr(begin, end - begin);
  Result<AuditLink> link = end == tail.size()
                               ? Status::Invalid("no newline follows it (was the write cut short?)")
                               : ParseAuditLink(line);
  if (!link.ok()) {
    return Status::Invalid(
        "the audit log " + path + " ends with a line tided cannot continue the chain from (line " +
        std::to_string(LineNumberAt(fd, from + static_cast<off_t>(begin))) + ": " +
        link.status().message() + "): `" + Excerpt(line) + "`; tided does not start the chain "
        "again at seq 1 over it: repair or remove that line, or move the file away to begin a "
        "new log");
  }
  return std::optional<AuditLink>(link.value());
}

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
  Result<std::optional<AuditLink>> tail = ReadAuditTail(fd_, path_);
  if (!tail.ok()) {
    ::close(fd_);
    fd_ = -1;
    return tail.status();
  }
  if (tail->has_value()) {
    seq_ = tail.value()->seq;
    last_hash_ = tail.value()->hash;
  }
  unsynced_ = false;
  return Status::Ok();
}

Status AuditLog::Check() {
  std::lock_guard<std::mutex> lock(mu_);
  return CheckLocked();
}

// The file at path_ must be the one open: a log that was removed or replaced is opened (created)
// again, the chain going on from the last line written. After a failed sync the open file must
// sync again before anything more is written to it.
Status AuditLog::CheckLocked() {
  struct stat at_path, open_file;
  const bool same = fd_ >= 0 && ::stat(path_.c_str(), &at_path) == 0 &&
                    ::fstat(fd_, &open_file) == 0 && at_path.st_ino == open_file.st_ino &&
                    at_path.st_dev == open_file.st_dev && S_ISREG(at_path.st_mode);
  if (!same) return OpenLocked();
  if (unsynced_ && sync_(fd_) != 0) {
    return Status::Io("cannot sync audit log " + path_ + ": " + std::strerror(errno));
  }
  unsynced_ = false;
  return Status::Ok();
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
  // The whole line is in the file, so seq and the chain move past it whether or not it reaches
  // the disk. Taking it back instead (ftruncate) can fail too, or come after a reader saw it,
  // and a line left behind by a failed take-back would be followed by one with the same seq and
  // a prev that skips it. So the sync failure is reported (the caller holds work and writes the
  // event again once a sync succeeds, under the next seq) and the chain stays whole. A later
  // sync that succeeds does not prove this line reached the disk (a failed writeback may have
  // dropped it), which is why the event is written again rather than taken as recorded.
  ++seq_;
  last_hash_ = hash;
  if (sync_(fd_) != 0) {
    unsynced_ = true;
    return Status::Io("cannot sync audit log " + path_ + ": " + std::strerror(errno) +
                      "; the line of seq " + std::to_string(seq_) + " is in the file but may not be on disk");
  }
  return Status::Ok();
}

}  // namespace tide
