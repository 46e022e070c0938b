// Holds a stream back: work queued on it after the gate waits until open() is called (or
// the gate is destroyed, which also waits for the stream to drain), so a test can observe
// "still pending" states deterministically, e.g. an event that has not completed yet. A
// host function blocks the stream meanwhile; do not synchronise on the gated stream, or on
// the device, before opening the gate.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>

#include <cuda_runtime_api.h>

#include "core/check.h"

namespace strata::testing {

class StreamGate {
 public:
  explicit StreamGate(cudaStream_t stream) : stream_(stream), state_(std::make_shared<State>()) {
    auto* held = new std::shared_ptr<State>(state_);  // the host function's own reference
    const cudaError_t status = cudaLaunchHostFunc(stream, &StreamGate::wait_until_open, held);
    if (status != cudaSuccess) delete held;
    STRATA_CUDA_CHECK(status, "StreamGate: queuing the blocking host function");
  }
  // Waits for the stream so that the host function has returned (and released its state)
  // before the test ends.
  ~StreamGate() {
    open();
    STRATA_CUDA_WARN(cudaStreamSynchronize(stream_));
  }
  StreamGate(const StreamGate&) = delete;
  StreamGate& operator=(const StreamGate&) = delete;

  void open() {
    {
      std::lock_guard lock(state_->mutex);
      state_->open = true;
    }
    state_->opened.notify_all();
  }

 private:
  struct State {
    std::mutex mutex;
    std::condition_variable opened;
    bool open = false;
  };

  static void CUDART_CB wait_until_open(void* user_data) {
    const std::unique_ptr<std::shared_ptr<State>> held(static_cast<std::shared_ptr<State>*>(user_data));
    State& state = **held;
    std::unique_lock lock(state.mutex);
    state.opened.wait(lock, [&] { return state.open; });
  }

  cudaStream_t stream_;
  std::shared_ptr<State> state_;
};

}  // namespace strata::testing
