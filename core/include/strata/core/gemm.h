// The project's one entry point for matrix multiplication, row-major:
//   C (m, n) = alpha * op(A) (m, k) * op(B) (k, n) + beta * C,
// where op(X) is X or its transpose. The CUDA build calls cuBLAS (cublasGemmEx, f32 compute,
// no TF32, no reduced-precision split-K reductions); the simulator build runs a CPU GEMM,
// accumulating in double, queued on the stream in order with the kernels around it.
//
// gemm() takes f32 matrices; gemm_ex() takes A, B and C of one storage dtype (f32, f16 or
// bf16), accumulates in f32 (double in the simulator) and rounds once to that dtype when it
// writes C. gemm(args) is gemm_ex with dtype f32.
//
//   gemm(GemmArgs{.trans_b = true, .m = batch, .n = out_features, .k = in_features,
//                 .a = x, .lda = in_features,             // x (batch, in_features)
//                 .b = weight, .ldb = in_features,        // weight (out_features, in_features)
//                 .c = y, .ldc = out_features}, stream);  // y (batch, out_features)
#pragma once

#include <cuda_runtime_api.h>

#include "strata/core/dtype.h"

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

// GemmArgs for matrices of any floating storage dtype: a, b and c point to elements of dtype
// (float, __half or __nv_bfloat16); alpha and beta stay float.
struct GemmExArgs {
  DType dtype = DType::f32;
  bool trans_a = false;
  bool trans_b = false;
  int m = 0;
  int n = 0;
  int k = 0;
  float alpha = 1.0f;
  const void* a = nullptr;
  int lda = 0;
  const void* b = nullptr;
  int ldb = 0;
  float beta = 0.0f;
  void* c = nullptr;
  int ldc = 0;
};

// Queue the product on stream. Throw InvalidArgument (naming every size and stride, and the
// dtype unless f32) for negative sizes, leading dimensions smaller than a row, null pointers,
// a null stream or a dtype that is not floating; CublasError when cuBLAS fails.
void gemm(const GemmArgs& args, cudaStream_t stream);
void gemm_ex(const GemmExArgs& args, cudaStream_t stream);

}  // namespace strata
