// Softmax cross-entropy on logits (N, classes) with integer targets (N), as PyTorch's
// F.cross_entropy: label smoothing, ignore_index and the reductions mean, sum and none.
// The forward saves the log-sum-exp of every row for the backward, which writes
// dL/dlogits = scale * (softmax - smoothed one-hot) in one kernel.
//
// dtypes: logits and dL_dlogits share one floating dtype, f32, f16 or bf16; the loss, the
// log-sum-exp and dL_dloss are always f32 (the loss in fp32, as autocast wants), and all math
// is f32, each gradient element rounded once to the logits' dtype.
//
// Targets outside [0, classes) that are not ignore_index are errors. Checking them on the
// host would synchronise every step, so the forward records the first bad row in a
// TargetCheck on the device and the caller calls check() where it synchronises anyway
// (e.g. when it reads the loss): that throws InvalidArgument naming the row and the value.
// Until then, rows with a bad target give NaN losses and NaN gradients, never a read out
// of bounds.
//
//   TargetCheck target_check(stream);
//   CrossEntropyForward forward = softmax_cross_entropy_forward(logits, targets, target_check, {}, stream);
//   softmax_cross_entropy_backward(dL_dloss, logits, targets, forward, dL_dlogits, {}, stream);
//   ...
//   target_check.check(stream);  // waits for stream; throws if any target was bad
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/shape.h"
#include "strata/core/tensor.h"

namespace strata::kernels {

enum class Reduction : std::uint8_t {
  none,  // one loss per row, (N)
  mean,  // sum over the rows whose target is not ignore_index, divided by their number
  sum,
};

struct CrossEntropyParams {
  // eps: the target distribution is (1 - eps) * one_hot(target) + eps / classes.
  float label_smoothing = 0.0f;
  Reduction reduction = Reduction::mean;
  // Rows with this target contribute no loss and get zero gradient.
  std::int64_t ignore_index = -100;
};

// Where softmax_cross_entropy_forward records a target outside [0, classes) that is not
// ignore_index: the first such row of the first forward that had one, with its value and
// the shapes, in a small device buffer. Errors stay recorded until reset().
class TargetCheck {
 public:
  // Allocates the record on stream, empty.
  explicit TargetCheck(cudaStream_t stream);

  // Forgets recorded errors (queued on stream).
  void reset(cudaStream_t stream);
  // Waits for stream, then throws InvalidArgument naming the op, the bad target value, its
  // row and the shapes if a forward recorded one.
  void check(cudaStream_t stream) const;

  // i64 (5): row (-1: none), target value, rows, classes, ignore_index; for the launcher.
  Tensor& record() noexcept { return record_; }

 private:
  Tensor record_;  // (5) i64, on the device
};

// What the forward writes; loss is the result, the other two are saved for the backward.
struct CrossEntropyForward {
  Tensor loss{};          // () f32 for mean and sum, (N) f32 for none (0 in ignored rows)
  // (N, 2) f32: the log-sum-exp of each row as two terms, the row maximum m and
  // log sum_j exp(logits[i, j] - m). Kept apart so that the backward's logits - m stays
  // exact: a float log-sum-exp of logits near 1e4 would be off by 5e-4.
  Tensor log_sum_exp{};
  Tensor target_count{};  // () i64: rows whose target is not ignore_index (the mean's divisor)
};

// Shape of the loss: () for mean and sum, (N) for none. Throws InvalidArgument naming both
// shapes unless logits is (N, classes) and targets (N) with N, classes >= 1.
Shape softmax_cross_entropy_loss_shape(const Shape& logits, const Shape& targets, const CrossEntropyParams& params);

// logits (N, classes) f32, f16 or bf16; targets (N) i64 or i32. Writes forward's three tensors, which
// must be preallocated device tensors of the shapes above.
void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& targets, CrossEntropyForward& forward,
                                   TargetCheck& target_check, const CrossEntropyParams& params, cudaStream_t stream);
// The same, allocating the outputs on stream.
CrossEntropyForward softmax_cross_entropy_forward(const Tensor& logits, const Tensor& targets,
                                                  TargetCheck& target_check, const CrossEntropyParams& params,
                                                  cudaStream_t stream);

// dL_dloss: () for mean and sum, (N) for none, on the device (no host synchronisation).
// forward: what the forward wrote for these logits and targets. Writes dL_dlogits
// (N, classes) of the logits' dtype (the allocating form makes it so); ignored rows get
// zeros.
void softmax_cross_entropy_backward(const Tensor& dL_dloss, const Tensor& logits, const Tensor& targets,
                                    const CrossEntropyForward& forward, Tensor& dL_dlogits,
                                    const CrossEntropyParams& params, cudaStream_t stream);
Tensor softmax_cross_entropy_backward(const Tensor& dL_dloss, const Tensor& logits, const Tensor& targets,
                                      const CrossEntropyForward& forward, const CrossEntropyParams& params,
                                      cudaStream_t stream);

}  // namespace strata::kernels
