// One backfill task of a plan, on several workers.
//
// The task's key range is split into disjoint ranges (by value for integer keys, else at a
// sample of the keys); each range has its own checkpoint row, advanced in the transaction of
// every batch. Workers ("lanes", each with its own database session) take ranges until none is
// left. Every batch's size comes from the adaptive BatchSizer, scaled by the throttle; a shared
// RateLimiter holds the task to max_rows_per_second; a monitor reads the database's health every
// second and decides whether to run, slow down or wait. Transient errors are retried per lane,
// from the stored checkpoint, with exponential backoff; a statement timeout halves the batch
// first.
//
// Threading: io thread only; blocking work goes through the Offloader.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/backfill.h"
#include "engine/batch_sizer.h"
#include "engine/live_settings.h"
#include "engine/rate_limiter.h"
#include "engine/throttle.h"
#include "runtime/offloader.h"
#include "runtime/retry.h"
#include "tide/ports.h"

namespace tide {

class ServerHealth;

struct BackfillEnv {
  Offloader* offload;
  DatabaseConnector* connector;
  Metrics* metrics;
  WorkerSlots* slots;
  std::function<void(const std::string& event, JsonObject details)> audit;
  std::function<bool()> stopping;
  std::function<bool()> paused;  // an operator paused the backfill: start no new batch
  std::function<HealthLimits()> health;  // the limits in force now (a SIGHUP may change them)
  // Whether the operator's throttle file (<spool>/control/throttle) holds `plan` now.
  std::function<bool(const std::string& plan)> throttle_file;
  // The health readings shared with the other backfills on the database's server (null: the
  // task reads its own), and that server.
  ServerHealth* server_health = nullptr;
  std::string server;
  int max_retries = 5;
  Millis retry_base{500};
  Millis retry_cap{30000};
};

// What a finished task did, for the audit log.
struct BackfillSummary {
  int64_t rows_updated = 0;
  int64_t rows_scanned = 0;
  int64_t batches = 0;
  int ranges = 0;
  int pass = 1;
  // kSweep: the rows still pending that no update can fill, and a few of their keys.
  int64_t unfillable = 0;
  std::string unfillable_keys;
  // kVerify: the rows whose stored value differs from their expression's, and a few keys.
  int64_t differing = 0;
  std::vector<std::string> differing_keys;
  int64_t vacuums = 0;  // VACUUMs between batches
};

// What a BackfillRun covers.
enum class BackfillMode {
  kPass,   // every range, from its checkpoint (a pass of the task)
  kTail,   // rows added above the last range's last key since it finished
  kSweep,  // rows still pending anywhere, found by a scan (written behind the passes)
  kVerify,  // every row read in key order, its set columns compared with their expressions
};

class BackfillRun : public std::enable_shared_from_this<BackfillRun> {
 public:
  using Done = std::function<void(Status, BackfillSummary)>;

  // kTail and kSweep are the catch-up while the gates wait for rows the application keeps
  // writing: kTail for keys that grow, kSweep for rows written anywhere (random keys).
  BackfillRun(BackfillEnv env, std::string database, std::string plan, int task_index,
              BackfillTask task, int pass, BackfillOptions options, StatementLimits limits,
              BackfillMode mode = BackfillMode::kPass, LiveSettings live = {});
  ~BackfillRun();

  // Calls `done` once: Ok when every range is done, else the error that ended the task.
  // Stops quietly (without calling `done`) when the daemon is stopping.
  void Start(Done done);
  // Cancels every timer; used at shutdown.
  void Stop();
  // Ends the task now with `why` (an operator's abort): no new batch starts; batches in flight
  // commit. Calls `done` with `why`.
  void Cancel(const Status& why) { Finish(why); }
  // An operator's live settings (tidectl set), laid over the task's options: lanes waiting for
  // their next batch start it over with the new values, workers are added or closed, the rate
  // cap and batch size apply from the next batch.
  void ApplyLive(const LiveSettings& live);

 private:
  struct Lane;
  struct Setup;

  void RunSetup();
  void OnSetup(Result<Setup> r);
  void AddLanes();
  void OpenLane(int id);
  void ConnectLane(const std::shared_ptr<Lane>& lane);
  void TakeRange(const std::shared_ptr<Lane>& lane);
  void LaneNext(const std::shared_ptr<Lane>& lane);
  void LaneBatch(const std::shared_ptr<Lane>& lane, int64_t size);
  void OnBatch(const std::shared_ptr<Lane>& lane, int64_t size, Millis elapsed,
               Result<BatchResult> r);
  void OnLaneError(const std::shared_ptr<Lane>& lane, const Status& s);
  void ReloadRange(const std::shared_ptr<Lane>& lane);
  void CloseLane(const std::shared_ptr<Lane>& lane);
  void CountUnfillable();
  void Monitor();
  // Ranges finished in memory (before `read_at`, a done_seq_) that `stored` holds unfinished:
  // done again from their stored checkpoint. Whether there were any.
  bool ReopenLostRanges(const std::vector<TaskCheckpoint>& stored, uint64_t read_at);
  void ConfirmDone();
  void OnHealth(Result<HealthReading> r);
  // The health limits in force: the plan's (a SIGHUP may change them), the live values over them.
  HealthLimits Limits() const;
  // The VACUUM between batches, on a session of its own.
  void MaybeVacuum(const Result<DeadTuples>& dead);
  void RunVacuum(const DeadTuples& dead);
  // Cancels tide's VACUUM while it runs (a shutdown, a task that failed or was aborted).
  void CancelVacuum();
  void Finish(const Status& s);
  // Calls done_ once finished and no VACUUM of tide's runs.
  void CallDone();
  void ReportProgress(int64_t before);
  void After(const std::shared_ptr<boost::asio::steady_timer>& timer, Millis wait,
             std::function<void()> then);
  BackfillSummary Summary() const;
  int64_t EtaSeconds() const;
  double RecentRate() const;
  // Whether the batches yield to other sessions now (a rest after each, see HealthLimits).
  bool Yielding() const;

  BackfillEnv env_;
  const std::string database_, plan_;
  const int index_;
  const BackfillTask task_;
  const int pass_;
  const BackfillOptions base_options_;  // the plan's
  LiveSettings live_;
  BackfillOptions options_;  // base_options_ with live_ over them
  const StatementLimits limits_;
  const BackfillMode mode_;

  Done done_;
  bool finished_ = false;
  int setup_attempts_ = 0;
  std::shared_ptr<boost::asio::steady_timer> timer_;  // setup retries, lane top-ups, monitor
  std::shared_ptr<boost::asio::steady_timer> monitor_timer_;
  std::shared_ptr<PlanDatabase> monitor_db_;
  int64_t monitor_pid_ = 0;
  bool last_health_ok_ = true;  // false: the monitor's session may be new (its pid read again)
  std::vector<uint64_t> done_at_;  // per range: done_seq_ when it was finished here (0: not)
  uint64_t done_seq_ = 0;
  bool confirming_ = false;  // ConfirmDone's read is in flight (on a closed lane's session)
  int confirm_attempts_ = 0;

  BatchStatement statement_;
  std::vector<TaskCheckpoint> ranges_;
  std::vector<bool> taken_;
  std::vector<std::shared_ptr<Lane>> lanes_;
  int open_lanes_ = 0;

  BatchSizer sizer_;
  RateLimiter limiter_;
  LagEstimator lag_;
  ThrottleDecision decision_;
  bool health_read_ = false;  // the first reading has come (and decision_ stems from one)
  ThrottleHold hold_;
  int64_t checkpoints_requested_ = -1;  // at the last reading; -1: none yet
  SteadyClock::time_point throttle_since_, last_throttle_tick_, last_report_,
      started_;
  // (time, rows scanned in this run, ms not throttled) for the rate over the last minute.
  std::deque<std::tuple<SteadyClock::time_point, int64_t, int64_t>> window_;
  int64_t scanned_this_run_ = 0;
  UnfillableRows unfillable_;
  int64_t active_ms_ = 0;
  int64_t differing_ = 0;
  std::vector<std::string> differing_keys_;
  VacuumSchedule vacuums_;
  DeadTuples last_dead_;    // the last reading: between readings, batches decide on it
  bool have_dead_ = false;
  bool vacuum_running_ = false;
  int64_t vacuum_pid_ = 0;  // the session of tide's VACUUM while it runs
  bool vacuum_gave_way_ = false;  // it was cancelled because a session waited for its lock
  int64_t vacuum_count_ = 0;
  Status finish_status_;
};

}  // namespace tide
