// The project's one entry point for fp32 matrix multiplication, row-major:
//   C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) + beta * C,
// where op(X) is X or its transpose. The CUDA build calls cuBLAS (plain fp32, no TF32); the
// simulator build runs a CPU GEMM, accumulating in double, queued on the stream in order
// with the kernels around it.
//
//   gemm(GemmArgs{.trans_b = true, .m = batch, .n = out_features, .k = in_features,
//                 .a = x, .lda = in_features,             // x (batch, in_features)
//                 .b = weight, .ldb = in_features,        // weight (out_features, in_features)
//                 .c = y, .ldc = out_features}, stream);  // y (batch, out_features)
#pragma once

#include <cuda_runtime_api.h>

namespace strata {

struct GemmArgs {
  bool trans_a = false;  // op(A) = A^T: A is stored (k, m)
  bool trans_b = false;  // op(B) = B^T: B is stored (n, k)
  int m = 0;
  int n = 0;
  int k = 0;
  float alpha = 1.0f;
  const float* a = nullptr;  // device; (m, k), or (k, m) when trans_a
  int lda = 0;               // row stride of A as stored: >= its column count
  const float* b = nullptr;  // device; (k, n), or (n, k) when trans_b
  int ldb = 0;
  float beta = 0.0f;  // 0: C is only written, never read (it may hold NaN)
  float* c = nullptr;  // device; (m, n)
  int ldc = 0;
};

// Queues the product on stream. Throws InvalidArgument (naming every size and stride) for
// negative sizes, leading dimensions smaller than a row, null pointers or a null stream;
// CublasError when cuBLAS fails.
void gemm(const GemmArgs& args, cudaStream_t stream);

}  // namespace strata
