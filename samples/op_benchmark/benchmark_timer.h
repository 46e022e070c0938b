// Timing one op on the GPU the way the operator benchmark does: CUDA events on one stream,
// warm-up runs first, the L2 cache flushed before every timed run (so an op never finds
// its inputs left in L2 by its previous run), and the median of the timed runs.
//
//   L2Flush flush(2 * l2_cache_bytes(), stream);
//   Timing t = time_runs([&](int run, cudaStream_t s) { op(inputs[run % copies], s); },
//                        {.warmup_runs = 3, .timed_runs = 20}, flush, stream);
#pragma once

#include <cstddef>
#include <functional>

#include <strata/strata.h>

namespace op_benchmark {

// Throws strata::CudaError naming call when status is not cudaSuccess.
void check_cuda(cudaError_t status, const char* call);

// The L2 cache size of the current device, from cudaDevAttrL2CacheSize.
std::size_t l2_cache_bytes();

// A device buffer that is written in full before each timed run: larger than L2, it
// evicts whatever the previous run left there.
class L2Flush {
 public:
  L2Flush(std::size_t bytes, cudaStream_t stream);
  // Queues the write (a memset) on stream.
  void queue(cudaStream_t stream);
  std::size_t bytes() const noexcept { return buffer_.nbytes(); }

 private:
  strata::Tensor buffer_;  // (bytes) u8
  int value_ = 0;          // changes each time, so that no level of the memory system can skip the write
};

// One run of an op, queued on stream; run counts up from 0 over warm-up and timed runs,
// so the op can rotate among copies of its inputs (run % copies).
using RunFunction = std::function<void(int run, cudaStream_t stream)>;

struct TimerOptions {
  int warmup_runs = 3;
  int timed_runs = 20;
};

struct Timing {
  double median_ms = 0.0;
  double min_ms = 0.0;
  double max_ms = 0.0;
  int runs = 0;
};

// Queues the warm-up runs, then each timed run between two events with a flush before it;
// waits for the stream and returns the statistics of the timed runs. GPU time only, but a
// run whose host side is slower than its GPU work (autograd, allocation) leaves the GPU idle
// between its kernels, and that idle time is counted.
Timing time_runs(const RunFunction& run, const TimerOptions& options, L2Flush& flush, cudaStream_t stream);

// amount / (milliseconds / 1000) / unit, or 0 when no time was measured (a simulated event
// pair may be 0 ms apart).
double rate_per_second(double amount, double milliseconds, double unit);

}  // namespace op_benchmark
