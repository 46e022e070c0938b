// The two peaks every result is measured against, taken in the same run on the same
// device: device-to-device copy bandwidth (the ceiling for memory-bound ops) and the
// cuBLAS fp32 GEMM rate (the ceiling for convolutions and linear layers).
#pragma once

#include <cstddef>
#include <cstdint>

#include "benchmark_timer.h"

namespace op_benchmark {

struct PeakSizes {
  std::size_t copy_bytes = std::size_t{1} << 30;  // one buffer; the copy reads and writes it
  std::int64_t gemm_size = 8192;                  // m = n = k
};

struct Peaks {
  PeakSizes sizes;
  Timing copy;
  Timing gemm;
  double copy_gb_per_s = 0.0;   // bytes read + written per second, 1e9
  double gemm_tflop_per_s = 0.0;  // 2 m n k per second, 1e12
};

// Times a cudaMemcpyAsync device to device and a square strata::gemm (cuBLAS in the CUDA
// build) with the same timer as the ops.
Peaks measure_peaks(const PeakSizes& sizes, const TimerOptions& options, L2Flush& flush, cudaStream_t stream);

}  // namespace op_benchmark
