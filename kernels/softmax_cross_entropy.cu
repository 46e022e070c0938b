// Softmax cross-entropy with label smoothing and ignore_index (PyTorch's F.cross_entropy):
// a row kernel (one warp per row: max, sum of exponentials, loss, log-sum-exp saved), a
// one-block kernel that reduces the row losses in a fixed order and validates the
// targets, and one element-wise backward kernel. The logits and their gradient are f32, f16
// or bf16 (one template per kernel): logits are loaded as float, all math is f32, the loss and
// log-sum-exp are f32 and each gradient element is rounded once to the logits' dtype.
#include "strata/kernels/softmax_cross_entropy.h"

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "core/check.h"
#include "core/elementwise_map.cuh"
#include "core/format.h"
#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/tensor_checks.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"

namespace strata::kernels {

namespace {

using detail::load_as_float;
using detail::store_from_float;

constexpr const char* kOp = "softmax_cross_entropy";
constexpr int kRowThreads = 256;     // 8 warps, each working on one row at a time
constexpr int kFinishThreads = 256;  // the one block that reduces the row losses
constexpr int kBackwardThreads = 256;

// The layout of TargetCheck's record.
enum TargetCheckField : int { kBadRow, kBadValue, kRows, kClasses, kIgnoreIndex, kTargetCheckFields };

// Loss of each row: log(sum_j exp(x_j - max)) + (1 - eps) * (max - x_t) + eps / C * sum_j (max - x_j),
// which is lse - (1 - eps) * x_t - eps / C * sum_j x_j written with non-negative terms only, so
// that nothing cancels. 0 for ignored rows, NaN for rows whose target is out of range.
template <typename Logit, typename Target>
__global__ void cross_entropy_rows_kernel(const Logit* logits /* (N, C) */, const Target* targets /* (N) */,
                                          std::int64_t rows, std::int64_t classes, std::int64_t ignore_index,
                                          float label_smoothing, float* row_loss /* (N) */,
                                          float* log_sum_exp /* (N, 2) */) {
  const int lane = static_cast<int>(threadIdx.x % kWarpSize);
  const std::int64_t row_stride = global_thread_count() / kWarpSize;
  // The loop condition is uniform across a warp, as the warp reductions need.
  for (std::int64_t row = global_thread_index() / kWarpSize; row < rows; row += row_stride) {
    const Logit* x = logits + row * classes;  // (C)
    float row_max = -INFINITY;
    for (std::int64_t j = lane; j < classes; j += kWarpSize) row_max = fmaxf(row_max, load_as_float(x, j));
    row_max = warp_max(row_max);
    // A NaN logit is skipped by the max but poisons both sums, so the loss is NaN as in PyTorch.
    float exp_sum = 0.0f;  // sum_j exp(x_j - max)
    float gap_sum = 0.0f;  // sum_j (max - x_j)
    for (std::int64_t j = lane; j < classes; j += kWarpSize) {
      const float shifted = load_as_float(x, j) - row_max;
      exp_sum += expf(shifted);
      gap_sum -= shifted;
    }
    exp_sum = warp_sum(exp_sum);
    gap_sum = warp_sum(gap_sum);
    if (lane == 0) {
      const float log_exp_sum = logf(exp_sum);
      log_sum_exp[2 * row] = row_max;
      log_sum_exp[2 * row + 1] = log_exp_sum;
      const auto target = static_cast<std::int64_t>(targets[row]);
      float loss;
      if (target == ignore_index) {
        loss = 0.0f;
      } else if (target < 0 || target >= classes) {
        loss = NAN;  // reported through the TargetCheck by the finish kernel
      } else {
        loss = log_exp_sum + (1.0f - label_smoothing) * (row_max - load_as_float(x, target));
        // Only when smoothing: a -inf logit makes gap_sum infinite, and 0 * inf is NaN.
        if (label_smoothing != 0.0f) loss += label_smoothing / static_cast<float>(classes) * gap_sum;
      }
      row_loss[row] = loss;
    }
  }
}

// One block: counts the rows that are not ignored, reduces their losses in a fixed order
// (mean, sum) and records the first row whose target is out of range, unless an earlier
// error is still recorded.
template <typename Target>
__global__ void cross_entropy_finish_kernel(const float* row_loss /* (N) */, const Target* targets /* (N) */,
                                            std::int64_t rows, std::int64_t classes, std::int64_t ignore_index,
                                            Reduction reduction, float* loss /* () */,
                                            std::int64_t* target_count /* () */,
                                            std::int64_t* target_check /* (kTargetCheckFields) */) {
  __shared__ double sum_scratch[kWarpSize];
  __shared__ std::int64_t index_scratch[kWarpSize];
  double loss_sum = 0.0;
  std::int64_t count = 0;
  std::int64_t negated_bad_row = INT64_MIN;  // max of -row over bad rows: -(first bad row)
  for (std::int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    const auto target = static_cast<std::int64_t>(targets[i]);
    if (target == ignore_index) continue;
    ++count;
    if (reduction != Reduction::none) loss_sum += row_loss[i];
    if ((target < 0 || target >= classes) && -i > negated_bad_row) negated_bad_row = -i;
  }
  loss_sum = block_sum(loss_sum, sum_scratch);
  count = block_sum(count, index_scratch);
  negated_bad_row = block_max(negated_bad_row, index_scratch, INT64_MIN);
  if (threadIdx.x != 0) return;
  *target_count = count;
  if (reduction == Reduction::mean) {
    // No rows left: NaN, as PyTorch's 0 / 0.
    *loss = count == 0 ? NAN : static_cast<float>(loss_sum / static_cast<double>(count));
  } else if (reduction == Reduction::sum) {
    *loss = static_cast<float>(loss_sum);
  }
  if (negated_bad_row != INT64_MIN && target_check[kBadRow] < 0) {
    const std::int64_t bad_row = -negated_bad_row;
    target_check[kBadRow] = bad_row;
    target_check[kBadValue] = static_cast<std::int64_t>(targets[bad_row]);
    target_check[kRows] = rows;
    target_check[kClasses] = classes;
    target_check[kIgnoreIndex] = ignore_index;
  }
}

// dL/dlogits[i, j] = scale_i * (exp(x_ij - lse_i) - (1 - eps) * [j == t_i] - eps / C), where
// scale_i is dL/dloss (per row for none), divided by the number of counted rows for mean.
template <typename Logit, typename Target>
__global__ void cross_entropy_backward_kernel(const float* dL_dloss /* () or (N) */,
                                              const Logit* logits /* (N, C) */, const Target* targets /* (N) */,
                                              const float* log_sum_exp /* (N, 2) */,
                                              const std::int64_t* target_count /* () */, std::int64_t rows,
                                              std::int64_t classes, std::int64_t ignore_index, float label_smoothing,
                                              Reduction reduction, Logit* dL_dlogits /* (N, C) */) {
  const std::int64_t count = rows * classes;
  const float smoothing_per_class = label_smoothing / static_cast<float>(classes);
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const std::int64_t row = i / classes;
    const std::int64_t column = i - row * classes;
    const auto target = static_cast<std::int64_t>(targets[row]);
    float gradient;
    if (target == ignore_index) {
      gradient = 0.0f;
    } else if (target < 0 || target >= classes) {
      gradient = NAN;
    } else {
      float scale = reduction == Reduction::none ? dL_dloss[row] : dL_dloss[0];
      if (reduction == Reduction::mean) scale /= static_cast<float>(*target_count);
      // (x - max) - log sum: exact for logits near the maximum, however large they are.
      const float probability =
          expf((load_as_float(logits, i) - log_sum_exp[2 * row]) - log_sum_exp[2 * row + 1]);
      const float target_probability = (column == target ? 1.0f - label_smoothing : 0.0f) + smoothing_per_class;
      gradient = scale * (probability - target_probability);
    }
    store_from_float(dL_dlogits, i, gradient);
  }
}

// Calls f.template operator()<Logit, Target>() with the C++ types of the logits' dtype (f32,
// f16, bf16) and the targets' (i64 or i32), both checked before.
template <typename F>
void dispatch_logit_and_target_dtypes(DType logit_dtype, DType target_dtype, F&& f) {
  detail::dispatch_floating_dtype(logit_dtype, kOp, [&]<typename Logit>(std::type_identity<Logit>) {
    if (target_dtype == DType::i32) {
      f.template operator()<Logit, std::int32_t>();
    } else {
      f.template operator()<Logit, std::int64_t>();
    }
  });
}

void check_targets(const Tensor& targets) {
  STRATA_CHECK(targets.defined(), "{}: targets is an undefined tensor", kOp);
  STRATA_CHECK(targets.dtype() == DType::i64 || targets.dtype() == DType::i32,
               "{}: targets must have dtype i64 or i32, got {}", kOp, targets.to_string());
  expect_device_tensor(targets, kOp, "targets", targets.dtype());
}

void check_logits_and_targets(const Tensor& logits, const Tensor& targets, const CrossEntropyParams& params) {
  expect_floating_device_tensor(logits, kOp, "logits");
  check_targets(targets);
  softmax_cross_entropy_loss_shape(logits.shape(), targets.shape(), params);
}

}  // namespace

TargetCheck::TargetCheck(cudaStream_t stream) : record_(Tensor::empty({kTargetCheckFields}, DType::i64, stream)) {
  reset(stream);
}

void TargetCheck::reset(cudaStream_t stream) {
  graph::run_op_on(stream, "target_check_reset", {}, {record_}, [record = record_](cudaStream_t s) mutable {
    record.fill(-1.0, s);  // part of this op (strata/core/op.h)
  });
}

void TargetCheck::check(cudaStream_t stream) const {
  // Into a host tensor that the copy's body keeps: a replay of a recorded check writes there,
  // never into freed memory.
  Tensor host_record = Tensor::empty_host(record_.shape(), DType::i64);
  graph::run_op_on(stream, "target_check_read", {record_}, {host_record},
                   [record = record_, host_record](cudaStream_t s) mutable {
                     host_record.copy_from(record, s);  // part of this op (strata/core/op.h)
                   });
  stream_synchronize(stream);
  const std::vector<std::int64_t> record = host_record.to_vector<std::int64_t>(nullptr);
  STRATA_CHECK(record[kBadRow] < 0,
               "{}: target {} in row {} is outside [0, {}) and is not ignore_index ({}); logits ({}, {}), "
               "targets ({})",
               kOp, record[kBadValue], record[kBadRow], record[kClasses], record[kIgnoreIndex], record[kRows],
               record[kClasses], record[kRows]);
}

Shape softmax_cross_entropy_loss_shape(const Shape& logits, const Shape& targets, const CrossEntropyParams& params) {
  STRATA_CHECK(logits.rank() == 2 && targets.rank() == 1 && logits[0] == targets[0],
               "{}: needs logits (N, classes) and targets (N), got logits {} and targets {}", kOp, logits, targets);
  STRATA_CHECK(logits[0] >= 1 && logits[1] >= 1, "{}: needs at least one row and one class, got logits {}", kOp,
               logits);
  STRATA_CHECK(std::isfinite(params.label_smoothing) && params.label_smoothing >= 0.0f &&
                   params.label_smoothing <= 1.0f,
               "{}: label_smoothing must be in [0, 1], got {} (logits {})", kOp, params.label_smoothing, logits);
  if (params.reduction == Reduction::none) return Shape{logits[0]};
  return Shape{};
}

void softmax_cross_entropy_forward(const Tensor& logits, const Tensor& targets, CrossEntropyForward& forward,
                                   TargetCheck& target_check, const CrossEntropyParams& params, cudaStream_t stream) {
  NvtxRange range("softmax_cross_entropy_forward");
  check_logits_and_targets(logits, targets, params);
  const std::int64_t rows = logits.size(0);
  const std::int64_t classes = logits.size(1);
  expect_device_tensor(forward.loss, kOp, "loss");
  expect_shape(forward.loss, softmax_cross_entropy_loss_shape(logits.shape(), targets.shape(), params), kOp, "loss");
  expect_device_tensor(forward.log_sum_exp, kOp, "log_sum_exp");
  expect_shape(forward.log_sum_exp, Shape{rows, 2}, kOp, "log_sum_exp");
  expect_device_tensor(forward.target_count, kOp, "target_count", DType::i64);
  expect_shape(forward.target_count, Shape{}, kOp, "target_count");
  expect_device_tensor(target_check.record(), kOp, "target_check record", DType::i64);
  expect_distinct(forward.loss, logits, kOp, "loss", "logits");
  expect_distinct(forward.log_sum_exp, logits, kOp, "log_sum_exp", "logits");
  expect_distinct(forward.log_sum_exp, forward.loss, kOp, "log_sum_exp", "loss");

  // The per-row losses are the result for none; mean and sum reduce them from scratch.
  Tensor row_loss = params.reduction == Reduction::none ? forward.loss : Tensor::empty({rows}, DType::f32, stream);
  dispatch_logit_and_target_dtypes(logits.dtype(), targets.dtype(), [&]<typename Logit, typename Target>() {
    launch(cross_entropy_rows_kernel<Logit, Target>,
           LaunchConfig{.grid = grid_stride_blocks(rows * kWarpSize, kRowThreads), .block = kRowThreads,
                        .stream = stream, .name = "softmax_cross_entropy_rows"},
           logits.data<Logit>(), targets.data<Target>(), rows, classes, params.ignore_index, params.label_smoothing,
           row_loss.data<float>(), forward.log_sum_exp.data<float>());
    launch(cross_entropy_finish_kernel<Target>,
           LaunchConfig{.grid = 1, .block = kFinishThreads, .stream = stream, .name = "softmax_cross_entropy_finish"},
           row_loss.data<float>(), targets.data<Target>(), rows, classes, params.ignore_index, params.reduction,
           forward.loss.data<float>(), forward.target_count.data<std::int64_t>(),
           target_check.record().data<std::int64_t>());
  });
}

CrossEntropyForward softmax_cross_entropy_forward(const Tensor& logits, const Tensor& targets,
                                                  TargetCheck& target_check, const CrossEntropyParams& params,
                                                  cudaStream_t stream) {
  check_logits_and_targets(logits, targets, params);
  CrossEntropyForward forward{
      .loss = Tensor::empty(softmax_cross_entropy_loss_shape(logits.shape(), targets.shape(), params), DType::f32,
                            stream),
      .log_sum_exp = Tensor::empty({logits.size(0), 2}, DType::f32, stream),
      .target_count = Tensor::empty({}, DType::i64, stream)};
  softmax_cross_entropy_forward(logits, targets, forward, target_check, params, stream);
  return forward;
}

void softmax_cross_entropy_backward(const Tensor& dL_dloss, const Tensor& logits, const Tensor& targets,
                                    const CrossEntropyForward& forward, Tensor& dL_dlogits,
                                    const CrossEntropyParams& params, cudaStream_t stream) {
  NvtxRange range("softmax_cross_entropy_backward");
  check_logits_and_targets(logits, targets, params);
  const std::int64_t rows = logits.size(0);
  const std::int64_t classes = logits.size(1);
  expect_device_tensor(dL_dloss, kOp, "dL_dloss");
  expect_shape(dL_dloss, softmax_cross_entropy_loss_shape(logits.shape(), targets.shape(), params), kOp, "dL_dloss");
  expect_device_tensor(forward.log_sum_exp, kOp, "log_sum_exp");
  expect_shape(forward.log_sum_exp, Shape{rows, 2}, kOp, "log_sum_exp");
  expect_device_tensor(forward.target_count, kOp, "target_count", DType::i64);
  expect_shape(forward.target_count, Shape{}, kOp, "target_count");
  expect_floating_device_tensor(dL_dlogits, kOp, "dL_dlogits");
  expect_same_dtype(dL_dlogits, logits, kOp, "dL_dlogits", "logits");
  expect_shape(dL_dlogits, logits.shape(), kOp, "dL_dlogits");
  expect_distinct(dL_dlogits, logits, kOp, "dL_dlogits", "logits");
  expect_distinct(dL_dlogits, dL_dloss, kOp, "dL_dlogits", "dL_dloss");
  expect_distinct(dL_dlogits, forward.log_sum_exp, kOp, "dL_dlogits", "log_sum_exp");

  dispatch_logit_and_target_dtypes(logits.dtype(), targets.dtype(), [&]<typename Logit, typename Target>() {
    launch(cross_entropy_backward_kernel<Logit, Target>,
           LaunchConfig{.grid = grid_stride_blocks(rows * classes, kBackwardThreads), .block = kBackwardThreads,
                        .stream = stream, .name = "softmax_cross_entropy_backward"},
           dL_dloss.data<float>(), logits.data<Logit>(), targets.data<Target>(), forward.log_sum_exp.data<float>(),
           forward.target_count.data<std::int64_t>(), rows, classes, params.ignore_index, params.label_smoothing,
           params.reduction, dL_dlogits.data<Logit>());
  });
}

Tensor softmax_cross_entropy_backward(const Tensor& dL_dloss, const Tensor& logits, const Tensor& targets,
                                      const CrossEntropyForward& forward, const CrossEntropyParams& params,
                                      cudaStream_t stream) {
  expect_floating_device_tensor(logits, kOp, "logits");
  Tensor dL_dlogits = Tensor::empty(logits.shape(), logits.dtype(), stream);
  softmax_cross_entropy_backward(dL_dloss, logits, targets, forward, dL_dlogits, params, stream);
  return dL_dlogits;
}

}  // namespace strata::kernels
