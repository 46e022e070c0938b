// Spreads the blocks of a grid over a pool of OS threads. The stream worker that asks for
// a grid works on it too, so grids of several streams progress even when the pool is busy.
#include "core/sim/grid_runner.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <vector>

#include "core/sim/block_runner.h"

namespace strata::sim {
namespace {

struct GridJob {
  const KernelLaunch* launch = nullptr;
  const std::function<void()>* body = nullptr;
  uint64_t block_count = 0;
  std::vector<uint64_t> order;  // block visiting order when the schedule is randomised
  std::optional<uint64_t> seed;
  std::mutex mutex;  // guards everything below
  std::condition_variable all_done;
  uint64_t next_block = 0;
  uint64_t in_flight = 0;
  std::string failure;  // the first failure; blocks not started by then are skipped

  bool exhausted() const { return next_block >= block_count || !failure.empty(); }
};

BlockRunner& runner_of_this_thread() {
  thread_local BlockRunner runner;
  return runner;
}

bool take_block(GridJob& job, uint64_t& linear) {
  std::lock_guard lock(job.mutex);
  if (job.exhausted()) return false;
  const uint64_t ticket = job.next_block++;
  linear = job.order.empty() ? ticket : job.order[ticket];
  ++job.in_flight;
  return true;
}

void finish_block(GridJob& job, std::string failure) {
  std::lock_guard lock(job.mutex);
  if (!failure.empty() && job.failure.empty()) job.failure = std::move(failure);
  --job.in_flight;
  if (job.exhausted() && job.in_flight == 0) job.all_done.notify_all();
}

// Runs blocks of job until none is left to start.
void work_on(GridJob& job) {
  const dim3 grid = job.launch->grid;
  uint64_t linear = 0;
  while (take_block(job, linear)) {
    const uint3 block_index{static_cast<unsigned>(linear % grid.x), static_cast<unsigned>(linear / grid.x % grid.y),
                            static_cast<unsigned>(linear / (static_cast<uint64_t>(grid.x) * grid.y))};
    std::optional<uint64_t> thread_order_seed;
    if (job.seed) thread_order_seed = *job.seed ^ (linear * 0x9e3779b97f4a7c15ull);
    finish_block(job, runner_of_this_thread().run(*job.launch, *job.body, block_index, thread_order_seed));
  }
}

class BlockPool {
 public:
  static BlockPool& instance() {
    // Leaked on purpose: stream workers may still run grids during static destruction.
    static BlockPool* pool = new BlockPool();
    return *pool;
  }

  void submit(const std::shared_ptr<GridJob>& job) {
    ensure_threads();
    std::lock_guard lock(mutex_);
    jobs_.push_back(job);
    work_available_.notify_all();
  }

 private:
  void ensure_threads() {
    std::lock_guard lock(mutex_);
    // The submitting thread works too, so the pool holds one thread fewer than requested.
    const int wanted = std::max(0, worker_threads() - 1);
    while (static_cast<int>(threads_.size()) < wanted) {
      threads_.emplace_back([this] { loop(); });
      threads_.back().detach();
    }
  }

  void loop() {
    for (;;) {
      std::shared_ptr<GridJob> job;
      {
        std::unique_lock lock(mutex_);
        work_available_.wait(lock, [this] { return !jobs_.empty(); });
        job = jobs_.front();
      }
      bool exhausted;
      {
        std::lock_guard job_lock(job->mutex);
        exhausted = job->exhausted();
      }
      if (exhausted) {
        std::lock_guard lock(mutex_);
        if (!jobs_.empty() && jobs_.front() == job) jobs_.pop_front();  // nothing left to start in it
        continue;
      }
      work_on(*job);
    }
  }

  std::mutex mutex_;
  std::condition_variable work_available_;
  std::deque<std::shared_ptr<GridJob>> jobs_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::string run_grid(const KernelLaunch& launch, const std::function<void()>& thread_body) {
  auto job = std::make_shared<GridJob>();
  job->launch = &launch;
  job->body = &thread_body;
  job->block_count = static_cast<uint64_t>(launch.grid.x) * launch.grid.y * launch.grid.z;
  job->seed = schedule_seed();
  if (job->seed) {
    // Blocks in a shuffled order too: kernels must not rely on block scheduling.
    job->order.resize(job->block_count);
    std::iota(job->order.begin(), job->order.end(), uint64_t{0});
    std::shuffle(job->order.begin(), job->order.end(), std::mt19937_64(*job->seed));
  }
  if (job->block_count > 1) BlockPool::instance().submit(job);
  work_on(*job);

  std::unique_lock lock(job->mutex);
  job->all_done.wait(lock, [&] { return job->exhausted() && job->in_flight == 0; });
  return job->failure;
}

}  // namespace strata::sim
