// Run `count` independent jobs on the calling thread plus helper tasks from a scheduler.
//
// The scheduler is any callable that runs a task somewhere, possibly later, possibly inline (the
// FFI layer passes XLA's intra-op thread pool). Jobs are claimed from a shared atomic counter, so
// the caller never waits for a helper that has not started: it works through the queue itself and
// waits only for jobs already claimed by a helper. A helper that starts after the queue is empty
// touches nothing but the shared counters, which it co-owns. This cannot deadlock even when the
// pool's threads are all busy or blocked.
#ifndef RRAE_FAST_COMMON_PARALLEL_H_
#define RRAE_FAST_COMMON_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

namespace rrae_fast {

using Task = std::function<void()>;
using Scheduler = std::function<void(Task)>;

// Calls `job(worker, index)` once for each index in [0, count). `worker` is in [0, workers) and
// no two jobs with the same `worker` run at the same time, so per-worker scratch is safe.
// `job` must stay valid until ParallelFor returns; it is never called after that.
inline void ParallelFor(int64_t count, int64_t workers, const Scheduler& schedule,
                        const std::function<void(int64_t, int64_t)>& job) {
  workers = std::max<int64_t>(1, std::min(workers, count));
  if (workers == 1 || !schedule) {
    for (int64_t i = 0; i < count; ++i) job(0, i);
    return;
  }
  struct Shared {
    std::atomic<int64_t> next{0};
    std::mutex mu;
    std::condition_variable cv;
    int64_t done = 0;
    const std::function<void(int64_t, int64_t)>* job = nullptr;  // cleared once all are done
  };
  auto shared = std::make_shared<Shared>();
  shared->job = &job;
  auto run = [shared, count](int64_t worker) {
    for (;;) {
      int64_t i = shared->next.fetch_add(1);
      if (i >= count) return;
      (*shared->job)(worker, i);
      std::lock_guard<std::mutex> lock(shared->mu);
      if (++shared->done == count) shared->cv.notify_all();
    }
  };
  for (int64_t w = 1; w < workers; ++w) schedule([run, w] { run(w); });
  run(0);
  std::unique_lock<std::mutex> lock(shared->mu);
  shared->cv.wait(lock, [&] { return shared->done == count; });
}

}  // namespace rrae_fast

#endif  // RRAE_FAST_COMMON_PARALLEL_H_
