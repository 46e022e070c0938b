// conv2d on cuDNN, the CUDA build's backend (kernels/conv2d_cudnn_backend.h): cuDNN's legacy
// convolution API (tensor, filter and convolution descriptors; cudnnConvolutionForward,
// BackwardData, BackwardFilter and BackwardBias), with one plan per shape: the descriptors
// and the algorithm of each direction, chosen by cuDNN's heuristics, or in benchmark mode
// (strata::cudnn_benchmark()) timed by cudnnFind*AlgorithmEx at the direction's first run
// (see kernels/conv2d_cudnn.h).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "core/cudnn.h"
#include "core/engine_internal.h"
#include "core/nvtx.h"
#include "kernels/cudnn/conv2d_cudnn.h"
#include "kernels/cudnn/conv2d_cudnn_backend.h"
#include "strata/core/allocator.h"
#include "strata/core/determinism.h"
#include "strata/core/device.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels::cudnn_backend {

namespace {

constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();
constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;

// One algorithm of one direction and the workspace it needs.
template <typename Algorithm>
struct Choice {
  Algorithm algorithm{};
  std::size_t workspace_bytes = 0;
};

// The algorithms of one direction.
template <typename Algorithm>
struct DirectionPlan {
  Choice<Algorithm> heuristic;            // the first acceptable candidate of cuDNN's heuristics
  std::size_t largest_workspace = 0;      // the most an acceptable candidate within the limit needs
  std::optional<Choice<Algorithm>> timed;  // benchmark mode's fastest, once timed (under Plan::benchmark_mutex)
};

// Everything cuDNN needs to run one convolution in every direction, made once per key.
struct Plan {
  detail::CudnnTensorDescriptor x;       // (N, C, H, W)
  detail::CudnnTensorDescriptor y;       // (N, K, P, Q)
  detail::CudnnTensorDescriptor bias;    // (1, K, 1, 1)
  detail::CudnnFilterDescriptor weight;  // (K, C/groups, R, S)
  detail::CudnnConvolutionDescriptor convolution;
  bool deterministic = false;  // made for strata::is_deterministic() == deterministic
  DirectionPlan<cudnnConvolutionFwdAlgo_t> forward;
  DirectionPlan<cudnnConvolutionBwdDataAlgo_t> backward_data;
  DirectionPlan<cudnnConvolutionBwdFilterAlgo_t> backward_filter;
  std::mutex benchmark_mutex;  // one timing of a direction at a time
  std::string refusal;         // why cuDNN cannot run it; empty when it can
};

// What a plan depends on: the shape, the device and the determinism switch.
using PlanKey = std::array<std::int64_t, 16>;

PlanKey plan_key(const Conv2dShape& shape, int device, bool deterministic) {
  const Conv2dParams& p = shape.params;
  return {shape.batch,          shape.in_channels,  shape.in_height, shape.in_width, shape.out_channels,
          shape.kernel_height,  shape.kernel_width, p.stride.h,      p.stride.w,     p.padding.h,
          p.padding.w,          p.dilation.h,       p.dilation.w,    p.groups,       device,
          deterministic ? 1 : 0};
}

int as_int(std::int64_t value) { return static_cast<int>(value); }

// Whether a heuristic candidate is acceptable before its workspace is asked for: cuDNN can
// run it, it is deterministic when the switch says so, and it does not round through TF32
// tensor cores (the descriptor's math type is FMA; this guards against a candidate that
// would override it).
template <typename Perf>
bool acceptable(const Perf& perf, bool deterministic) {
  if (perf.status != CUDNN_STATUS_SUCCESS) return false;
  if (deterministic && perf.determinism != CUDNN_DETERMINISTIC) return false;
  return perf.mathType != CUDNN_TENSOR_OP_MATH && perf.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// The first acceptable candidate, in cuDNN's order (most promising first), whose workspace
// fits the limit, and the largest workspace of any such candidate (what benchmark mode
// allocates to time them all); workspace_of(algorithm) returns the bytes, or nullopt when
// cuDNN will not say. Nullopt when no candidate is acceptable.
template <typename Algorithm, typename Perf, typename WorkspaceOf>
std::optional<DirectionPlan<Algorithm>> choose(const Perf* candidates, int count, bool deterministic,
                                               WorkspaceOf workspace_of) {
  std::optional<DirectionPlan<Algorithm>> chosen;
  for (int i = 0; i < count; ++i) {
    if (!acceptable(candidates[i], deterministic)) continue;
    const std::optional<std::size_t> bytes = workspace_of(candidates[i].algo);
    if (!bytes || *bytes > kConv2dCudnnWorkspaceLimit) continue;
    if (!chosen) {
      chosen.emplace();
      chosen->heuristic = {candidates[i].algo, *bytes};
    }
    chosen->largest_workspace = std::max(chosen->largest_workspace, *bytes);
  }
  return chosen;
}

std::string no_algorithm(std::string_view direction, bool deterministic) {
  return fmt::format("cuDNN's heuristics offer no {}{} algorithm for it with a workspace of at most {} MiB",
                     deterministic ? "deterministic " : "", direction, kConv2dCudnnWorkspaceLimit >> 20);
}

std::string describe(const Conv2dShape& shape) {
  return fmt::format("input {}, weight {}, {}", shape.input().to_string(), shape.weight().to_string(),
                     to_string(shape.params));
}

std::unique_ptr<Plan> make_plan(const Conv2dShape& shape, bool deterministic, cudaStream_t stream) {
  auto plan = std::make_unique<Plan>();
  plan->deterministic = deterministic;
  // cuDNN's legacy descriptors take int sizes and strides.
  for (const Shape& tensor : {shape.input(), shape.weight(), shape.output()}) {
    if (tensor.numel() > kInt32Max) {
      plan->refusal =
          fmt::format("tensor {} has 2^31 elements or more, beyond cuDNN's 32-bit descriptors", tensor.to_string());
      return plan;
    }
  }
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  STRATA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->x, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, as_int(shape.batch),
                                                as_int(shape.in_channels), as_int(shape.in_height),
                                                as_int(shape.in_width)));
  STRATA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(plan->y, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, as_int(shape.batch),
                                                as_int(shape.out_channels), as_int(shape.out_height),
                                                as_int(shape.out_width)));
  STRATA_CUDNN_CHECK(
      cudnnSetTensor4dDescriptor(plan->bias, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1, as_int(shape.out_channels), 1, 1));
  STRATA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->weight, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW,
                                                as_int(shape.out_channels), as_int(shape.in_channels_per_group()),
                                                as_int(shape.kernel_height), as_int(shape.kernel_width)));
  const Conv2dParams& p = shape.params;
  // Cross-correlation, as PyTorch's conv2d and the custom kernels.
  STRATA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan->convolution, as_int(p.padding.h), as_int(p.padding.w),
                                                     as_int(p.stride.h), as_int(p.stride.w), as_int(p.dilation.h),
                                                     as_int(p.dilation.w), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  STRATA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(plan->convolution, as_int(p.groups)));
  STRATA_CUDNN_CHECK(cudnnSetConvolutionMathType(plan->convolution, CUDNN_FMA_MATH));

  // cuDNN's own output size must be ours (it is, by the same formula; checked, not assumed).
  std::array<int, 4> cudnn_output{};
  STRATA_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->convolution, plan->x, plan->weight, &cudnn_output[0],
                                                           &cudnn_output[1], &cudnn_output[2], &cudnn_output[3]));
  if (Shape{cudnn_output[0], cudnn_output[1], cudnn_output[2], cudnn_output[3]} != shape.output()) {
    plan->refusal = fmt::format("cuDNN computes an output of ({}, {}, {}, {}), not {}", cudnn_output[0],
                                cudnn_output[1], cudnn_output[2], cudnn_output[3], shape.output().to_string());
    return plan;
  }

  // A status other than success from a workspace query means cuDNN will not run that
  // algorithm here: the candidate is skipped.
  {
    std::array<cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT> candidates{};
    int count = 0;
    const cudnnStatus_t status =
        cudnnGetConvolutionForwardAlgorithm_v7(handle, plan->x, plan->weight, plan->convolution, plan->y,
                                               as_int(candidates.size()), &count, candidates.data());
    if (status == CUDNN_STATUS_NOT_SUPPORTED) {
      plan->refusal = "cuDNN does not support the forward pass of this convolution";
      return plan;
    }
    STRATA_CUDNN_CHECK(status, "cudnnGetConvolutionForwardAlgorithm_v7 ({})", describe(shape));
    const auto chosen = choose<cudnnConvolutionFwdAlgo_t>(
        candidates.data(), count, deterministic,
        [&](cudnnConvolutionFwdAlgo_t algorithm) -> std::optional<std::size_t> {
          std::size_t bytes = 0;
          if (cudnnGetConvolutionForwardWorkspaceSize(handle, plan->x, plan->weight, plan->convolution, plan->y,
                                                      algorithm, &bytes) != CUDNN_STATUS_SUCCESS) {
            return std::nullopt;
          }
          return bytes;
        });
    if (!chosen) {
      plan->refusal = no_algorithm("forward", deterministic);
      return plan;
    }
    plan->forward = *chosen;
  }
  {
    std::array<cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT> candidates{};
    int count = 0;
    const cudnnStatus_t status =
        cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, plan->weight, plan->y, plan->convolution, plan->x,
                                                    as_int(candidates.size()), &count, candidates.data());
    if (status == CUDNN_STATUS_NOT_SUPPORTED) {
      plan->refusal = "cuDNN does not support the backward-data pass of this convolution";
      return plan;
    }
    STRATA_CUDNN_CHECK(status, "cudnnGetConvolutionBackwardDataAlgorithm_v7 ({})", describe(shape));
    const auto chosen = choose<cudnnConvolutionBwdDataAlgo_t>(
        candidates.data(), count, deterministic,
        [&](cudnnConvolutionBwdDataAlgo_t algorithm) -> std::optional<std::size_t> {
          std::size_t bytes = 0;
          if (cudnnGetConvolutionBackwardDataWorkspaceSize(handle, plan->weight, plan->y, plan->convolution, plan->x,
                                                           algorithm, &bytes) != CUDNN_STATUS_SUCCESS) {
            return std::nullopt;
          }
          return bytes;
        });
    if (!chosen) {
      plan->refusal = no_algorithm("backward-data", deterministic);
      return plan;
    }
    plan->backward_data = *chosen;
  }
  {
    std::array<cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT> candidates{};
    int count = 0;
    const cudnnStatus_t status =
        cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, plan->x, plan->y, plan->convolution, plan->weight,
                                                      as_int(candidates.size()), &count, candidates.data());
    if (status == CUDNN_STATUS_NOT_SUPPORTED) {
      plan->refusal = "cuDNN does not support the backward-filter pass of this convolution";
      return plan;
    }
    STRATA_CUDNN_CHECK(status, "cudnnGetConvolutionBackwardFilterAlgorithm_v7 ({})", describe(shape));
    const auto chosen = choose<cudnnConvolutionBwdFilterAlgo_t>(
        candidates.data(), count, deterministic,
        [&](cudnnConvolutionBwdFilterAlgo_t algorithm) -> std::optional<std::size_t> {
          std::size_t bytes = 0;
          if (cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, plan->x, plan->y, plan->convolution, plan->weight,
                                                             algorithm, &bytes) != CUDNN_STATUS_SUCCESS) {
            return std::nullopt;
          }
          return bytes;
        });
    if (!chosen) {
      plan->refusal = no_algorithm("backward-filter", deterministic);
      return plan;
    }
    plan->backward_filter = *chosen;
  }
  return plan;
}

// Plans live as long as the process (leaked, so nothing is destroyed after cuDNN unloaded);
// a model has a handful of shapes.
class PlanCache {
 public:
  static PlanCache& instance() {
    static auto* cache = new PlanCache;
    return *cache;
  }
  Plan& plan_for(const Conv2dShape& shape, cudaStream_t stream) {
    const bool deterministic = is_deterministic();
    const PlanKey key = plan_key(shape, current_device(), deterministic);
    {
      std::lock_guard lock(mutex_);
      if (const auto it = plans_.find(key); it != plans_.end()) return *it->second;
    }
    // Made outside the lock (cuDNN's queries take a while); the first of two racing threads wins.
    std::unique_ptr<Plan> plan = make_plan(shape, deterministic, stream);
    std::lock_guard lock(mutex_);
    return *plans_.try_emplace(key, std::move(plan)).first->second;
  }

 private:
  std::mutex mutex_;
  std::map<PlanKey, std::unique_ptr<Plan>> plans_;
};

// The plan of an accepted shape (the caller checked refusal()).
Plan& accepted_plan(const Conv2dShape& shape, cudaStream_t stream) {
  Plan& plan = PlanCache::instance().plan_for(shape, stream);
  STRATA_CHECK(plan.refusal.empty(), "conv2d on cuDNN: run for a refused shape ({})", plan.refusal);
  return plan;
}

// ---- benchmark mode --------------------------------------------------------------------

bool capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  STRATA_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// The fastest acceptable result of a cudnnFind*AlgorithmEx (they come fastest first) that ran
// within the workspace it was given; fallback (the heuristics' choice) when none did.
template <typename Algorithm, typename Perf>
Choice<Algorithm> fastest(const std::vector<Perf>& results, bool deterministic, std::size_t workspace_bytes,
                          const Choice<Algorithm>& fallback) {
  for (const Perf& result : results) {
    if (acceptable(result, deterministic) && result.memory <= workspace_bytes) return {result.algo, result.memory};
  }
  return fallback;
}

// The algorithm this run of a direction uses: in benchmark mode (and not deterministic), the
// fastest that time() measured at the direction's first run; else the heuristics' choice.
// Inside CUDA-graph capture, where cudnnFind* cannot run (it synchronises), a direction not
// timed yet keeps the heuristics' choice, with a one-time warning.
template <typename Algorithm, typename Time>
Choice<Algorithm> algorithm_for(Plan& plan, DirectionPlan<Algorithm>& direction, std::string_view op,
                                const Conv2dShape& shape, cudaStream_t stream, Time time) {
  if (plan.deterministic || !cudnn_benchmark()) return direction.heuristic;
  std::lock_guard lock(plan.benchmark_mutex);
  if (direction.timed) return *direction.timed;
  if (capturing(stream)) {
    detail::warn_once(fmt::format(
        "cuDNN benchmark mode: {} ({}) first ran inside CUDA-graph capture, where cuDNN's algorithms cannot be "
        "timed; the graph uses the heuristics' algorithm (run a step before capturing to capture the fastest)",
        op, describe(shape)));
    return direction.heuristic;
  }
  const std::string range = fmt::format("{} (cuDNN benchmark)", op);
  NvtxRange nvtx(range.c_str());
  direction.timed = time(direction.largest_workspace);
  return *direction.timed;
}

std::size_t f32_bytes(const Shape& shape) { return static_cast<std::size_t>(shape.numel()) * sizeof(float); }

// Each times the candidates of one direction on scratch outputs (the caller's are untouched)
// with a workspace of workspace_bytes, all from Strata's allocator on stream.
Choice<cudnnConvolutionFwdAlgo_t> time_forward(const Plan& plan, const Conv2dShape& shape, const float* x,
                                               const float* weight, std::size_t workspace_bytes,
                                               cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const DeviceBuffer y = allocate_device(f32_bytes(shape.output()), stream);  // (N, K, P, Q), scratch
  const DeviceBuffer workspace = allocate_device(workspace_bytes, stream);
  std::vector<cudnnConvolutionFwdAlgoPerf_t> results(CUDNN_CONVOLUTION_FWD_ALGO_COUNT);
  int count = 0;
  STRATA_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle, plan.x, x, plan.weight, weight, plan.convolution,
                                                            plan.y, y.data(), as_int(results.size()), &count,
                                                            results.data(), workspace.data(), workspace.size()),
                     "timing conv2d_forward algorithms ({})", describe(shape));
  results.resize(static_cast<std::size_t>(count));
  return fastest(results, plan.deterministic, workspace.size(), plan.forward.heuristic);
}

Choice<cudnnConvolutionBwdDataAlgo_t> time_backward_data(const Plan& plan, const Conv2dShape& shape,
                                                         const float* dL_dy, const float* weight,
                                                         std::size_t workspace_bytes, cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const DeviceBuffer dL_dx = allocate_device(f32_bytes(shape.input()), stream);  // (N, C, H, W), scratch
  const DeviceBuffer workspace = allocate_device(workspace_bytes, stream);
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> results(CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT);
  int count = 0;
  STRATA_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(
                         handle, plan.weight, weight, plan.y, dL_dy, plan.convolution, plan.x, dL_dx.data(),
                         as_int(results.size()), &count, results.data(), workspace.data(), workspace.size()),
                     "timing conv2d_backward_data algorithms ({})", describe(shape));
  results.resize(static_cast<std::size_t>(count));
  return fastest(results, plan.deterministic, workspace.size(), plan.backward_data.heuristic);
}

Choice<cudnnConvolutionBwdFilterAlgo_t> time_backward_filter(const Plan& plan, const Conv2dShape& shape,
                                                             const float* x, const float* dL_dy,
                                                             std::size_t workspace_bytes, cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const DeviceBuffer dL_dweight = allocate_device(f32_bytes(shape.weight()), stream);  // (K, C/groups, R, S), scratch
  const DeviceBuffer workspace = allocate_device(workspace_bytes, stream);
  std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> results(CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT);
  int count = 0;
  STRATA_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(
                         handle, plan.x, x, plan.y, dL_dy, plan.convolution, plan.weight, dL_dweight.data(),
                         as_int(results.size()), &count, results.data(), workspace.data(), workspace.size()),
                     "timing conv2d_backward_filter algorithms ({})", describe(shape));
  results.resize(static_cast<std::size_t>(count));
  return fastest(results, plan.deterministic, workspace.size(), plan.backward_filter.heuristic);
}

}  // namespace

std::string refusal(const Conv2dShape& shape, cudaStream_t stream) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  return PlanCache::instance().plan_for(shape, stream).refusal;
}

void forward(const Conv2dShape& shape, const float* x, const float* weight, const float* bias, float* y,
             cudaStream_t stream) {
  Plan& plan = accepted_plan(shape, stream);
  const Choice<cudnnConvolutionFwdAlgo_t> choice =
      algorithm_for(plan, plan.forward, "conv2d_forward", shape, stream, [&](std::size_t workspace_bytes) {
        return time_forward(plan, shape, x, weight, workspace_bytes, stream);
      });
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const DeviceBuffer workspace = allocate_device(choice.workspace_bytes, stream);
  STRATA_CUDNN_CHECK(cudnnConvolutionForward(handle, &kOne, plan.x, x, plan.weight, weight, plan.convolution,
                                             choice.algorithm, workspace.data(), workspace.size(), &kZero, plan.y, y),
                     "conv2d_forward ({}), algorithm {}", describe(shape), static_cast<int>(choice.algorithm));
  if (bias != nullptr) {
    STRATA_CUDNN_CHECK(cudnnAddTensor(handle, &kOne, plan.bias, bias, &kOne, plan.y, y), "conv2d_forward bias ({})",
                       describe(shape));
  }
}

void backward_data(const Conv2dShape& shape, const float* dL_dy, const float* weight, float* dL_dx,
                   cudaStream_t stream) {
  Plan& plan = accepted_plan(shape, stream);
  const Choice<cudnnConvolutionBwdDataAlgo_t> choice = algorithm_for(
      plan, plan.backward_data, "conv2d_backward_data", shape, stream, [&](std::size_t workspace_bytes) {
        return time_backward_data(plan, shape, dL_dy, weight, workspace_bytes, stream);
      });
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const DeviceBuffer workspace = allocate_device(choice.workspace_bytes, stream);
  STRATA_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, &kOne, plan.weight, weight, plan.y, dL_dy, plan.convolution,
                                                  choice.algorithm, workspace.data(), workspace.size(), &kZero, plan.x,
                                                  dL_dx),
                     "conv2d_backward_data ({}), algorithm {}", describe(shape), static_cast<int>(choice.algorithm));
}

void backward_filter(const Conv2dShape& shape, const float* x, const float* dL_dy, float* dL_dweight,
                     cudaStream_t stream) {
  Plan& plan = accepted_plan(shape, stream);
  const Choice<cudnnConvolutionBwdFilterAlgo_t> choice = algorithm_for(
      plan, plan.backward_filter, "conv2d_backward_filter", shape, stream, [&](std::size_t workspace_bytes) {
        return time_backward_filter(plan, shape, x, dL_dy, workspace_bytes, stream);
      });
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  const DeviceBuffer workspace = allocate_device(choice.workspace_bytes, stream);
  STRATA_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, &kOne, plan.x, x, plan.y, dL_dy, plan.convolution,
                                                    choice.algorithm, workspace.data(), workspace.size(), &kZero,
                                                    plan.weight, dL_dweight),
                     "conv2d_backward_filter ({}), algorithm {}", describe(shape),
                     static_cast<int>(choice.algorithm));
}

void backward_bias(const Shape& dL_dy_shape, const float* dL_dy, float* dL_dbias, cudaStream_t stream) {
  detail::require_cudnn("conv2d_backward_bias on cuDNN");
  if (dL_dy_shape.numel() > kInt32Max) {
    throw NotSupported(
        fmt::format("conv2d_backward_bias on cuDNN: dL_dy {} has 2^31 elements or more, beyond "
                    "cuDNN's 32-bit descriptors",
                    dL_dy_shape.to_string()));
  }
  detail::CudnnTensorDescriptor dL_dy_descriptor;     // (N, K, P, Q)
  detail::CudnnTensorDescriptor dL_dbias_descriptor;  // (1, K, 1, 1)
  STRATA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(dL_dy_descriptor, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT,
                                                as_int(dL_dy_shape[0]), as_int(dL_dy_shape[1]), as_int(dL_dy_shape[2]),
                                                as_int(dL_dy_shape[3])));
  STRATA_CUDNN_CHECK(cudnnSetTensor4dDescriptor(dL_dbias_descriptor, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                                as_int(dL_dy_shape[1]), 1, 1));
  STRATA_CUDNN_CHECK(cudnnConvolutionBackwardBias(detail::cudnn_handle(stream), &kOne, dL_dy_descriptor, dL_dy, &kZero,
                                                  dL_dbias_descriptor, dL_dbias),
                     "conv2d_backward_bias (dL_dy {})", dL_dy_shape.to_string());
}

}  // namespace strata::kernels::cudnn_backend
