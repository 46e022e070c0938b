// User-space fibers for the SIMT simulator: one per simulated GPU thread. A fiber runs
// until it reaches a barrier or warp primitive, then yields back to its block's scheduler.
// Built on Boost.Context's fcontext (a few nanoseconds a switch; ucontext makes a system
// call per switch). Switches are announced to AddressSanitizer so it follows the stacks.
#pragma once

#include <cstddef>

namespace strata::sim {

// An mmap'd stack with an inaccessible guard page below it, so an overflow faults.
class FiberStack {
 public:
  explicit FiberStack(size_t size);
  ~FiberStack();
  FiberStack(const FiberStack&) = delete;
  FiberStack& operator=(const FiberStack&) = delete;

  void* bottom() const { return usable_; }  // lowest usable address
  size_t size() const { return size_; }
  void* top() const { return static_cast<char*>(usable_) + size_; }

 private:
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  void* usable_ = nullptr;
  size_t size_ = 0;
};

// Stack size of a simulated thread: STRATA_SIM_STACK_KB, else 64 KiB (256 KiB under ASan,
// whose redzones make frames larger).
size_t fiber_stack_size();

class Fiber {
 public:
  using Entry = void (*)(void* argument);

  // Prepares the fiber to run entry(argument) on stack when first resumed.
  void start(FiberStack& stack, Entry entry, void* argument);
  // Scheduler side: runs the fiber until it yields or returns from entry.
  void resume();
  // Fiber side: hands control back to the scheduler.
  void yield();
  bool finished() const { return finished_; }

 private:
  friend struct FiberAccess;

  void* context_ = nullptr;    // the fiber's suspended context
  void* scheduler_ = nullptr;  // the scheduler's suspended context, while the fiber runs
  FiberStack* stack_ = nullptr;
  Entry entry_ = nullptr;
  void* argument_ = nullptr;
  bool finished_ = false;
  // AddressSanitizer bookkeeping (unused without ASan).
  void* fake_stack_ = nullptr;
  void* scheduler_fake_stack_ = nullptr;
  const void* scheduler_stack_bottom_ = nullptr;
  size_t scheduler_stack_size_ = 0;
};

}  // namespace strata::sim
