// Stream and Event RAII types, the per-device primary streams and the per-thread current
// stream.
#include "strata/core/stream.h"

#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "core/check.h"

namespace strata {

namespace {

void check_stream(cudaStream_t stream, const char* what) {
  STRATA_CHECK(stream != nullptr, "{}: no stream given (a moved-from Stream?); Strata never uses the default stream",
               what);
}

// CUDA streams of Stream objects that were destroyed, per device, for the next Stream.
// They are never destroyed: memory allocated on a stream may be freed after its Stream
// object is gone, and the allocator then records an event on that stream. Reusing the
// stream keeps such late frees correct (the stream still orders all earlier work).
class StreamPool {
 public:
  static StreamPool& instance() {
    static auto* pool = new StreamPool;  // leaked, like everything streams may outlive
    return *pool;
  }
  cudaStream_t acquire(int device) {
    {
      std::lock_guard lock(mutex_);
      auto& spare = spare_[device];
      if (!spare.empty()) {
        const cudaStream_t stream = spare.back();
        spare.pop_back();
        return stream;
      }
    }
    DeviceGuard on_device(device);
    cudaStream_t stream = nullptr;
    STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "device {}", device);
    return stream;
  }
  void release(int device, cudaStream_t stream) noexcept {
    try {
      std::lock_guard lock(mutex_);
      spare_[device].push_back(stream);
    } catch (...) {
      // Losing a stream only leaks it.
    }
  }

 private:
  std::mutex mutex_;
  std::map<int, std::vector<cudaStream_t>> spare_;
};

}  // namespace

Stream::Stream(int device) : stream_(StreamPool::instance().acquire(device)), device_(device) {}

Stream::~Stream() {
  if (stream_ != nullptr) StreamPool::instance().release(device_, stream_);
}

Stream::Stream(Stream&& other) noexcept
    : stream_(std::exchange(other.stream_, nullptr)), device_(other.device_) {}

Stream& Stream::operator=(Stream&& other) noexcept {
  if (this != &other) {
    if (stream_ != nullptr) StreamPool::instance().release(device_, stream_);
    stream_ = std::exchange(other.stream_, nullptr);
    device_ = other.device_;
  }
  return *this;
}

void Stream::wait(const Event& event) const { stream_wait(stream_, event); }
void Stream::synchronize() const { stream_synchronize(stream_); }
bool Stream::query() const { return stream_query(stream_); }

Event::Event(EventTiming timing) : timing_(timing) {
  const unsigned flags = timing == EventTiming::enabled ? cudaEventDefault : cudaEventDisableTiming;
  STRATA_CUDA_CHECK(cudaEventCreateWithFlags(&event_, flags));
}

Event::~Event() {
  if (event_ != nullptr) STRATA_CUDA_WARN(cudaEventDestroy(event_));
}

Event::Event(Event&& other) noexcept : event_(std::exchange(other.event_, nullptr)), timing_(other.timing_) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) STRATA_CUDA_WARN(cudaEventDestroy(event_));
    event_ = std::exchange(other.event_, nullptr);
    timing_ = other.timing_;
  }
  return *this;
}

void Event::record(cudaStream_t stream) {
  check_stream(stream, "Event::record");
  STRATA_CHECK(event_ != nullptr, "Event::record: the event was moved from");
  STRATA_CUDA_CHECK(cudaEventRecord(event_, stream));
}

bool Event::query() const {
  STRATA_CHECK(event_ != nullptr, "Event::query: the event was moved from");
  const cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) {
    static_cast<void>(cudaGetLastError());  // "not yet" is an answer, not an error for the next launch check
    return false;
  }
  STRATA_CUDA_CHECK(status);
  return true;
}

void Event::synchronize() const {
  STRATA_CHECK(event_ != nullptr, "Event::synchronize: the event was moved from");
  STRATA_CUDA_CHECK(cudaEventSynchronize(event_));
}

float Event::elapsed_ms(const Event& end) const {
  STRATA_CHECK(timing_enabled() && end.timing_enabled(),
               "Event::elapsed_ms: both events need EventTiming::enabled (start {}, end {})",
               timing_enabled() ? "enabled" : "disabled", end.timing_enabled() ? "enabled" : "disabled");
  STRATA_CHECK(event_ != nullptr && end.event_ != nullptr, "Event::elapsed_ms: an event was moved from");
  float milliseconds = 0.0f;
  STRATA_CUDA_CHECK(cudaEventElapsedTime(&milliseconds, event_, end.event_));
  return milliseconds;
}

void stream_wait(cudaStream_t stream, const Event& event) {
  check_stream(stream, "stream_wait");
  STRATA_CHECK(event.get() != nullptr, "stream_wait: the event was moved from");
  STRATA_CUDA_CHECK(cudaStreamWaitEvent(stream, event.get(), 0));
}

void stream_synchronize(cudaStream_t stream) {
  check_stream(stream, "stream_synchronize");
  STRATA_CUDA_CHECK(cudaStreamSynchronize(stream));
}

bool stream_query(cudaStream_t stream) {
  check_stream(stream, "stream_query");
  const cudaError_t status = cudaStreamQuery(stream);
  if (status == cudaErrorNotReady) {
    static_cast<void>(cudaGetLastError());
    return false;
  }
  STRATA_CUDA_CHECK(status);
  return true;
}

cudaStream_t primary_stream(int device) {
  // Leaked on purpose: tensors freed during static destruction still find their stream.
  static auto& mutex = *new std::mutex;
  static auto& streams = *new std::vector<cudaStream_t>;
  std::lock_guard lock(mutex);
  if (streams.empty()) streams.resize(static_cast<std::size_t>(device_count()), nullptr);
  STRATA_CHECK(device >= 0 && static_cast<std::size_t>(device) < streams.size(),
               "primary_stream({}): this machine has {} CUDA device(s)", device, streams.size());
  cudaStream_t& stream = streams[static_cast<std::size_t>(device)];
  if (stream == nullptr) {
    DeviceGuard on_device(device);
    STRATA_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "primary stream of device {}",
                      device);
  }
  return stream;
}

namespace {
// Per thread and device; nullptr means "the primary stream".
thread_local std::vector<cudaStream_t> current_streams;

cudaStream_t& current_stream_slot(int device) {
  STRATA_CHECK(device >= 0, "current_stream: invalid device {}", device);
  if (current_streams.size() <= static_cast<std::size_t>(device)) {
    current_streams.resize(static_cast<std::size_t>(device) + 1, nullptr);
  }
  return current_streams[static_cast<std::size_t>(device)];
}
}  // namespace

cudaStream_t current_stream(int device) {
  const cudaStream_t stream = current_stream_slot(device);
  return stream != nullptr ? stream : primary_stream(device);
}

StreamGuard::StreamGuard(cudaStream_t stream, int device)
    : device_(device), previous_device_(current_device()), previous_stream_(nullptr) {
  check_stream(stream, "StreamGuard");
  cudaStream_t& slot = current_stream_slot(device);
  if (device != previous_device_) set_device(device);
  previous_stream_ = slot;
  slot = stream;
}

StreamGuard::~StreamGuard() {
  current_streams[static_cast<std::size_t>(device_)] = previous_stream_;
  if (device_ != previous_device_) STRATA_CUDA_WARN(cudaSetDevice(previous_device_));
}

}  // namespace strata
