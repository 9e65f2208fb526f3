#include "runtime/control.h"

#include <dirent.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "engine/live_settings.h"
#include "runtime/files.h"
#include "tide/json.h"
#include "util/json_parse.h"

namespace tide {

Result<ControlRequest> ParseControlRequest(const std::string& text) {
  std::string line = text;
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  auto j = ParseFlatJson(line);
  if (!j) return Status::Invalid("not a JSON object");
  ControlRequest r;
  r.action = (*j)["action"];
  r.plan = (*j)["plan"];
  r.phase = (*j)["phase"];
  r.settings = (*j)["settings"];
  r.database = (*j)["database"];
  static const std::vector<std::string> actions = {"pause",  "resume",   "abort", "retry",
                                                   "revert", "finalize", "set"};
  if (std::find(actions.begin(), actions.end(), r.action) == actions.end()) {
    return Status::Invalid("action `" + r.action +
                           "` is not pause, resume, abort, retry, revert, finalize or set");
  }
  if (!r.database.empty() && r.action != "pause" && r.action != "resume" && r.action != "abort" &&
      r.action != "retry") {
    return Status::Invalid("only pause, resume, abort and retry take a database");
  }
  if (!r.database.empty() && r.plan == "*") return Status::Invalid("a database goes with one plan");
  if (r.action == "set") {
    auto change = ParseLiveChange(r.settings);
    if (!change.ok()) return change.status();
  } else if (!r.settings.empty()) {
    return Status::Invalid("only set carries settings");
  }
  if ((r.action == "abort" || r.action == "retry" || r.action == "revert" || r.action == "finalize" || r.action == "set") &&
      (r.plan == "*" || !r.phase.empty())) {
    return Status::Invalid(r.action + " names one plan and no phase");
  }
  if (r.plan.empty()) return Status::Invalid("no plan named (\"*\" for every plan)");
  static const std::vector<std::string> phases = {"", "expand", "backfill", "gate", "contract"};
  if (std::find(phases.begin(), phases.end(), r.phase) == phases.end()) {
    return Status::Invalid("phase `" + r.phase + "` is not one of expand, backfill, gate, contract");
  }
  return r;
}

std::string FormatControlRequest(const ControlRequest& r) {
  JsonObject o;
  o.Str("action", r.action).Str("plan", r.plan).Str("phase", r.phase);
  if (!r.settings.empty()) o.Str("settings", r.settings);
  if (!r.database.empty()) o.Str("database", r.database);
  return o.ToString() + "\n";
}

std::vector<ControlRequest> TakeControlRequests(const std::string& dir,
                                                std::vector<std::string>* errors) {
  std::vector<std::string> names;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string n = e->d_name;
      if (!n.empty() && n[0] != '.' && n.size() > 5 && n.substr(n.size() - 5) == ".json") {
        names.push_back(n);
      }
    }
    ::closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::vector<ControlRequest> out;
  for (const auto& n : names) {
    const std::string path = dir + "/" + n;
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      ::unlink(path.c_str());
      continue;
    }
    auto text = ReadFile(path, 4096);
    ::unlink(path.c_str());
    if (!text.ok()) {
      errors->push_back(path + ": " + text.status().message());
      continue;
    }
    auto r = ParseControlRequest(*text);
    if (!r.ok()) {
      errors->push_back(path + ": " + r.status().message());
      continue;
    }
    ControlRequest req = std::move(r).value();
    req.file = n;
    struct passwd* pw = ::getpwuid(st.st_uid);
    req.owner = (pw ? std::string(pw->pw_name) : "unknown") + " (uid " + std::to_string(st.st_uid) + ")";
    out.push_back(req);
  }
  return out;
}

bool ThrottleFileHolds(const std::string& text, const std::string& plan) {
  bool any = false;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line.resize(hash);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    size_t lead = 0;
    while (lead < line.size() && std::isspace(static_cast<unsigned char>(line[lead]))) ++lead;
    line = line.substr(lead);
    if (!line.empty()) {
      any = true;
      if (line == plan || line == "*") return true;
    }
    start = end + 1;
  }
  return !any;
}

bool ThrottledByFile(const std::string& path, const std::string& plan) {
  struct stat st;
  // Absent: no throttle. Present but not to be looked at (EACCES): it may be there, so it holds.
  if (::stat(path.c_str(), &st) != 0) return errno != ENOENT && errno != ENOTDIR;
  auto text = ReadFile(path, 64 * 1024);
  // There but unreadable: it was put there to throttle.
  return !text.ok() || ThrottleFileHolds(*text, plan);
}

}  // namespace tide
