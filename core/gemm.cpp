// gemm(): checks its arguments, then hands the product to the backend.
#include "strata/core/gemm.h"

#include <algorithm>

#include "core/check.h"
#include "core/gemm_backend.h"
#include "core/op_recording.h"

namespace strata {

namespace {

std::string describe(const GemmArgs& args) {
  return fmt::format("gemm(trans_a={}, trans_b={}, m={}, n={}, k={}, lda={}, ldb={}, ldc={})", args.trans_a,
                     args.trans_b, args.m, args.n, args.k, args.lda, args.ldb, args.ldc);
}

}  // namespace

void gemm(const GemmArgs& args, cudaStream_t stream) {
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
