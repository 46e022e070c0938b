// gemm() and gemm_ex(): check their arguments, then hand the product to the backend.
#include "strata/core/gemm.h"

#include <algorithm>
#include <string>

#include "core/check.h"
#include "core/gemm_backend.h"
#include "core/op_recording.h"

namespace strata {

namespace {

std::string describe(const GemmExArgs& args) {
  // f32 products keep the description they always had; other dtypes name theirs.
  const std::string dtype = args.dtype == DType::f32 ? "" : fmt::format(", dtype={}", dtype_name(args.dtype));
  return fmt::format("gemm(trans_a={}, trans_b={}, m={}, n={}, k={}, lda={}, ldb={}, ldc={}{})", args.trans_a,
                     args.trans_b, args.m, args.n, args.k, args.lda, args.ldb, args.ldc, dtype);
}

}  // namespace

void gemm(const GemmArgs& args, cudaStream_t stream) {
  gemm_ex(GemmExArgs{.dtype = DType::f32, .trans_a = args.trans_a, .trans_b = args.trans_b, .m = args.m, .n = args.n,
                     .k = args.k, .alpha = args.alpha, .a = args.a, .lda = args.lda, .b = args.b, .ldb = args.ldb,
                     .beta = args.beta, .c = args.c, .ldc = args.ldc},
          stream);
}

void gemm_ex(const GemmExArgs& args, cudaStream_t stream) {
  STRATA_CHECK(is_floating_point(args.dtype), "{}: dtype must be f32, f16 or bf16, got {}", describe(args),
               dtype_name(args.dtype));
  STRATA_CHECK(args.m >= 0 && args.n >= 0 && args.k >= 0, "{}: sizes must be non-negative", describe(args));
  STRATA_CHECK(stream != nullptr, "{}: no stream given; Strata never uses the default stream", describe(args));
  if (args.m == 0 || args.n == 0) return;
  graph::detail::check_inside_op("a GEMM", "");

  // Row-major storage: the leading dimension is the row stride, at least one row long.
  const int a_columns = args.trans_a ? args.m : args.k;
  const int b_columns = args.trans_b ? args.k : args.n;
  STRATA_CHECK(args.lda >= std::max(1, a_columns), "{}: lda must be >= {} (A is stored ({}, {}))", describe(args),
               std::max(1, a_columns), args.trans_a ? args.k : args.m, a_columns);
  STRATA_CHECK(args.ldb >= std::max(1, b_columns), "{}: ldb must be >= {} (B is stored ({}, {}))", describe(args),
               std::max(1, b_columns), args.trans_b ? args.n : args.k, b_columns);
  STRATA_CHECK(args.ldc >= args.n, "{}: ldc must be >= n = {} (C is ({}, {}))", describe(args), args.n, args.m, args.n);
  STRATA_CHECK(args.c != nullptr, "{}: C is null", describe(args));
  STRATA_CHECK(args.k == 0 || (args.a != nullptr && args.b != nullptr), "{}: A or B is null", describe(args));
  detail::gemm_backend(args, stream);
}

}  // namespace strata
