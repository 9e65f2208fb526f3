// Runs blocking work on a thread pool and its completion on the io thread.
//
// The io thread owns all orchestration state; database calls block, so they go to the pool and
// their results come back through the io_context. Not thread-safe: call Run and in_flight from
// the io thread only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <functional>
#include <memory>

namespace tide {

class Offloader {
 public:
  Offloader(boost::asio::io_context& io, boost::asio::thread_pool& pool)
      : state_(std::make_shared<State>(io)), pool_(pool) {}
  // Work still running on the pool finishes; its completion is dropped, since whoever asked for
  // it is gone.
  ~Offloader() { state_->alive = false; }

  // Runs `work()` on the pool, then `done(result)` on the io thread, then the completion hook.
  template <typename T>
  void Run(std::function<T()> work, std::function<void(T)> done) {
    ++state_->in_flight;
    boost::asio::post(pool_, [s = state_, work = std::move(work), done = std::move(done)]() mutable {
      auto result = std::make_shared<T>(work());
      boost::asio::post(s->io, [s, result, done = std::move(done)]() mutable {
        if (!s->alive) return;
        --s->in_flight;
        done(std::move(*result));
        if (s->on_complete) s->on_complete();
      });
    });
  }

  int in_flight() const { return state_->in_flight; }
  // Called on the io thread after every completion (the orchestrator checks for idleness).
  void set_on_complete(std::function<void()> f) { state_->on_complete = std::move(f); }
  boost::asio::io_context& io() { return state_->io; }

 private:
  // Shared with the jobs in flight, so that they never reach back into a destroyed Offloader.
  struct State {
    explicit State(boost::asio::io_context& io) : io(io) {}
    boost::asio::io_context& io;
    int in_flight = 0;  // io thread only, like `alive`
    bool alive = true;
    std::function<void()> on_complete;
  };

  std::shared_ptr<State> state_;
  boost::asio::thread_pool& pool_;
};

// Backfill workers across all plans, bounded by the config's max_workers. io thread only.
class WorkerSlots {
 public:
  explicit WorkerSlots(int capacity) : capacity_(capacity) {}
  // Grants up to `wanted` slots; 0 when none is free.
  int Acquire(int wanted) {
    int n = std::max(0, std::min(wanted, capacity_ - used_));
    used_ += n;
    return n;
  }
  void Release(int n) { used_ -= n; }
  void set_capacity(int capacity) { capacity_ = capacity; }
  int used() const { return used_; }

 private:
  int capacity_;
  int used_ = 0;
};

}  // namespace tide
