#include "benchmark_timer.h"

#include <algorithm>
#include <string>
#include <vector>

namespace op_benchmark {

void check_cuda(cudaError_t status, const char* call) {
  if (status != cudaSuccess) {
    throw strata::CudaError(std::string(call) + " failed: " + cudaGetErrorString(status), status);
  }
}

std::size_t l2_cache_bytes() {
  int device = 0;
  check_cuda(cudaGetDevice(&device), "cudaGetDevice");
  int bytes = 0;
  check_cuda(cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, device), "cudaDeviceGetAttribute(L2CacheSize)");
  return static_cast<std::size_t>(bytes);
}

L2Flush::L2Flush(std::size_t bytes, cudaStream_t stream)
    : buffer_(strata::Tensor::empty({static_cast<std::int64_t>(bytes)}, strata::DType::u8, stream)) {}

void L2Flush::queue(cudaStream_t stream) {
  value_ = (value_ + 1) & 0xff;
  check_cuda(cudaMemsetAsync(buffer_.data_ptr(), value_, buffer_.nbytes(), stream),
             "cudaMemsetAsync (L2 flush)");
}

Timing time_runs(const RunFunction& run, const TimerOptions& options, L2Flush& flush, cudaStream_t stream) {
  int run_index = 0;
  for (int i = 0; i < options.warmup_runs; ++i) run(run_index++, stream);

  const auto timed_runs = static_cast<std::size_t>(std::max(options.timed_runs, 1));
  std::vector<strata::Event> starts, ends;
  for (std::size_t i = 0; i < timed_runs; ++i) {
    starts.emplace_back(strata::EventTiming::enabled);
    ends.emplace_back(strata::EventTiming::enabled);
  }
  for (std::size_t i = 0; i < timed_runs; ++i) {
    flush.queue(stream);
    starts[i].record(stream);
    run(run_index++, stream);
    ends[i].record(stream);
  }
  strata::stream_synchronize(stream);

  std::vector<double> milliseconds;
  for (std::size_t i = 0; i < timed_runs; ++i) milliseconds.push_back(starts[i].elapsed_ms(ends[i]));
  std::sort(milliseconds.begin(), milliseconds.end());
  const std::size_t middle = timed_runs / 2;
  const double median =
      timed_runs % 2 == 1 ? milliseconds[middle] : 0.5 * (milliseconds[middle - 1] + milliseconds[middle]);
  return {.median_ms = median, .min_ms = milliseconds.front(), .max_ms = milliseconds.back(),
          .runs = static_cast<int>(timed_runs)};
}

double rate_per_second(double amount, double milliseconds, double unit) {
  return milliseconds > 0.0 ? amount / (milliseconds * 1e-3) / unit : 0.0;
}

}  // namespace op_benchmark
