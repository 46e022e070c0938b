// Runs one thread block of a simulated kernel on the calling OS thread: a fiber per GPU
// thread, a scheduler that resumes them (round by round in index order, or in a seeded
// random interleaving of threads and of warps when asked), block barriers and warp
// collectives, and the diagnosis of deadlocks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <source_location>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/sim/async_copy_queue.h"
#include "core/sim/fiber.h"
#include "core/sim/mbarrier.h"
#include "core/sim/runtime.h"
#include "core/sim/simt.h"
#include "core/sim/wgmma_queue.h"

namespace strata::sim {

class BlockRunner {
 public:
  BlockRunner();
  ~BlockRunner();
  BlockRunner(const BlockRunner&) = delete;
  BlockRunner& operator=(const BlockRunner&) = delete;

  // Runs every thread of block block_index to the end. Returns "" or the failure.
  // order_seed: nullopt runs threads round by round in index order; a value draws, for each
  // stretch between two block barriers, one of the interleavings of Interleaving.
  std::string run(const KernelLaunch& launch, const std::function<void()>& thread_body, uint3 block_index,
                  std::optional<uint64_t> order_seed);

  // The runner of the block executing on this OS thread (for the device-side calls).
  static BlockRunner* current();

  int barrier(int predicate, const std::source_location& where);
  WarpPayload warp_collective(WarpOp op, unsigned mask, const WarpPayload& value, int argument, int width,
                              const std::source_location& where);
  void warp_task(const char* name, WarpTask task, void* operands, const std::source_location& where);
  unsigned active_lanes_mask() const;
  [[noreturn]] void fail(std::string what);
  unsigned char* dynamic_shared_memory() const { return dynamic_shared_.get(); }
  size_t dynamic_shared_bytes() const { return dynamic_shared_bytes_; }
  // The running thread's cp.async copies not yet waited for (core/sim/pipeline.h).
  AsyncCopyQueue& async_copies() { return self().async_copies; }
  // The running thread's wgmma operations not yet waited for (core/sim/wgmma.h).
  WgmmaQueue& wgmma_operations() { return self().wgmma_operations; }
  // For each 16-byte line of dynamic shared memory, how many of the block's wgmma operations
  // not yet performed read it: the asynchronous copies must not write it meanwhile.
  std::vector<std::uint16_t>& wgmma_reads() { return wgmma_reads_; }
  // Whether such an operation reads a line of bytes [offset, offset + bytes) of dynamic shared
  // memory: what an asynchronous copy there (cp.async, TMA) would race with.
  bool wgmma_reads_any(std::size_t offset, std::size_t bytes) const;
  // The proxy fence between the running thread's cp.async copies and wgmma's reads: a copy
  // that lands in dynamic shared memory leaves its 16-byte line unfenced until its thread runs
  // fence.proxy.async (fence_async_proxy); wgmma must not read an unfenced line.
  void copy_landed(const void* destination);
  void fence_async_proxy();
  // The thread whose landed copy left line unfenced, or -1.
  int unfenced_writer(std::uint32_t line) const { return unfenced_writers_[line] - 1; }
  // The block's initialised mbarriers, by address (core/sim/tma.h).
  std::unordered_map<const void*, MbarrierState>& mbarriers() { return mbarriers_; }
  // Suspends the running thread until a phase of `barrier` completes (mbarrier_phase_completed).
  void wait_for_mbarrier(const void* barrier, const std::source_location& where);
  // Resumes the threads waiting for `barrier`.
  void mbarrier_phase_completed(const void* barrier);

 private:
  enum class Status : uint8_t { runnable, at_barrier, at_warp_collective, at_mbarrier, exited };

  // How the threads run between two block barriers. A thread runs from one yield (a
  // barrier, a warp collective, a wmma call) to the next without interruption; what varies
  // is whose turn comes next. Rounds alone keep the warps in lockstep, so a race between
  // warps that pass the same warp steps (a missing __syncthreads before shared tiles are
  // overwritten, in a kernel with shuffles or wmma between the barriers) would never show.
  enum class Interleaving : uint8_t {
    thread_rounds,  // every runnable thread once a round, in index or shuffled order
    warps_in_turn,  // warps in a shuffled order, each alone to the next barrier (or exit)
    warp_bursts,    // a random warp runs a random number (1-16) of warp steps, repeatedly
  };

  struct SimThread {
    ThreadCoordinates coordinates{};
    int id = 0;  // linear index within the block
    Status status = Status::runnable;
    bool started = false;
    Fiber fiber;
    std::source_location where;  // barrier, collective or mbarrier wait it waits at
    const void* awaited_mbarrier = nullptr;
    int barrier_predicate = 0;
    int barrier_result = 0;
    // Pending warp collective.
    WarpOp op = WarpOp::sync;
    unsigned mask = 0;
    int argument = 0;
    int width = 32;
    WarpPayload value{};
    WarpPayload result{};
    // Pending warp task (op == WarpOp::task).
    const char* task_name = nullptr;
    WarpTask task = nullptr;
    void* task_operands = nullptr;
    AsyncCopyQueue async_copies;
    WgmmaQueue wgmma_operations;
    std::vector<std::uint32_t> unfenced_lines;  // lines this thread's landed copies left unfenced
  };

  // Dynamic shared memory is aligned as generously as on a GPU (the wmma functions need 32 bytes).
  static constexpr size_t kDynamicSharedAlignment = 128;
  struct AlignedDelete {
    void operator()(unsigned char* memory) const;
  };

  static void thread_entry(void* argument);
  using Random = std::mt19937_64;
  void schedule(std::optional<uint64_t> order_seed);
  void run_thread_rounds(Random* random, uint64_t epoch);
  void run_warps_in_turn(Random& random, uint64_t epoch);
  void run_warp_bursts(Random& random, uint64_t epoch);
  bool run_warp_step(int warp, Random& random);
  void resume(SimThread& thread);
  bool interval_over(uint64_t epoch) const { return barriers_released_ != epoch || !failure_.empty(); }
  SimThread& self();
  void yield_current();
  void unwind_suspended_threads();
  void thread_exited(SimThread& thread);
  void release_barrier_if_complete();
  void fail_if_copies_left();
  void try_complete_warp_collective(int warp, unsigned mask);
  void complete_warp_collective(int warp, unsigned mask);
  void complete_warp_task(int warp, unsigned mask);
  static const char* collective_name(const SimThread& thread);
  std::string describe_deadlock() const;
  std::string describe_threads(const std::vector<int>& ids) const;
  std::string block_name() const;

  const KernelLaunch* launch_ = nullptr;
  const std::function<void()>* body_ = nullptr;
  std::vector<std::unique_ptr<FiberStack>> stacks_;  // reused from block to block
  std::vector<SimThread> threads_;
  SimThread* running_ = nullptr;
  int live_ = 0;
  int at_barrier_ = 0;
  uint64_t barriers_released_ = 0;  // the epoch: which stretch between barriers runs
  int warp_count_ = 0;
  std::vector<int> order_;  // scratch of the interleavings: threads or warps in their order
  std::vector<int> lanes_;  // scratch of run_warp_step
  std::unique_ptr<unsigned char[], AlignedDelete> dynamic_shared_;
  size_t dynamic_shared_bytes_ = 0;
  std::vector<std::uint16_t> wgmma_reads_;
  std::vector<int> unfenced_writers_;  // per line: 1 + the thread whose copy left it unfenced, or 0
  std::unordered_map<const void*, MbarrierState> mbarriers_;
  std::string failure_;
  bool aborting_ = false;  // a failed block's fibers are being unwound
};

}  // namespace strata::sim
