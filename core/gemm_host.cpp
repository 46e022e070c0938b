// The CPU GEMM: the simulator build's backend of gemm() (compiled only there), launched on
// the stream as a kernel of one simulated thread, so it runs after the kernels queued before
// it and before those queued after, and a CUDA graph captures it with its arguments by
// value (a host function's user data would be freed after its first run).
#include <algorithm>
#include <vector>

#include "core/check.h"
#include "core/gemm_backend.h"
#include "core/launch.cuh"

namespace strata::detail {

void gemm_on_host(const GemmArgs& args) noexcept {
  // Row by row: op(B)'s rows are walked contiguously when B is not transposed.
  std::vector<double> row(static_cast<std::size_t>(args.n));
  for (int i = 0; i < args.m; ++i) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int p = 0; p < args.k; ++p) {
      const double a_ip = args.trans_a ? args.a[static_cast<std::size_t>(p) * args.lda + i]
                                       : args.a[static_cast<std::size_t>(i) * args.lda + p];
      for (int j = 0; j < args.n; ++j) {
        const float b_pj = args.trans_b ? args.b[static_cast<std::size_t>(j) * args.ldb + p]
                                        : args.b[static_cast<std::size_t>(p) * args.ldb + j];
        row[static_cast<std::size_t>(j)] += a_ip * b_pj;
      }
    }
    float* c_row = args.c + static_cast<std::size_t>(i) * args.ldc;
    for (int j = 0; j < args.n; ++j) {
      const double product = static_cast<double>(args.alpha) * row[static_cast<std::size_t>(j)];
      // beta == 0 must not read C: it may be uninitialised or NaN, as with cuBLAS.
      c_row[j] = static_cast<float>(args.beta == 0.0f ? product : product + static_cast<double>(args.beta) * c_row[j]);
    }
  }
}

namespace {
__global__ void gemm_kernel(GemmArgs args) { gemm_on_host(args); }
}  // namespace

void gemm_backend(const GemmArgs& args, cudaStream_t stream) {
  launch(gemm_kernel, LaunchConfig{.grid = 1, .block = 1, .stream = stream, .name = "gemm_on_host"}, args);
}

}  // namespace strata::detail
