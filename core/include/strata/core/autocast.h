// Autocast: mixed precision chosen per op, as torch.autocast. While an AutocastGuard with a
// reduced dtype (bf16 or f16) is alive on a thread, the ops that gain from tensor cores run
// in that dtype and those that need the range run in f32, whatever dtype their inputs have:
//
//   {
//     strata::AutocastGuard autocast(strata::DType::bf16);
//     Tensor loss = F::cross_entropy(model.forward(x), targets);  // convs in bf16, loss f32
//   }
//   loss.backward();  // parameters (f32, the master weights) get f32 gradients
//
// The policy (docs/training.md, "Mixed precision"):
//  - lower: conv2d and linear cast their floating inputs, weight and bias to the autocast
//    dtype and produce it. The casts are ordinary ops with autograd (F::to_dtype), so a
//    parameter stays f32 and its gradient is cast back to f32.
//  - f32: softmax and log_softmax cast a reduced input to f32 and produce f32.
//  - as given: batch norm (statistics, weight, bias and running stats stay f32; x and y in
//    x's dtype), the fused softmax-cross-entropy (reads any floating logits, computes in f32,
//    the loss is f32), pooling, activations and element-wise ops run in their input's dtype;
//    add of two floating dtypes promotes to the wider (f32 when they differ).
// Autocast is read when an op is queued (recorded), so a graph captured under it keeps it.
// It is per thread, like the current stream, and off by default.
//
// Weight casts are cached, as PyTorch's autocast does: within the outermost AutocastGuard, the
// lower cast of a leaf that requires grad (a parameter) is made once per dtype and reused by
// every op that casts it again (test-time augmentation, shared weights), keeping its autograd
// node, so the gradients of all uses reach the f32 master weight (summed in the autocast
// dtype before the one cast back, as in PyTorch). The cache is cleared when the outermost
// guard ends: a weight updated in place inside one autocast region (an optimizer step) would
// be read stale by later uses, so update weights outside it.
#pragma once

#include <cstddef>
#include <optional>

#include "strata/core/dtype.h"
#include "strata/core/memory_format.h"

namespace strata {

class Tensor;

// The dtype the lower-precision ops run in on this thread, or nullopt while autocast is off.
std::optional<DType> autocast_dtype() noexcept;

// Sets this thread's autocast dtype while alive (nullopt switches autocast off, for a region
// that must run in f32 inside an autocast one) and restores the previous setting after.
// Throws InvalidArgument for a dtype other than bf16 or f16.
class AutocastGuard {
 public:
  explicit AutocastGuard(std::optional<DType> dtype);
  // The outermost guard clears this thread's cast cache.
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  std::optional<DType> previous_;
};

// Casts in this thread's cache (0 outside every AutocastGuard), for tests and diagnostics.
std::size_t autocast_cached_casts() noexcept;

namespace detail {
// The cache of the autocast policy (layers/autocast_policy.cpp), alive only inside a guard.
// A cast is found by the source's storage, element address, shape, the target dtype and
// memory format (a conv weight is cast into the format its kernels read), and by whether it
// recorded an autograd node (a cast made under NoGrad has none and is never
// handed to an op that records gradients). The cache keeps the source alive, so its address
// cannot be reused by another tensor while the entry exists.
const Tensor* autocast_cache_find(const Tensor& source, DType dtype, MemoryFormat format, bool recorded);
// Adds an entry (found by cast's dtype and format); does nothing outside every AutocastGuard.
void autocast_cache_insert(const Tensor& source, DType dtype, bool recorded, const Tensor& cast);
}  // namespace detail

}  // namespace strata
