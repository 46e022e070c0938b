// The CUDA build's backend of gemm(): cublasSgemm on a cuBLAS handle cached per thread and
// device, with a workspace per stream from the caching allocator (cuBLAS would otherwise
// allocate its own, which breaks CUDA Graph capture and races between streams).
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include <cublas_v2.h>

#include "core/check.h"
#include "core/gemm_backend.h"
#include "strata/core/allocator.h"
#include "strata/core/device.h"

namespace strata::detail {

namespace {

// cuBLAS's recommended workspace on Hopper.
constexpr std::size_t kWorkspaceBytes = 32u << 20;

// Handles outlive the threads that used them: a finished thread gives its handle back for
// the next thread, and the pool itself is leaked so nothing is destroyed after the CUDA
// runtime has unloaded.
class HandlePool {
 public:
  static HandlePool& instance() {
    static auto* pool = new HandlePool;
    return *pool;
  }
  cublasHandle_t acquire(int device) {
    {
      std::lock_guard lock(mutex_);
      auto& spare = spare_[device];
      if (!spare.empty()) {
        const cublasHandle_t handle = spare.back();
        spare.pop_back();
        return handle;
      }
    }
    cublasHandle_t handle = nullptr;
    STRATA_CUBLAS_CHECK(cublasCreate(&handle), "creating a cuBLAS handle for device {}", device);
    return handle;
  }
  void release(int device, cublasHandle_t handle) noexcept {
    try {
      std::lock_guard lock(mutex_);
      spare_[device].push_back(handle);
    } catch (...) {
      // Losing a handle only leaks it.
    }
  }

 private:
  std::mutex mutex_;
  std::map<int, std::vector<cublasHandle_t>> spare_;
};

// The calling thread's handles (one per device) and their workspaces (one per stream).
class ThreadHandles {
 public:
  ~ThreadHandles() {
    for (auto& [device, handle] : handles_) HandlePool::instance().release(device, handle);
  }
  cublasHandle_t handle_for(int device, cudaStream_t stream) {
    auto it = handles_.find(device);
    if (it == handles_.end()) it = handles_.emplace(device, HandlePool::instance().acquire(device)).first;
    const cublasHandle_t handle = it->second;
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
  std::map<int, cublasHandle_t> handles_;
  std::map<int, cudaStream_t> streams_;  // the stream each handle is set to
  std::map<std::pair<int, cudaStream_t>, DeviceBuffer> workspaces_;
};

thread_local ThreadHandles thread_handles;

}  // namespace

void gemm_backend(const GemmArgs& args, cudaStream_t stream) {
  const cublasHandle_t handle = thread_handles.handle_for(current_device(), stream);
  // cuBLAS is column-major; a row-major (m, n) C is a column-major (n, m) C^T, and
  // C^T = op(B)^T op(A)^T: swap A and B, and m and n.
  const cublasOperation_t op_a = args.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = args.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  STRATA_CUBLAS_CHECK(cublasSgemm(handle, op_b, op_a, args.n, args.m, args.k, &args.alpha, args.b, args.ldb, args.a,
                                  args.lda, &args.beta, args.c, args.ldc),
                      "gemm(trans_a={}, trans_b={}, m={}, n={}, k={}, lda={}, ldb={}, ldc={})", args.trans_a,
                      args.trans_b, args.m, args.n, args.k, args.lda, args.ldb, args.ldc);
}

}  // namespace strata::detail
