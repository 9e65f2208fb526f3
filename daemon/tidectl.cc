// tidectl: the operator's command line for tide.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <thread>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "engine/backfill.h"
#include "engine/live_settings.h"
#include "engine/rollout.h"
#include "engine/preflight.h"
#include "pg/pg_database.h"
#include "plan/importer.h"
#include "plan/lint.h"
#include "plan/plan_parser.h"
#include "runtime/control.h"
#include "runtime/files.h"
#include "runtime/signal_watcher.h"
#include "runtime/spool.h"
#include "tide/json.h"
#include "tide/version.h"
#include "util/json_parse.h"
#include "util/sha256.h"
#include "obs/audit_log.h"

namespace {

const char* kUsage =
    "usage: tidectl COMMAND [options]\n"
    "\n"
    "  validate PLAN.yaml [--config FILE]     check a plan offline (with --config, also that its\n"
    "                                         database is configured); exit 1 when invalid\n"
    "  validate PLAN.yaml --db NAME --config FILE [--dry-run]\n"
    "                                         online preflight: tables, columns and keys exist; rows,\n"
    "                                         size and time of each backfill; the lock of every\n"
    "                                         statement; --dry-run runs expand in a transaction that\n"
    "                                         is rolled back and EXPLAINs the first batch and the gates\n"
    "  submit [--spool DIR | --config FILE] PLAN.yaml\n"
    "                                         validate, then drop the plan into the spool\n"
    "  status --config FILE [--json] [--watch] [--database DB]\n"
    "                                         every plan: state, progress, rows/s, ETA, throttling,\n"
    "                                         who paused it; a rollout over a database group at a\n"
    "                                         glance (--database DB: that database in detail);\n"
    "                                         --watch repeats every 2 s\n"
    "  retry PLAN [--database DB] --config FILE\n"
    "                                         resume a failed plan from the step that failed (a\n"
    "                                         rollout: its failed databases, or DB)\n"
    "  abort PLAN [--database DB] --config FILE\n"
    "                                         stop a plan and run its rollback steps (refused once\n"
    "                                         contract has started); a rollout: every database, or DB\n"
    "  revert PLAN --config FILE               switch a done plan's alter_column and rename steps\n"
    "                                         back without losing a write, until it is finalized\n"
    "  finalize PLAN --config FILE             drop the old columns a done plan's switch kept\n"
    "  history --config FILE [--json]          every plan applied to each database: checksum, who\n"
    "                                         submitted it, start and end, outcome\n"
    "  pause (PLAN | --all) [--phase P] [--database DB] --config FILE\n"
    "                                         pause a plan (or hold it before phase P); every plan;\n"
    "                                         one database of a plan on a database group\n"
    "  resume (PLAN | --all) [--phase P] [--database DB] --config FILE\n"
    "  set PLAN key=value... --config FILE     change a running backfill within one batch, and keep\n"
    "                                         the change across restarts: max_rows_per_second,\n"
    "                                         batch_size, target_batch_time, workers, yield_ratio,\n"
    "                                         pause_between_batches, max_replication_lag;\n"
    "                                         key=default goes back to the plan's value\n"
    "  audit (--config FILE | --file PATH) [--plan P] [--event E] [--since 2h] [--follow] [--json]\n"
    "                                         the audit trail as a timeline\n"
    "  audit (--config FILE | --file PATH) --verify\n"
    "                                         check the hash chain; exit 1 naming the first broken line\n"
    "  import FILE.sql [--down FILE.down.sql] [--database DB] [--name NAME] [-o PLAN.yaml]\n"
    "                                         turn a SQL migration (numbered, or Prisma's\n"
    "                                         migration.sql) into a plan; says what became of each statement\n"
    "  import --history DIR --db DB --config FILE\n"
    "                                         record the migrations in DIR that schema_migrations or\n"
    "                                         _prisma_migrations lists as applied: importing them again is refused\n"
    "  version\n";

struct Args {
  std::string command;
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;  // --name value
  std::set<std::string> flags;                 // --name
};

bool ParseArgs(int argc, char** argv, Args* a, std::string* error) {
  static const std::set<std::string> with_value = {"--config", "--spool", "--file", "--plan",
                                                   "--event", "--since", "--phase", "--db",
                                                   "--down", "--database", "--name", "-o", "--history"};
  static const std::set<std::string> flags = {"--json",  "--verify", "--follow",
                                              "--watch", "--all",    "--dry-run"};
  if (argc < 2) return *error = "no command given", false;
  a->command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string s = argv[i];
    if (with_value.count(s)) {
      if (i + 1 >= argc) return *error = s + " needs a value", false;
      a->options[s] = argv[++i];
    } else if (flags.count(s)) {
      a->flags.insert(s);
    } else if (s.rfind("--", 0) == 0) {
      return *error = "unknown option " + s, false;
    } else {
      a->positional.push_back(s);
    }
  }
  return true;
}

// Parses and checks a plan file; prints every problem. Returns the plan's name or "".
bool CheckPlanFile(const std::string& path, const std::string& config_path, std::string* text,
                   bool lint = true) {
  auto content = tide::ReadFile(path, tide::kMaxPlanBytes + 1);
  if (!content.ok()) {
    std::cerr << "tidectl: " << content.status().message() << "\n";
    return false;
  }
  *text = *content;
  auto parsed = tide::ParsePlan(*text, path);
  if (parsed.ok() && !config_path.empty()) {
    auto config = tide::LoadConfigFile(config_path);
    if (!config.ok()) {
      std::cerr << "tidectl: invalid config:\n" << config.status().message();
      return false;
    }
    parsed.errors = tide::CheckPlanAgainstConfig(parsed.plan, path, *config);
  }
  if (parsed.ok() && lint) {
    for (const auto& f : tide::LintPlan(parsed.plan)) {
      parsed.errors.push_back(tide::Diagnostic{"", {}, f.ToString(path), ""});
    }
  }
  if (!parsed.ok()) {
    for (const auto& d : parsed.errors) std::cerr << (d.file.empty() ? d.message : d.ToString()) << "\n";
    std::cerr << path << ": " << parsed.errors.size() << " problem"
              << (parsed.errors.size() == 1 ? "" : "s") << "; the plan was not accepted\n";
    return false;
  }
  const auto& p = parsed.plan;
  std::cout << path << ": plan `" << p.name << "` on database `" << p.database << "` is valid: "
            << p.expand.size() << " expand step(s), " << p.backfill.size()
            << " backfill task(s), " << p.gates.size() << " gate(s), " << p.contract.size()
            << " contract step(s)\n";
  return true;
}

// The online part of `validate`: the preflight report of the plan on database `db`.
int Preflight(const std::string& path, const std::string& text, const std::string& config_path,
              std::string db, bool dry_run) {
  auto config = tide::LoadConfigFile(config_path);
  if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
  const tide::Plan plan = tide::ParsePlan(text, path).plan;
  if (db.empty()) db = plan.database;
  if (!config->databases.count(db)) {
    return std::cerr << "tidectl validate: database `" << db << "` is not in " << config_path << "\n", 2;
  }
  tide::PgConnector connector(config->databases, config->defaults);
  auto conn = connector.ConnectPg(db);
  if (!conn.ok()) return std::cerr << "database " << db << ": " << conn.status().ToString() << "\n", 1;
  // The lint with the catalog at hand: each finding with its table's size, and what only the
  // catalog can tell (a binary-coercible type change, a stable function) decided.
  auto facts = (*conn)->ReadLintFacts(tide::LintQuestionsOf(plan));
  if (!facts.ok()) return std::cerr << "tidectl validate: reading the catalog: " << facts.status().ToString() << "\n", 1;
  const auto findings = tide::LintPlan(plan, &*facts);
  for (const auto& f : findings) std::cerr << f.ToString(path) << "\n";
  if (!findings.empty()) {
    std::cerr << path << ": " << findings.size() << " problem" << (findings.size() == 1 ? "" : "s")
              << " on database `" << db << "`; the plan was not accepted\n";
    return 1;
  }
  auto report = (*conn)->Preflight(plan, dry_run, tide::LimitsFor(plan, config->defaults));
  if (!report.ok()) return std::cerr << "tidectl validate: " << report.status().ToString() << "\n", 1;
  report.value().database = db;
  std::cout << tide::FormatPreflight(*report);
  return report->ok() ? 0 : 1;
}

// The down file beside a numbered migration: 019_x.sql -> 019_x.down.sql, 019_x.up.sql ->
// 019_x.down.sql ("" when none).
std::string DownFileOf(const std::string& up) {
  auto ends = [&](const std::string& e) { return up.size() > e.size() && up.compare(up.size() - e.size(), e.size(), e) == 0; };
  if (!ends(".sql")) return "";
  const std::string down = up.substr(0, up.size() - (ends(".up.sql") ? 7 : 4)) + ".down.sql";
  struct stat st;
  return ::stat(down.c_str(), &st) == 0 ? down : "";
}

bool ImportFile(const std::string& up_path, const std::string& down_path, const tide::ImportOptions& o,
                tide::ImportResult* out) {
  auto up = tide::ReadFile(up_path, tide::kMaxPlanBytes);
  if (!up.ok()) return std::cerr << "tidectl import: " << up.status().message() << "\n", false;
  std::string down_text;
  if (!down_path.empty()) {
    auto down = tide::ReadFile(down_path, tide::kMaxPlanBytes);
    if (!down.ok()) return std::cerr << "tidectl import: " << down.status().message() << "\n", false;
    down_text = *down;
  }
  *out = tide::ImportSql(*up, down_text, o);
  if (!out->error.empty()) return std::cerr << "tidectl import: " << out->error << "\n", false;
  return true;
}

// tidectl import --history DIR: every migration in DIR that the application's tool recorded
// as applied is recorded in tide.plans as done, under the name `tidectl import` gives it.
int ImportHistory(const Args& a) {
  if (!a.options.count("--config") || !a.options.count("--db")) {
    return std::cerr << "tidectl import --history: --db DB and --config FILE are required\n", 2;
  }
  auto config = tide::LoadConfigFile(a.options.at("--config"));
  if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
  const std::string db = a.options.at("--db");
  if (!config->databases.count(db)) return std::cerr << "tidectl import: database `" << db << "` is not in the config\n", 2;
  tide::PgConnector connector(config->databases, config->defaults);
  auto conn = connector.ConnectPg(db);
  if (!conn.ok()) return std::cerr << "database " << db << ": " << conn.status().ToString() << "\n", 1;
  if (auto s = (*conn)->EnsureSchema(); !s.ok()) return std::cerr << "database " << db << ": " << s.ToString() << "\n", 1;
  std::string source;
  auto applied = (*conn)->AppliedMigrations(&source);
  if (!applied.ok()) return std::cerr << "tidectl import: " << applied.status().ToString() << "\n", 1;
  if (source.empty()) {
    return std::cerr << "tidectl import: database `" << db << "` has neither schema_migrations nor "
                        "_prisma_migrations; nothing to record\n", 1;
  }
  std::map<std::string, std::string> when(applied->begin(), applied->end());
  const bool golang = source.find("golang-migrate") != std::string::npos;
  // The files: DIR/NNN_name.sql (not .down.sql), or DIR/<timestamp>_<name>/migration.sql.
  const std::string dir = a.options.at("--history");
  std::vector<std::string> files;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d)) {
      const std::string n = e->d_name;
      if (n == "." || n == "..") continue;
      const std::string path = dir + "/" + n;
      struct stat st;
      if (::stat((path + "/migration.sql").c_str(), &st) == 0) files.push_back(path + "/migration.sql");
      else if (n.size() > 4 && n.compare(n.size() - 4, 4, ".sql") == 0 && n.find(".down.") == std::string::npos) files.push_back(path);
    }
    ::closedir(d);
  } else {
    return std::cerr << "tidectl import: cannot read " << dir << ": " << std::strerror(errno) << "\n", 1;
  }
  std::sort(files.begin(), files.end());
  int recorded = 0, known = 0, pending = 0;
  for (const auto& f : files) {
    // The version the tool records: the file's name without .sql, or Prisma's directory.
    std::string version = f.substr(f.rfind('/') + 1);
    if (version == "migration.sql") {
      const std::string parent = f.substr(0, f.rfind('/'));
      version = parent.substr(parent.rfind('/') + 1);
    } else {
      version.resize(version.size() - (version.size() > 7 && version.compare(version.size() - 7, 7, ".up.sql") == 0 ? 7 : 4));
    }
    // The tool may record the whole name, or only its leading number or timestamp (dbmate,
    // Rails, golang-migrate).
    const std::string number = version.substr(0, version.find_first_not_of("0123456789"));
    std::string applied_key = when.count(version) ? version : (!number.empty() && when.count(number) ? number : "");
    if (golang && !number.empty() && !when.empty()) {
      // golang-migrate: every version up to the recorded one, which is applied unless dirty.
      const auto& [last, dirty] = *when.begin();
      const bool up_to = number.size() < 19 && last.size() < 19 && std::stoll(number) < std::stoll(last);
      const bool at = number.size() < 19 && last.size() < 19 && std::stoll(number) == std::stoll(last);
      if (at && dirty == "dirty") {
        std::cout << "  " << version << ": failed half-way (dirty in schema_migrations): fix it by hand first\n";
        ++pending;
        continue;
      }
      applied_key = up_to || at ? last : "";
    }
    if (applied_key.empty()) {
      ++pending;
      std::cout << "  " << version << ": not applied yet (import it and submit the plan)\n";
      continue;
    }
    tide::ImportOptions o;
    o.file = f;
    o.database = db;
    tide::ImportResult r;
    if (!ImportFile(f, DownFileOf(f), o, &r)) return 1;
    tide::PlanRecord rec;
    rec.name = tide::PlanNameForMigration(f);
    rec.checksum = tide::Sha256Hex(r.yaml);
    rec.file_name = rec.name + ".yaml";
    rec.source = r.yaml;
    rec.submitted_by = "tidectl import --history (" + source + ")";
    const std::string applied_at = golang ? "" : when[applied_key];
    auto added = (*conn)->RecordAppliedBefore(rec, applied_at);
    if (!added.ok()) return std::cerr << "tidectl import: " << added.status().ToString() << "\n", 1;
    if (*added) ++recorded; else ++known;
    std::cout << "  " << version << ": " << (*added ? "recorded as applied" + (applied_at.empty() ? std::string() : " at " + applied_at) : std::string("already known to tide"))
              << " (plan " << rec.name << ")\n";
  }
  std::cout << db << ": " << recorded << " recorded from " << source << ", " << known << " already known, "
            << pending << " not applied yet\n";
  return 0;
}

// tidectl import FILE: the plan on stdout (or in -o FILE), what became of each statement on stderr.
int Import(const Args& a) {
  if (a.options.count("--history")) return ImportHistory(a);
  if (a.positional.size() != 1) {
    return std::cerr << "tidectl import: usage: tidectl import FILE.sql [--down FILE] [--database DB] "
                        "[--name NAME] [-o PLAN.yaml]\n", 2;
  }
  const std::string up = a.positional[0];
  tide::ImportOptions o;
  o.file = up;
  if (a.options.count("--database")) o.database = a.options.at("--database");
  if (a.options.count("--name")) o.name = a.options.at("--name");
  const std::string down = a.options.count("--down") ? a.options.at("--down") : DownFileOf(up);
  tide::ImportResult r;
  if (!ImportFile(up, down, o, &r)) return 1;
  int review = 0;
  for (const auto& n : r.notes) {
    std::cerr << (n.statement ? "statement " + std::to_string(n.statement) : std::string("plan")) << ": " << n.text << "\n";
    review += n.needs_review;
  }
  // The plan as tide will read it.
  const std::string plan_file = a.options.count("-o") ? a.options.at("-o") : "plan.yaml";
  auto parsed = tide::ParsePlan(r.yaml, plan_file);
  for (const auto& d : parsed.errors) std::cerr << "plan: " << d.message << (d.hint.empty() ? "" : "; " + d.hint) << "\n";
  if (parsed.ok()) {
    for (const auto& f : tide::LintPlan(parsed.plan)) {
      std::cerr << f.ToString(plan_file) << "\n";
      ++review;
    }
  }
  if (a.options.count("-o")) {
    const std::string out = a.options.at("-o");
    std::ofstream f(out);
    f << r.yaml;
    if (!f.good()) return std::cerr << "tidectl import: cannot write " << out << "\n", 1;
    std::cerr << "wrote " << out << "\n";
  } else {
    std::cout << r.yaml;
  }
  if (review || !parsed.ok()) {
    std::cerr << (review + parsed.errors.size()) << " thing(s) to review before submitting the plan\n";
    return 1;
  }
  return 0;
}

int Validate(const Args& a) {
  if (a.positional.size() != 1) return std::cerr << "tidectl validate: give one plan file\n", 2;
  std::string text;
  auto it = a.options.find("--config");
  const std::string config_path = it == a.options.end() ? "" : it->second;
  const bool online = a.options.count("--db") || a.flags.count("--dry-run");
  if (online && config_path.empty()) {
    return std::cerr << "tidectl validate: --db and --dry-run need --config FILE\n", 2;
  }
  if (!CheckPlanFile(a.positional[0], config_path, &text, !online)) return 1;
  if (!online) return 0;
  return Preflight(a.positional[0], text, config_path,
                   a.options.count("--db") ? a.options.at("--db") : "", a.flags.count("--dry-run") > 0);
}


// Writes `text` into the spool's incoming/ as `name`, atomically (a dotfile, then rename).
int DropIntoSpool(const std::string& spool_dir, std::string name, const std::string& text) {
  if (!tide::IsPlanFileName(name)) name += ".yaml";
  const std::string incoming = spool_dir + "/incoming";
  const std::string tmp = incoming + "/." + name + ".tmp";
  const std::string dest = incoming + "/" + name;
  struct stat st;
  if (::stat(dest.c_str(), &st) == 0) {
    std::cerr << "tidectl: " << dest << " already exists and is waiting to be picked up\n";
    return 1;
  }
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::cerr << "tidectl: cannot write " << tmp << ": " << std::strerror(errno)
              << "; is the spool's incoming/ folder there and writable?\n";
    return 1;
  }
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  ok = ::fsync(fd) == 0 && ok;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), dest.c_str()) != 0) {
    ::unlink(tmp.c_str());
    std::cerr << "tidectl: cannot place " << dest << ": " << std::strerror(errno) << "\n";
    return 1;
  }
  std::cout << "submitted " << dest << "\n";
  return 0;
}

// Resubmits a failed plan's stored text: the daemon resumes it from the step that failed.
int SendControlRequest(const std::string& spool_dir, const tide::ControlRequest& r);

// Whether the stored plan `p` names a database group of `config`: its group, or "".
std::string GroupOf(const tide::PlanRecord& p, const tide::Config& config) {
  auto parsed = tide::ParsePlan(p.source, p.file_name);
  return config.database_groups.count(parsed.plan.database) ? parsed.plan.database : "";
}

// tidectl retry PLAN [--database DB]: a plan on one database is submitted again (it goes on
// from the step that failed); a plan on a database group has its failed databases (only DB's
// with --database) go on, by a control request to tided.
int Retry(const Args& a) {
  if (a.positional.size() != 1 || !a.options.count("--config")) {
    return std::cerr << "tidectl retry: usage: tidectl retry PLAN [--database DB] --config FILE\n", 2;
  }
  auto config = tide::LoadConfigFile(a.options.at("--config"));
  if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
  tide::PgConnector connector(config->databases, config->defaults);
  const std::string& name = a.positional[0];
  const std::string only = a.options.count("--database") ? a.options.at("--database") : "";
  if (!only.empty() && !config->databases.count(only)) {
    return std::cerr << "tidectl retry: database `" << only << "` is not in the config\n", 1;
  }
  std::string group;
  std::vector<std::string> failed;
  for (const auto& [db_name, db_config] : config->databases) {
    if (!only.empty() && db_name != only) continue;
    auto db = connector.ConnectPg(db_name);
    if (!db.ok()) {
      std::cerr << "database " << db_name << ": " << db.status().ToString() << "\n";
      continue;
    }
    auto found = (*db)->FindPlan(name);
    if (!found.ok() || !found.value()) continue;
    const tide::PlanRecord& p = *found.value();
    const std::string g = GroupOf(p, *config);
    if (g.empty() && !only.empty()) {
      std::cerr << "tidectl retry: plan `" << name << "` runs on one database; leave out --database\n";
      return 2;
    }
    if (!g.empty()) {
      group = g;
      if (p.cursor.state == tide::PlanState::kAborted) {
        failed.push_back(db_name);
        std::cout << "starting `" << name << "` over on `" << db_name << "` (it was aborted)\n";
      } else if (p.cursor.state == tide::PlanState::kFailed) {
        failed.push_back(db_name);
        std::cout << "retrying `" << name << "` on `" << db_name << "` from "
                  << ToString(p.failed_in) << " step " << p.cursor.step + 1 << " (failed: "
                  << p.last_error << ")\n";
      }
      continue;
    }
    if (p.cursor.state != tide::PlanState::kFailed) {
      std::cerr << "tidectl retry: plan `" << name << "` on `" << db_name << "` is "
                << ToString(p.cursor.state) << ", not failed; nothing to retry\n";
      return 1;
    }
    std::cout << "retrying `" << name << "` on `" << db_name << "` from "
              << ToString(p.failed_in) << " step " << p.cursor.step + 1 << " (failed: "
              << p.last_error << ")\n";
    return DropIntoSpool(config->spool_dir, p.file_name, p.source);
  }
  if (!group.empty()) {
    if (failed.empty()) {
      std::cerr << "tidectl retry: no database of `" << name << "` (group " << group << ")"
                << (only.empty() ? "" : " named " + only) << " has failed; nothing to retry\n";
      return 1;
    }
    tide::ControlRequest r;
    r.action = "retry";
    r.plan = name;
    r.database = only;
    return SendControlRequest(config->spool_dir, r);
  }
  std::cerr << "tidectl retry: no plan `" << name << "` in "
            << (only.empty() ? "any configured database" : "database " + only) << "\n";
  return 1;
}

int Submit(const Args& a) {
  if (a.positional.size() != 1) return std::cerr << "tidectl submit: give one plan file\n", 2;
  std::string spool_dir, config_path;
  if (a.options.count("--spool")) spool_dir = a.options.at("--spool");
  if (a.options.count("--config")) {
    config_path = a.options.at("--config");
    auto config = tide::LoadConfigFile(config_path);
    if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
    if (spool_dir.empty()) spool_dir = config->spool_dir;
  }
  if (spool_dir.empty()) return std::cerr << "tidectl submit: give --spool DIR or --config FILE\n", 2;
  std::string text;
  if (!CheckPlanFile(a.positional[0], config_path, &text)) return 1;

  std::string base = a.positional[0];
  return DropIntoSpool(spool_dir, base.substr(base.find_last_of('/') + 1), text);
}


// tidectl pause|resume (PLAN | --all) [--phase P] (--config FILE | --spool DIR): the request goes
// into <spool>/control/, then the queued signal ControlSignal() tells tided to read it.
int PauseOrResume(const Args& a, const std::string& action) {
  std::string spool_dir = a.options.count("--spool") ? a.options.at("--spool") : "";
  if (a.options.count("--config")) {
    auto config = tide::LoadConfigFile(a.options.at("--config"));
    if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
    spool_dir = config->spool_dir;
  }
  const bool all = a.flags.count("--all") > 0;
  if (spool_dir.empty() || (a.positional.size() != 1) == !all) {
    std::cerr << "tidectl " << action << ": usage: tidectl " << action
              << " (PLAN | --all) [--phase expand|backfill|gate|contract] [--database DB] "
                 "(--config FILE | --spool DIR)\n";
    return 2;
  }
  tide::ControlRequest r;
  r.action = action;
  r.plan = all ? "*" : a.positional[0];
  r.phase = a.options.count("--phase") ? a.options.at("--phase") : "";
  r.database = a.options.count("--database") ? a.options.at("--database") : "";
  if (all && !r.database.empty()) {
    return std::cerr << "tidectl " << action << ": --database goes with one plan, not --all\n", 2;
  }
  return SendControlRequest(spool_dir, r);
}

template <typename Fn>
int ForEachDatabase(const tide::Config& config, Fn fn);

// tidectl set PLAN key=value... (--config FILE | --spool DIR): checked here (each setting; with
// --config, that the plan is there and not finished), then sent as a control request.
int Set(const Args& a) {
  const char* usage =
      "tidectl set: usage: tidectl set PLAN key=value... (--config FILE | --spool DIR)\n"
      "  e.g. tidectl set add_clinic_id max_rows_per_second=5000 workers=2\n";
  std::string spool_dir = a.options.count("--spool") ? a.options.at("--spool") : "";
  std::optional<tide::Config> config;
  if (a.options.count("--config")) {
    auto loaded = tide::LoadConfigFile(a.options.at("--config"));
    if (!loaded.ok()) return std::cerr << "tidectl: invalid config:\n" << loaded.status().message(), 1;
    config = *loaded;
    spool_dir = config->spool_dir;
  }
  if (spool_dir.empty() || a.positional.size() < 2) return std::cerr << usage, 2;
  const std::string plan = a.positional[0];
  const std::vector<std::string> items(a.positional.begin() + 1, a.positional.end());
  auto change = tide::ParseLiveChange(items);
  if (!change.ok()) return std::cerr << "tidectl set: " << change.status().message() << "\n", 2;
  if (config) {
    bool found = false, running = false;
    ForEachDatabase(*config, [&](const std::string&, tide::PgPlanDatabase& db) {
      auto p = db.FindPlan(plan);
      if (!p.ok() || !*p) return;
      found = true;
      running |= !tide::IsFinished((*p)->cursor.state);
    });
    if (!found) {
      std::cerr << "tidectl set: no plan `" << plan << "` in any configured database; "
                << "`tidectl status --config " << a.options.at("--config") << "` lists them\n";
      return 1;
    }
    if (!running) {
      std::cerr << "tidectl set: plan `" << plan << "` has finished; there is nothing to change\n";
      return 1;
    }
  }
  tide::ControlRequest r;
  r.action = "set";
  r.plan = plan;
  r.settings = tide::DescribeChange(*change);
  return SendControlRequest(spool_dir, r);
}

// The signal that tells the tided at `pid` to read the control folder: ControlSignal() when it
// reads that one (it blocks it, as tided blocks every signal its signalfd reads); SIGUSR1 queued
// with kControlSignalValue for a tided from before it, which a real-time signal would end, and
// when the process's mask cannot be read; 0 when the process blocks neither, so it is no tided
// (a pid file left behind, its pid taken since) and either signal could end it.
int ControlSignalFor(pid_t pid) {
  const std::optional<bool> reads_control_signal = tide::ProcessBlocksSignal(pid, tide::ControlSignal());
  if (!reads_control_signal) return SIGUSR1;
  if (*reads_control_signal) return tide::ControlSignal();
  return tide::ProcessBlocksSignal(pid, SIGUSR1).value_or(false) ? SIGUSR1 : 0;
}

// Writes the request into <spool>/control/ and tells tided with a queued signal.
int SendControlRequest(const std::string& spool_dir, const tide::ControlRequest& r) {
  const std::string& action = r.action;
  const bool all = r.plan == "*";
  auto check = tide::ParseControlRequest(tide::FormatControlRequest(r));
  if (!check.ok()) return std::cerr << "tidectl " << action << ": " << check.status().message() << "\n", 2;
  const std::string name = std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::system_clock::now().time_since_epoch()).count()) +
                           "-" + std::to_string(::getpid()) + ".json";
  if (auto s = tide::WriteFileAtomically(spool_dir + "/control/" + name, tide::FormatControlRequest(r));
      !s.ok()) {
    std::cerr << "tidectl " << action << ": " << s.message() << "\n";
    return 1;
  }
  auto pid_text = tide::ReadFile(spool_dir + "/tided.pid", 64);
  const pid_t pid = pid_text.ok() ? static_cast<pid_t>(std::atol(pid_text->c_str())) : 0;
  const int signo = pid > 0 ? ControlSignalFor(pid) : 0;
  union sigval value;
  value.sival_int = tide::kControlSignalValue;
  if (signo == 0 || ::sigqueue(pid, signo, value) != 0) {
    std::cout << "tided is not running (or not this spool's); the request waits in "
              << spool_dir << "/control/ and applies when it starts\n";
    return 0;
  }
  std::cout << action << " of " << (all ? "every plan" : "`" + r.plan + "`")
            << (r.phase.empty() ? "" : " (" + r.phase + ")")
            << (r.settings.empty() ? "" : " " + r.settings) << " sent to tided (pid " << pid << ")\n";
  return 0;
}

// Every configured database's plans, or the error of each database that did not answer.
template <typename Fn>
int ForEachDatabase(const tide::Config& config, Fn fn) {
  tide::PgConnector connector(config.databases, config.defaults);
  int rc = 0;
  for (const auto& [name, db_config] : config.databases) {
    auto db = connector.ConnectPg(name);
    if (!db.ok()) {
      std::cerr << "database " << name << ": " << db.status().ToString() << "\n";
      rc = 1;
      continue;
    }
    fn(name, **db);
  }
  return rc;
}

// tidectl abort PLAN: refused here already when the plan is past the point of no return, so
// that the operator learns it at once; tided checks again when it takes the request.
int Abort(const Args& a) {
  if (a.positional.size() != 1 || !a.options.count("--config")) {
    return std::cerr << "tidectl abort: usage: tidectl abort PLAN [--database DB] --config FILE\n", 2;
  }
  auto config = tide::LoadConfigFile(a.options.at("--config"));
  if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
  const std::string& plan = a.positional[0];
  const std::string only = a.options.count("--database") ? a.options.at("--database") : "";
  bool found = false, of_group = false;
  std::string refusal;
  ForEachDatabase(*config, [&](const std::string& db, tide::PgPlanDatabase& conn) {
    if (!only.empty() && db != only) return;
    auto p = conn.FindPlan(plan);
    if (!p.ok() || !p.value()) return;
    found = true;
    of_group |= !GroupOf(*p.value(), *config).empty();
    const std::string why = tide::AbortRefusal(p.value()->cursor.state, p.value()->failed_in);
    if (!why.empty()) refusal += "plan `" + plan + "` on `" + db + "`: " + why + "\n";
  });
  if (!found) {
    return std::cerr << "tidectl abort: no plan `" << plan << "` in "
                     << (only.empty() ? "any configured database" : "database " + only) << "\n", 1;
  }
  // A rollout's databases that are done stay done; the others are aborted.
  if (!refusal.empty() && (!of_group || !only.empty())) {
    return std::cerr << "tidectl abort: refused: " << refusal, 1;
  }
  if (!refusal.empty()) std::cerr << "tidectl abort: these stay as they are: " << refusal;
  tide::ControlRequest r;
  r.action = "abort";
  r.plan = plan;
  r.database = only;
  return SendControlRequest(config->spool_dir, r);
}

// tidectl revert PLAN / tidectl finalize PLAN: checked here first, so that the operator learns
// at once why not; tided checks again when it takes the request.
int RevertOrFinalize(const Args& a) {
  const std::string& cmd = a.command;
  if (a.positional.size() != 1 || !a.options.count("--config")) {
    return std::cerr << "tidectl " << cmd << ": usage: tidectl " << cmd << " PLAN --config FILE\n", 2;
  }
  auto config = tide::LoadConfigFile(a.options.at("--config"));
  if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
  const std::string& plan = a.positional[0];
  bool found = false;
  std::string refusal, kept_list;
  ForEachDatabase(*config, [&](const std::string& db, tide::PgPlanDatabase& conn) {
    auto p = conn.FindPlan(plan);
    if (!p.ok() || !p.value()) return;
    found = true;
    auto kept = conn.ListRetained(plan);
    if (!kept.ok()) {
      refusal += "plan `" + plan + "` on `" + db + "`: " + kept.status().ToString() + "\n";
      return;
    }
    for (const auto& k : *kept) {
      if (!k.kept.empty()) kept_list += " " + k.table_display + "." + k.kept;
    }
    std::string why;
    if (cmd == "revert") {
      auto parsed = tide::ParsePlan(p.value()->source, p.value()->file_name);
      why = parsed.ok() ? tide::RevertRefusal(parsed.plan, p.value()->cursor.state,
                                              p.value()->failed_in, !kept->empty())
                        : "its stored text no longer parses";
    } else {
      why = tide::FinalizeRefusal(p.value()->cursor.state, p.value()->failed_in, !kept->empty());
    }
    if (!why.empty()) refusal += "plan `" + plan + "` on `" + db + "`: " + why + "\n";
  });
  if (!found) return std::cerr << "tidectl " << cmd << ": no plan `" << plan << "` in any configured database\n", 1;
  if (!refusal.empty()) return std::cerr << "tidectl " << cmd << ": refused: " << refusal, 1;
  tide::ControlRequest r;
  r.action = cmd;
  r.plan = plan;
  if (cmd == "finalize") std::cout << "finalizing `" << plan << "`: dropping" << (kept_list.empty() ? " nothing (renames only)" : kept_list) << "\n";
  else std::cout << "reverting `" << plan << "`\n";
  if (const int rc = SendControlRequest(config->spool_dir, r); rc != 0) return rc;
  // tided takes the request within a second or two: wait for what it did, rather than say
  // all is well before it has.
  bool failed_before = false;  // a revert that failed earlier, asked again
  ForEachDatabase(*config, [&](const std::string&, tide::PgPlanDatabase& conn) {
    auto p = conn.FindPlan(plan);
    failed_before |= p.ok() && p.value() && p.value()->cursor.state == tide::PlanState::kFailed;
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(cmd == "finalize" ? 60 : 20);
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    bool finished = true;
    std::string state, error;
    ForEachDatabase(*config, [&](const std::string&, tide::PgPlanDatabase& conn) {
      auto p = conn.FindPlan(plan);
      if (!p.ok() || !p.value()) return;
      state = ToString(p.value()->cursor.state);
      if (p.value()->cursor.state == tide::PlanState::kFailed) error = p.value()->last_error;
      if (cmd == "finalize") {
        auto kept = conn.ListRetained(plan);
        finished &= kept.ok() && kept->empty();
      } else {
        const tide::PlanState s = p.value()->cursor.state;
        finished &= s == tide::PlanState::kReverting || s == tide::PlanState::kReverted ||
                    (s == tide::PlanState::kFailed && !failed_before);
      }
    });
    if (!finished) continue;
    if (!error.empty() && cmd == "revert") {
      std::cerr << "tidectl revert: the revert of `" << plan << "` failed: " << error
                << "\n(`tidectl revert` again once the cause is fixed, or `tidectl finalize` to stay on the "
                   "new columns)\n";
      return 1;
    }
    if (cmd == "finalize") {
      std::cout << "finalized `" << plan << "`: the old columns are dropped\n";
    } else {
      std::cout << "the revert of `" << plan << "` is under way (state " << state
                << "): the kept columns' indexes and constraints are built first, then one short "
                   "switch; follow it with tidectl status\n";
    }
    return 0;
  }
  std::cerr << "tidectl " << cmd << ": tided has not " << (cmd == "finalize" ? "finalized" : "started reverting")
            << " `" << plan << "` yet: is it running? `tidectl audit --config FILE` shows whether it "
               "refused or failed (" << cmd << "_refused, " << cmd << "_failed) and why\n";
  return 1;
}

// tidectl history: every plan each database has seen, oldest first.
int History(const Args& a) {
  if (!a.options.count("--config")) return std::cerr << "tidectl history: --config FILE is required\n", 2;
  auto config = tide::LoadConfigFile(a.options.at("--config"));
  if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
  const bool json = a.flags.count("--json") > 0;
  std::string json_out;
  const int rc = ForEachDatabase(*config, [&](const std::string& db, tide::PgPlanDatabase& conn) {
    auto plans = conn.ListPlans();
    if (!plans.ok()) {
      if (!json) std::cout << "database " << db << ": no plans\n";
      return;
    }
    if (!json) {
      std::printf("%-10s %-40s %-12s %-12s %-16s %-20s %-20s\n", "DATABASE", "PLAN", "OUTCOME",
                  "CHECKSUM", "SUBMITTED BY", "STARTED", "FINISHED");
    }
    for (const auto& p : *plans) {
      std::string outcome = ToString(p.cursor.state);
      if (p.cursor.state == tide::PlanState::kFailed) outcome += " in " + std::string(ToString(p.failed_in));
      if (json) {
        json_out += (json_out.empty() ? "" : ",\n ") +
                    tide::JsonObject()
                        .Str("database", db).Str("plan", p.name).Str("outcome", outcome)
                        .Str("checksum", p.checksum).Str("file", p.file_name)
                        .Str("submitted_by", p.submitted_by).Str("submitted_at", p.submitted_at)
                        .Str("started_at", p.started_at).Str("finished_at", p.finished_at)
                        .Str("error", p.last_error)
                        .ToString();
        continue;
      }
      std::printf("%-10s %-40s %-12s %-12s %-16s %-20s %-20s\n", db.c_str(), p.name.c_str(),
                  outcome.c_str(), p.checksum.substr(0, 12).c_str(), p.submitted_by.c_str(),
                  p.started_at.empty() ? "-" : p.started_at.c_str(),
                  p.finished_at.empty() ? "-" : p.finished_at.c_str());
    }
  });
  if (json) std::cout << "[" << json_out << "]\n";
  return rc;
}

// Whether a plan in `state` runs batches: its backfill, or the gates' catch-up and sweeps.
bool FillsRows(tide::PlanState state) {
  return state == tide::PlanState::kBackfilling || state == tide::PlanState::kGating;
}

std::string FormatEta(int64_t seconds) {
  char buf[32];
  if (seconds >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", static_cast<long>(seconds / 3600), static_cast<long>(seconds % 3600 / 60));
  else if (seconds >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", static_cast<long>(seconds / 60), static_cast<long>(seconds % 60));
  else std::snprintf(buf, sizeof buf, "%lds", static_cast<long>(seconds));
  return buf;
}

std::string Percent(int64_t done, int64_t total) {
  if (total <= 0) return "";
  char buf[16];
  std::snprintf(buf, sizeof buf, " (%.0f%%)", 100.0 * std::min(done, total) / total);
  return buf;
}

// [#####.....] for a fraction.
std::string Bar(int64_t done, int64_t total) {
  if (total <= 0) return "";
  const int width = 20;
  const int filled = static_cast<int>(width * std::min<int64_t>(done, total) / total);
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "] ";
}

int Status(const Args& a);

// `tidectl status --watch`: the status again every two seconds, until interrupted.
int WatchStatus(const Args& a) {
  Args once = a;
  once.flags.erase("--watch");
  for (;;) {
    std::cout << "\033[H\033[2J" << std::flush;  // clear the terminal
    const int rc = Status(once);
    if (rc == 2) return rc;
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
}

// The waiting reason of a database of a rollout whose gates pass while contract waits for the
// others' (contract: together); see Orchestrator::Run::GatesPassed.
constexpr const char* kReadyReason = "the gates pass; contract waits for the other databases";

int Status(const Args& a) {
  if (a.flags.count("--watch")) return WatchStatus(a);
  if (!a.options.count("--config")) return std::cerr << "tidectl status: --config FILE is required\n", 2;
  auto config = tide::LoadConfigFile(a.options.at("--config"));
  if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
  const bool json = a.flags.count("--json") > 0;
  tide::PgConnector connector(config->databases, config->defaults);
  int rc = 0;
  std::string json_out;
  const std::string only = a.options.count("--database") ? a.options.at("--database") : "";
  // Plans on a database group: (group, plan) -> its databases, and their objects for --json.
  std::map<std::pair<std::string, std::string>, std::vector<tide::RolloutMember>> rollouts;
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> rollout_errors;
  std::vector<std::pair<std::pair<std::string, std::string>, tide::JsonObject>> member_json;
  std::set<std::string> unreachable;
  for (const auto& [name, db_config] : config->databases) {
    auto db = connector.ConnectPg(name);
    if (!db.ok()) {
      std::cerr << "database " << name << ": " << db.status().ToString() << "\n";
      unreachable.insert(name);
      rc = 1;
      continue;
    }
    auto plans = (*db)->ListPlans();
    auto tasks = (*db)->ListTaskProgress();
    auto pauses = (*db)->ListPauses();
    auto live = (*db)->ListLiveSettings();
    auto live_of = [&](const std::string& plan) -> std::optional<tide::LiveSettingsRecord> {
      if (!live.ok()) return std::nullopt;
      for (const auto& l : *live) {
        if (l.plan == plan) return l;
      }
      return std::nullopt;
    };
    auto paused_by = [&](const std::string& plan) {
      std::string out;
      if (!pauses.ok()) return out;
      for (const auto& p : *pauses) {
        if (p.plan != "*" && p.plan != plan) continue;
        out += (out.empty() ? "" : "; ") + std::string(p.phase.empty() ? "paused" : "held before " + p.phase) +
               " by " + p.actor + " at " + p.at;
      }
      return out;
    };
    if (!plans.ok() || !tasks.ok()) {
      // No tide schema yet: nothing was ever submitted to this database.
      if (!json) std::cout << "database " << name << ": no plans\n";
      continue;
    }
    for (const auto& p : *plans) {
      tide::JsonObject o;
      o.Str("database", name).Str("plan", p.name).Str("state", ToString(p.cursor.state))
          .Str("phase", tide::PhaseOf(p.cursor.state)).Int("step", p.cursor.step)
          .Str("submitted_by", p.submitted_by).Str("submitted_at", p.submitted_at)
          .Str("started_at", p.started_at).Str("finished_at", p.finished_at)
          .Str("error", p.last_error).Str("waiting", p.waiting_reason);
      int64_t done = 0, est = 0, eta = -1, yield_sessions = 0;
      double rate = 0, yield_rest = 0;
      std::string throttle;
      for (const auto& t : *tasks) {
        if (t.plan != p.name) continue;
        done += t.rows_updated, est += t.rows_estimated;
        if (!t.done) {
          rate = t.rows_per_second, eta = t.eta_seconds, throttle = t.throttle_reason;
          // A failed or aborted plan keeps the last stored yield: shown only while it fills rows.
          if (FillsRows(p.cursor.state)) {
            yield_sessions = t.yield_sessions, yield_rest = t.yield_rest;
          }
        }
      }
      o.Int("rows_done", done).Int("rows_estimated", est).Num("rows_per_second", rate)
          .Int("eta_seconds", eta).Str("throttled", throttle)
          .Int("yielding_to_sessions", yield_sessions).Num("yield_rest_ratio", yield_rest)
          .Str("paused", paused_by(p.name));
      const auto settings = live_of(p.name);
      o.Str("live_settings", settings ? settings->settings : "")
          .Str("live_settings_by", settings ? settings->actor : "")
          .Str("live_settings_at", settings ? settings->at : "");
      // The old columns its switch keeps for `tidectl revert`, and until when.
      std::string kept, kept_until;
      bool keeps = false;
      if (auto k = (*db)->ListRetained(p.name); k.ok()) {
        for (const auto& c : *k) {
          keeps = true;
          kept_until = c.retain_until;
          if (!c.kept.empty()) kept += (kept.empty() ? "" : ", ") + c.table_display + "." + c.kept;
        }
      }
      o.Str("kept_columns", kept).Str("kept_until", keeps ? (kept_until.empty() ? "finalize" : kept_until) : "");
      const std::string group = GroupOf(p, *config);
      if (!group.empty()) {
        const auto key = std::make_pair(group, p.name);
        tide::RolloutMember m;
        m.database = name;
        m.known = true;
        m.state = p.cursor.state;
        m.started = !(p.cursor.state == tide::PlanState::kAccepted && p.started_at.empty());
        m.ready = p.cursor.state == tide::PlanState::kGating &&
                  p.waiting_reason.rfind(kReadyReason, 0) == 0;
        rollouts[key].push_back(m);
        if (!p.last_error.empty() && p.cursor.state == tide::PlanState::kFailed) {
          rollout_errors[key].push_back(name + " failed in " + ToString(p.failed_in) + ": " +
                                        p.last_error);
        }
        o.Str("group", group).Str("rollout_state", tide::RolloutLabel(m));
        if (json) {
          member_json.emplace_back(key, o);
          continue;
        }
        if (only != name) continue;  // one database in detail on request
      } else if (!only.empty() && only != name) {
        continue;
      }
      if (json) {
        json_out += (json_out.empty() ? "" : ",\n ") + o.ToString();
        continue;
      }
      std::cout << name << "/" << p.name << "  " << ToString(p.cursor.state);
      if (p.cursor.state == tide::PlanState::kFailed) std::cout << " (in " << ToString(p.failed_in) << ")";
      std::cout << "\n  submitted " << p.submitted_at << " by " << p.submitted_by;
      if (!p.started_at.empty()) std::cout << ", started " << p.started_at;
      if (!p.finished_at.empty()) std::cout << ", finished " << p.finished_at;
      std::cout << "\n";
      for (const auto& t : *tasks) {
        if (t.plan != p.name) continue;
        std::cout << "  backfill " << t.table << ": " << Bar(t.rows_scanned, t.rows_estimated)
                  << t.rows_updated << " rows updated, "
                  << t.rows_scanned << " scanned of ~" << t.rows_estimated
                  << Percent(t.rows_scanned, t.rows_estimated) << ", " << t.batches
                  << " batches, " << t.ranges << " range" << (t.ranges == 1 ? "" : "s")
                  << (t.pass > 1 ? ", catch-up pass" : "");
        if (t.done) {
          std::cout << ", done\n";
          continue;
        }
        std::cout << ", " << static_cast<int64_t>(t.rows_per_second) << " rows/s, ETA "
                  << (t.eta_seconds < 0 ? std::string("unknown") : FormatEta(t.eta_seconds));
        if (!t.throttle_reason.empty()) std::cout << ", throttled: " << t.throttle_reason;
        if (t.yield_sessions > 0 && FillsRows(p.cursor.state)) {
          // Not throttled: the application is busy, and each batch gives it room.
          std::cout << ", yielding to " << t.yield_sessions << " busy session"
                    << (t.yield_sessions == 1 ? "" : "s") << ": each batch 1/"
                    << fmt::format("{:g}", 1 + t.yield_rest) << " of its size, then a rest "
                    << fmt::format("{:g}", t.yield_rest) << "x as long (yield_ratio)";
        }
        std::cout << "\n";
      }
      if (keeps) {
        std::cout << "  keeps " << (kept.empty() ? "its renames revertible" : "the old " + kept)
                  << " until " << (kept_until.empty() ? "`tidectl finalize`" : kept_until)
                  << ": `tidectl revert " << p.name << "` switches back\n";
      }
      if (!p.last_error.empty()) std::cout << "  error: " << p.last_error << "\n";
      if (!p.waiting_reason.empty() && !tide::IsFinal(p.cursor.state)) {
        std::cout << "  waiting: " << p.waiting_reason << "\n";
      }
      if (!tide::IsFinal(p.cursor.state) && !paused_by(p.name).empty()) {
        std::cout << "  " << paused_by(p.name) << "\n";
      }
      if (settings) {
        std::cout << "  live settings: " << settings->settings << " (set by " << settings->actor
                  << " at " << settings->at << ")\n";
      }
    }
  }
  // Each rollout at a glance: its databases by state, the failures, the unreachable ones.
  std::map<std::pair<std::string, std::string>, std::string> summaries;
  for (auto& [key, members] : rollouts) {
    for (const auto& d : config->database_groups.at(key.first)) {
      if (!unreachable.count(d)) continue;
      tide::RolloutMember m;
      m.database = d;
      members.push_back(m);
    }
    summaries[key] = tide::RolloutSummary(members);
    if (json) continue;
    std::cout << key.first << "/" << key.second << ": " << summaries[key] << "\n";
    for (const auto& e : rollout_errors[key]) std::cout << "  " << e << "\n";
    for (const auto& m : members) {
      if (!m.known) std::cout << "  " << m.database << ": unreachable\n";
    }
    if (only.empty()) {
      std::cout << "  one database in detail: tidectl status --database DB; all: --json\n";
    }
  }
  for (auto& [key, o] : member_json) {
    o.Str("rollout", summaries[key]);
    json_out += (json_out.empty() ? "" : ",\n ") + o.ToString();
  }
  if (json) std::cout << "[" << json_out << "]\n";
  return rc;
}

std::string Describe(const tide::FlatJson& e) {
  auto get = [&](const std::string& k) {
    auto it = e.find(k);
    return it == e.end() ? std::string() : it->second;
  };
  std::string out;
  static const std::set<std::string> skip = {"seq", "ts", "event", "plan", "phase", "actor",
                                             "prev", "hash"};
  for (const auto& [k, v] : e) {
    if (skip.count(k)) continue;
    std::string value = v;
    if (value.size() > 160) value = value.substr(0, 157) + "...";
    for (char& c : value) if (c == '\n') c = ' ';
    out += " " + k + "=" + value;
  }
  std::string head = get("ts") + "  " + get("event");
  if (!get("plan").empty()) head += "  " + get("plan");
  if (!get("phase").empty()) head += " [" + get("phase") + "]";
  if (!get("actor").empty()) head += " by " + get("actor");
  return head + " " + out;
}

// RFC 3339 UTC (as the audit log writes it) of now minus `ago`.
std::string TimeAgo(tide::Millis ago) {
  const auto t = std::chrono::system_clock::now() - ago;
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm;
  gmtime_r(&secs, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  return std::string(buf) + ".000Z";
}

int VerifyAudit(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::cerr << "tidectl audit: cannot read " << path << "\n", 1;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  const tide::ChainCheck c = tide::VerifyAuditChain(lines, "");
  if (c.broken_line) {
    std::cout << path << ":" << c.broken_line << ": the audit chain is broken: " << c.reason << "\n";
    return 1;
  }
  std::cout << path << ": " << lines.size() << " lines, the chain holds\n";
  return 0;
}

int Audit(const Args& a) {
  std::string path;
  if (a.options.count("--file")) {
    path = a.options.at("--file");
  } else if (a.options.count("--config")) {
    auto config = tide::LoadConfigFile(a.options.at("--config"));
    if (!config.ok()) return std::cerr << "tidectl: invalid config:\n" << config.status().message(), 1;
    path = config->audit_log;
  } else {
    return std::cerr << "tidectl audit: give --config FILE or --file PATH\n", 2;
  }
  if (a.flags.count("--verify")) return VerifyAudit(path);
  auto opt = [&](const std::string& k) { return a.options.count(k) ? a.options.at(k) : ""; };
  const std::string plan = opt("--plan"), event = opt("--event");
  std::string since;
  if (!opt("--since").empty()) {
    std::string error;
    auto d = tide::ParseDuration(opt("--since"), &error);
    if (!d) return std::cerr << "tidectl audit: --since: " << error << "\n", 2;
    since = TimeAgo(*d);
  }
  std::ifstream in(path);
  if (!in) return std::cerr << "tidectl audit: cannot read " << path << "\n", 1;
  std::string line;
  int lineno = 0;
  for (;;) {
    if (!std::getline(in, line)) {
      if (!a.flags.count("--follow")) break;
      in.clear();
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      continue;
    }
    ++lineno;
    auto e = tide::ParseFlatJson(line);
    if (!e) {
      std::cerr << path << ":" << lineno << ": not an audit event\n";
      continue;
    }
    if (!plan.empty() && (*e)["plan"] != plan) continue;
    if (!event.empty() && (*e)["event"] != event) continue;
    if (!since.empty() && (*e)["ts"] < since) continue;
    std::cout << (a.flags.count("--json") ? line : Describe(*e)) << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  std::string error;
  if (!ParseArgs(argc, argv, &args, &error)) return std::cerr << "tidectl: " << error << "\n" << kUsage, 2;
  try {
    if (args.command == "validate") return Validate(args);
    if (args.command == "submit") return Submit(args);
    if (args.command == "status") return Status(args);
    if (args.command == "audit") return Audit(args);
    if (args.command == "retry") return Retry(args);
    if (args.command == "abort") return Abort(args);
    if (args.command == "revert" || args.command == "finalize") return RevertOrFinalize(args);
    if (args.command == "import") return Import(args);
    if (args.command == "history") return History(args);
    if (args.command == "pause") return PauseOrResume(args, "pause");
    if (args.command == "resume") return PauseOrResume(args, "resume");
    if (args.command == "set") return Set(args);
    if (args.command == "version") return std::cout << "tidectl " << tide::kTideVersion << "\n", 0;
    if (args.command == "help" || args.command == "--help") return std::cout << kUsage, 0;
  } catch (const std::exception& e) {
    std::cerr << "tidectl: " << e.what() << "\n";
    return 1;
  }
  std::cerr << "tidectl: unknown command `" << args.command << "`\n" << kUsage;
  return 2;
}
