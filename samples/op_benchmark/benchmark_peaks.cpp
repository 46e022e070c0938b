#include "benchmark_peaks.h"

#include "benchmark_cases.h"

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

// A square product of matrices stored in dtype: f32 (no TF32) or bf16 (tensor cores, f32
// accumulation); strata::gemm_ex either way, so both rates come from the same call.
Timing time_gemm(std::int64_t size, strata::DType dtype, const TimerOptions& options, L2Flush& flush,
                 cudaStream_t stream) {
  strata::Tensor a = random_copies({size, size}, 1, 1, stream, dtype).front();  // (m, k)
  strata::Tensor b = random_copies({size, size}, 1, 2, stream, dtype).front();  // (k, n)
  strata::Tensor c = strata::Tensor::empty({size, size}, dtype, stream);        // (m, n)
  const int n = static_cast<int>(size);
  return time_runs(
      [&](int, cudaStream_t s) {
        strata::gemm_ex({.dtype = dtype, .m = n, .n = n, .k = n, .a = a.data_ptr(), .lda = n, .b = b.data_ptr(),
                         .ldb = n, .c = c.data_ptr(), .ldc = n},
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
  const double flops = 2.0 * static_cast<double>(sizes.gemm_size) * static_cast<double>(sizes.gemm_size) *
                       static_cast<double>(sizes.gemm_size);
  peaks.gemm = time_gemm(sizes.gemm_size, strata::DType::f32, options, flush, stream);
  peaks.gemm_tflop_per_s = rate_per_second(flops, peaks.gemm.median_ms, 1e12);
  peaks.gemm_bf16 = time_gemm(sizes.gemm_size, strata::DType::bf16, options, flush, stream);
  peaks.gemm_bf16_tflop_per_s = rate_per_second(flops, peaks.gemm_bf16.median_ms, 1e12);
  return peaks;
}

}  // namespace op_benchmark
