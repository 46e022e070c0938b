#include "benchmark_peaks.h"

namespace op_benchmark {

namespace {

Timing time_copy(std::size_t bytes, const TimerOptions& options, L2Flush& flush, cudaStream_t stream) {
  const auto count = static_cast<std::int64_t>(bytes);
  strata::Tensor source = strata::Tensor::zeros({count}, strata::DType::u8, stream);       // (bytes)
  strata::Tensor destination = strata::Tensor::empty({count}, strata::DType::u8, stream);  // (bytes)
  return time_runs(
      [&](int, cudaStream_t s) {
        check_cuda(cudaMemcpyAsync(destination.data_ptr(), source.data_ptr(), bytes, cudaMemcpyDeviceToDevice, s),
                   "cudaMemcpyAsync (device to device)");
      },
      options, flush, stream);
}

Timing time_gemm(std::int64_t size, const TimerOptions& options, L2Flush& flush, cudaStream_t stream) {
  strata::Tensor a = strata::Tensor::empty({size, size}, strata::DType::f32, stream);  // (m, k)
  strata::Tensor b = strata::Tensor::empty({size, size}, strata::DType::f32, stream);  // (k, n)
  strata::Tensor c = strata::Tensor::empty({size, size}, strata::DType::f32, stream);  // (m, n)
  strata::fill_uniform(a, {.low = -1.0f, .high = 1.0f, .seed = 1}, stream);
  strata::fill_uniform(b, {.low = -1.0f, .high = 1.0f, .seed = 2}, stream);
  const int n = static_cast<int>(size);
  return time_runs(
      [&](int, cudaStream_t s) {
        strata::gemm({.m = n, .n = n, .k = n, .a = a.data<float>(), .lda = n, .b = b.data<float>(), .ldb = n,
                      .c = c.data<float>(), .ldc = n},
                     s);
      },
      options, flush, stream);
}

}  // namespace

Peaks measure_peaks(const PeakSizes& sizes, const TimerOptions& options, L2Flush& flush, cudaStream_t stream) {
  Peaks peaks;
  peaks.sizes = sizes;
  peaks.copy = time_copy(sizes.copy_bytes, options, flush, stream);
  peaks.copy_gb_per_s = rate_per_second(2.0 * static_cast<double>(sizes.copy_bytes), peaks.copy.median_ms, 1e9);
  peaks.gemm = time_gemm(sizes.gemm_size, options, flush, stream);
  const double flops = 2.0 * static_cast<double>(sizes.gemm_size) * static_cast<double>(sizes.gemm_size) *
                       static_cast<double>(sizes.gemm_size);
  peaks.gemm_tflop_per_s = rate_per_second(flops, peaks.gemm.median_ms, 1e12);
  return peaks;
}

}  // namespace op_benchmark
