// What a Tensor carries for autograd, and the private access core's autograd needs to it.
#pragma once

#include <memory>

#include "strata/core/allocator.h"
#include "strata/core/autograd.h"
#include "strata/core/tensor.h"

namespace strata::detail {

// Shared by every copy of one Tensor handle (not by its views, which get their own).
struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;                               // leaves: the accumulated gradient
  std::shared_ptr<autograd::Node> grad_fn;   // non-leaves: the op that produced the tensor
  int output_nr = 0;                         // ... and which of its outputs
  std::weak_ptr<autograd::Node> accumulator; // leaves: the node adding into grad, while a graph holds it
  Shape shape;                               // of the tensor, for gradient checks
  DType dtype = DType::f32;
  MemoryFormat memory_format = MemoryFormat::contiguous;  // leaves: the format grad is kept in
};

struct TensorAccess {
  static const std::shared_ptr<AutogradMeta>& meta(const Tensor& tensor) noexcept { return tensor.autograd_; }
  static std::shared_ptr<AutogradMeta>& meta(Tensor& tensor) noexcept { return tensor.autograd_; }
  // The meta of tensor, made when it has none.
  static AutogradMeta& ensure_meta(Tensor& tensor);
  // Whether no other Tensor handle shares tensor's storage (so it may be adopted as is).
  static bool owns_storage_alone(const Tensor& tensor) noexcept { return tensor.storage_.use_count() == 1; }
  // Identifies the allocation tensor is a window of (shared by all its views); null if undefined.
  static const void* storage_id(const Tensor& tensor) noexcept { return tensor.storage_.get(); }
  // Moves tensor's storage (a device tensor's, for every view of it) to arena at offset,
  // releasing its own memory; the contents are not copied (for the host graph's memory plan).
  static void move_to_arena(const Tensor& tensor, std::shared_ptr<DeviceBuffer> arena, std::size_t offset);
};

}  // namespace strata::detail
