// Handles of CUDA libraries (cuBLAS, cuDNN) kept one per thread and device: creating one
// costs milliseconds and a handle must not be used by two threads at once. A finished
// thread gives its handles back to a pool for the next thread, and the pool is leaked so
// nothing is destroyed after the CUDA runtime and the library have unloaded.
//
//   struct CublasHandles { static cublasHandle_t create(int device); };   // throws on failure
//   thread_local ThreadHandles<cublasHandle_t, CublasHandles> handles;
//   cublasHandle_t handle = handles.handle_for(current_device());
#pragma once

#include <map>
#include <mutex>
#include <vector>

namespace strata::detail {

// Traits::create(device) makes a new handle for device (current), throwing on failure.
template <typename Handle, typename Traits>
class HandlePool {
 public:
  static HandlePool& instance() {
    static auto* pool = new HandlePool;
    return *pool;
  }
  Handle acquire(int device) {
    {
      std::lock_guard lock(mutex_);
      auto& spare = spare_[device];
      if (!spare.empty()) {
        const Handle handle = spare.back();
        spare.pop_back();
        return handle;
      }
    }
    return Traits::create(device);
  }
  void release(int device, Handle handle) noexcept {
    try {
      std::lock_guard lock(mutex_);
      spare_[device].push_back(handle);
    } catch (...) {
      // Losing a handle only leaks it.
    }
  }

 private:
  std::mutex mutex_;
  std::map<int, std::vector<Handle>> spare_;
};

// The calling thread's handles, one per device, returned to the pool when the thread ends.
template <typename Handle, typename Traits>
class ThreadHandles {
 public:
  ThreadHandles() = default;
  ThreadHandles(const ThreadHandles&) = delete;
  ThreadHandles& operator=(const ThreadHandles&) = delete;
  ~ThreadHandles() {
    for (auto& [device, handle] : handles_) HandlePool<Handle, Traits>::instance().release(device, handle);
  }
  Handle handle_for(int device) {
    auto it = handles_.find(device);
    if (it == handles_.end()) {
      it = handles_.emplace(device, HandlePool<Handle, Traits>::instance().acquire(device)).first;
    }
    return it->second;
  }

 private:
  std::map<int, Handle> handles_;
};

}  // namespace strata::detail
