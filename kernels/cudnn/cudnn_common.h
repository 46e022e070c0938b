// What the cuDNN backends of kernels/cudnn/ share (CUDA build only): the cache that makes a
// plan (descriptors, algorithms) once per key, and the description of a packed NCHW f32
// tensor in cuDNN's legacy tensor descriptor.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string_view>

#include "core/check.h"
#include "core/cudnn.h"
#include "strata/core/dtype.h"
#include "strata/core/shape.h"

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

// descriptor := a packed tensor of dtype (f32, f16, bf16) and shape (N, C, H, W), which must
// have rank 4 and fewer than 2^31 elements (cuDNN's legacy descriptors take int sizes; the
// callers refuse larger tensors first). A failure names what the tensor is and its shape.
inline void set_nchw(cudnnTensorDescriptor_t descriptor, const Shape& shape, DType dtype, std::string_view what) {
  STRATA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(descriptor, CUDNN_TENSOR_NCHW, cudnn_data_type(dtype),
                                                static_cast<int>(shape[0]), static_cast<int>(shape[1]),
                                                static_cast<int>(shape[2]), static_cast<int>(shape[3])),
                     "{} {}", what, shape.to_string());
}

inline void set_nchw_f32(cudnnTensorDescriptor_t descriptor, const Shape& shape, std::string_view what) {
  set_nchw(descriptor, shape, DType::f32, what);
}

}  // namespace strata::kernels::cudnn_detail
