// The CUDA build's backend of gemm(): cublasGemmEx (A, B and C of the product's dtype, f32
// compute) on a cuBLAS handle cached per thread and device, with a workspace per stream from
// the caching allocator (cuBLAS would otherwise allocate its own, which breaks CUDA Graph
// capture and races between streams).
#include <map>
#include <utility>

#include <cublas_v2.h>

#include "core/check.h"
#include "core/gemm_backend.h"
#include "core/library_handles.h"
#include "strata/core/allocator.h"
#include "strata/core/device.h"

namespace strata::detail {

namespace {

// cuBLAS's recommended workspace on Hopper.
constexpr std::size_t kWorkspaceBytes = 32u << 20;

struct CublasHandles {
  static cublasHandle_t create(int device) {
    cublasHandle_t handle = nullptr;
    STRATA_CUBLAS_CHECK(cublasCreate(&handle), "creating a cuBLAS handle for device {}", device);
    // f16/bf16 products accumulate in f32 throughout: no split-K partial sums rounded to the
    // output type (no effect on f32, whose output type is the compute type).
    STRATA_CUBLAS_CHECK(cublasSetMathMode(handle, CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION),
                        "setting the math mode of the cuBLAS handle of device {}", device);
    return handle;
  }
};

// The calling thread's handles (one per device) and their workspaces (one per stream).
class ThreadCublas {
 public:
  cublasHandle_t handle_for(int device, cudaStream_t stream) {
    const cublasHandle_t handle = handles_.handle_for(device);
    cudaStream_t& handle_stream = streams_[device];
    if (handle_stream != stream) {
      // cublasSetStream resets the workspace, so it is set again after every stream change.
      STRATA_CUBLAS_CHECK(cublasSetStream(handle, stream));
      handle_stream = nullptr;  // until the workspace is set too
      DeviceBuffer& workspace = workspaces_[{device, stream}];
      if (!workspace) workspace = allocate_device(kWorkspaceBytes, stream);
      STRATA_CUBLAS_CHECK(cublasSetWorkspace(handle, workspace.data(), workspace.size()));
      handle_stream = stream;
    }
    return handle;
  }

 private:
  ThreadHandles<cublasHandle_t, CublasHandles> handles_;
  std::map<int, cudaStream_t> streams_;  // the stream each handle is set to
  std::map<std::pair<int, cudaStream_t>, DeviceBuffer> workspaces_;
};

thread_local ThreadCublas thread_handles;

cudaDataType_t cuda_data_type(DType dtype) {
  switch (dtype) {
    case DType::f16: return CUDA_R_16F;
    case DType::bf16: return CUDA_R_16BF;
    default: return CUDA_R_32F;  // gemm_ex admits only the floating dtypes
  }
}

}  // namespace

void gemm_backend(const GemmExArgs& args, cudaStream_t stream) {
  const cublasHandle_t handle = thread_handles.handle_for(current_device(), stream);
  // cuBLAS is column-major; a row-major (m, n) C is a column-major (n, m) C^T, and
  // C^T = op(B)^T op(A)^T: swap A and B, and m and n.
  const cublasOperation_t op_a = args.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = args.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cudaDataType_t type = cuda_data_type(args.dtype);
  STRATA_CUBLAS_CHECK(cublasGemmEx(handle, op_b, op_a, args.n, args.m, args.k, &args.alpha, args.b, type, args.ldb,
                                   args.a, type, args.lda, &args.beta, args.c, type, args.ldc, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT),
                      "gemm(trans_a={}, trans_b={}, m={}, n={}, k={}, lda={}, ldb={}, ldc={}, dtype={})", args.trans_a,
                      args.trans_b, args.m, args.n, args.k, args.lda, args.ldb, args.ldc, dtype_name(args.dtype));
}

}  // namespace strata::detail
