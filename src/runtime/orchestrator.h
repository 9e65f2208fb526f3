// The orchestrator: admits plans from the spool and drives each one through its phases.
//
// Threading: every method and every completion handler runs on the io_context's thread (one
// thread runs it). Blocking database work is posted to a separate thread pool and its result
// posted back, so the orchestrator's own state needs no lock. A plan runs one action at a time;
// plans run side by side. Every wait (retry backoff, gate re-check) is a steady_timer.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "engine/live_settings.h"
#include "engine/rollout.h"
#include "engine/sqlstate.h"
#include "runtime/offloader.h"
#include "runtime/retry.h"
#include "runtime/server_health.h"
#include "runtime/spool.h"
#include "tide/config.h"
#include "tide/ports.h"

namespace tide {

struct OrchestratorOptions {
  int max_retries = 5;               // per action, for retryable errors
  Millis retry_base{500};            // first backoff; doubles, with jitter
  Millis retry_cap{30000};
  Millis reconnect_interval{5000};   // while a database is unreachable at startup
  CommandRunner* commands = nullptr;  // runs backup_command; not owned
  // Plan leases (several tided on one database): who this daemon is (tided uses
  // host:spool:pid, unique to the process; "" makes one up from the host name, pid and a random
  // number), how long a lease lasts, how often this daemon renews its leases and looks for plans
  // whose lease expired (a daemon that died).
  std::string instance;
  // What every instance of this host and spool begins with (tided: host:spool). tided holds the
  // spool's lock, so no other live process has this prefix: a lease whose owner has it belongs
  // to an earlier process on this spool, which is gone. "" when there is no such guarantee.
  std::string instance_prefix;
  Millis lease_ttl{15000};
  Millis lease_renew{5000};
  Millis takeover_scan{5000};
};

class Orchestrator {
 public:
  // Pointers are not owned and must outlive the orchestrator.
  Orchestrator(boost::asio::io_context& io, boost::asio::thread_pool& pool, Config config,
               DatabaseConnector* connector, SpoolPort* spool, AuditSink* audit, Metrics* metrics,
               OrchestratorOptions options = {});
  ~Orchestrator();

  // A plan file found in incoming/: parse, validate, admit or reject.
  void Submit(SpoolFile file);
  // Loads and continues every unfinished plan of every configured database.
  void ResumeAll();
  // Starts no new work; calls `on_idle` once no action is in flight.
  void Shutdown(std::function<void()> on_idle);

  // Operators' pauses. Stored in every configured database (so they outlive a restart and hold
  // plans not submitted yet), audited with who asked, and applied within one batch.
  void Pause(const tide::Pause& pause);
  // Lifts the pauses of `plan` ("*": the global ones; "plan@database": one database's; a plan
  // lifts its databases' too) for `phase` ("": all of them).
  void Resume(const std::string& plan, const std::string& phase, const std::string& actor,
              const std::string& via);
  // An operator's abort of `plan`: a running plan stops and runs its rollback steps; a failed
  // one is loaded and does the same. Refused (and audited with the reason) once contract has
  // started. For a plan on a database group: on each of its databases (only `database`'s
  // when given); a database that has not started is marked aborted, and the rollout starts no
  // new database.
  void Abort(const std::string& plan, const std::string& actor, const std::string& via,
             const std::string& database = "");
  // `tidectl retry PLAN --database DB` for a plan on a database group: its failed databases
  // (only `database`'s when given) go on from where they failed, and the rollout goes on.
  void Retry(const std::string& plan, const std::string& database, const std::string& actor,
             const std::string& via);
  // `tidectl revert PLAN`: a done plan whose switch kept the old columns switches back.
  void Revert(const std::string& plan, const std::string& actor, const std::string& via);
  // `tidectl finalize PLAN` (or its retention passed): the old columns the switch kept go, in
  // every database that has the plan (or only in `only_database`). After a failed revert it
  // gives the revert up: the plan is done again, on the new columns.
  void Finalize(const std::string& plan, const std::string& actor, const std::string& via,
                const std::string& only_database = "");
  // `tidectl set PLAN key=value...`: the change is applied to the plan's stored live settings in
  // each configured database that has the plan unfinished (one change after the other, each in
  // one transaction), audited with who asked, and applied to its running backfill within one
  // batch.
  void Set(const std::string& plan, const LiveChange& change, const std::string& actor,
           const std::string& via);
  // The live settings of `plan` in `database` (empty when none).
  LiveSettings LiveFor(const std::string& database, const std::string& plan) const;
  // The pause holding `phase` of `plan`, or nullptr.
  // (`database`: the run's database, for a plan on a database group; see PauseTarget.)
  const tide::Pause* PausedBy(const std::string& plan, const std::string& phase,
                              const std::string& database = "") const;
  // Applies a reloaded config: defaults and health limits for tasks that start from now on,
  // and max_workers.
  void UpdateConfig(const Config& config);
  // Records an event in the audit log, after every event still waiting to be written; while the
  // log cannot be written, events wait in order (and no new work starts).
  void Audit(AuditEvent event);

  size_t running_plans() const { return runs_.size(); }
  // The databases of the rollout of `plan`, as this daemon knows them (empty: no rollout).
  std::vector<RolloutMember> RolloutMembers(const std::string& plan) const;
  // Why the audit log cannot be written, or "" when it can.
  const std::string& audit_blocked() const { return audit_blocked_; }
  bool is_pending(const std::string& file_name) const { return pending_files_.count(file_name) > 0; }

 private:
  class Run;
  friend class Run;

  // An admission that could not be decided: tried again later when `s` is transient (a lost
  // server, a lock timeout), else rejected with the reason, so that a permanent error
  // (permission denied, say) is in rejected/ and the audit log instead of retried for ever.
  template <typename A>
  static void Undecided(A* a, const std::string& error, const Status& s) {
    a->error = error;
    const bool transient = s.code() == Status::Code::kRetryable ||
                           s.code() == Status::Code::kInDoubt || IsConnectionLoss(s);
    a->kind = transient ? A::Kind::kLater : A::Kind::kReject;
    if (!transient) a->error += "; fix the cause and submit the plan again";
  }

  struct Admission {
    enum class Kind { kAccept, kReject, kLater } kind = Kind::kLater;
    std::string error;
    Plan plan;
    PlanRecord record;
    bool resumed = false;
    std::string preflight;  // the report, as JSON, for a new plan
    std::unique_ptr<PlanDatabase> db;
  };
  Admission Admit(const SpoolFile& file, const Plan& plan, const std::string& checksum);
  // The checks of a plan new to `db` (the lint with the catalog, the tables' keys, the
  // preflight); false with a->kind and a->error set when it cannot be admitted.
  bool CheckNewPlan(PlanDatabase& db, const SpoolFile& file, const Plan& plan, Admission* a);

  // Plans on a database group (see rollouts.cc): each database of the group holds its own
  // copy of the plan (the truth stays with the data), admitted on all of them before any
  // starts; the rollout here decides when each starts and when contract may begin.
  struct RolloutRun {
    Plan plan;  // as submitted: `database` is the group
    std::string file_name;
    std::vector<RolloutMember> members;  // the group's order
    bool aborted = false;                // an operator aborted the whole rollout
    bool halted_announced = false;
    bool file_finished = false;
    // contract: together: every database was ready once; parked ones go on, none parks again.
    bool released = false;
    std::string summary;  // as last logged
  };
  std::map<std::string, RolloutRun> rollouts_;  // by plan name, while its file is active
  // database + "/" + plan of a rollout's databases an abort is deciding about: none starts.
  std::set<std::string> abort_pending_;
  std::set<std::string> starting_;  // "database/plan" of the StartMembers in flight
  // "database/plan" of databases another tided took (its lease) before this one: since when.
  std::map<std::string, SteadyClock::time_point> elsewhere_since_;
  struct RolloutAdmission;
  void SubmitRollout(const SpoolFile& file, const Plan& plan, const std::string& checksum);
  RolloutAdmission AdmitRollout(const SpoolFile& file, const Plan& plan, const std::string& checksum);
  // Re-decides the rollout of `plan`: starts databases whose turn came, notes a halt, finishes
  // the spool file once every database finished for good.
  void AdvanceRollout(const std::string& plan);
  // `restart`: the database's copy was aborted and starts over (tidectl retry).
  // Takes the database's lease of the plan and starts its run there (audited with `stage`), or
  // learns that another tided runs it.
  void StartMember(const std::string& plan, const std::string& database, bool restart = false);
  // A database of `plan` (contract: together) parked ready: its run ended, no session held.
  void MemberParked(const Plan& plan);
  RolloutMember* MemberOf(const std::string& plan, const std::string& database);
  // Its server and the sessions its run needs, for max_connections_per_server.
  void PlaceMember(const Plan& plan, RolloutMember* m);
  // Whether contract of `plan` (one database's copy) must wait for the rollout's other
  // databases (contract: together).
  bool RolloutHoldsContract(const Plan& plan);
  // A database's run of a group's plan reached a final state.
  void MemberEnded(const Plan& plan, PlanState state);
  // Whether a stored plan of `database` names a group `database` belongs to; fills `plan` for
  // that database (group set) when it does.
  bool AsMember(Plan* plan, const std::string& database) const;
  // `elsewhere`: another tided holds the database's lease of the plan.
  void NoteMember(const Plan& plan, const PlanRecord& record, const std::string& database,
                  bool elsewhere);
  void OnAdmitted(const SpoolFile& file, Admission admission);
  void Reject(const SpoolFile& file, const std::string& plan, const std::string& error);
  void ResumeDatabase(const std::string& database);
  void StartRun(Plan plan, PlanRecord record, std::shared_ptr<PlanDatabase> db);
  void OnRunFinished(const std::string& key);
  void CheckIdle();
  void FlushAudit();
  void AuditBlocked(const Status& s);
  void WatchAudit();
  void RenewLeases();
  void OnLeasesRenewed(const std::string& database, const std::vector<std::string>& asked,
                       const std::vector<std::string>& held);

  boost::asio::io_context& io_;
  boost::asio::thread_pool& pool_;
  Config config_;
  DatabaseConnector* connector_;
  SpoolPort* spool_;
  AuditSink* audit_;
  Metrics* metrics_;
  OrchestratorOptions options_;

  std::map<std::string, std::shared_ptr<Run>> runs_;  // key: database + "/" + plan
  // Plans with a revert or finalize being looked up or run (not in runs_ yet): the databases
  // still to answer. A revert and a finalize of one plan never overlap in this daemon; the
  // lease keeps other daemons out.
  std::map<std::string, int> in_flight_;
  bool BeginRevertOrFinalize(const std::string& plan, const char* what, const std::string& actor,
                             const std::string& via);
  void EndRevertOrFinalize(const std::string& plan);
  std::vector<tide::Pause> pauses_;
  // (plan, phase) of the pauses lifted by this daemon, and when: for a minute, a database that
  // still holds one (the resume had not reached it yet) does not bring it back. After that, a
  // database that holds it (it was unreachable during the resume) does: a pause is the safe side.
  static constexpr std::chrono::seconds kLiftedFor{60};
  std::map<std::pair<std::string, std::string>, SteadyClock::time_point> lifted_;
  // database + "/" + plan -> its live settings (tidectl set), as last read or written.
  struct Live {
    LiveSettings settings;
    int64_t version = 0;
  };
  std::map<std::string, Live> live_;
  void OnLiveSettings(const std::string& database, const LiveSettingsRecord& record);
  // `tidectl set` requests, applied one at a time so that they are stored in their order.
  struct LiveRequest {
    std::string plan;
    LiveChange change;
    std::string actor, via;
  };
  std::deque<LiveRequest> live_requests_;
  bool live_busy_ = false;
  void NextLiveRequest();
  std::set<std::string> pending_files_;               // being admitted
  std::set<std::string> waiting_files_;               // admission waits on a transient error
  Offloader offloader_;
  boost::asio::steady_timer audit_timer_;
  boost::asio::steady_timer lease_timer_;
  std::map<std::string, std::shared_ptr<PlanDatabase>> keepers_;  // per database, for leases
  std::deque<AuditEvent> unwritten_;  // in order; written before anything newer
  std::string audit_blocked_;         // why the audit log cannot be written; "": it can
  SteadyClock::time_point audit_blocked_since_;
  WorkerSlots slots_;
  ServerHealth server_health_;  // one health reading per server, shared by its backfills
  bool stopping_ = false;
  std::function<void()> on_idle_;
};

}  // namespace tide
