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
#include "kernels/cudnn/cudnn_common.h"
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
  detail::CudnnTensorDescriptor x;       // (N, C, H, W) in formats.input: x, dL_dx
  detail::CudnnTensorDescriptor y;       // (N, K, P, Q) in formats.output: y, dL_dy
  detail::CudnnTensorDescriptor bias;    // (1, K, 1, 1)
  detail::CudnnFilterDescriptor weight;  // (K, C/groups, R, S)
  detail::CudnnConvolutionDescriptor convolution;
  DType dtype = DType::f32;    // of every tensor (f32, f16, bf16); the compute type is float
  bool deterministic = false;  // made for strata::is_deterministic() == deterministic
  bool tensor_ops = false;     // tensor cores allowed: Conv2dParams::math tf32 or bf16, or f16/bf16 tensors
  DirectionPlan<cudnnConvolutionFwdAlgo_t> forward;
  DirectionPlan<cudnnConvolutionBwdDataAlgo_t> backward_data;
  DirectionPlan<cudnnConvolutionBwdFilterAlgo_t> backward_filter;
  std::mutex benchmark_mutex;  // one timing of a direction at a time
  std::string refusal;         // why cuDNN cannot run it; empty when it can
};

// What a plan depends on: the shape, the dtype, the activations' memory formats, the math, the
// device and the determinism switch.
using PlanKey = std::array<std::int64_t, 20>;

PlanKey plan_key(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, int device, bool deterministic) {
  const Conv2dParams& p = shape.params;
  return {shape.batch,
          shape.in_channels,
          shape.in_height,
          shape.in_width,
          shape.out_channels,
          shape.kernel_height,
          shape.kernel_width,
          p.stride.h,
          p.stride.w,
          p.padding.h,
          p.padding.w,
          p.dilation.h,
          p.dilation.w,
          p.groups,
          device,
          deterministic ? 1 : 0,
          static_cast<std::int64_t>(p.math),
          static_cast<std::int64_t>(dtype),
          static_cast<std::int64_t>(formats.input),
          static_cast<std::int64_t>(formats.output)};
}

int as_int(std::int64_t value) { return static_cast<int>(value); }

// Whether a heuristic candidate is acceptable before its workspace is asked for: cuDNN can
// run it, it is deterministic when the switch says so, and unless tensor_ops (math tf32 or
// bf16, or f16/bf16 tensors) it does not round through TF32 tensor cores (the descriptor's math type is then FMA;
// this guards against a candidate that would override it).
template <typename Perf>
bool acceptable(const Perf& perf, bool deterministic, bool tensor_ops) {
  if (perf.status != CUDNN_STATUS_SUCCESS) return false;
  if (deterministic && perf.determinism != CUDNN_DETERMINISTIC) return false;
  if (tensor_ops) return perf.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;  // no f16 rounding
  return perf.mathType != CUDNN_TENSOR_OP_MATH && perf.mathType != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION;
}

// The first acceptable candidate, in cuDNN's order (most promising first), whose workspace
// fits the limit, and the largest workspace of any such candidate (what benchmark mode
// allocates to time them all); workspace_of(algorithm) returns the bytes, or nullopt when
// cuDNN will not say. Nullopt when no candidate is acceptable.
template <typename Algorithm, typename Perf, typename WorkspaceOf>
std::optional<DirectionPlan<Algorithm>> choose(const Perf* candidates, int count, bool deterministic,
                                               bool tensor_ops, WorkspaceOf workspace_of) {
  std::optional<DirectionPlan<Algorithm>> chosen;
  for (int i = 0; i < count; ++i) {
    if (!acceptable(candidates[i], deterministic, tensor_ops)) continue;
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

// ---- the three directions ----------------------------------------------------------------
// Each names cuDNN's types and calls for one direction, with the plan's descriptors in that
// direction's order: a and b are its inputs, out its output (forward: x, weight -> y;
// backward data: dL_dy, weight -> dL_dx; backward filter: x, dL_dy -> dL_dweight). The
// calls that run or time throw, naming the op, the shapes and the algorithm; the
// queries return cuDNN's status, since the caller treats some as answers.

struct Forward {
  using Algorithm = cudnnConvolutionFwdAlgo_t;
  using Perf = cudnnConvolutionFwdAlgoPerf_t;
  static constexpr int kAlgorithms = CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  static constexpr const char* kOp = "conv2d_forward";
  static constexpr std::string_view kPass = "forward";
  static constexpr std::string_view kQuery = "cudnnGetConvolutionForwardAlgorithm_v7";
  static constexpr DirectionPlan<Algorithm> Plan::*kPlan = &Plan::forward;

  static Shape output(const Conv2dShape& shape) { return shape.output(); }  // (N, K, P, Q)
  static cudnnStatus_t candidates(cudnnHandle_t handle, const Plan& plan, Perf* perfs, int* count) {
    return cudnnGetConvolutionForwardAlgorithm_v7(handle, plan.x, plan.weight, plan.convolution, plan.y, kAlgorithms,
                                                  count, perfs);
  }
  static cudnnStatus_t workspace(cudnnHandle_t handle, const Plan& plan, Algorithm algorithm, std::size_t* bytes) {
    return cudnnGetConvolutionForwardWorkspaceSize(handle, plan.x, plan.weight, plan.convolution, plan.y, algorithm,
                                                   bytes);
  }
  static void find(cudnnHandle_t handle, const Plan& plan, const void* a, const void* b, void* out, Perf* perfs,
                   int* count, const DeviceBuffer& workspace, const Conv2dShape& shape) {
    STRATA_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle, plan.x, a, plan.weight, b, plan.convolution,
                                                              plan.y, out, kAlgorithms, count, perfs,
                                                              workspace.data(), workspace.size()),
                       "timing {} algorithms ({})", kOp, describe(shape));
  }
  static void run(cudnnHandle_t handle, const Plan& plan, Algorithm algorithm, const void* a, const void* b,
                  void* out, const DeviceBuffer& workspace, const Conv2dShape& shape) {
    STRATA_CUDNN_CHECK(cudnnConvolutionForward(handle, &kOne, plan.x, a, plan.weight, b, plan.convolution, algorithm,
                                               workspace.data(), workspace.size(), &kZero, plan.y, out),
                       "{} ({}), algorithm {}", kOp, describe(shape), static_cast<int>(algorithm));
  }
};

struct BackwardData {
  using Algorithm = cudnnConvolutionBwdDataAlgo_t;
  using Perf = cudnnConvolutionBwdDataAlgoPerf_t;
  static constexpr int kAlgorithms = CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  static constexpr const char* kOp = "conv2d_backward_data";
  static constexpr std::string_view kPass = "backward-data";
  static constexpr std::string_view kQuery = "cudnnGetConvolutionBackwardDataAlgorithm_v7";
  static constexpr DirectionPlan<Algorithm> Plan::*kPlan = &Plan::backward_data;

  static Shape output(const Conv2dShape& shape) { return shape.input(); }  // (N, C, H, W)
  static cudnnStatus_t candidates(cudnnHandle_t handle, const Plan& plan, Perf* perfs, int* count) {
    return cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, plan.weight, plan.y, plan.convolution, plan.x,
                                                       kAlgorithms, count, perfs);
  }
  static cudnnStatus_t workspace(cudnnHandle_t handle, const Plan& plan, Algorithm algorithm, std::size_t* bytes) {
    return cudnnGetConvolutionBackwardDataWorkspaceSize(handle, plan.weight, plan.y, plan.convolution, plan.x,
                                                        algorithm, bytes);
  }
  static void find(cudnnHandle_t handle, const Plan& plan, const void* a, const void* b, void* out, Perf* perfs,
                   int* count, const DeviceBuffer& workspace, const Conv2dShape& shape) {
    STRATA_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(handle, plan.weight, b, plan.y, a, plan.convolution,
                                                                   plan.x, out, kAlgorithms, count, perfs,
                                                                   workspace.data(), workspace.size()),
                       "timing {} algorithms ({})", kOp, describe(shape));
  }
  static void run(cudnnHandle_t handle, const Plan& plan, Algorithm algorithm, const void* a, const void* b,
                  void* out, const DeviceBuffer& workspace, const Conv2dShape& shape) {
    STRATA_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, &kOne, plan.weight, b, plan.y, a, plan.convolution,
                                                    algorithm, workspace.data(), workspace.size(), &kZero, plan.x,
                                                    out),
                       "{} ({}), algorithm {}", kOp, describe(shape), static_cast<int>(algorithm));
  }
};

struct BackwardFilter {
  using Algorithm = cudnnConvolutionBwdFilterAlgo_t;
  using Perf = cudnnConvolutionBwdFilterAlgoPerf_t;
  static constexpr int kAlgorithms = CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  static constexpr const char* kOp = "conv2d_backward_filter";
  static constexpr std::string_view kPass = "backward-filter";
  static constexpr std::string_view kQuery = "cudnnGetConvolutionBackwardFilterAlgorithm_v7";
  static constexpr DirectionPlan<Algorithm> Plan::*kPlan = &Plan::backward_filter;

  static Shape output(const Conv2dShape& shape) { return shape.weight(); }  // (K, C/groups, R, S)
  static cudnnStatus_t candidates(cudnnHandle_t handle, const Plan& plan, Perf* perfs, int* count) {
    return cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, plan.x, plan.y, plan.convolution, plan.weight,
                                                         kAlgorithms, count, perfs);
  }
  static cudnnStatus_t workspace(cudnnHandle_t handle, const Plan& plan, Algorithm algorithm, std::size_t* bytes) {
    return cudnnGetConvolutionBackwardFilterWorkspaceSize(handle, plan.x, plan.y, plan.convolution, plan.weight,
                                                          algorithm, bytes);
  }
  static void find(cudnnHandle_t handle, const Plan& plan, const void* a, const void* b, void* out, Perf* perfs,
                   int* count, const DeviceBuffer& workspace, const Conv2dShape& shape) {
    STRATA_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, plan.x, a, plan.y, b, plan.convolution,
                                                                     plan.weight, out, kAlgorithms, count, perfs,
                                                                     workspace.data(), workspace.size()),
                       "timing {} algorithms ({})", kOp, describe(shape));
  }
  static void run(cudnnHandle_t handle, const Plan& plan, Algorithm algorithm, const void* a, const void* b,
                  void* out, const DeviceBuffer& workspace, const Conv2dShape& shape) {
    STRATA_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, &kOne, plan.x, a, plan.y, b, plan.convolution,
                                                      algorithm, workspace.data(), workspace.size(), &kZero,
                                                      plan.weight, out),
                       "{} ({}), algorithm {}", kOp, describe(shape), static_cast<int>(algorithm));
  }
};

// Fills the plan of Direction with cuDNN's heuristics' choice, or sets plan.refusal when
// cuDNN does not support the direction or offers no acceptable algorithm. A status other than
// success from a workspace query means cuDNN will not run that algorithm here: the
// candidate is skipped.
template <typename Direction>
void plan_direction(Plan& plan, cudnnHandle_t handle, const Conv2dShape& shape) {
  using Algorithm = typename Direction::Algorithm;
  std::array<typename Direction::Perf, Direction::kAlgorithms> candidates{};
  int count = 0;
  const cudnnStatus_t status = Direction::candidates(handle, plan, candidates.data(), &count);
  if (status == CUDNN_STATUS_NOT_SUPPORTED) {
    plan.refusal = fmt::format("cuDNN does not support the {} pass of this convolution", Direction::kPass);
    return;
  }
  STRATA_CUDNN_CHECK(status, "{} ({})", Direction::kQuery, describe(shape));
  const auto chosen = choose<Algorithm>(candidates.data(), count, plan.deterministic, plan.tensor_ops,
                                        [&](Algorithm algorithm) -> std::optional<std::size_t> {
                                          std::size_t bytes = 0;
                                          if (Direction::workspace(handle, plan, algorithm, &bytes) !=
                                              CUDNN_STATUS_SUCCESS) {
                                            return std::nullopt;
                                          }
                                          return bytes;
                                        });
  if (!chosen) {
    plan.refusal = no_algorithm(Direction::kPass, plan.deterministic);
    return;
  }
  plan.*Direction::kPlan = *chosen;
}

std::unique_ptr<Plan> make_plan(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, bool deterministic,
                                cudaStream_t stream) {
  auto plan = std::make_unique<Plan>();
  plan->dtype = dtype;
  plan->deterministic = deterministic;
  // f16 and bf16 values are exact in the tensor cores' inputs: tensor ops round nothing there.
  plan->tensor_ops = shape.params.math != ConvMath::fp32 || dtype != DType::f32;
  // cuDNN's legacy descriptors take int sizes and strides.
  for (const Shape& tensor : {shape.input(), shape.weight(), shape.output()}) {
    if (tensor.numel() > kInt32Max) {
      plan->refusal =
          fmt::format("tensor {} has 2^31 elements or more, beyond cuDNN's 32-bit descriptors", tensor.to_string());
      return plan;
    }
  }
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  // Activations in their memory order (NHWC for channels-last); the filter stays KCRS (NCHW):
  // Strata's weights are contiguous, and cuDNN's legacy API takes the filter's format apart
  // from the data's. Algorithms that cannot run a mix (cuDNN's support tables) are not offered
  // or fail their workspace query, and are skipped; none left refuses the shape.
  cudnn_detail::set_descriptor(plan->x, shape.input(), dtype, formats.input, "conv2d x");
  cudnn_detail::set_descriptor(plan->y, shape.output(), dtype, formats.output, "conv2d y");
  cudnn_detail::set_nchw(plan->bias, Shape{1, shape.out_channels, 1, 1}, dtype, "conv2d bias");
  STRATA_CUDNN_CHECK(cudnnSetFilter4dDescriptor(plan->weight, cudnn_detail::cudnn_data_type(dtype), CUDNN_TENSOR_NCHW,
                                                as_int(shape.out_channels), as_int(shape.in_channels_per_group()),
                                                as_int(shape.kernel_height), as_int(shape.kernel_width)));
  const Conv2dParams& p = shape.params;
  // Cross-correlation, as PyTorch's conv2d and the custom kernels; float compute (f32 sums) for every dtype.
  STRATA_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(plan->convolution, as_int(p.padding.h), as_int(p.padding.w),
                                                     as_int(p.stride.h), as_int(p.stride.w), as_int(p.dilation.h),
                                                     as_int(p.dilation.w), CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  STRATA_CUDNN_CHECK(cudnnSetConvolutionGroupCount(plan->convolution, as_int(p.groups)));
  // FMA unless the math allows rounding: then TF32 tensor cores (cuDNN has no bf16 rounding of
  // f32 tensors; tf32 is the closer of the two, and bf16 permits it), as PyTorch's allow_tf32.
  // f16 and bf16 tensors: tensor cores always (exact products, float sums).
  STRATA_CUDNN_CHECK(
      cudnnSetConvolutionMathType(plan->convolution, plan->tensor_ops ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH));

  // cuDNN's own output size must be ours (it is, by the same formula; checked, not assumed).
  std::array<int, 4> cudnn_output{};
  STRATA_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(plan->convolution, plan->x, plan->weight, &cudnn_output[0],
                                                           &cudnn_output[1], &cudnn_output[2], &cudnn_output[3]));
  if (Shape{cudnn_output[0], cudnn_output[1], cudnn_output[2], cudnn_output[3]} != shape.output()) {
    plan->refusal = fmt::format("cuDNN computes an output of ({}, {}, {}, {}), not {}", cudnn_output[0],
                                cudnn_output[1], cudnn_output[2], cudnn_output[3], shape.output().to_string());
    return plan;
  }
  // The first direction without an algorithm refuses the shape.
  plan_direction<Forward>(*plan, handle, shape);
  if (plan->refusal.empty()) plan_direction<BackwardData>(*plan, handle, shape);
  if (plan->refusal.empty()) plan_direction<BackwardFilter>(*plan, handle, shape);
  return plan;
}

// The plan of shape, dtype and formats on the current device under the determinism switch as it is now.
Plan& plan_for(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, cudaStream_t stream) {
  static auto* plans = new cudnn_detail::PlanCache<PlanKey, Plan>;
  const bool deterministic = is_deterministic();
  return plans->plan_for(plan_key(shape, dtype, formats, current_device(), deterministic),
                         [&] { return make_plan(shape, dtype, formats, deterministic, stream); });
}

// The plan of an accepted shape, dtype and formats (the caller checked refusal()).
Plan& accepted_plan(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, cudaStream_t stream) {
  Plan& plan = plan_for(shape, dtype, formats, stream);
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
Choice<Algorithm> fastest(const std::vector<Perf>& results, bool deterministic, bool tensor_ops,
                          std::size_t workspace_bytes, const Choice<Algorithm>& fallback) {
  for (const Perf& result : results) {
    if (acceptable(result, deterministic, tensor_ops) && result.memory <= workspace_bytes) {
      return {result.algo, result.memory};
    }
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

std::size_t bytes_of(const Shape& shape, DType dtype) {
  return static_cast<std::size_t>(shape.numel()) * element_size(dtype);
}

// Times the candidates of Direction on a scratch output (the caller's is untouched) with a
// workspace of workspace_bytes, both from Strata's allocator on stream.
template <typename Direction>
Choice<typename Direction::Algorithm> time_direction(const Plan& plan, const Conv2dShape& shape, const void* a,
                                                     const void* b, std::size_t workspace_bytes,
                                                     cudaStream_t stream) {
  const DeviceBuffer out = allocate_device(bytes_of(Direction::output(shape), plan.dtype), stream);  // scratch
  const DeviceBuffer workspace = allocate_device(workspace_bytes, stream);
  std::vector<typename Direction::Perf> results(Direction::kAlgorithms);
  int count = 0;
  Direction::find(detail::cudnn_handle(stream), plan, a, b, out.data(), results.data(), &count, workspace, shape);
  results.resize(static_cast<std::size_t>(count));
  return fastest(results, plan.deterministic, plan.tensor_ops, workspace.size(), (plan.*Direction::kPlan).heuristic);
}

// Runs Direction from inputs a and b into out with the algorithm of this run
// (algorithm_for) and its workspace, on stream; all three of dtype, the activations in formats.
// Returns the plan.
template <typename Direction>
const Plan& run_direction(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, const void* a,
                          const void* b, void* out, cudaStream_t stream) {
  Plan& plan = accepted_plan(shape, dtype, formats, stream);
  const Choice<typename Direction::Algorithm> choice =
      algorithm_for(plan, plan.*Direction::kPlan, Direction::kOp, shape, stream, [&](std::size_t workspace_bytes) {
        return time_direction<Direction>(plan, shape, a, b, workspace_bytes, stream);
      });
  const DeviceBuffer workspace = allocate_device(choice.workspace_bytes, stream);
  Direction::run(detail::cudnn_handle(stream), plan, choice.algorithm, a, b, out, workspace, shape);
  return plan;
}

}  // namespace

std::string refusal(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, cudaStream_t stream) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  return plan_for(shape, dtype, formats, stream).refusal;
}

void forward(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, const void* x, const void* weight,
             const void* bias, void* y, cudaStream_t stream) {
  const Plan& plan = run_direction<Forward>(shape, dtype, formats, x, weight, y, stream);
  if (bias != nullptr) {
    STRATA_CUDNN_CHECK(cudnnAddTensor(detail::cudnn_handle(stream), &kOne, plan.bias, bias, &kOne, plan.y, y),
                       "conv2d_forward bias ({})", describe(shape));
  }
}

void backward_data(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, const void* dL_dy,
                   const void* weight, void* dL_dx, cudaStream_t stream) {
  run_direction<BackwardData>(shape, dtype, formats, dL_dy, weight, dL_dx, stream);
}

void backward_filter(const Conv2dShape& shape, DType dtype, Conv2dCudnnFormats formats, const void* x,
                     const void* dL_dy, void* dL_dweight, cudaStream_t stream) {
  run_direction<BackwardFilter>(shape, dtype, formats, x, dL_dy, dL_dweight, stream);
}

void backward_bias(const Shape& dL_dy_shape, DType dtype, MemoryFormat dL_dy_format, const void* dL_dy,
                   void* dL_dbias, cudaStream_t stream) {
  detail::require_cudnn("conv2d_backward_bias on cuDNN");
  if (dL_dy_shape.numel() > kInt32Max) {
    throw NotSupported(
        fmt::format("conv2d_backward_bias on cuDNN: dL_dy {} has 2^31 elements or more, beyond "
                    "cuDNN's 32-bit descriptors",
                    dL_dy_shape.to_string()));
  }
  detail::CudnnTensorDescriptor dL_dy_descriptor;     // (N, K, P, Q)
  detail::CudnnTensorDescriptor dL_dbias_descriptor;  // (1, K, 1, 1)
  cudnn_detail::set_descriptor(dL_dy_descriptor, dL_dy_shape, dtype, dL_dy_format, "conv2d_backward_bias dL_dy");
  cudnn_detail::set_nchw(dL_dbias_descriptor, Shape{1, dL_dy_shape[1], 1, 1}, dtype, "conv2d_backward_bias dL_dbias");
  STRATA_CUDNN_CHECK(cudnnConvolutionBackwardBias(detail::cudnn_handle(stream), &kOne, dL_dy_descriptor, dL_dy, &kZero,
                                                  dL_dbias_descriptor, dL_dbias),
                     "conv2d_backward_bias (dL_dy {})", dL_dy_shape.to_string());
}

}  // namespace strata::kernels::cudnn_backend
