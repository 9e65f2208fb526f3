#include "runtime/spool.h"

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "plan/plan_parser.h"

namespace tide {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

Status WriteFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return Status::Io(Errno("cannot write " + path));
  ssize_t n = ::write(fd, text.data(), text.size());
  ::fsync(fd);
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return Status::Io("short write to " + path);
  return Status::Ok();
}

// `name`, or `stem.<timestamp>.ext` when `dir/name` is taken, so nothing is overwritten.
std::string FreeName(const std::string& dir, const std::string& name) {
  if (!Exists(dir + "/" + name) && !Exists(dir + "/" + name + ".error")) return name;
  const size_t dot = name.rfind('.');
  char stamp[32];
  std::time_t now = std::time(nullptr);
  std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", std::gmtime(&now));
  for (int i = 0;; ++i) {
    std::string candidate = name.substr(0, dot) + "." + stamp + (i ? "-" + std::to_string(i) : "") +
                            name.substr(dot);
    if (!Exists(dir + "/" + candidate)) return candidate;
  }
}

}  // namespace

bool IsPlanFileName(const std::string& name) {
  if (name.empty() || name[0] == '.') return false;
  auto ends = [&](const std::string& suffix) {
    return name.size() > suffix.size() &&
           name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends(".yaml") || ends(".yml");
}

Status Spool::CheckSubmission(const std::string& path, const struct stat& st) const {
  if (S_ISLNK(st.st_mode)) {
    return Status::Invalid(path + " is a symbolic link, which tide never follows; copy the plan "
                                  "file itself into incoming/ (tidectl submit does)");
  }
  if (!S_ISREG(st.st_mode)) {
    const char* kind = S_ISFIFO(st.st_mode) ? "a fifo" : S_ISDIR(st.st_mode) ? "a directory"
                       : S_ISSOCK(st.st_mode) ? "a socket" : "a device";
    return Status::Invalid(path + " is " + kind + ", not a regular file; submit a plan file");
  }
  if (st.st_nlink != 1) {
    return Status::Invalid(path + " has " + std::to_string(st.st_nlink) + " hard links; a plan "
                                  "must have one, so that nobody changes it from elsewhere; copy it");
  }
  if (!allowed_uids_.empty() && !allowed_uids_.count(st.st_uid)) {
    struct passwd* pw = ::getpwuid(st.st_uid);
    return Status::Invalid(path + " is owned by " + (pw ? std::string(pw->pw_name) : "uid") +
                           " (uid " + std::to_string(st.st_uid) + "), who is not in the "
                           "config's allowed_submitters; add them there, or submit as one who is");
  }
  return Status::Ok();
}

Status Spool::CheckPermissions() const {
  for (const std::string sub : {"", "/incoming", "/active", "/done", "/failed", "/rejected", "/control"}) {
    const std::string path = dir_ + sub;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return Status::Io(Errno("cannot stat " + path));
    if (S_ISLNK(st.st_mode)) {
      return Status::Invalid(path + " is a symbolic link; make the spool's folders real folders");
    }
    if (st.st_mode & S_IWOTH) {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
      return Status::Invalid(path + " is writable by every user (mode " + mode + "), so anyone "
                             "could submit a plan; run `chmod o-w " + path + "` (and give "
                             "submitters a group instead)");
    }
  }
  return Status::Ok();
}

Status Spool::Prepare() {
  if (::mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST) {
    return Status::Io(Errno("cannot create spool directory " + dir_));
  }
  for (const char* sub : {"incoming", "active", "done", "failed", "rejected", "control"}) {
    const std::string path = dir_ + "/" + sub;
    if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return Status::Io(Errno("cannot create " + path));
    }
  }
  return CheckPermissions();
}

std::vector<std::string> Spool::ListIncoming() const {
  std::vector<std::string> names;
  DIR* d = ::opendir(incoming_dir().c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    if (IsPlanFileName(e->d_name)) names.emplace_back(e->d_name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

Result<SpoolFile> Spool::Read(const std::string& name) const {
  const std::string path = incoming_dir() + "/" + name;
  struct stat link;
  if (::lstat(path.c_str(), &link) != 0) return Status::Io(Errno("cannot stat " + path));
  if (Status s = CheckSubmission(path, link); !s.ok()) return s;
  // O_NOFOLLOW and O_NONBLOCK: a link or fifo swapped in after the lstat neither is followed
  // nor blocks; the inode must be the one checked.
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return Status::Invalid(Errno("cannot open " + path + " without following links"));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_ino != link.st_ino ||
      st.st_dev != link.st_dev) {
    ::close(fd);
    return Status::Invalid(path + " changed while it was read; submit it again");
  }
  SpoolFile file;
  file.name = name;
  std::string buf(kMaxPlanBytes + 1, '\0');
  size_t got = 0;
  while (got < buf.size()) {
    ssize_t n = ::read(fd, &buf[got], buf.size() - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  buf.resize(got);
  file.text = std::move(buf);
  struct passwd* pw = ::getpwuid(st.st_uid);
  file.owner = pw ? pw->pw_name : "uid " + std::to_string(st.st_uid);
  return file;
}

Status Spool::Move(const std::string& from_dir, const std::string& name, const std::string& to_dir,
                   const std::string& error) {
  const std::string from = dir_ + "/" + from_dir + "/" + name;
  const std::string dest_dir = dir_ + "/" + to_dir;
  // active/ holds one file per running plan: a plan adopted after a crash replaces its own copy.
  const std::string target = to_dir == "active" ? name : FreeName(dest_dir, name);
  if (Exists(from) && ::rename(from.c_str(), (dest_dir + "/" + target).c_str()) != 0) {
    return Status::Io(Errno("cannot move " + from + " to " + dest_dir));
  }
  if (!error.empty()) return WriteFile(dest_dir + "/" + target + ".error", error + "\n");
  return Status::Ok();
}

Status Spool::Accept(const std::string& name) { return Move("incoming", name, "active", ""); }

Status Spool::Finish(const std::string& name, bool success, const std::string& error) {
  return Move("active", name, success ? "done" : "failed", success ? "" : error);
}

Status Spool::Reject(const std::string& name, const std::string& error) {
  return Move("incoming", name, "rejected", error);
}

bool Spool::IsActive(const std::string& name) const {
  return ::access((dir_ + "/active/" + name).c_str(), F_OK) == 0;
}

}  // namespace tide
