#include "plan/config_parser.h"

#include <fnmatch.h>

#include <algorithm>

#include "plan/duration_ranges.h"
#include "plan/guards_parser.h"
#include "plan/plan_parser.h"
#include "plan/yaml_reader.h"

namespace tide {
namespace {

void ParseDatabases(YamlReader& r, const YAML::Node& node, Config* config) {
  if (!r.ExpectMap(node, "`databases`", {}) && !node.IsMap()) return;
  for (const auto& kv : node) {
    const std::string name = kv.first.Scalar();
    const std::string what = "database `" + name + "`";
    if (!r.ExpectMap(kv.second, what, {"dsn", "dsn_file", "dsn_env", "ddl_dsn", "pooler"}) &&
        !kv.second.IsMap()) {
      continue;
    }
    DatabaseConfig db;
    db.dsn = r.String(kv.second, "dsn", what, false).value_or("");
    db.dsn_file = r.String(kv.second, "dsn_file", what, false).value_or("");
    db.dsn_env = r.String(kv.second, "dsn_env", what, false).value_or("");
    db.ddl_dsn = r.String(kv.second, "ddl_dsn", what, false).value_or("");
    db.pooler = r.String(kv.second, "pooler", what, false).value_or("");
    if (!db.pooler.empty() && db.pooler != "transaction" && db.pooler != "none") {
      r.Error(kv.second["pooler"], what + ": `pooler` is `" + db.pooler + "`",
              "use `transaction` (PgBouncer's pool_mode = transaction) or `none`; leave it out "
              "and tide detects a pooler itself");
    }
    const int set = !db.dsn.empty() + !db.dsn_file.empty() + !db.dsn_env.empty();
    if (set != 1) {
      r.Error(kv.second, what + " must have exactly one of `dsn`, `dsn_file` or `dsn_env`",
              "e.g. `dsn_file: /etc/tide/app.dsn` keeps the password out of this file");
    }
    config->databases[name] = db;
  }
  if (config->databases.empty()) r.Error(node, "`databases` names no database");
}

// database_groups: {name: [database or pattern, ...]}; a pattern ("shard_*", fnmatch's) stands
// for the databases it matches, in name order; a database named twice runs once.
void ParseGroups(YamlReader& r, const YAML::Node& node, Config* config) {
  if (!r.ExpectMap(node, "`database_groups`", {}) && !node.IsMap()) return;
  for (const auto& kv : node) {
    const std::string name = kv.first.Scalar();
    const std::string what = "database group `" + name + "`";
    if (config->databases.count(name)) {
      r.Error(kv.first, what + " has the name of a database",
              "give the group a name of its own, e.g. `" + name + "_all`");
      continue;
    }
    if (!r.ExpectList(kv.second, what)) continue;
    std::vector<std::string> members;
    auto add = [&](const std::string& db) {
      if (std::find(members.begin(), members.end(), db) == members.end()) members.push_back(db);
    };
    for (const auto& entry : kv.second) {
      const std::string e = entry.IsScalar() ? entry.Scalar() : "";
      if (e.empty()) {
        r.Error(entry, "each entry of " + what + " must be a database name or a pattern");
        continue;
      }
      if (e.find_first_of("*?[") == std::string::npos) {
        if (!config->databases.count(e)) {
          r.Error(entry, what + " names `" + e + "`, which is not under `databases`",
                  "add it under `databases:` or remove it from the group");
        } else {
          add(e);
        }
        continue;
      }
      size_t matched = 0;
      for (const auto& db : config->databases) {
        if (::fnmatch(e.c_str(), db.first.c_str(), 0) == 0) add(db.first), ++matched;
      }
      if (matched == 0) {
        r.Error(entry, what + ": the pattern `" + e + "` matches no database under `databases`");
      }
    }
    if (members.empty() && kv.second.IsSequence() && kv.second.size() == 0) {
      r.Error(kv.second, what + " names no database");
    }
    config->database_groups[name] = members;
  }
}

void ParseDefaults(YamlReader& r, const YAML::Node& node, Defaults* d) {
  const std::string what = "`defaults`";
  if (!r.ExpectMap(node, what,
                   {"lock_timeout", "statement_timeout", "gate_timeout", "batch_size",
                    "gate_recheck_interval", "workers", "target_batch_time", "min_batch_size",
                    "max_batch_size", "max_rows_per_second", "pause_between_batches",
                    "max_replication_lag", "max_active_sessions", "throttle_query", "yield_ratio",
                    "ddl_retries"}, GuardKeys()) &&
      !node.IsMap()) {
    return;
  }
  if (auto v = r.Int(node, "workers", what, 1, 64)) d->workers = *v;
  if (auto v = r.Int(node, "ddl_retries", what, 0, 1000)) d->ddl_retries = *v;
  if (auto v = r.Duration(node, "target_batch_time", what, kTargetBatchTimeRange)) {
    d->target_batch_time = *v;
  }
  if (auto v = r.Int(node, "min_batch_size", what, 1, 1000000)) d->min_batch_size = *v;
  if (auto v = r.Int(node, "max_batch_size", what, 1, 1000000)) d->max_batch_size = *v;
  if (auto v = r.Int(node, "max_rows_per_second", what, 0, 100000000)) d->max_rows_per_second = *v;
  if (auto v = r.Duration(node, "pause_between_batches", what, kPauseBetweenBatchesRange)) {
    d->pause_between_batches = *v;
  }
  if (auto v = r.Duration(node, "max_replication_lag", what, kMaxReplicationLagRange)) {
    d->max_replication_lag = *v;
  }
  if (auto v = r.Int(node, "max_active_sessions", what, 0, 100000)) d->max_active_sessions = *v;
  if (auto v = r.String(node, "throttle_query", what, false)) d->throttle_query = *v;
  if (auto v = r.Ratio(node, "yield_ratio", what, 10)) d->yield_ratio = *v;
  ParseGuards(r, node, what, &d->health);
  if (d->min_batch_size > d->max_batch_size) {
    r.Error(node, "`min_batch_size` in `defaults` is above `max_batch_size`");
  }
  if (auto v = r.Duration(node, "lock_timeout", what, kLockTimeoutRange)) d->lock_timeout = *v;
  if (auto v = r.Duration(node, "statement_timeout", what, kStatementTimeoutRange)) {
    d->statement_timeout = *v;
  }
  if (auto v = r.Duration(node, "gate_timeout", what, kGateTimeoutRange)) d->gate_timeout = *v;
  if (auto v = r.Int(node, "batch_size", what, 1, 1000000)) d->batch_size = *v;
  if (auto v = r.Duration(node, "gate_recheck_interval", what, kGateRecheckIntervalRange)) {
    d->gate_recheck_interval = *v;
  }
}

}  // namespace

namespace {
void ParseConfigInto(const std::string& text, const std::string& file, ConfigParseResult* out);
}  // namespace

ConfigParseResult ParseConfig(const std::string& text, const std::string& file) {
  ConfigParseResult result;
  try {
    ParseConfigInto(text, file, &result);
  } catch (const std::exception& e) {
    result.errors.push_back(InternalError(file, e.what()));
  }
  return result;
}

namespace {
void ParseConfigInto(const std::string& text, const std::string& file, ConfigParseResult* out) {
  ConfigParseResult& result = *out;
  YamlReader r(file, &result.errors);
  YAML::Node root;
  if (!r.Load(text, &root, 1 << 20)) return;
  const std::vector<std::string> keys = {"spool_dir", "audit_log", "metrics_listen", "log_level",
                                         "max_workers", "databases", "defaults", "backup_command",
                                         "allowed_submitters", "database_groups",
                                         "max_connections_per_server"};
  if (!r.ExpectMap(root, "the config", keys) && !root.IsMap()) return;
  Config& c = result.config;
  c.spool_dir = r.String(root, "spool_dir", "the config", true).value_or("");
  c.audit_log = r.String(root, "audit_log", "the config", true).value_or("");
  c.metrics_listen = r.String(root, "metrics_listen", "the config", false).value_or(c.metrics_listen);
  c.log_level = r.String(root, "log_level", "the config", false).value_or(c.log_level);
  if (c.metrics_listen.rfind(':') == std::string::npos) {
    r.Error(root["metrics_listen"], "`metrics_listen` must be host:port",
            "e.g. 127.0.0.1:9717");
  }
  static const std::vector<std::string> levels = {"trace", "debug", "info", "warn", "error"};
  if (std::find(levels.begin(), levels.end(), c.log_level) == levels.end()) {
    r.Error(root["log_level"], "`log_level` is `" + c.log_level + "`",
            "use one of trace, debug, info, warn, error");
  }
  if (auto v = r.Int(root, "max_workers", "the config", 1, 256)) c.max_workers = *v;
  if (auto v = r.Int(root, "max_connections_per_server", "the config", 0, 100000)) {
    c.max_connections_per_server = *v;
  }
  c.backup_command = r.String(root, "backup_command", "the config", false).value_or("");
  if (const YAML::Node subs = root["allowed_submitters"]) {
    if (r.ExpectList(subs, "`allowed_submitters`")) {
      for (const auto& u : subs) {
        if (!u.IsScalar() || u.Scalar().empty()) {
          r.Error(u, "each of `allowed_submitters` must be a user name");
          continue;
        }
        c.allowed_submitters.push_back(u.Scalar());
      }
    }
  }
  if (root["databases"]) ParseDatabases(r, root["databases"], &c);
  else r.Error(root, "the config is missing the required key `databases`",
               "add `databases: {app: {dsn: \"host=... dbname=app user=tide\"}}`");
  if (root["database_groups"]) ParseGroups(r, root["database_groups"], &c);
  if (root["defaults"]) ParseDefaults(r, root["defaults"], &c.defaults);
}
}  // namespace

}  // namespace tide
