// The cuDNN runtime of the CUDA build: the run-time check of the loaded library, one handle
// per thread and device, and owners of cuDNN descriptors. Private to the library, and CUDA
// build only (the simulator build has no cuDNN: strata::cudnn_available() is false there and
// every cuDNN path throws NotSupported before it would get here). cuDNN's headers stay out of
// the public headers, so users' builds never see them or their deprecation attributes.
//
// Every cuDNN call goes through STRATA_CUDNN_CHECK (core/check.h). Workspaces come from
// Strata's caching allocator (allocate_device on the op's stream), never from cuDNN, so that
// they are stream-ordered, capturable in CUDA graphs, and counted in the host graph's
// measured workspaces.
#pragma once

#include <string_view>
#include <utility>

#include <cuda_runtime_api.h>
#include <cudnn.h>

#include "core/check.h"

namespace strata::detail {

// Throws NotSupported "<what>: <cudnn_unavailable_reason()>" unless cuDNN is available.
void require_cudnn(std::string_view what);

// The calling thread's handle for the current device, set to stream (never the default
// stream). Created on first use, after require_cudnn; handles of finished threads are reused.
cudnnHandle_t cudnn_handle(cudaStream_t stream);

// Move-only owner of one cuDNN descriptor: created in the constructor by create(&descriptor),
// or create(argument, &descriptor) for creators that take one (the graph API's descriptor
// type), destroyed (never throwing) in the destructor.
template <typename Descriptor, auto create, cudnnStatus_t (*destroy)(Descriptor)>
class CudnnDescriptor {
 public:
  CudnnDescriptor() { STRATA_CUDNN_CHECK(create(&descriptor_)); }
  template <typename Argument>
  explicit CudnnDescriptor(Argument argument) { STRATA_CUDNN_CHECK(create(argument, &descriptor_)); }
  ~CudnnDescriptor() {
    if (descriptor_ != nullptr) destroy(descriptor_);  // only fails for a null descriptor
  }
  CudnnDescriptor(CudnnDescriptor&& other) noexcept : descriptor_(std::exchange(other.descriptor_, nullptr)) {}
  CudnnDescriptor& operator=(CudnnDescriptor&& other) noexcept {
    std::swap(descriptor_, other.descriptor_);
    return *this;
  }
  CudnnDescriptor(const CudnnDescriptor&) = delete;
  CudnnDescriptor& operator=(const CudnnDescriptor&) = delete;

  Descriptor get() const noexcept { return descriptor_; }
  operator Descriptor() const noexcept { return descriptor_; }  // NOLINT: implicit, to pass to cuDNN calls

 private:
  Descriptor descriptor_ = nullptr;
};

using CudnnTensorDescriptor =
    CudnnDescriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using CudnnFilterDescriptor =
    CudnnDescriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using CudnnConvolutionDescriptor =
    CudnnDescriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;

}  // namespace strata::detail
