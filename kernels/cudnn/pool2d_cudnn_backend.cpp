// Pooling on cuDNN, the CUDA build's backend (kernels/cudnn/pool2d_cudnn_backend.h): cuDNN's
// legacy pooling API (cudnnPoolingForward and cudnnPoolingBackward), with the tensor and
// pooling descriptors made once per window, memory format (NCHW or NHWC), mode, determinism
// setting and dtype (FLOAT, HALF or BFLOAT16 tensors; the float scaling factors say cuDNN
// computes in f32).
#include "kernels/cudnn/pool2d_cudnn_backend.h"

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>

#include "core/check.h"
#include "core/cudnn.h"
#include "kernels/cudnn/cudnn_common.h"
#include "kernels/cudnn/pool2d_cudnn.h"
#include "strata/core/determinism.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels::cudnn_pool_backend {

namespace {

constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();
constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;

using CudnnPoolingDescriptor =
    detail::CudnnDescriptor<cudnnPoolingDescriptor_t, cudnnCreatePoolingDescriptor, cudnnDestroyPoolingDescriptor>;

// Everything cuDNN needs to run one pooling, forward and backward.
struct Plan {
  detail::CudnnTensorDescriptor x;  // (N, C, H, W) in window.format, also dL_dx
  detail::CudnnTensorDescriptor y;  // (N, C, Ho, Wo) in window.format, also dL_dy
  CudnnPoolingDescriptor pooling;
  std::string refusal;  // why cuDNN cannot run it; empty when it can
};

// Max pooling follows the determinism switch (kernels/cudnn/pool2d_cudnn.h).
cudnnPoolingMode_t cudnn_mode(CudnnPoolMode mode, bool deterministic) {
  switch (mode) {
    case CudnnPoolMode::max:
      return deterministic ? CUDNN_POOLING_MAX_DETERMINISTIC : CUDNN_POOLING_MAX;
    case CudnnPoolMode::average_count_include_padding:
      return CUDNN_POOLING_AVERAGE_COUNT_INCLUDE_PADDING;
    case CudnnPoolMode::average_count_exclude_padding:
      return CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
  }
  return CUDNN_POOLING_MAX;
}

// What a plan depends on: the input, the window, its memory format, cuDNN's mode and the dtype.
using PlanKey = std::array<std::int64_t, 13>;

PlanKey plan_key(const CudnnPoolWindow& window, cudnnPoolingMode_t mode, DType dtype) {
  const Shape& x = window.input;
  return {x[0],
          x[1],
          x[2],
          x[3],
          window.kernel.h,
          window.kernel.w,
          window.stride.h,
          window.stride.w,
          window.padding.h,
          window.padding.w,
          static_cast<std::int64_t>(window.format),
          static_cast<std::int64_t>(mode),
          static_cast<std::int64_t>(dtype)};
}

int as_int(std::int64_t value) { return static_cast<int>(value); }

std::string describe(const CudnnPoolWindow& window) {
  return fmt::format("x {}, y {} ({}), window ({}, {}), stride ({}, {}), padding ({}, {})", window.input.to_string(),
                     window.output.to_string(), memory_format_name(window.format), window.kernel.h, window.kernel.w,
                     window.stride.h, window.stride.w, window.padding.h, window.padding.w);
}

std::unique_ptr<Plan> make_plan(const CudnnPoolWindow& window, cudnnPoolingMode_t mode, DType dtype) {
  auto plan = std::make_unique<Plan>();
  // cuDNN's legacy descriptors take int sizes and strides.
  if (window.input.numel() > kInt32Max) {
    plan->refusal =
        fmt::format("tensor {} has 2^31 elements or more, beyond cuDNN's 32-bit descriptors", window.input.to_string());
    return plan;
  }
  const Shape& y = window.output;
  cudnn_detail::set_descriptor(plan->x, window.input, dtype, window.format, "pooling x");
  cudnn_detail::set_descriptor(plan->y, y, dtype, window.format, "pooling y");
  // NaN wins a max window, as in PyTorch (and the custom kernels).
  STRATA_CUDNN_CHECK(
      cudnnSetPooling2dDescriptor(plan->pooling, mode, CUDNN_PROPAGATE_NAN, as_int(window.kernel.h),
                                  as_int(window.kernel.w), as_int(window.padding.h), as_int(window.padding.w),
                                  as_int(window.stride.h), as_int(window.stride.w)),
      "{}", describe(window));
  // cuDNN's own output size must be ours (it is, by the same formula; checked, not assumed).
  std::array<int, 4> cudnn_output{};
  STRATA_CUDNN_CHECK(cudnnGetPooling2dForwardOutputDim(plan->pooling, plan->x, &cudnn_output[0], &cudnn_output[1],
                                                       &cudnn_output[2], &cudnn_output[3]),
                     "{}", describe(window));
  if (Shape{cudnn_output[0], cudnn_output[1], cudnn_output[2], cudnn_output[3]} != y) {
    plan->refusal = fmt::format("cuDNN computes an output of ({}, {}, {}, {}), not {}", cudnn_output[0],
                                cudnn_output[1], cudnn_output[2], cudnn_output[3], y.to_string());
  }
  return plan;
}

// The plan of window in dtype under the determinism switch as it is now. Descriptors are
// host objects: one plan serves every device.
const Plan& plan_for(const CudnnPoolWindow& window, DType dtype) {
  static auto* plans = new cudnn_detail::PlanCache<PlanKey, Plan>;
  const cudnnPoolingMode_t mode = cudnn_mode(window.mode, is_deterministic());
  return plans->plan_for(plan_key(window, mode, dtype), [&] { return make_plan(window, mode, dtype); });
}

// The plan of an accepted window (the caller checked refusal()).
const Plan& accepted_plan(const CudnnPoolWindow& window, DType dtype) {
  const Plan& plan = plan_for(window, dtype);
  STRATA_CHECK(plan.refusal.empty(), "pooling on cuDNN: run for a refused window ({})", plan.refusal);
  return plan;
}

}  // namespace

std::string refusal(const CudnnPoolWindow& window) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  // The f32 plan's: its reasons (sizes, cuDNN's output shape) are the same for every dtype.
  return plan_for(window, DType::f32).refusal;
}

void forward(const CudnnPoolWindow& window, DType dtype, const void* x, void* y, cudaStream_t stream) {
  const Plan& plan = accepted_plan(window, dtype);
  STRATA_CUDNN_CHECK(
      cudnnPoolingForward(detail::cudnn_handle(stream), plan.pooling, &kOne, plan.x, x, &kZero, plan.y, y),
      "pooling forward ({})", describe(window));
}

void backward(const CudnnPoolWindow& window, DType dtype, const void* x, const void* y, const void* dL_dy, void* dL_dx,
              cudaStream_t stream) {
  const Plan& plan = accepted_plan(window, dtype);
  STRATA_CUDNN_CHECK(cudnnPoolingBackward(detail::cudnn_handle(stream), plan.pooling, &kOne, plan.y, y, plan.y, dL_dy,
                                          plan.x, x, &kZero, plan.x, dL_dx),
                     "pooling backward ({})", describe(window));
}

}  // namespace strata::kernels::cudnn_pool_backend
