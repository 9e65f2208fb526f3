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
  Offloader(boost::asio::io_context& io, boost::asio::thread_pool& pool) : io_(io), pool_(pool) {}

  // Runs `work()` on the pool, then `done(result)` on the io thread, then the completion hook.
  template <typename T>
  void Run(std::function<T()> work, std::function<void(T)> done) {
    ++in_flight_;
    boost::asio::post(pool_, [this, work = std::move(work), done = std::move(done)]() mutable {
      auto result = std::make_shared<T>(work());
      boost::asio::post(io_, [this, result, done = std::move(done)]() mutable {
        --in_flight_;
        done(std::move(*result));
        if (on_complete_) on_complete_();
      });
    });
  }

  int in_flight() const { return in_flight_; }
  // Called on the io thread after every completion (the orchestrator checks for idleness).
  void set_on_complete(std::function<void()> f) { on_complete_ = std::move(f); }
  boost::asio::io_context& io() { return io_; }

 private:
  boost::asio::io_context& io_;
  boost::asio::thread_pool& pool_;
  int in_flight_ = 0;
  std::function<void()> on_complete_;
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
