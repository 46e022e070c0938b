// The peaks every result is measured against, taken in the same run on the same device:
// device-to-device copy bandwidth (the ceiling for memory-bound ops), the cuBLAS fp32 GEMM
// rate (the ceiling for convolutions and linear layers in fp32 math) and the cuBLAS bf16
// GEMM rate, bf16 inputs and output with f32 accumulation on the tensor cores (the ceiling
// for the tensor-core rows: TF32 and bf16 math, bf16 storage).
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
  Timing gemm;       // fp32
  Timing gemm_bf16;  // bf16 storage, f32 accumulation
  double copy_gb_per_s = 0.0;          // bytes read + written per second, 1e9
  double gemm_tflop_per_s = 0.0;       // 2 m n k per second, 1e12
  double gemm_bf16_tflop_per_s = 0.0;  // the same for the bf16 GEMM
};

// Times a cudaMemcpyAsync device to device, a square strata::gemm and a square
// strata::gemm_ex in bf16 (cuBLAS in the CUDA build) with the same timer as the ops.
Peaks measure_peaks(const PeakSizes& sizes, const TimerOptions& options, L2Flush& flush, cudaStream_t stream);

}  // namespace op_benchmark
