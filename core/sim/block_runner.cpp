// Execution of one thread block on fibers; see block_runner.h.
#include "core/sim/block_runner.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <new>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>

namespace strata::sim {

thread_local const ThreadCoordinates* current_coordinates = nullptr;

namespace {
thread_local BlockRunner* current_runner = nullptr;

std::string where_text(const std::source_location& where) {
  std::string_view file(where.file_name());
  if (const auto slash = file.rfind('/'); slash != std::string_view::npos) file.remove_prefix(slash + 1);
  return fmt::format("{}:{}", file, where.line());
}

// Whether two calls are the same source line. File names of one file are usually one string
// literal, so the pointer comparison decides before strcmp (a barrier's hot path).
bool same_place(const std::source_location& a, const std::source_location& b) {
  return a.line() == b.line() &&
         (a.file_name() == b.file_name() || std::strcmp(a.file_name(), b.file_name()) == 0);
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::sync: return "__syncwarp";
    case WarpOp::shuffle_index: return "__shfl_sync";
    case WarpOp::shuffle_up: return "__shfl_up_sync";
    case WarpOp::shuffle_down: return "__shfl_down_sync";
    case WarpOp::shuffle_xor: return "__shfl_xor_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::task: return "warp task";
  }
  return "warp collective";
}

// What a read from a lane that holds no value gives: all ones (NaN for floats, -1 for
// integers), so that relying on it shows up in results, as garbage would on a GPU.
WarpPayload undefined_payload() {
  WarpPayload payload;
  std::memset(payload.bytes, 0xff, sizeof(payload.bytes));
  return payload;
}

}  // namespace

BlockRunner::BlockRunner() = default;
BlockRunner::~BlockRunner() = default;

BlockRunner* BlockRunner::current() { return current_runner; }

void BlockRunner::AlignedDelete::operator()(unsigned char* memory) const {
  ::operator delete[](memory, std::align_val_t{kDynamicSharedAlignment});
}

const char* BlockRunner::collective_name(const SimThread& thread) {
  return thread.op == WarpOp::task ? thread.task_name : op_name(thread.op);
}

BlockRunner::SimThread& BlockRunner::self() {
  if (running_ == nullptr) throw std::logic_error("strata simulator: a device function was called outside a kernel");
  return *running_;
}

void BlockRunner::copy_landed(const void* destination) {
  const auto* at = static_cast<const unsigned char*>(destination);
  const unsigned char* base = dynamic_shared_.get();
  if (base == nullptr || at < base || at >= base + dynamic_shared_bytes_) return;  // static shared memory
  const auto line = static_cast<std::uint32_t>((at - base) / 16);
  SimThread& thread = self();
  if (unfenced_writers_[line] == thread.id + 1) return;  // already listed
  unfenced_writers_[line] = thread.id + 1;
  thread.unfenced_lines.push_back(line);
}

bool BlockRunner::wgmma_reads_any(std::size_t offset, std::size_t bytes) const {
  const std::size_t end = std::min((offset + bytes + 15) / 16, wgmma_reads_.size());
  for (std::size_t line = offset / 16; line < end; ++line) {
    if (wgmma_reads_[line] > 0) return true;
  }
  return false;
}

void BlockRunner::fence_async_proxy() {
  SimThread& thread = self();
  for (const std::uint32_t line : thread.unfenced_lines) {
    if (unfenced_writers_[line] == thread.id + 1) unfenced_writers_[line] = 0;
  }
  thread.unfenced_lines.clear();
}

std::string BlockRunner::block_name() const {
  const ThreadCoordinates& c = threads_.front().coordinates;
  return fmt::format("kernel {} block ({}, {}, {})", launch_->name, c.block_idx.x, c.block_idx.y, c.block_idx.z);
}

namespace {
// Thrown inside the fibers of a failed block so that their frames unwind (and free what
// they hold) instead of being abandoned mid-frame.
struct BlockAborted {};
}  // namespace

void BlockRunner::thread_entry(void* argument) {
  auto* runner = static_cast<BlockRunner*>(argument);
  runner->running_->started = true;
  try {
    (*runner->body_)();
    // Its accumulators end with it: an operation never waited for has no defined result.
    if (const std::size_t pending = runner->running_->wgmma_operations.pending(); pending > 0) {
      runner->fail(fmt::format("the thread exited with {} wgmma.mma_async operations not waited for "
                               "(wgmma::commit_group, then wait_group)",
                               pending));
    }
  } catch (const BlockAborted&) {
    runner->running_->status = Status::exited;
    return;
  }
  runner->thread_exited(*runner->running_);
}

std::string BlockRunner::run(const KernelLaunch& launch, const std::function<void()>& thread_body, uint3 block_index,
                             std::optional<uint64_t> order_seed) {
  launch_ = &launch;
  body_ = &thread_body;
  failure_.clear();
  const dim3 block = launch.block;
  const int count = static_cast<int>(block.x * block.y * block.z);

  while (static_cast<int>(stacks_.size()) < count) stacks_.push_back(std::make_unique<FiberStack>(fiber_stack_size()));
  threads_.clear();
  threads_.resize(static_cast<size_t>(count));
  for (int id = 0; id < count; ++id) {
    SimThread& thread = threads_[static_cast<size_t>(id)];
    thread.id = id;
    const unsigned x = static_cast<unsigned>(id) % block.x;
    const unsigned y = static_cast<unsigned>(id) / block.x % block.y;
    const unsigned z = static_cast<unsigned>(id) / (block.x * block.y);
    thread.coordinates = ThreadCoordinates{uint3{x, y, z}, block_index, launch.block, launch.grid};
    thread.fiber.start(*stacks_[static_cast<size_t>(id)], &BlockRunner::thread_entry, this);
  }
  // Uninitialised shared memory reads as all ones (NaN), not as a convenient zero.
  dynamic_shared_.reset();
  dynamic_shared_bytes_ = launch.shared_bytes;
  wgmma_reads_.assign((launch.shared_bytes + 15) / 16, 0);
  unfenced_writers_.assign((launch.shared_bytes + 15) / 16, 0);
  if (launch.shared_bytes > 0) {
    dynamic_shared_.reset(static_cast<unsigned char*>(
        ::operator new[](launch.shared_bytes, std::align_val_t{kDynamicSharedAlignment})));
    std::memset(dynamic_shared_.get(), 0xff, launch.shared_bytes);
  }
  mbarriers_.clear();
  live_ = count;
  at_barrier_ = 0;
  barriers_released_ = 0;
  warp_count_ = (count + kWarpSize - 1) / kWarpSize;

  BlockRunner* const previous_runner = current_runner;
  current_runner = this;
  schedule(order_seed);
  if (failure_.empty()) fail_if_copies_left();
  if (!failure_.empty()) unwind_suspended_threads();
  current_runner = previous_runner;
  return failure_;
}

// ---- Scheduling ------------------------------------------------------------------------------

void BlockRunner::schedule(std::optional<uint64_t> order_seed) {
  std::optional<Random> random;
  if (order_seed) random.emplace(*order_seed);
  while (live_ > 0 && failure_.empty()) {
    // Each stretch between two barriers draws its own interleaving, so that one launch mixes
    // them and a race in any stretch has several chances to show.
    const uint64_t epoch = barriers_released_;
    Interleaving interleaving = Interleaving::thread_rounds;
    if (random) interleaving = static_cast<Interleaving>(std::uniform_int_distribution<int>(0, 2)(*random));
    switch (interleaving) {
      case Interleaving::thread_rounds: run_thread_rounds(random ? &*random : nullptr, epoch); break;
      case Interleaving::warps_in_turn: run_warps_in_turn(*random, epoch); break;
      case Interleaving::warp_bursts: run_warp_bursts(*random, epoch); break;
    }
    // Each interleaving returns when a barrier opens or when no thread can run.
    if (failure_.empty() && live_ > 0 && barriers_released_ == epoch &&
        std::none_of(threads_.begin(), threads_.end(),
                     [](const SimThread& thread) { return thread.status == Status::runnable; })) {
      failure_ = describe_deadlock();
    }
  }
}

void BlockRunner::resume(SimThread& thread) {
  running_ = &thread;
  current_coordinates = &thread.coordinates;
  thread.fiber.resume();
  running_ = nullptr;
  current_coordinates = nullptr;
}

void BlockRunner::run_thread_rounds(Random* random, uint64_t epoch) {
  while (!interval_over(epoch)) {
    order_.clear();
    for (const SimThread& thread : threads_) {
      if (thread.status == Status::runnable) order_.push_back(thread.id);
    }
    if (order_.empty()) return;
    if (random != nullptr) std::shuffle(order_.begin(), order_.end(), *random);
    for (const int id : order_) {
      SimThread& thread = threads_[static_cast<size_t>(id)];
      if (thread.status != Status::runnable) continue;
      resume(thread);
      if (!failure_.empty()) return;
    }
  }
}

void BlockRunner::run_warps_in_turn(Random& random, uint64_t epoch) {
  order_.resize(static_cast<size_t>(warp_count_));
  std::iota(order_.begin(), order_.end(), 0);
  std::shuffle(order_.begin(), order_.end(), random);
  // The first warp runs ahead to the barrier while the others have not started; the last
  // one is held back until all the others wait there.
  for (const int warp : order_) {
    while (run_warp_step(warp, random)) {
      if (interval_over(epoch)) return;
    }
  }
}

void BlockRunner::run_warp_bursts(Random& random, uint64_t epoch) {
  std::vector<int>& ready = order_;
  std::uniform_int_distribution<int> burst_scale(0, 4);
  while (!interval_over(epoch)) {
    ready.clear();
    for (int warp = 0; warp < warp_count_; ++warp) {
      const int first = warp * kWarpSize;
      const int last = std::min(first + kWarpSize, static_cast<int>(threads_.size()));
      for (int id = first; id < last; ++id) {
        if (threads_[static_cast<size_t>(id)].status == Status::runnable) {
          ready.push_back(warp);
          break;
        }
      }
    }
    if (ready.empty()) return;
    const int warp = ready[std::uniform_int_distribution<size_t>(0, ready.size() - 1)(random)];
    const int steps = 1 << burst_scale(random);  // 1, 2, 4, 8 or 16 warp steps
    for (int step = 0; step < steps && !interval_over(epoch); ++step) {
      if (!run_warp_step(warp, random)) break;
    }
  }
}

// One warp step: each runnable lane of warp runs once, in a shuffled order, to its next
// yield. Returns false when no lane of the warp could run.
bool BlockRunner::run_warp_step(int warp, Random& random) {
  lanes_.clear();
  const int first = warp * kWarpSize;
  const int last = std::min(first + kWarpSize, static_cast<int>(threads_.size()));
  for (int id = first; id < last; ++id) {
    if (threads_[static_cast<size_t>(id)].status == Status::runnable) lanes_.push_back(id);
  }
  if (lanes_.empty()) return false;
  std::shuffle(lanes_.begin(), lanes_.end(), random);
  for (const int id : lanes_) {
    SimThread& thread = threads_[static_cast<size_t>(id)];
    if (thread.status != Status::runnable) continue;
    resume(thread);
    if (!failure_.empty()) break;
  }
  return true;
}

void BlockRunner::yield_current() {
  running_->fiber.yield();
  if (aborting_) throw BlockAborted{};
}

void BlockRunner::unwind_suspended_threads() {
  aborting_ = true;
  for (SimThread& thread : threads_) {
    if (!thread.started || thread.fiber.finished()) continue;
    running_ = &thread;
    current_coordinates = &thread.coordinates;
    thread.fiber.resume();
  }
  running_ = nullptr;
  current_coordinates = nullptr;
  aborting_ = false;
}

void BlockRunner::fail(std::string what) {
  if (failure_.empty()) failure_ = fmt::format("{}, thread ({}, {}, {}): {}", block_name(), running_->coordinates.thread_idx.x,
                                               running_->coordinates.thread_idx.y, running_->coordinates.thread_idx.z, what);
  // The scheduler stops the block and never resumes this fiber.
  for (;;) yield_current();
}

void BlockRunner::thread_exited(SimThread& thread) {
  thread.status = Status::exited;
  --live_;
  // Exited threads no longer hold back a barrier or a warp collective, as on Volta and later.
  release_barrier_if_complete();
  const int warp = thread.id / kWarpSize;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const size_t id = static_cast<size_t>(warp * kWarpSize + lane);
    if (id < threads_.size() && threads_[id].status == Status::at_warp_collective) {
      try_complete_warp_collective(warp, threads_[id].mask);
    }
  }
}

// ---- Block barrier -----------------------------------------------------------------------

int BlockRunner::barrier(int predicate, const std::source_location& where) {
  SimThread& thread = self();
  thread.status = Status::at_barrier;
  thread.where = where;
  thread.barrier_predicate = predicate;
  ++at_barrier_;
  release_barrier_if_complete();
  yield_current();
  return thread.barrier_result;
}

void BlockRunner::release_barrier_if_complete() {
  if (at_barrier_ == 0 || at_barrier_ != live_ || !failure_.empty()) return;
  // Every live thread waits: they must all wait at the same __syncthreads.
  const SimThread* first = nullptr;
  int count = 0;
  for (const SimThread& thread : threads_) {
    if (thread.status != Status::at_barrier) continue;
    if (first == nullptr) first = &thread;
    if (!same_place(thread.where, first->where)) {
      failure_ = fmt::format(
          "{}: threads wait at different barriers: thread {} at {}, thread {} at {} (a __syncthreads in "
          "divergent code)",
          block_name(), first->id, where_text(first->where), thread.id, where_text(thread.where));
      return;
    }
    count += thread.barrier_predicate;
  }
  for (SimThread& thread : threads_) {
    if (thread.status != Status::at_barrier) continue;
    thread.status = Status::runnable;
    thread.barrier_result = count;
  }
  at_barrier_ = 0;
  ++barriers_released_;
}

// ---- mbarriers -----------------------------------------------------------------------------

void BlockRunner::wait_for_mbarrier(const void* barrier, const std::source_location& where) {
  SimThread& thread = self();
  thread.status = Status::at_mbarrier;
  thread.where = where;
  thread.awaited_mbarrier = barrier;
  yield_current();
}

void BlockRunner::mbarrier_phase_completed(const void* barrier) {
  for (SimThread& thread : threads_) {
    if (thread.status == Status::at_mbarrier && thread.awaited_mbarrier == barrier) {
      thread.status = Status::runnable;
      thread.awaited_mbarrier = nullptr;
    }
  }
}

// A bulk copy lands whether or not anyone waits: one never waited for would land in the shared
// memory of a block that has ended (or of the next one).
void BlockRunner::fail_if_copies_left() {
  std::size_t copies = 0;
  for (const auto& [address, state] : mbarriers_) copies += state.copies.size();
  if (copies > 0) {
    failure_ = fmt::format("{}: the block ended with {} cp.async.bulk.tensor copies that no wait on their mbarrier "
                           "performed (tma::wait before the block ends)",
                           block_name(), copies);
  }
}

// ---- Warp collectives --------------------------------------------------------------------

unsigned BlockRunner::active_lanes_mask() const {
  const int warp = running_->id / kWarpSize;
  unsigned mask = 0;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const size_t id = static_cast<size_t>(warp * kWarpSize + lane);
    if (id < threads_.size() && threads_[id].status != Status::exited) mask |= 1u << lane;
  }
  return mask;
}

WarpPayload BlockRunner::warp_collective(WarpOp op, unsigned mask, const WarpPayload& value, int argument, int width,
                                         const std::source_location& where) {
  SimThread& thread = self();
  const int lane = thread.id % kWarpSize;
  if ((mask & (1u << lane)) == 0) {
    fail(fmt::format("{} at {} with mask {:#010x}, which does not name the calling lane {}", op_name(op),
                     where_text(where), mask, lane));
  }
  if (width <= 0 || width > kWarpSize || (width & (width - 1)) != 0) {
    fail(fmt::format("{} at {} with width {}: must be a power of two up to 32", op_name(op), where_text(where), width));
  }
  thread.status = Status::at_warp_collective;
  thread.where = where;
  thread.op = op;
  thread.mask = mask;
  thread.argument = argument;
  thread.width = width;
  thread.value = value;
  try_complete_warp_collective(thread.id / kWarpSize, mask);
  yield_current();
  return thread.result;
}

void BlockRunner::warp_task(const char* name, WarpTask task, void* operands, const std::source_location& where) {
  SimThread& thread = self();
  thread.status = Status::at_warp_collective;
  thread.where = where;
  thread.op = WarpOp::task;
  thread.mask = 0xffffffffu;
  thread.width = kWarpSize;
  thread.task_name = name;
  thread.task = task;
  thread.task_operands = operands;
  try_complete_warp_collective(thread.id / kWarpSize, thread.mask);
  yield_current();
}

void BlockRunner::try_complete_warp_collective(int warp, unsigned mask) {
  // Has every lane arrived? Lanes mostly arrive in index order, so looking from the last lane
  // down makes each arrival but the last one look, not a scan of the lanes before it.
  for (int lane = kWarpSize - 1; lane >= 0; --lane) {
    if ((mask & (1u << lane)) == 0) continue;
    const size_t id = static_cast<size_t>(warp * kWarpSize + lane);
    if (id < threads_.size() && threads_[id].status != Status::exited &&
        threads_[id].status != Status::at_warp_collective) {
      return;
    }
  }
  // They have: they must all make the same call.
  const SimThread* caller = nullptr;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if ((mask & (1u << lane)) == 0) continue;
    const size_t id = static_cast<size_t>(warp * kWarpSize + lane);
    if (id >= threads_.size() || threads_[id].status == Status::exited) continue;
    const SimThread& thread = threads_[id];
    if (caller == nullptr) caller = &thread;
    if (thread.mask != mask || thread.op != caller->op || thread.width != caller->width ||
        thread.task != caller->task) {
      failure_ = fmt::format(
          "{}: lanes of warp {} disagree in a warp collective: lane {} calls {} (mask {:#010x}, width {}) at {}, "
          "lane {} calls {} (mask {:#010x}, width {}) at {}",
          block_name(), warp, caller->id % kWarpSize, collective_name(*caller), caller->mask, caller->width,
          where_text(caller->where), lane, collective_name(thread), thread.mask, thread.width,
          where_text(thread.where));
      return;
    }
    // A warp task is one instruction of the warp (like wmma's .aligned instructions): every
    // lane must reach the same call, not just the same function.
    if (thread.op == WarpOp::task && !same_place(thread.where, caller->where)) {
      failure_ = fmt::format(
          "{}: lanes of warp {} call {} at different places: lane {} at {}, lane {} at {} (a warp-wide operation "
          "in divergent code)",
          block_name(), warp, collective_name(thread), caller->id % kWarpSize, where_text(caller->where), lane,
          where_text(thread.where));
      return;
    }
  }
  if (caller == nullptr) return;
  if (caller->op == WarpOp::task) {
    complete_warp_task(warp, mask);
  } else {
    complete_warp_collective(warp, mask);
  }
}

void BlockRunner::complete_warp_task(int warp, unsigned mask) {
  std::array<void*, kWarpSize> operands{};
  const SimThread* first = nullptr;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const size_t id = static_cast<size_t>(warp * kWarpSize + lane);
    if (id >= threads_.size() || threads_[id].status != Status::at_warp_collective) continue;
    operands[static_cast<size_t>(lane)] = threads_[id].task_operands;
    if (first == nullptr) first = &threads_[id];
  }
  const std::string error = first->task(operands.data());
  if (!error.empty()) {
    // The lanes stay suspended; the scheduler stops the block and unwinds them.
    failure_ = fmt::format("{}, warp {}: {} at {}: {}", block_name(), warp, first->task_name,
                           where_text(first->where), error);
    return;
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    const size_t id = static_cast<size_t>(warp * kWarpSize + lane);
    if ((mask & (1u << lane)) != 0 && id < threads_.size() && threads_[id].status == Status::at_warp_collective) {
      threads_[id].status = Status::runnable;
    }
  }
}

void BlockRunner::complete_warp_collective(int warp, unsigned mask) {
  auto lane_thread = [&](int lane) -> SimThread* {
    const size_t id = static_cast<size_t>(warp * kWarpSize + lane);
    if (lane < 0 || lane >= kWarpSize || id >= threads_.size()) return nullptr;
    SimThread& thread = threads_[id];
    return thread.status == Status::at_warp_collective && (mask & (1u << lane)) != 0 ? &thread : nullptr;
  };
  unsigned ballot = 0;
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if (const SimThread* thread = lane_thread(lane); thread != nullptr && thread->value.bytes[0] != 0) {
      ballot |= 1u << lane;
    }
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    SimThread* thread = lane_thread(lane);
    if (thread == nullptr) continue;
    const int width = thread->width;
    const int segment = lane & ~(width - 1);
    int source = lane;
    switch (thread->op) {
      case WarpOp::sync: break;
      case WarpOp::ballot: break;
      case WarpOp::task: break;  // completed by complete_warp_task
      case WarpOp::shuffle_index: source = segment + (thread->argument & (width - 1)); break;
      case WarpOp::shuffle_up: source = lane - thread->argument < segment ? lane : lane - thread->argument; break;
      case WarpOp::shuffle_down:
        source = lane + thread->argument >= segment + width ? lane : lane + thread->argument;
        break;
      case WarpOp::shuffle_xor: {
        const int target = lane ^ thread->argument;
        source = target >= segment + width || target >= kWarpSize ? lane : target;  // later groups: own value
        break;
      }
    }
    if (thread->op == WarpOp::ballot) {
      thread->result = WarpPayload{};
      std::memcpy(thread->result.bytes, &ballot, sizeof(ballot));
    } else if (const SimThread* from = lane_thread(source)) {
      thread->result = from->value;
    } else {
      thread->result = undefined_payload();  // an exited lane or one not in the mask
    }
  }
  for (int lane = 0; lane < kWarpSize; ++lane) {
    if (SimThread* thread = lane_thread(lane)) thread->status = Status::runnable;
  }
}

// ---- Diagnosis -----------------------------------------------------------------------------

std::string BlockRunner::describe_threads(const std::vector<int>& ids) const {
  std::string text;
  for (size_t i = 0; i < ids.size();) {
    size_t j = i;
    while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
    if (!text.empty()) text += ",";
    text += i == j ? fmt::format("{}", ids[i]) : fmt::format("{}-{}", ids[i], ids[j]);
    i = j + 1;
  }
  return text;
}

std::string BlockRunner::describe_deadlock() const {
  std::vector<int> at_barrier, at_warp, at_mbarrier, exited;
  const SimThread* barrier_example = nullptr;
  const SimThread* warp_example = nullptr;
  const SimThread* mbarrier_example = nullptr;
  for (const SimThread& thread : threads_) {
    switch (thread.status) {
      case Status::at_barrier:
        at_barrier.push_back(thread.id);
        if (barrier_example == nullptr) barrier_example = &thread;
        break;
      case Status::at_warp_collective:
        at_warp.push_back(thread.id);
        if (warp_example == nullptr) warp_example = &thread;
        break;
      case Status::at_mbarrier:
        at_mbarrier.push_back(thread.id);
        if (mbarrier_example == nullptr) mbarrier_example = &thread;
        break;
      case Status::exited: exited.push_back(thread.id); break;
      case Status::runnable: break;
    }
  }
  std::string text = fmt::format("deadlock in {}: no thread can proceed", block_name());
  if (barrier_example != nullptr) {
    text += fmt::format("; threads {} wait at __syncthreads ({})", describe_threads(at_barrier),
                        where_text(barrier_example->where));
  }
  if (warp_example != nullptr) {
    text += fmt::format("; threads {} wait at {} ({}, mask {:#010x}) for lanes that never arrive",
                        describe_threads(at_warp), collective_name(*warp_example), where_text(warp_example->where),
                        warp_example->mask);
  }
  if (mbarrier_example != nullptr) {
    text += fmt::format("; threads {} wait at an mbarrier ({}) whose phase no arrival completes",
                        describe_threads(at_mbarrier), where_text(mbarrier_example->where));
  }
  if (!exited.empty()) text += fmt::format("; threads {} have exited", describe_threads(exited));
  return text;
}

// ---- Device-side entry points declared in simt.h --------------------------------------------

namespace {
BlockRunner& runner_or_throw() {
  BlockRunner* runner = BlockRunner::current();
  if (runner == nullptr) throw std::logic_error("strata simulator: a device function was called outside a kernel");
  return *runner;
}
}  // namespace

int block_barrier(int predicate, const std::source_location& where) { return runner_or_throw().barrier(predicate, where); }

WarpPayload warp_collective(WarpOp op, unsigned mask, const WarpPayload& value, int argument, int width,
                            const std::source_location& where) {
  return runner_or_throw().warp_collective(op, mask, value, argument, width, where);
}

unsigned active_lanes_mask() { return runner_or_throw().active_lanes_mask(); }

void warp_task(const char* name, WarpTask task, void* operands, const std::source_location& where) {
  runner_or_throw().warp_task(name, task, operands, where);
}

void fail_thread(const char* what, const std::source_location& where) {
  runner_or_throw().fail(fmt::format("{} at {}", what, where_text(where)));
}

unsigned char* dynamic_shared_memory() { return runner_or_throw().dynamic_shared_memory(); }
size_t dynamic_shared_bytes() { return runner_or_throw().dynamic_shared_bytes(); }

}  // namespace strata::sim
