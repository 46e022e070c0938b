// Streams and events as move-only RAII types, and the per-thread "current stream" that
// Strata's operations use when the caller does not pass one (as in PyTorch).
//
//   Stream copy_stream;                      // non-blocking, on the current device
//   Event copied;
//   x.copy_from_host_async(batch, copy_stream);
//   copied.record(copy_stream);
//   Stream compute ...; compute.wait(copied); // later work on compute waits for the copy
//   { StreamGuard guard(compute); model.forward(x); }  // current_stream() == compute here
#pragma once

#include <cuda_runtime_api.h>

#include "strata/core/device.h"

namespace strata {

class Event;

// Owns a cudaStreamNonBlocking stream: it never synchronises with the legacy default
// stream. Converts to cudaStream_t, so it can be passed wherever a stream is expected.
class Stream {
 public:
  // A stream on device (default: the current device).
  explicit Stream(int device);
  Stream() : Stream(current_device()) {}
  // Queued work still runs to completion. The CUDA stream goes back to a per-device pool
  // for the next Stream instead of being destroyed: memory allocated on it may be freed
  // later, and the allocator then records an event on it.
  ~Stream();

  Stream(Stream&& other) noexcept;
  Stream& operator=(Stream&& other) noexcept;
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  cudaStream_t get() const noexcept { return stream_; }
  operator cudaStream_t() const noexcept { return stream_; }
  int device() const noexcept { return device_; }

  // Work queued on this stream after the call waits until event has completed.
  void wait(const Event& event) const;
  // Blocks the calling thread until all queued work has finished.
  void synchronize() const;
  // True when all queued work has finished.
  bool query() const;

 private:
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
};

enum class EventTiming : bool { disabled, enabled };

// Owns a cudaEvent_t. Timing is off by default: cheaper, and enough for ordering.
class Event {
 public:
  explicit Event(EventTiming timing = EventTiming::disabled);
  ~Event();

  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  cudaEvent_t get() const noexcept { return event_; }
  bool timing_enabled() const noexcept { return timing_ == EventTiming::enabled; }

  // Captures the work queued on stream so far.
  void record(cudaStream_t stream);
  // True when the recorded work has completed (also when nothing was recorded yet).
  bool query() const;
  void synchronize() const;
  // Milliseconds between this (start) event and end; both need EventTiming::enabled and
  // must have completed.
  float elapsed_ms(const Event& end) const;

 private:
  cudaEvent_t event_ = nullptr;
  EventTiming timing_ = EventTiming::disabled;
};

// The same operations for a stream Strata does not own, such as current_stream().
void stream_wait(cudaStream_t stream, const Event& event);
void stream_synchronize(cudaStream_t stream);
bool stream_query(cudaStream_t stream);

// The library's own non-blocking stream of a device: created on first use, never
// destroyed, and the current stream of every thread until a StreamGuard changes it.
cudaStream_t primary_stream(int device);

// The stream the calling thread works on for device (default: the current device).
cudaStream_t current_stream(int device);
inline cudaStream_t current_stream() { return current_stream(current_device()); }

// Makes stream the calling thread's current stream, and its device the current device,
// for the guard's scope; restores both afterwards. Guards nest.
class StreamGuard {
 public:
  explicit StreamGuard(const Stream& stream) : StreamGuard(stream.get(), stream.device()) {}
  StreamGuard(cudaStream_t stream, int device);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  int previous_device_;
  cudaStream_t previous_stream_;
};

}  // namespace strata
