#include "runtime/backfill_run.h"

#include <spdlog/spdlog.h>


#include "engine/key_ranges.h"
#include "engine/sqlstate.h"
#include "runtime/retry.h"
#include "runtime/server_health.h"

namespace tide {

namespace asio = boost::asio;

namespace {

// The task's ranges at `pass`: the stored ones, else split and stored: by page (see
// BatchesByPage), else by key (integer keys by value, others at a sample of their keys).
Result<std::vector<TaskCheckpoint>> LoadOrCreateRanges(PlanDatabase& db, const std::string& plan,
                                                       int index, int pass,
                                                       const BackfillTask& task,
                                                       const TableInfo& info, int workers,
                                                       bool moved_rows_caught) {
  auto ranges = db.LoadRanges(plan, index, pass);
  if (!ranges.ok() || !ranges->empty()) return ranges;
  std::string error;
  if (BatchesByPage(task, info, moved_rows_caught, &error)) {
    return db.CreateRanges(plan, index, task.table.Display(), pass,
                           SplitPages(info.pages, info.estimated_rows, workers));
  }
  if (!error.empty()) return Status::Fatal(error);
  std::vector<KeyRange> split{KeyRange{}};
  if (workers > 1 && SplitsByValue(info.key)) {
    auto bounds = db.IntegerKeyBounds(task.table, info.key[0].name);
    if (!bounds.ok()) return bounds.status();
    split = SplitIntegerRange(bounds->first, bounds->second, workers);
  } else if (workers > 1) {
    auto sample = db.SampleKeys(task.table, info.key,
                                SamplePercent(info.estimated_rows, KeysToSample(workers)));
    if (!sample.ok()) return sample.status();
    split = SplitAtSamples(*sample, workers);
  }
  std::vector<RangeBounds> bounds;
  const int64_t share = info.estimated_rows / static_cast<int64_t>(split.size());
  for (const auto& r : split) bounds.push_back(RangeBounds{r.lower, r.upper, RangeUnit::kKey, share});
  return db.CreateRanges(plan, index, task.table.Display(), pass, bounds);
}

// A new session and its backend pid (a lane's, the VACUUM's).
struct OpenedSession {
  std::shared_ptr<PlanDatabase> db;
  int64_t pid = 0;
};
Result<OpenedSession> OpenSession(DatabaseConnector* connector, const std::string& database) {
  auto conn = connector->Connect(database);
  if (!conn.ok()) return conn.status();
  OpenedSession o;
  o.db = std::move(conn).value();
  auto pid = o.db->BackendPid();
  if (!pid.ok()) return pid.status();
  o.pid = *pid;
  return o;
}

}  // namespace

struct BackfillRun::Lane {
  int id = 0;
  std::shared_ptr<PlanDatabase> db;
  int64_t pid = 0;
  int range = -1;  // index into ranges_, -1: none
  int attempts = 0;
  bool closed = false;
  bool busy = false;  // a pool job of this lane is in flight
  bool ran_batch = false;
  Millis last_batch{0};  // how long the lane's last batch took
  std::shared_ptr<asio::steady_timer> timer;
  // Waiting on `timer` for its next batch of `reserved` rows; `wait_gen` orphans that wait
  // when live settings start the lane over.
  bool waiting_batch = false;
  int64_t reserved = 0;
  uint64_t wait_gen = 0;
};

struct BackfillRun::Setup {
  BatchStatement statement;
  std::vector<TaskCheckpoint> ranges;
  std::shared_ptr<PlanDatabase> monitor_db;
  int64_t pid = 0;
};

BackfillRun::BackfillRun(BackfillEnv env, std::string database, std::string plan, int task_index,
                         BackfillTask task, int pass, BackfillOptions options,
                         StatementLimits limits, BackfillMode mode, LiveSettings live)
    : env_(std::move(env)),
      database_(std::move(database)),
      plan_(std::move(plan)),
      index_(task_index),
      task_(std::move(task)),
      pass_(pass),
      base_options_(std::move(options)),
      live_(std::move(live)),
      options_(Overlay(base_options_, live_)),
      limits_(limits),
      mode_(mode),
      timer_(std::make_shared<asio::steady_timer>(env_.offload->io())),
      monitor_timer_(std::make_shared<asio::steady_timer>(env_.offload->io())),
      sizer_(options_.sizer),
      limiter_(options_.max_rows_per_second) {}

BackfillRun::~BackfillRun() {
  if (env_.server_health) env_.server_health->Forget(this);
}

void BackfillRun::Start(Done done) {
  done_ = std::move(done);
  started_ = SteadyClock::now();
  RunSetup();
}

void BackfillRun::Stop() {
  CancelVacuum();
  timer_->cancel();
  monitor_timer_->cancel();
  for (auto& lane : lanes_) lane->timer->cancel();
}

void BackfillRun::After(const std::shared_ptr<asio::steady_timer>& timer, Millis wait,
                        std::function<void()> then) {
  timer->expires_after(wait);
  timer->async_wait([self = shared_from_this(), then](const boost::system::error_code& ec) {
    if (ec == asio::error::operation_aborted || self->env_.stopping()) return;
    then();
  });
}

// Describes the table, plans the ranges (or reads them back) and opens the monitor's session.
void BackfillRun::RunSetup() {
  auto connector = env_.connector;
  const std::string database = database_, plan = plan_;
  const BackfillTask task = task_;
  const int index = index_, pass = pass_, workers = options_.workers;
  const bool moved_rows_caught = options_.moved_rows_caught;
  const BackfillMode mode = mode_;
  const StatementLimits limits = limits_;
  env_.offload->Run<Result<Setup>>(
      [connector, database, plan, task, index, pass, workers, moved_rows_caught, mode,
       limits]() -> Result<Setup> {
        auto conn = connector->Connect(database);
        if (!conn.ok()) return conn.status();
        std::shared_ptr<PlanDatabase> db = std::move(conn).value();
        auto info = db->DescribeTable(task.table, task.key);
        if (!info.ok()) return info.status();
        if (!info->exists) {
          return Status::Fatal("table `" + task.table.Display() + "` does not exist");
        }
        if (info->key.empty()) {
          return Status::Fatal("table `" + task.table.Display() +
                               "` has no primary key; add `key: <column>` (a unique, not-null "
                               "column) to its backfill task");
        }
        Setup setup;
        setup.statement = MakeBatchStatement(task, info->key, info->column_types);
        setup.statement.plan = plan;
        setup.statement.page_shares = moved_rows_caught && HasShareKey(setup.statement);
        // A catch-up pass is over rows the pass before left: those whose expression yields NULL
        // among them were taken once already.
        setup.statement.skip_unfillable = pass > 1;
        // An empty heap has no density to go by: 50 rows a page, as EstimateRows guesses.
        setup.statement.rows_per_page =
            info->pages > 0 && info->estimated_rows > 0
                ? static_cast<double>(info->estimated_rows) / static_cast<double>(info->pages)
                : 50.0;
        if (mode == BackfillMode::kSweep || mode == BackfillMode::kVerify) {
          // No stored ranges: a sweep or a verification keeps no checkpoint, so one in memory
          // stands for it (a verification starts over after a restart).
          TaskCheckpoint all;
          all.pass = pass;
          setup.ranges = {all};
        } else if (mode == BackfillMode::kTail) {
          Status s = db->ReopenTail(plan, index);
          if (!s.ok()) return s;
        } else if (task.sync_trigger) {
          // Before the first batch, so that no row written from now on is missed.
          Status s = db->Execute(MakeSyncTrigger(plan, index, task).create, limits);
          if (!s.ok()) return s;
        }
        if (mode != BackfillMode::kSweep && mode != BackfillMode::kVerify) {
          auto ranges = LoadOrCreateRanges(*db, plan, index, pass, task, *info, workers,
                                           moved_rows_caught);
          if (!ranges.ok()) return ranges.status();
          setup.ranges = std::move(ranges).value();
        }
        auto pid = db->BackendPid();
        if (!pid.ok()) return pid.status();
        setup.pid = *pid;
        setup.monitor_db = db;
        return setup;
      },
      [self = shared_from_this()](Result<Setup> r) { self->OnSetup(std::move(r)); });
}

void BackfillRun::OnSetup(Result<Setup> r) {
  if (finished_ || env_.stopping()) return;
  if (!r.ok()) {
    if (!MayRetry(r.status(), setup_attempts_, env_.max_retries)) return Finish(r.status());
    const Millis wait = Backoff(setup_attempts_++, env_.retry_base, env_.retry_cap);
    env_.audit("retry", JsonObject()
                            .Str("doing", "backfill setup of " + task_.table.Display())
                            .Str("error", r.status().ToString())
                            .Int("attempt", setup_attempts_)
                            .Int("wait_ms", wait.count()));
    return After(timer_, wait, [this] { RunSetup(); });
  }
  statement_ = r->statement;
  ranges_ = r->ranges;
  taken_.assign(ranges_.size(), false);
  done_at_.assign(ranges_.size(), 0);
  monitor_db_ = r->monitor_db;
  monitor_pid_ = r->pid;
  const BackfillSummary s = Summary();
  int64_t estimated = 0;
  for (const auto& cp : ranges_) estimated += cp.rows_estimated;
  env_.metrics->SetBackfillEstimate(plan_, database_, task_.table.Display(), estimated);
  bool all_done = true;
  for (const auto& cp : ranges_) all_done &= cp.done;
  if (all_done) return Finish(Status::Ok());
  if (mode_ == BackfillMode::kVerify) {
    env_.audit("verify_started", JsonObject().Str("table", task_.table.Display()));
  }
  if (mode_ == BackfillMode::kPass) env_.audit("backfill_started", JsonObject()
                                     .Str("table", task_.table.Display())
                                     .Int("pass", pass_)
                                     .Int("ranges", static_cast<int64_t>(ranges_.size()))
                                     .Str("batch_by", ranges_.front().unit == RangeUnit::kPage ? "pages" : "key")
                                     .Int("workers", options_.workers)
                                     .Int("batch_size", sizer_.size())
                                     .Int("rows_estimated", estimated)
                                     .Int("rows_done", s.rows_updated)
                                     .Bool("resumed", s.batches > 0));
  last_report_ = last_throttle_tick_ = SteadyClock::now();
  Monitor();
  AddLanes();
}

void BackfillRun::AddLanes() {
  if (finished_ || env_.stopping()) return;
  int pending = 0;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    pending += !ranges_[i].done && !taken_[i] && !TailWaits(ranges_, i);
  }
  const int want = std::min(options_.workers - open_lanes_, pending);
  if (want <= 0) return;
  const int granted = env_.slots->Acquire(want);
  for (int i = 0; i < granted; ++i) OpenLane(static_cast<int>(lanes_.size()));
  if (granted < want) {
    // Other plans hold the daemon's workers; look again in a second.
    After(timer_, Millis(1000), [this] { AddLanes(); });
  }
}

void BackfillRun::OpenLane(int id) {
  auto lane = std::make_shared<Lane>();
  lane->id = id;
  lane->timer = std::make_shared<asio::steady_timer>(env_.offload->io());
  lanes_.push_back(lane);
  ++open_lanes_;
  ConnectLane(lane);
}

void BackfillRun::ConnectLane(const std::shared_ptr<Lane>& lane) {
  auto connector = env_.connector;
  const std::string database = database_;
  lane->busy = true;
  env_.offload->Run<Result<OpenedSession>>(
      [connector, database] { return OpenSession(connector, database); },
      [self = shared_from_this(), lane](Result<OpenedSession> r) {
        lane->busy = false;
        if (!r.ok()) return self->OnLaneError(lane, r.status());
        lane->db = r->db;
        lane->pid = r->pid;
        if (self->finished_ || self->env_.stopping()) return self->CloseLane(lane);
        self->TakeRange(lane);
      });
}

void BackfillRun::TakeRange(const std::shared_ptr<Lane>& lane) {
  lane->range = -1;
  for (size_t i = 0; i < ranges_.size(); ++i) {
    if (!ranges_[i].done && !taken_[i] && !TailWaits(ranges_, i)) {
      taken_[i] = true;
      lane->range = static_cast<int>(i);
      break;
    }
  }
  if (lane->range < 0) return CloseLane(lane);
  LaneNext(lane);
}

void BackfillRun::CloseLane(const std::shared_ptr<Lane>& lane) {
  if (lane->closed) return;
  lane->closed = true;
  if (lane->range >= 0) taken_[lane->range] = false;
  lane->range = -1;
  --open_lanes_;
  env_.slots->Release(1);
  if (finished_) return;
  bool all_done = true;
  for (const auto& cp : ranges_) all_done &= cp.done;
  if (!all_done || open_lanes_ != 0) return;
  if (mode_ == BackfillMode::kSweep) return CountUnfillable();
  ConfirmDone();
}

// After a sweep, the rows it left because no update can fill them, for the summary.
// On a session of its own: the monitor keeps using its session meanwhile.
void BackfillRun::CountUnfillable() {
  auto connector = env_.connector;
  const std::string database = database_;
  const BatchStatement statement = statement_;
  const StatementLimits limits = limits_;
  env_.offload->Run<Result<UnfillableRows>>(
      [connector, database, statement, limits]() -> Result<UnfillableRows> {
        auto db = connector->Connect(database);
        if (!db.ok()) return db.status();
        return (*db)->CountUnfillable(statement, limits);
      },
      [self = shared_from_this()](Result<UnfillableRows> r) {
        if (self->finished_) return;
        if (r.ok()) {
          self->unfillable_ = *r;
        } else {
          // Only a report: the rows stay pending either way, and the gates say so.
          spdlog::warn("plan {}: cannot count the unfillable rows of {}: {}", self->plan_,
                       self->task_.table.Display(), r.status().ToString());
        }
        self->Finish(Status::Ok());
      });
}

void BackfillRun::LaneNext(const std::shared_ptr<Lane>& lane) {
  if (finished_ || env_.stopping()) return CloseLane(lane);
  if (open_lanes_ > options_.workers) {
    // Fewer workers (tidectl set): this lane's range goes back for a lane that stays.
    CloseLane(lane);
    lane->db.reset();
    return;
  }
  if (env_.paused && env_.paused()) {
    return After(lane->timer, Millis(250), [this, lane] { LaneNext(lane); });
  }
  // No batch before the first health reading: a busy server holds the first batch too.
  if (!health_read_) return After(lane->timer, Millis(50), [this, lane] { LaneNext(lane); });
  if (decision_.kind == ThrottleDecision::Kind::kWait) {
    return After(lane->timer, Millis(1000), [this, lane] { LaneNext(lane); });
  }
  const double factor = decision_.kind == ThrottleDecision::Kind::kSlow ? decision_.size_factor : 1;
  const int64_t size = std::max(options_.sizer.min, static_cast<int64_t>(sizer_.size() * factor));
  Millis wait = limiter_.Reserve(size, SteadyClock::now());
  if (lane->ran_batch) {
    wait += options_.pause_between_batches + decision_.extra_pause +
            Millis(static_cast<int64_t>(lane->last_batch.count() * decision_.pause_ratio));
  }
  if (wait.count() > 0) {
    lane->waiting_batch = true;
    lane->reserved = size;
    const uint64_t gen = ++lane->wait_gen;
    return After(lane->timer, wait, [this, lane, size, gen] {
      if (lane->wait_gen != gen) return;  // started over by ApplyLive
      lane->waiting_batch = false;
      // A wait or a pause that came during the pause holds this batch too.
      if (decision_.kind == ThrottleDecision::Kind::kWait || (env_.paused && env_.paused())) {
        limiter_.Return(size);
        return LaneNext(lane);
      }
      LaneBatch(lane, size);
    });
  }
  LaneBatch(lane, size);
}

void BackfillRun::ApplyLive(const LiveSettings& live) {
  if (finished_) return;
  const BackfillOptions before = options_;
  const bool new_size = live.batch_size != live_.batch_size;
  live_ = live;
  options_ = Overlay(base_options_, live_);
  const bool new_rate = options_.max_rows_per_second != limiter_.rate();
  if (new_rate) limiter_ = RateLimiter(options_.max_rows_per_second);
  const BatchSizerOptions& a = before.sizer;
  const BatchSizerOptions& b = options_.sizer;
  if (new_size || a.min != b.min || a.max != b.max || a.target != b.target) {
    sizer_.Reconfigure(b, new_size && live_.batch_size.has_value());
  }
  spdlog::info("plan {}: backfill of {} now runs with {}", plan_, task_.table.Display(),
               live_.empty() ? std::string("the plan's own settings") : FormatLiveSettings(live_));
  if (ranges_.empty()) return;  // still setting up: the lanes start with the new values
  if (options_.workers > static_cast<int>(ranges_.size())) {
    // The ranges were split when the task started: one worker a range at most.
    spdlog::warn("plan {}: backfill of {} has {} range(s): at most {} of the {} workers asked for "
                 "fill it", plan_, task_.table.Display(), ranges_.size(), ranges_.size(), options_.workers);
  }
  // A lane waiting for its next batch (a rate cap's wait, a pause between batches) starts over
  // with the new values now, not when the old wait ends.
  for (auto& lane : lanes_) {
    if (lane->closed || !lane->waiting_batch) continue;
    ++lane->wait_gen;
    lane->timer->cancel();
    lane->waiting_batch = false;
    if (!new_rate) limiter_.Return(lane->reserved);
    LaneNext(lane);
  }
  AddLanes();
}

void BackfillRun::LaneBatch(const std::shared_ptr<Lane>& lane, int64_t size) {
  if (finished_ || env_.stopping()) return CloseLane(lane);
  auto db = lane->db;
  const std::string plan = plan_;
  const int index = index_;
  const BatchStatement stmt = statement_;
  const TaskCheckpoint from = ranges_[lane->range];
  const StatementLimits limits = limits_;
  const BackfillMode mode = mode_;
  const auto start = SteadyClock::now();
  lane->busy = true;
  env_.offload->Run<Result<BatchResult>>(
      [db, plan, index, stmt, from, size, limits, mode] {
        if (mode == BackfillMode::kSweep) return db->RunSweep(stmt, size, limits);
        if (mode == BackfillMode::kVerify) return db->RunVerify(stmt, from.last_key, size, limits);
        return db->RunBatch(plan, index, stmt, from, size, limits);
      },
      [self = shared_from_this(), lane, size, start](Result<BatchResult> r) {
        lane->busy = false;
        self->OnBatch(lane, size, Millis(MillisSince(start)), std::move(r));
      });
}

void BackfillRun::OnBatch(const std::shared_ptr<Lane>& lane, int64_t size, Millis elapsed,
                          Result<BatchResult> r) {
  const std::string table = task_.table.Display();
  if (!r.ok()) {
    env_.metrics->RecordBatch(plan_, database_, table, 0, elapsed.count() / 1000.0,
                              r.status().sqlstate() == "57014" ? "timeout" : "error");
    return OnLaneError(lane, r.status());
  }
  lane->attempts = 0;
  lane->ran_batch = true;
  lane->last_batch = elapsed;
  TaskCheckpoint& cp = ranges_[lane->range];
  const int64_t before = Summary().rows_scanned;
  cp = AdvanceCheckpoint(cp, *r, size);
  // The cap counts rows written: a batch gives back what it reserved and did not write, and
  // pays for what it wrote beyond (a page batch over a stale estimate).
  // A verification writes nothing: the cap counts the rows it reads.
  const int64_t written = mode_ == BackfillMode::kVerify ? r->scanned : r->updated + r->unfillable;
  if (r->unfillable > 0) statement_.skip_unfillable = true;
  differing_ += r->differing;
  for (const auto& k : r->differing_keys) {
    if (differing_keys_.size() < 5) differing_keys_.push_back(k);
  }
  if (r->differing > 0) env_.metrics->SetVerifyDiffering(plan_, task_.table.Display(), differing_);
  if (written < size) limiter_.Return(size - written);
  if (written > size) limiter_.Reserve(written - size, SteadyClock::now());
  sizer_.OnBatch(r->scanned, elapsed);
  vacuums_.Wrote(r->updated);
  if (have_dead_) MaybeVacuum(last_dead_);
  scanned_this_run_ += r->scanned;
  env_.metrics->RecordBatch(plan_, database_, table, r->updated, elapsed.count() / 1000.0, "committed");
  env_.metrics->MarkProgress(plan_);
  ReportProgress(before);
  if (finished_) return CloseLane(lane);
  if (cp.done) {
    done_at_[lane->range] = ++done_seq_;
    taken_[lane->range] = false;
    return TakeRange(lane);
  }
  LaneNext(lane);
}

void BackfillRun::OnLaneError(const std::shared_ptr<Lane>& lane, const Status& s) {
  if (finished_ || env_.stopping()) return CloseLane(lane);
  if (s.sqlstate() == "57014") sizer_.Shrink();  // statement_timeout: retry at half the size
  // A lost server is waited for, however long; other transient errors have a budget.
  if (!MayRetry(s, lane->attempts, env_.max_retries)) return Finish(s);
  env_.metrics->CountRetry(plan_, RetryKind(s));
  const Millis wait = Backoff(lane->attempts++, env_.retry_base, env_.retry_cap);
  env_.audit("retry", JsonObject()
                          .Str("doing", "backfill of " + task_.table.Display())
                          .Int("worker", lane->id)
                          .Str("error", s.ToString())
                          .Int("attempt", lane->attempts)
                          .Int("of", env_.max_retries)
                          .Int("wait_ms", wait.count())
                          .Int("next_batch_size", sizer_.size()));
  spdlog::warn("plan {}: backfill of {} worker {}: {}; retry {}/{} in {}", plan_,
               task_.table.Display(), lane->id, s.ToString(), lane->attempts, env_.max_retries,
               FormatDuration(wait));
  After(lane->timer, wait, [this, lane] { ReloadRange(lane); });
}

// After an error the stored checkpoint is the truth (a COMMIT may have gone through or not).
void BackfillRun::ReloadRange(const std::shared_ptr<Lane>& lane) {
  if (finished_ || env_.stopping()) return CloseLane(lane);
  if (!lane->db) return ConnectLane(lane);
  if (lane->range < 0) return TakeRange(lane);
  if (mode_ == BackfillMode::kSweep || mode_ == BackfillMode::kVerify) {
    return LaneNext(lane);  // nothing stored to read back
  }
  auto db = lane->db;
  const std::string plan = plan_;
  const int index = index_, pass = pass_;
  const uint64_t seq = done_seq_;
  lane->busy = true;
  struct Reloaded {
    Result<std::vector<TaskCheckpoint>> ranges = Status::Fatal("not read");
    int64_t pid = 0;  // the lane's session's, new after a reconnect
  };
  env_.offload->Run<Reloaded>(
      [db, plan, index, pass] {
        Reloaded out;
        out.ranges = db->LoadRanges(plan, index, pass);
        auto pid = db->BackendPid();
        if (pid.ok()) out.pid = *pid;
        return out;
      },
      [self = shared_from_this(), lane, seq](Reloaded r) {
        lane->busy = false;
        if (!r.ranges.ok()) return self->OnLaneError(lane, r.ranges.status());
        if (r.pid) lane->pid = r.pid;
        if (self->finished_ || self->env_.stopping()) return self->CloseLane(lane);
        TaskCheckpoint& mine = self->ranges_[lane->range];
        for (const auto& cp : *r.ranges) {
          if (cp.range == mine.range) mine = cp;
        }
        self->ReopenLostRanges(*r.ranges, seq);
        if (mine.done) {
          self->done_at_[lane->range] = ++self->done_seq_;
          self->taken_[lane->range] = false;
          return self->TakeRange(lane);
        }
        self->LaneNext(lane);
      });
}

// Before the task ends: every range the database holds, done there too. A failover with
// asynchronous replication (or batches committed with synchronous_commit off) may have lost the
// last batches of the last ranges, with no lane left to find out by an error.
void BackfillRun::ConfirmDone() {
  if (mode_ == BackfillMode::kSweep || mode_ == BackfillMode::kVerify) return Finish(Status::Ok());
  if (confirming_) return;
  // A closed lane's session: the monitor's is the monitor's own, in use every second.
  std::shared_ptr<PlanDatabase> db;
  for (const auto& lane : lanes_) {
    if (lane->closed && !lane->busy && lane->db) db = lane->db;
  }
  if (!db) return Finish(Status::Ok());  // no lane ever ran a batch here: nothing to confirm
  confirming_ = true;
  const std::string plan = plan_;
  const int index = index_, pass = pass_;
  const uint64_t seq = done_seq_;
  env_.offload->Run<Result<std::vector<TaskCheckpoint>>>(
      [db, plan, index, pass] { return db->LoadRanges(plan, index, pass); },
      [self = shared_from_this(), seq](Result<std::vector<TaskCheckpoint>> r) {
        self->confirming_ = false;
        if (self->finished_ || self->env_.stopping()) return;
        if (!r.ok()) {
          if (!MayRetry(r.status(), self->confirm_attempts_, self->env_.max_retries)) return self->Finish(r.status());
          const Millis wait = Backoff(self->confirm_attempts_++, self->env_.retry_base, self->env_.retry_cap);
          return self->After(self->timer_, wait, [self] { self->ConfirmDone(); });
        }
        if (!self->ReopenLostRanges(*r, seq)) return self->Finish(Status::Ok());
        self->AddLanes();
      });
}

// A range that another lane finished in memory and that the database holds unfinished lost
// its last batches (a failover with asynchronous replication loses the newest commits): it is
// done again from its stored checkpoint. A range a lane holds is that lane's to reload.
bool BackfillRun::ReopenLostRanges(const std::vector<TaskCheckpoint>& stored, uint64_t read_at) {
  bool reopened = false;
  for (const auto& cp : stored) {
    for (size_t i = 0; i < ranges_.size(); ++i) {
      if (ranges_[i].range != cp.range || taken_[i] || !ranges_[i].done || cp.done) continue;
      // Finished after the read was asked for: the read is older than the finish.
      if (done_at_[i] > read_at) continue;
      reopened = true;
      spdlog::warn("plan {}: backfill of {}: range {} is unfinished in the database though its "
                   "batches committed (lost in a failover?); doing it again from its checkpoint",
                   plan_, task_.table.Display(), cp.range);
      env_.audit("range_reopened", JsonObject().Str("table", task_.table.Display()).Int("range", cp.range));
      ranges_[i] = cp;
      done_at_[i] = 0;
    }
  }
  return reopened;
}

void BackfillRun::Monitor() {
  if (finished_ || env_.stopping()) return;
  std::vector<int64_t> pids;
  for (const auto& lane : lanes_) {
    if (!lane->closed && lane->pid) pids.push_back(lane->pid);
  }
  if (vacuum_pid_) pids.push_back(vacuum_pid_);
  if (env_.server_health) {
    std::vector<int64_t> sessions = pids;
    sessions.push_back(monitor_pid_);
    env_.server_health->Track(env_.server, this, std::move(sessions));
  }
  auto db = monitor_db_;
  const HealthLimits limits_now = Limits();
  HealthQuestions questions;
  questions.our_pids = pids;
  questions.throttle_query = limits_now.throttle_query;
  questions.table = task_.table;
  questions.autovacuum = limits_now.hold_on_autovacuum;
  questions.archive = limits_now.max_archive_backlog > 0;
  questions.slots = limits_now.max_slot_retained_wal > 0;
  questions.xmin = limits_now.max_xmin_age.count() > 0;
  questions.checkpoints = limits_now.slow_on_forced_checkpoints;
  const StatementLimits limits{Millis(1000), Millis(5000)};
  const std::string plan = plan_;
  const int index = index_;
  TaskLiveStatus live;
  live.rows_per_second = RecentRate();
  live.eta_seconds = EtaSeconds();
  live.throttle_reason = ThrottledReason(decision_);
  if (Yielding()) {
    live.yield_sessions = decision_.yield_sessions;
    live.yield_rest = decision_.pause_ratio;
  }
  // Every second, while the batches write, whether their dead rows call for a VACUUM.
  const bool read_dead = options_.vacuum_between_batches && !vacuum_running_ &&
                         (mode_ == BackfillMode::kPass || mode_ == BackfillMode::kTail);
  const QualifiedName table = task_.table;
  struct Reading {
    Result<HealthReading> health = Status::Fatal("not read");
    std::optional<Result<DeadTuples>> dead;
    int64_t blocked_by_vacuum = 0;
    int64_t monitor_pid = 0;  // read again: 0 if not
  };
  const int64_t vacuum_pid = vacuum_pid_;
  ServerHealth* shared = env_.server_health;
  const std::string server = env_.server;
  env_.offload->Run<Reading>(
      [db, questions, limits, plan, index, live, read_dead, table, vacuum_pid, shared,
       server, refresh_pid = !last_health_ok_] {
        db->SaveTaskStatus(plan, index, live);
        Reading out;
        if (refresh_pid) {
          // After a lost session: a new one has a new pid, which must not count as the
          // application's.
          auto pid = db->BackendPid();
          if (pid.ok()) out.monitor_pid = *pid;
        }
        out.health = shared ? shared->Read(server, questions, *db, limits)
                            : db->ReadHealth(questions, limits);
        if (read_dead) out.dead = db->ReadDeadTuples(table);
        if (vacuum_pid) {
          auto blocked = db->QueryNumber(BlockedBySql(vacuum_pid), limits);
          // Unknown is taken as blocking: the vacuum is what can give way.
          out.blocked_by_vacuum = blocked.ok() ? *blocked : 1;
          if (out.blocked_by_vacuum > 0) db->QueryNumber(CancelVacuumSql(vacuum_pid), limits);
        }
        return out;
      },
      [self = shared_from_this()](Reading r) {
        if (r.monitor_pid) self->monitor_pid_ = r.monitor_pid;
        self->last_health_ok_ = r.health.ok();
        if (r.dead) self->MaybeVacuum(*r.dead);
        if (r.blocked_by_vacuum > 0 && self->vacuum_pid_) self->vacuum_gave_way_ = true;
        self->OnHealth(std::move(r.health));
      });
}

HealthLimits BackfillRun::Limits() const {
  return Overlay(env_.health ? env_.health() : base_options_.health, live_);
}

void BackfillRun::MaybeVacuum(const Result<DeadTuples>& dead) {
  if (finished_ || env_.stopping() || vacuum_running_) return;
  if (!dead.ok()) {
    spdlog::debug("plan {}: cannot read the dead rows of {}: {}", plan_, task_.table.Display(),
                  dead.status().ToString());
    return;
  }
  last_dead_ = *dead;
  have_dead_ = true;
  if (!vacuums_.Due(*dead, MillisSince(started_))) return;
  RunVacuum(*dead);
}

// A session of its own, so that the monitor and the lanes go on meanwhile; its pid is one of
// tide's, so that the autovacuum hold does not wait for tide's own vacuum.
void BackfillRun::RunVacuum(const DeadTuples& dead) {
  vacuum_running_ = true;
  vacuums_.Started(dead);
  auto connector = env_.connector;
  const std::string database = database_;
  const QualifiedName table = task_.table;
  const StatementLimits limits{limits_.lock_timeout, options_.vacuum_timeout};
  const Millis cost_delay = VacuumCostDelay(Limits());
  const auto start = SteadyClock::now();
  using Vacuumed = std::pair<Status, DeadTuples>;  // and the dead rows it left
  auto Done = [self = shared_from_this(), dead, start](Vacuumed v) {
    const Status& s = v.first;
    const bool gave_way = self->vacuum_gave_way_;
    self->vacuum_running_ = false;
    self->vacuum_pid_ = 0;
    self->vacuum_gave_way_ = false;
    self->vacuums_.Ended(MillisSince(self->started_), s.ok() ? v.second : dead);
    if (s.ok()) self->last_dead_ = v.second;
    const std::string table = self->task_.table.Display();
    if (s.ok()) {
      ++self->vacuum_count_;
      self->env_.metrics->CountVacuum(self->plan_, table);
      self->env_.audit("vacuumed", JsonObject().Str("table", table).Int("dead_rows", dead.dead).Int(
                                       "live_rows", dead.live).Int("dead_rows_left", v.second.dead).Int(
                                       "duration_ms", MillisSince(start)));
    } else {
      // Only a missed chance to reuse room: autovacuum still comes.
      self->env_.audit("vacuum_skipped", JsonObject().Str("table", table).Int("dead_rows", dead.dead).Str(
                                             "error", s.ToString()).Bool("gave_way", gave_way));
      spdlog::warn("plan {}: VACUUM of {} between batches {}: {}", self->plan_, table,
                   gave_way ? "gave way to a session waiting for its lock" : "failed", s.ToString());
    }
    self->CallDone();  // after its audit line: the task's end comes after its vacuum's
  };
  env_.offload->Run<Result<OpenedSession>>(
      [connector, database] { return OpenSession(connector, database); },
      [self = shared_from_this(), table, limits, cost_delay, Done](Result<OpenedSession> r) {
        if (!r.ok()) return Done(Vacuumed{r.status(), DeadTuples{}});
        if (self->finished_ || self->env_.stopping()) {
          self->vacuum_running_ = false;
          return self->CallDone();
        }
        self->vacuum_pid_ = r->pid;
        auto db = r->db;
        self->env_.offload->Run<Vacuumed>(
            [db, table, limits, cost_delay] {
              Vacuumed v{db->Vacuum(table, limits, cost_delay), DeadTuples{}};
              if (v.first.ok()) {
                auto left = db->ReadDeadTuples(table);
                if (left.ok()) v.second = *left;
              }
              return v;
            },
            Done);
      });
}

void BackfillRun::OnHealth(Result<HealthReading> r) {
  if (finished_ || env_.stopping()) return;
  health_read_ = true;
  const auto now = SteadyClock::now();
  const int64_t tick = std::chrono::duration_cast<Millis>(now - last_throttle_tick_).count();
  last_throttle_tick_ = now;
  const bool was_waiting = decision_.kind == ThrottleDecision::Kind::kWait;
  if (!was_waiting) active_ms_ += tick;
  {
    HealthSample sample;
    ThrottleDecision next = HealthUnknown();
    const HealthLimits limits = Limits();
    if (r.ok()) {
      sample.replication_lag = lag_.Observe(now, r->current_lsn, r->replay_lsn);
      sample.active_sessions = r->active_sessions;
      sample.blocked_by_us = r->blocked_by_us;
      sample.throttle_query_true = r->throttle_query_true;
      sample.throttle_file = env_.throttle_file && env_.throttle_file(plan_);
      sample.autovacuum = r->autovacuum;
      sample.archive_backlog = r->archive_backlog;
      sample.slot_retained_wal = r->slot_retained_wal;
      sample.xmin_age = Millis(r->xmin_age_ms);
      sample.forced_checkpoint = checkpoints_requested_ >= 0 &&
                                 r->checkpoints_requested > checkpoints_requested_;
      if (r->checkpoints_requested >= 0) checkpoints_requested_ = r->checkpoints_requested;
      env_.metrics->SetReplicationLag(database_, sample.replication_lag.count() / 1000.0);
      next = hold_.Apply(Decide(sample, limits), now, limits.hold);

    } else if (decision_.reason != "health_unknown") {
      spdlog::warn("plan {}: backfill of {} holds: its health reading failed: {}", plan_,
                   task_.table.Display(), r.status().ToString());
    }
    if (next.reason == "blocking") sizer_.Shrink();
    // Yielding to other sessions is normal operation, not throttling.
    const std::string old_reason = ThrottledReason(decision_);
    const std::string new_reason = ThrottledReason(next);
    if (!old_reason.empty()) env_.metrics->SetThrottled(plan_, old_reason, new_reason == old_reason, tick / 1000.0);
    if (new_reason != old_reason) {
      if (!old_reason.empty()) {
        env_.audit("throttle_ended", JsonObject().Str("reason", old_reason).Int(
                                         "duration_ms", MillisSince(throttle_since_)));
      }
      if (!new_reason.empty()) {
        throttle_since_ = now;
        env_.metrics->SetThrottled(plan_, new_reason, true, 0);
        JsonObject details;
        details.Str("reason", new_reason)
            .Str("action", next.kind == ThrottleDecision::Kind::kWait ? "wait" : "slow")
            .Int("replication_lag_ms", sample.replication_lag.count())
            .Int("active_sessions", sample.active_sessions)
            .Int("blocked_sessions", sample.blocked_by_us);
        if (r.ok()) {
          // What the signal that holds saw, named for on-call.
          if (new_reason == "archive_backlog") details.Int("archive_backlog_files", r->archive_backlog);
          if (new_reason == "slot_retained_wal") {
            details.Str("slot", r->slot_name).Bool("slot_active", r->slot_active).Int(
                "slot_retained_wal_bytes", r->slot_retained_wal);
          }
          if (new_reason == "xmin_age") details.Int("xmin_age_ms", r->xmin_age_ms).Int("xmin_pid", r->xmin_pid);
          if (IsHeldSignal(new_reason)) details.Int("hold_ms", limits.hold.count());
        }
        if (!r.ok()) details.Str("error", r.status().ToString());
        env_.audit("throttle_started", std::move(details));
        spdlog::info("plan {}: backfill of {} throttled: {}", plan_, task_.table.Display(),
                     new_reason);
      }
    }
    decision_ = next;
    env_.metrics->SetYield(plan_, Yielding() ? decision_.yield_sessions : 0, Yielding() ? decision_.pause_ratio : 0);
  }
  env_.metrics->SetBackfillShape(plan_, database_, task_.table.Display(), sizer_.size(), open_lanes_,
                                 EtaSeconds());
  After(monitor_timer_, Millis(1000), [this] { Monitor(); });
}

bool BackfillRun::Yielding() const {
  if (env_.paused && env_.paused()) return false;  // no batch runs: it neither works nor yields
  return Yields(decision_);
}

double BackfillRun::RecentRate() const {
  if (window_.size() < 2) return 0;
  const auto& [t0, rows0, active0] = window_.front();
  const auto& [t1, rows1, active1] = window_.back();
  const int64_t active = active1 - active0;
  if (active <= 0) return 0;
  return (rows1 - rows0) * 1000.0 / static_cast<double>(active);
}

int64_t BackfillRun::EtaSeconds() const {
  const double rate = RecentRate();
  if (rate <= 0) return -1;
  int64_t estimated = 0, scanned = 0;
  for (const auto& cp : ranges_) estimated += cp.rows_estimated, scanned += cp.rows_scanned;
  return std::max<int64_t>(0, static_cast<int64_t>((estimated - scanned) / rate));
}

void BackfillRun::ReportProgress(int64_t before) {
  const auto now = SteadyClock::now();
  const int64_t active = active_ms_ + (decision_.kind == ThrottleDecision::Kind::kWait
                                           ? 0
                                           : std::chrono::duration_cast<Millis>(now - last_throttle_tick_).count());
  window_.emplace_back(now, scanned_this_run_, active);
  while (window_.size() > 2 && std::get<0>(window_[1]) < now - std::chrono::seconds(60)) {
    window_.pop_front();
  }
  const BackfillSummary s = Summary();
  int64_t estimated = 0;
  for (const auto& cp : ranges_) estimated += cp.rows_estimated;
  if (!ShouldReportProgress(before, s.rows_scanned, estimated, MillisSince(last_report_))) return;
  last_report_ = now;
  env_.audit("backfill_progress", JsonObject()
                                      .Str("table", task_.table.Display())
                                      .Int("rows_updated", s.rows_updated)
                                      .Int("rows_scanned", s.rows_scanned)
                                      .Int("rows_estimated", estimated)
                                      .Int("batches", s.batches)
                                      .Int("batch_size", sizer_.size())
                                      .Num("rows_per_second", RecentRate())
                                      .Int("eta_seconds", EtaSeconds())
                                      .Int("yielding_to_sessions", Yielding() ? decision_.yield_sessions : 0)
                                      .Num("yield_rest_ratio", Yielding() ? decision_.pause_ratio : 0));
}

BackfillSummary BackfillRun::Summary() const {
  BackfillSummary s;
  s.ranges = static_cast<int>(ranges_.size());
  s.pass = pass_;
  s.unfillable = unfillable_.rows;
  s.unfillable_keys = unfillable_.keys;
  s.differing = differing_;
  s.differing_keys = differing_keys_;
  s.vacuums = vacuum_count_;
  for (const auto& cp : ranges_) {
    s.rows_updated += cp.rows_updated;
    s.rows_scanned += cp.rows_scanned;
    s.batches += cp.batches;
  }
  return s;
}

void BackfillRun::Finish(const Status& s) {
  if (finished_) return;
  finished_ = true;
  Stop();
  if (!ThrottledReason(decision_).empty()) env_.metrics->SetThrottled(plan_, decision_.reason, false, 0);
  env_.metrics->SetYield(plan_, 0, 0);
  env_.metrics->SetBackfillShape(plan_, database_, task_.table.Display(), sizer_.size(), 0, s.ok() ? 0 : -1);
  // Lanes waiting on a timer close now; a lane with a job in flight closes when it returns.
  for (auto& lane : lanes_) {
    if (!lane->closed && !lane->busy) CloseLane(lane);
  }
  finish_status_ = s;
  // The ANALYZE that follows a task would wait behind tide's own VACUUM: done once it ends. A
  // task that ends otherwise (an abort, an error) does not wait for it.
  if (!s.ok()) CancelVacuum();
  if (!vacuum_running_) CallDone();
}

void BackfillRun::CancelVacuum() {
  if (!vacuum_pid_) return;
  auto connector = env_.connector;
  const std::string database = database_;
  const int64_t pid = vacuum_pid_;
  env_.offload->Run<Status>(
      [connector, database, pid]() -> Status {
        auto db = connector->Connect(database);
        if (!db.ok()) return db.status();
        return (*db)->QueryNumber(CancelVacuumSql(pid), StatementLimits{Millis(1000), Millis(5000)}).status();
      },
      [](Status) {});
}

void BackfillRun::CallDone() {
  if (!finished_ || !done_) return;
  if (env_.server_health && !vacuum_running_) env_.server_health->Forget(this);
  auto done = std::move(done_);
  done_ = nullptr;
  done(finish_status_, Summary());
}

}  // namespace tide
