// Helpers for the tests of the simulated CUDA runtime: a gate that holds a stream's worker
// until the test opens it, host functions from lambdas (also for graphs, which replay them),
// and an ordered log of what ran.
#pragma once

#include <cuda_runtime_api.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <vector>

namespace strata::testing {

#define STRATA_ASSERT_CUDA(call) ASSERT_EQ((call), cudaSuccess) << #call
#define STRATA_EXPECT_CUDA(call) EXPECT_EQ((call), cudaSuccess) << #call

// Long enough that a correct simulator never hits it, short enough that a broken one fails
// the test instead of hanging it.
inline constexpr auto kHangTimeout = std::chrono::seconds(10);

// Queues fn as a host function on stream (fn runs on the stream's worker, in order).
inline cudaError_t launch_host_function(cudaStream_t stream, std::function<void()> fn) {
  auto* heap = new std::function<void()>(std::move(fn));
  const cudaError_t code = cudaLaunchHostFunc(
      stream,
      [](void* data) {
        auto* function = static_cast<std::function<void()>*>(data);
        (*function)();
        delete function;
      },
      heap);
  if (code != cudaSuccess) delete heap;
  return code;
}

// Host functions for captured graphs, which run them at every launch: launch_host_function's
// run once and delete themselves. Each stays alive as long as the object that queued it, which
// must therefore outlive the graph's launches.
class ReplayableHostFunctions {
 public:
  cudaError_t launch(cudaStream_t stream, std::function<void()> fn) {
    functions_.push_back(std::make_unique<std::function<void()>>(std::move(fn)));
    return cudaLaunchHostFunc(
        stream, [](void* data) { (*static_cast<std::function<void()>*>(data))(); }, functions_.back().get());
  }

 private:
  std::vector<std::unique_ptr<std::function<void()>>> functions_;
};

// Blocks the streams it is queued on until open() is called. A gate that nobody opens
// gives up after kHangTimeout and remembers that it did, so a test can tell "the simulator
// waited for the gate" from "the simulator deadlocked". Its state is shared with the queued
// host functions, so a test that ends early cannot leave them a dangling gate.
class Gate {
 public:
  Gate() : state_(std::make_shared<State>()) { state_->opened = state_->promise.get_future().share(); }
  ~Gate() { open(); }
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;

  void open() {
    std::call_once(state_->open_once, [this] { state_->promise.set_value(); });
  }

  cudaError_t hold(cudaStream_t stream) {
    return launch_host_function(stream, [state = state_] {
      if (state->opened.wait_for(kHangTimeout) != std::future_status::ready) state->timed_out = true;
    });
  }

  bool timed_out() const { return state_->timed_out; }

 private:
  struct State {
    std::promise<void> promise;
    std::shared_future<void> opened;
    std::once_flag open_once;
    std::atomic<bool> timed_out{false};
  };
  std::shared_ptr<State> state_;
};

// Records labels from any thread, in the order they arrive. Shared with the queued host
// functions, like Gate.
class OrderLog {
 public:
  void add(int label) { state_->add(label); }
  std::vector<int> labels() const {
    std::lock_guard lock(state_->mutex);
    return state_->labels;
  }
  // A host function that appends label when the stream reaches it.
  cudaError_t add_on(cudaStream_t stream, int label) {
    return launch_host_function(stream, [state = state_, label] { state->add(label); });
  }

 private:
  struct State {
    std::mutex mutex;
    std::vector<int> labels;
    void add(int label) {
      std::lock_guard lock(mutex);
      labels.push_back(label);
    }
  };
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

// A stream, event, or allocation released at the end of the test whatever happens, so a
// failed assertion does not leave work or memory behind for the next test.
class ScopedStream {
 public:
  explicit ScopedStream(unsigned flags = cudaStreamDefault) {
    EXPECT_EQ(cudaStreamCreateWithFlags(&stream_, flags), cudaSuccess);
  }
  ~ScopedStream() {
    if (stream_ != nullptr) {
      EXPECT_EQ(cudaStreamDestroy(stream_), cudaSuccess);
    }
  }
  ScopedStream(const ScopedStream&) = delete;
  ScopedStream& operator=(const ScopedStream&) = delete;
  operator cudaStream_t() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class ScopedEvent {
 public:
  explicit ScopedEvent(unsigned flags = cudaEventDefault) {
    EXPECT_EQ(cudaEventCreateWithFlags(&event_, flags), cudaSuccess);
  }
  ~ScopedEvent() {
    if (event_ != nullptr) {
      EXPECT_EQ(cudaEventDestroy(event_), cudaSuccess);
    }
  }
  ScopedEvent(const ScopedEvent&) = delete;
  ScopedEvent& operator=(const ScopedEvent&) = delete;
  operator cudaEvent_t() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

// count elements of T in device memory (pinned = false) or pinned host memory.
template <typename T>
class ScopedBuffer {
 public:
  ScopedBuffer(size_t count, bool pinned) : count_(count), pinned_(pinned) {
    void* memory = nullptr;
    EXPECT_EQ(pinned ? cudaMallocHost(&memory, bytes()) : cudaMalloc(&memory, bytes()), cudaSuccess);
    data_ = static_cast<T*>(memory);
  }
  ~ScopedBuffer() { EXPECT_EQ(pinned_ ? cudaFreeHost(data_) : cudaFree(data_), cudaSuccess); }
  ScopedBuffer(const ScopedBuffer&) = delete;
  ScopedBuffer& operator=(const ScopedBuffer&) = delete;

  T* get() const { return data_; }
  size_t bytes() const { return count_ * sizeof(T); }

 private:
  T* data_ = nullptr;
  size_t count_;
  bool pinned_;
};

template <typename T>
struct DeviceBuffer : ScopedBuffer<T> {
  explicit DeviceBuffer(size_t count) : ScopedBuffer<T>(count, /*pinned=*/false) {}
};
template <typename T>
struct PinnedBuffer : ScopedBuffer<T> {
  explicit PinnedBuffer(size_t count) : ScopedBuffer<T>(count, /*pinned=*/true) {}
};

}  // namespace strata::testing
