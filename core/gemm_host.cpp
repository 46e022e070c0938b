// The CPU GEMM: the simulator build's backend of gemm() (compiled only there), launched on
// the stream as a kernel of one simulated thread, so it runs after the kernels queued before
// it and before those queued after, and a CUDA graph captures it with its arguments by
// value (a host function's user data would be freed after its first run).
#include <algorithm>
#include <type_traits>
#include <vector>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "core/gemm_backend.h"
#include "core/launch.cuh"

namespace strata::detail {

namespace {

// T is the storage type of A, B and C: elements are read as double, summed in double and
// rounded once to T.
template <typename T>
void gemm_on_host_typed(const GemmExArgs& args) {
  const auto* a = static_cast<const T*>(args.a);
  const auto* b = static_cast<const T*>(args.b);
  auto* c = static_cast<T*>(args.c);
  // Row by row: op(B)'s rows are walked contiguously when B is not transposed.
  std::vector<double> row(static_cast<std::size_t>(args.n));
  for (int i = 0; i < args.m; ++i) {
    std::fill(row.begin(), row.end(), 0.0);
    for (int p = 0; p < args.k; ++p) {
      const double a_ip = to_double(args.trans_a ? a[static_cast<std::size_t>(p) * args.lda + i]
                                                 : a[static_cast<std::size_t>(i) * args.lda + p]);
      for (int j = 0; j < args.n; ++j) {
        const double b_pj = to_double(args.trans_b ? b[static_cast<std::size_t>(j) * args.ldb + p]
                                                   : b[static_cast<std::size_t>(p) * args.ldb + j]);
        row[static_cast<std::size_t>(j)] += a_ip * b_pj;
      }
    }
    T* c_row = c + static_cast<std::size_t>(i) * args.ldc;
    for (int j = 0; j < args.n; ++j) {
      const double product = static_cast<double>(args.alpha) * row[static_cast<std::size_t>(j)];
      // beta == 0 must not read C: it may be uninitialised or NaN, as with cuBLAS.
      c_row[j] = convert_element<T>(args.beta == 0.0f ? product
                                                      : product + static_cast<double>(args.beta) * to_double(c_row[j]));
    }
  }
}

}  // namespace

void gemm_on_host(const GemmExArgs& args) noexcept {
  dispatch_dtype(args.dtype, [&]<typename T>(std::type_identity<T>) {
    // gemm_ex admits only the floating dtypes.
    if constexpr (std::is_floating_point_v<T> || kIsReducedFloat<T>) gemm_on_host_typed<T>(args);
  });
}

namespace {
__global__ void gemm_kernel(GemmExArgs args) { gemm_on_host(args); }
}  // namespace

void gemm_backend(const GemmExArgs& args, cudaStream_t stream) {
  launch(gemm_kernel, LaunchConfig{.grid = 1, .block = 1, .stream = stream, .name = "gemm_on_host"}, args);
}

}  // namespace strata::detail
