// tided: the tide daemon. Wires the spool, the orchestrator, the databases, the audit log and
// the metrics together, and runs them on one io_context until SIGTERM or SIGINT.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <csignal>
#include <cstring>
#include <iostream>
#include <memory>
#include <prometheus/exposer.h>
#include <prometheus/registry.h>

#include "obs/audit_log.h"
#include "obs/prometheus_metrics.h"
#include "obs/systemd_notify.h"
#include "pg/pg_database.h"
#include "runtime/files.h"
#include "runtime/command_runner.h"
#include "runtime/control.h"
#include "runtime/orchestrator.h"
#include "runtime/signal_watcher.h"
#include "runtime/spool_watcher.h"
#include "tide/version.h"

namespace {

const char* kUsage =
    "usage: tided --config FILE [--foreground] [--allow-root]\n"
    "  Runs tide's daemon: picks up plans from the spool directory and applies them.\n"
    "  Logs go to stderr. SIGTERM or SIGINT: finish the statements in flight, record state, exit.\n"
    "  SIGUSR1: pause every plan; SIGUSR2: resume; SIGHUP: reload the config, reopen the audit log.\n";

// The uids whose files in incoming/ are taken: allowed_submitters, else tided's own and root's.
tide::Result<std::set<uid_t>> SubmitterUids(const tide::Config& config) {
  std::set<uid_t> out;
  if (config.allowed_submitters.empty()) return std::set<uid_t>{::geteuid(), 0};
  for (const auto& name : config.allowed_submitters) {
    struct passwd* pw = ::getpwnam(name.c_str());
    if (!pw) {
      return tide::Status::Invalid("allowed_submitters names `" + name + "`, which is not a user "
                                   "on this machine; fix the name or remove it");
    }
    out.insert(pw->pw_uid);
  }
  return out;
}

// The signals tided reads (through its signalfd) and so blocks in every thread.
std::vector<int> WatchedSignals() {
  return {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, tide::ControlSignal()};
}

// The pid written in a spool lock another tided holds. It writes it right after it locks, so an
// empty file is read again for a moment.
std::string LockHolder(int fd) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    char buf[32] = {0};
    const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
    const long pid = n > 0 ? std::strtol(buf, nullptr, 10) : 0;
    if (pid > 0) return std::to_string(pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return "unknown";
}

// Takes <spool>/tided.lock, an exclusive flock, so that no two tided ever share a spool, and
// writes this pid in it. The descriptor is never closed: the lock lasts as long as the process
// (O_CLOEXEC, so a backup command does not inherit it). The file stays when tided exits, since a
// removed lock file could be locked afresh by one tided while another still holds the old one.
tide::Status LockSpool(const std::string& spool_dir) {
  if (::mkdir(spool_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return tide::Status::Io("cannot create spool directory " + spool_dir + ": " + std::strerror(errno));
  }
  const std::string path = spool_dir + "/tided.lock";
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return tide::Status::Io("cannot open " + path + ": " + std::strerror(errno));
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    const std::string holder = err == EWOULDBLOCK ? LockHolder(fd) : "";
    ::close(fd);
    if (err != EWOULDBLOCK) return tide::Status::Io("cannot lock " + path + ": " + std::strerror(err));
    return tide::Status::Invalid("another tided (pid " + holder + ") is running on spool " +
                                 spool_dir + "; stop it first or give this one its own spool_dir");
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd, 0) != 0 ||
      ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return tide::Status::Io("cannot write " + path + ": " + why);
  }
  return tide::Status::Ok();
}

void WarnIfMetricsArePublic(const std::string& listen) {
  const std::string host = listen.substr(0, listen.rfind(':'));
  if (host.rfind("127.", 0) == 0 || host == "localhost" || host == "[::1]" || host == "::1") return;
  spdlog::warn("metrics listen on {}, reachable from other hosts: plan names and table names "
               "are visible there; bind 127.0.0.1 and scrape through a proxy if that is not meant",
               listen);
}

int Run(const std::string& config_path) {
  auto config = tide::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::cerr << "tided: invalid config:\n" << config.status().message();
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(config->log_level));
  if (auto s = LockSpool(config->spool_dir); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }

  auto submitters = SubmitterUids(*config);
  if (!submitters.ok()) {
    spdlog::critical("{}", submitters.status().message());
    return 1;
  }
  WarnIfMetricsArePublic(config->metrics_listen);
  tide::Spool spool(config->spool_dir, *submitters);
  if (auto s = spool.Prepare(); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  tide::AuditLog audit(config->audit_log);
  if (auto s = audit.Open(); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  tide::PrometheusMetrics metrics;
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(config->metrics_listen);
    std::weak_ptr<prometheus::Collectable> collectable = metrics.registry();
    exposer->RegisterCollectable(collectable);
  } catch (const std::exception& e) {
    spdlog::critical("cannot listen for metrics on {}: {}; set `metrics_listen` to a free "
                     "host:port", config->metrics_listen, e.what());
    return 1;
  }

  boost::asio::io_context io;
  // Blocking database work: one thread per backfill worker, plus room for plans between
  // batches, health monitors and admissions.
  boost::asio::thread_pool pool(static_cast<size_t>(config->max_workers) + 4);
  tide::ShellCommandRunner commands;
  tide::OrchestratorOptions options;
  options.commands = &commands;
  // Unique to this process. The spool lock makes it the only live one with the prefix
  // host:spool, so leases whose owner has that prefix were an earlier process's on this spool.
  // The host is its name and machine id: cloned machines may share a name.
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  std::string machine;
  std::ifstream machine_id("/etc/machine-id");
  std::getline(machine_id, machine);
  options.instance_prefix = std::string(host) + (machine.empty() ? "" : "." + machine.substr(0, 12)) +
                            ":" + config->spool_dir;
  options.instance = options.instance_prefix + ":" + std::to_string(::getpid());
  tide::PgConnector connector(config->databases, config->defaults, options.instance);
  tide::Orchestrator orchestrator(io, pool, *config, &connector, &spool, &audit, &metrics, options);
  tide::SpoolWatcher watcher(io, &spool, [&](tide::SpoolFile f) { orchestrator.Submit(std::move(f)); });

  // tided's own events go through the orchestrator too, so that while the log cannot be written
  // they wait in order with the others.
  orchestrator.Audit({"daemon_started", "", "", "",
                      tide::JsonObject()
                          .Str("version", tide::kTideVersion)
                          .Int("pid", ::getpid())
                          .Str("config", config_path)
                          .Str("spool", config->spool_dir)});
  spdlog::info("tided {} started (pid {}); spool {}, metrics on {}", tide::kTideVersion,
               ::getpid(), config->spool_dir, config->metrics_listen);

  orchestrator.ResumeAll();
  if (auto s = watcher.Start(); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  // Ready once the spool is watched and each database has answered (or said why not).
  tide::SystemdNotifier notifier;
  std::string unreachable;
  for (const auto& kv : config->databases) {
    auto db = connector.Connect(kv.first);
    if (!db.ok()) {
      unreachable += (unreachable.empty() ? "" : ", ") + kv.first;
      spdlog::warn("database {}: {}; plans for it wait until it answers", kv.first,
                   db.status().ToString());
    }
  }
  auto summary = [&] {
    std::string s = std::to_string(orchestrator.running_plans()) + " plan(s) running";
    if (!unreachable.empty()) s += "; unreachable at start: " + unreachable;
    if (!orchestrator.audit_blocked().empty()) {
      s = "HOLDING ALL WORK: the audit log cannot be written (" + orchestrator.audit_blocked() + "); " + s;
    }
    return s;
  };
  notifier.Ready(summary());
  boost::asio::steady_timer status_timer(io);
  std::function<void(const boost::system::error_code&)> on_status_tick =
      [&](const boost::system::error_code& ec) {
        if (ec) return;
        notifier.Status(summary());
        status_timer.expires_after(std::chrono::seconds(5));
        status_timer.async_wait(on_status_tick);
      };
  status_timer.expires_after(std::chrono::seconds(5));
  status_timer.async_wait(on_status_tick);
  // The watchdog is fed from the event loop, so a stuck loop is what it catches.
  boost::asio::steady_timer watchdog_timer(io);
  const auto watchdog_every = notifier.WatchdogInterval();
  std::function<void(const boost::system::error_code&)> on_watchdog =
      [&](const boost::system::error_code& ec) {
        if (ec) return;
        notifier.Watchdog();
        watchdog_timer.expires_after(watchdog_every);
        watchdog_timer.async_wait(on_watchdog);
      };
  if (watchdog_every.count() > 0) on_watchdog({});

  const std::string control_dir = config->spool_dir + "/control";
  auto apply_control = [&](const std::string& sender) {
    std::vector<std::string> errors;
    for (const auto& r : tide::TakeControlRequests(control_dir, &errors)) {
      const std::string actor = r.owner + " via tidectl" + (sender.empty() ? "" : "; signal from " + sender);
      if (r.action == "abort") {
        orchestrator.Abort(r.plan, actor, "tidectl", r.database);
      } else if (r.action == "retry") {
        orchestrator.Retry(r.plan, r.database, actor, "tidectl");
      } else if (r.action == "revert") {
        orchestrator.Revert(r.plan, actor, "tidectl");
      } else if (r.action == "finalize") {
        orchestrator.Finalize(r.plan, actor, "tidectl");
      } else if (r.action == "set") {
        auto change = tide::ParseLiveChange(r.settings);
        if (!change.ok()) {
          errors.push_back(r.file + ": " + change.status().message());
          continue;
        }
        orchestrator.Set(r.plan, *change, actor, "tidectl");
      } else if (r.action == "pause") {
        orchestrator.Pause(tide::Pause{tide::PauseTarget(r.plan, r.database), r.phase, actor,
                                       "tidectl", tide::NowRfc3339()});
      } else {
        orchestrator.Resume(tide::PauseTarget(r.plan, r.database), r.phase, actor, "tidectl");
      }
    }
    for (const auto& e : errors) spdlog::warn("control request refused: {}", e);
  };
  apply_control("");  // requests left while tided was not running

  int stop_signals = 0;
  tide::SignalWatcher signals(io, WatchedSignals(), [&](const tide::SignalEvent& e) {
    const std::string sender = tide::DescribeSender(e.pid, e.uid);
    // tidectl's "read the control folder": the real-time signal, or from an older tidectl a
    // SIGUSR1 queued with the value. Any other SIGUSR1 is a pause of everything.
    if (e.signo == tide::ControlSignal() ||
        (e.signo == SIGUSR1 && e.queued && e.value == tide::kControlSignalValue)) {
      return apply_control(sender);
    }
    if (e.signo == SIGUSR1) {
      return orchestrator.Pause(tide::Pause{"*", "", sender, "kill", tide::NowRfc3339()});
    }
    if (e.signo == SIGUSR2) return orchestrator.Resume("*", "", sender, "kill");
    if (e.signo == SIGHUP) {
      auto fresh = tide::LoadConfigFile(config_path);
      if (!fresh.ok()) {
        spdlog::error("SIGHUP from {}: the new config is refused, the old one stays:\n{}", sender,
                      fresh.status().message());
        orchestrator.Audit({"config_refused", "", "", sender,
                            tide::JsonObject().Str("reason", fresh.status().message())});
        return;
      }
      spdlog::set_level(spdlog::level::from_str(fresh->log_level));
      orchestrator.UpdateConfig(*fresh);
      const tide::Status reopened = audit.Open();
      if (!reopened.ok()) spdlog::error("{}", reopened.ToString());
      orchestrator.Audit({"config_reloaded", "", "", sender,
                          tide::JsonObject().Str("config", config_path).Int("max_workers", fresh->max_workers)});
      spdlog::info("SIGHUP from {}: config reloaded{}", sender, reopened.ok() ? ", audit log reopened" : "");
      return;
    }
    if (++stop_signals > 1) {
      spdlog::warn("second {}: exiting now; statements in flight are rolled back",
                   strsignal(e.signo));
      orchestrator.Audit({"daemon_stopped", "", "", sender, tide::JsonObject().Str("how", "forced")});
      std::_Exit(1);
    }
    spdlog::info("{} from {}: finishing the statements in flight, then stopping",
                 strsignal(e.signo), sender);
    orchestrator.Audit({"daemon_stopping", "", "", sender, tide::JsonObject()});
    notifier.Stopping();
    status_timer.cancel();
    watchdog_timer.cancel();
    watcher.Stop();
    orchestrator.Shutdown([&] { io.stop(); });
  });
  if (auto s = signals.Start(); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }
  const std::string pid_file = config->spool_dir + "/tided.pid";
  tide::WriteFileAtomically(pid_file, std::to_string(::getpid()) + "\n");

  io.run();
  pool.join();
  ::unlink(pid_file.c_str());
  // The event loop has stopped, so this is the last event: the orchestrator writes what still
  // waits for the log, then this, before the process ends.
  orchestrator.Audit({"daemon_stopped", "", "", "", tide::JsonObject().Str("how", "graceful")});
  if (!orchestrator.audit_blocked().empty()) {
    spdlog::error("the audit log cannot be written ({}); the events still waiting, daemon_stopped "
                  "the last of them, are not recorded", orchestrator.audit_blocked());
  }
  spdlog::info("tided stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists, so that every thread inherits the mask and these signals are only
  // ever read from the signalfd, with their sender.
  if (auto s = tide::SignalWatcher::BlockSignals(WatchedSignals()); !s.ok()) {
    std::cerr << "tided: " << s.ToString() << "\n";
    return 1;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("tided"));
  std::string config_path;
  bool allow_root = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) config_path = argv[++i];
    else if (a == "--allow-root") allow_root = true;
    else if (a.rfind("--config=", 0) == 0) config_path = a.substr(9);
    else if (a == "--foreground") continue;
    else if (a == "--version") return std::cout << "tided " << tide::kTideVersion << "\n", 0;
    else if (a == "--help" || a == "-h") return std::cout << kUsage, 0;
    else return std::cerr << "tided: unknown argument `" << a << "`\n" << kUsage, 2;
  }
  if (config_path.empty()) return std::cerr << "tided: --config is required\n" << kUsage, 2;
  if (::geteuid() == 0 && !allow_root) {
    std::cerr << "tided: refusing to run as root: run it as its own user (systemd/tided.service "
                 "runs it as `tide`), or pass --allow-root if you really mean it\n";
    return 2;
  }
  try {
    return Run(config_path);
  } catch (const std::exception& e) {
    spdlog::critical("unexpected error: {}", e.what());
    return 1;
  }
}
