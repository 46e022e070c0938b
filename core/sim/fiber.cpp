// Fibers on Boost.Context's fcontext, with AddressSanitizer fiber annotations.
#include "core/sim/fiber.h"

#include <sys/mman.h>
#include <unistd.h>

#include <boost/context/detail/fcontext.hpp>

#include <cstdlib>
#include <new>
#include <string>

#if defined(__SANITIZE_ADDRESS__)
#define STRATA_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define STRATA_SIM_ASAN 1
#endif
#endif
#ifndef STRATA_SIM_ASAN
#define STRATA_SIM_ASAN 0
#endif

#if STRATA_SIM_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

namespace ctx = boost::context::detail;

namespace strata::sim {
namespace {

// ASan must be told before each switch which stack comes next, and after it which one we
// came from; without ASan these compile to nothing.
inline void announce_switch(void** fake_stack_save, const void* bottom, size_t size) {
#if STRATA_SIM_ASAN
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

inline void complete_switch(void* fake_stack_save, const void** bottom_old, size_t* size_old) {
#if STRATA_SIM_ASAN
  __sanitizer_finish_switch_fiber(fake_stack_save, bottom_old, size_old);
#else
  (void)fake_stack_save, (void)bottom_old, (void)size_old;
#endif
}

size_t page_size() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

}  // namespace

FiberStack::FiberStack(size_t size) {
  const size_t page = page_size();
  size_ = (size + page - 1) / page * page;
  mapping_size_ = size_ + page;
  mapping_ = mmap(nullptr, mapping_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK,
                  -1, 0);
  if (mapping_ == MAP_FAILED) throw std::bad_alloc();
  // Stacks grow down: the guard page sits below the usable range.
  if (mprotect(mapping_, page, PROT_NONE) != 0) {
    munmap(mapping_, mapping_size_);
    throw std::bad_alloc();
  }
  usable_ = static_cast<char*>(mapping_) + page;
}

FiberStack::~FiberStack() { munmap(mapping_, mapping_size_); }

size_t fiber_stack_size() {
  static const size_t size = [] {
    if (const char* text = std::getenv("STRATA_SIM_STACK_KB")) {
      const long kib = std::strtol(text, nullptr, 10);
      if (kib >= 16) return static_cast<size_t>(kib) * 1024;
    }
    return size_t{STRATA_SIM_ASAN ? 256 : 64} * 1024;
  }();
  return size;
}

struct FiberAccess {
  static void entry(ctx::transfer_t transfer) {
    auto* fiber = static_cast<Fiber*>(transfer.data);
    fiber->scheduler_ = transfer.fctx;
    complete_switch(nullptr, &fiber->scheduler_stack_bottom_, &fiber->scheduler_stack_size_);
    fiber->entry_(fiber->argument_);
    fiber->finished_ = true;
    // A null save slot tells ASan this fiber's stack is gone for good.
    announce_switch(nullptr, fiber->scheduler_stack_bottom_, fiber->scheduler_stack_size_);
    ctx::jump_fcontext(fiber->scheduler_, nullptr);
    __builtin_unreachable();
  }
};

void Fiber::start(FiberStack& stack, Entry entry, void* argument) {
  stack_ = &stack;
  entry_ = entry;
  argument_ = argument;
  finished_ = false;
  fake_stack_ = nullptr;
  context_ = ctx::make_fcontext(stack.top(), stack.size(), &FiberAccess::entry);
}

void Fiber::resume() {
  announce_switch(&scheduler_fake_stack_, stack_->bottom(), stack_->size());
  const ctx::transfer_t back = ctx::jump_fcontext(context_, this);
  complete_switch(scheduler_fake_stack_, nullptr, nullptr);
  context_ = back.fctx;
}

void Fiber::yield() {
  announce_switch(&fake_stack_, scheduler_stack_bottom_, scheduler_stack_size_);
  const ctx::transfer_t back = ctx::jump_fcontext(scheduler_, nullptr);
  complete_switch(fake_stack_, &scheduler_stack_bottom_, &scheduler_stack_size_);
  scheduler_ = back.fctx;
}

}  // namespace strata::sim
