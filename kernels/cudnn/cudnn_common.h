// What the cuDNN backends of kernels/cudnn/ share (CUDA build only): the cache that makes a
// plan (descriptors, algorithms) once per key, and the description of a packed NCHW or NHWC
// tensor in cuDNN's legacy tensor descriptor.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string_view>

#include "core/check.h"
#include "core/cudnn.h"
#include "kernels/cudnn/cudnn_layout.h"
#include "strata/core/dtype.h"
#include "strata/core/memory_format.h"
#include "strata/core/shape.h"
#include "strata/core/tensor.h"

namespace strata::kernels::cudnn_detail {

// Plans made once per key and kept for the life of the process: a model has a handful of
// shapes. A plan is made outside the lock (making one queries cuDNN, which takes a while);
// the first of two racing threads wins. Leak the cache itself (new, never deleted), so that
// nothing is destroyed after cuDNN unloaded at exit.
template <typename Key, typename Plan>
class PlanCache {
 public:
  // The plan of key, made by make() (a std::unique_ptr<Plan>) the first time.
  template <typename Make>
  Plan& plan_for(const Key& key, Make make) {
    {
      std::lock_guard lock(mutex_);
      if (const auto it = plans_.find(key); it != plans_.end()) return *it->second;
    }
    std::unique_ptr<Plan> plan = make();
    std::lock_guard lock(mutex_);
    return *plans_.try_emplace(key, std::move(plan)).first->second;
  }

 private:
  std::mutex mutex_;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

// cuDNN's data type of a floating dtype (f32, f16, bf16); other dtypes are the callers'
// refusal to make first.
inline cudnnDataType_t cudnn_data_type(DType dtype) {
  switch (dtype) {
    case DType::f16: return CUDNN_DATA_HALF;
    case DType::bf16: return CUDNN_DATA_BFLOAT16;
    default: return CUDNN_DATA_FLOAT;
  }
}

// descriptor := a packed tensor of dtype (f32, f16, bf16) and logical shape (N, C, H, W) laid
// out in format: NCHW (contiguous) or NHWC (channels_last; the sizes stay in N, C, H, W order,
// cuDNN derives the strides). The shape must have rank 4 and fewer than 2^31 elements
// (cuDNN's legacy descriptors take int sizes; the callers refuse larger tensors first). A
// failure names what the tensor is, its shape and format.
inline void set_descriptor(cudnnTensorDescriptor_t descriptor, const Shape& shape, DType dtype, MemoryFormat format,
                           std::string_view what) {
  const cudnnTensorFormat_t layout = format == MemoryFormat::channels_last ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
  STRATA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(descriptor, layout, cudnn_data_type(dtype),
                                                static_cast<int>(shape[0]), static_cast<int>(shape[1]),
                                                static_cast<int>(shape[2]), static_cast<int>(shape[3])),
                     "{} {} ({})", what, shape.to_string(), memory_format_name(format));
}

// An activation tensor (x, y and their gradients) as it lies in memory: NHWC where it is
// channels-last and that differs from NCHW (cudnn_memory_format), else NCHW.
inline void set_activation_descriptor(cudnnTensorDescriptor_t descriptor, const Tensor& activation,
                                      std::string_view what) {
  set_descriptor(descriptor, activation.shape(), activation.dtype(), cudnn_memory_format(activation), what);
}

// A packed NCHW tensor (weights, per-channel tensors, and the ops that take only contiguous tensors).
inline void set_nchw(cudnnTensorDescriptor_t descriptor, const Shape& shape, DType dtype, std::string_view what) {
  set_descriptor(descriptor, shape, dtype, MemoryFormat::contiguous, what);
}

inline void set_nchw_f32(cudnnTensorDescriptor_t descriptor, const Shape& shape, std::string_view what) {
  set_nchw(descriptor, shape, DType::f32, what);
}

}  // namespace strata::kernels::cudnn_detail
