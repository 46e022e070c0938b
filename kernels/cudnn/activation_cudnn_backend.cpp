// ReLU and GELU on cuDNN, the CUDA build's backend (kernels/cudnn/activation_cudnn_backend.h):
// ReLU on cuDNN's legacy activation API (cudnnActivationForward and Backward), GELU on the
// graph (backend) API, one pointwise node per direction, since the legacy API has no GELU.
// Descriptors and execution plans are made once per key (shape, dtype, ...) and kept for the
// life of the process. Tensors are FLOAT, HALF or BFLOAT16; cuDNN computes in f32 (float
// scaling factors, fp32 pointwise math).
#include "kernels/cudnn/activation_cudnn_backend.h"

#include <fmt/format.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/check.h"
#include "core/cudnn.h"
#include "kernels/cudnn/cudnn_common.h"
#include "strata/core/allocator.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::kernels::cudnn_activation_backend {

namespace {

constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();
constexpr float kOne = 1.0f;
constexpr float kZero = 0.0f;
// The largest workspace a GELU plan may ask for; pointwise plans normally need none.
constexpr std::int64_t kGeluWorkspaceLimit = std::int64_t{64} << 20;

using CudnnActivationDescriptor = detail::CudnnDescriptor<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor,
                                                          cudnnDestroyActivationDescriptor>;

using cudnn_detail::PlanCache;

// Any shape as a packed 4-D tensor: leading dimensions merged into the first, missing ones 1.
std::array<std::int64_t, 4> packed_4d(const Shape& shape) {
  std::array<std::int64_t, 4> dims{1, 1, 1, 1};
  const int rank = shape.rank();
  for (int i = 0; i < rank; ++i) {
    const int slot = std::max(0, 4 - rank + i);
    dims[static_cast<std::size_t>(slot)] *= shape[i];
  }
  return dims;
}

std::string too_large(const Shape& shape) {
  return fmt::format("tensor {} has 2^31 elements or more, beyond cuDNN's 32-bit descriptors", shape.to_string());
}

// ---- ReLU: the legacy activation API ----------------------------------------------------

struct ReluPlan {
  detail::CudnnTensorDescriptor tensor;  // x, y, dL_dy and dL_dx: one packed 4-D shape
  CudnnActivationDescriptor activation;
};

// The packed 4-D shape and the dtype.
using ReluKey = std::pair<std::array<std::int64_t, 4>, DType>;

PlanCache<ReluKey, ReluPlan>& relu_plans() {
  static auto* cache = new PlanCache<ReluKey, ReluPlan>;
  return *cache;
}

const ReluPlan& relu_plan(const Shape& shape, DType dtype) {
  const std::array<std::int64_t, 4> dims = packed_4d(shape);
  return relu_plans().plan_for(ReluKey{dims, dtype}, [&] {
    auto plan = std::make_unique<ReluPlan>();
    cudnn_detail::set_nchw(plan->tensor, Shape{dims[0], dims[1], dims[2], dims[3]}, dtype,
                           fmt::format("relu (x {}) as", shape.to_string()));
    // NaN passes through, as in PyTorch. The coefficient is unused by ReLU.
    STRATA_CUDNN_CHECK(cudnnSetActivationDescriptor(plan->activation, CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0));
    return plan;
  });
}

// ---- GELU: one pointwise node of the graph API --------------------------------------------

// One descriptor of the graph API, created in the constructor, and the calls that set it up.
class BackendDescriptor {
 public:
  explicit BackendDescriptor(cudnnBackendDescriptorType_t type) : descriptor_(type) {}

  cudnnBackendDescriptor_t get() const noexcept { return descriptor_.get(); }

  // Sets attribute name to count values of cuDNN's type.
  template <typename T>
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t count, const T* values) {
    STRATA_CUDNN_CHECK(cudnnBackendSetAttribute(descriptor_, name, type, count, values), "attribute {}",
                       static_cast<int>(name));
  }
  void set(cudnnBackendAttributeName_t name, const BackendDescriptor& value) {
    const cudnnBackendDescriptor_t raw = value.get();
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &raw);
  }
  cudnnStatus_t try_finalize() noexcept { return cudnnBackendFinalize(descriptor_); }

 private:
  detail::CudnnDescriptor<cudnnBackendDescriptor_t, cudnnBackendCreateDescriptor, cudnnBackendDestroyDescriptor>
      descriptor_;
};

// The unique ids of the graph's tensors in the variant pack.
constexpr std::int64_t kUidX = 1;
constexpr std::int64_t kUidY = 2;
constexpr std::int64_t kUidDy = 3;
constexpr std::int64_t kUidDx = 4;

enum class Direction : std::int64_t { forward, backward };

struct GeluPlan {
  std::optional<BackendDescriptor> plan;  // the execution plan; absent when refused
  std::int64_t workspace_bytes = 0;
  std::string refusal;  // why cuDNN cannot run it; empty when it can
};

// What a GELU plan depends on: the packed shape, direction, form, dtype, pointer alignment
// and the handle (a plan is built for one handle, hence one device).
using GeluKey =
    std::tuple<std::array<std::int64_t, 4>, Direction, GeluApproximation, DType, std::int64_t, cudnnHandle_t>;

BackendDescriptor graph_tensor(std::int64_t uid, const std::array<std::int64_t, 4>& dims, DType dtype,
                               std::int64_t alignment) {
  BackendDescriptor tensor(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const std::array<std::int64_t, 4> strides{dims[1] * dims[2] * dims[3], dims[2] * dims[3], dims[3], 1};
  const cudnnDataType_t type = cudnn_detail::cudnn_data_type(dtype);
  tensor.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type);
  tensor.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims.data());
  tensor.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data());
  tensor.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
  tensor.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment);
  STRATA_CUDNN_CHECK(tensor.try_finalize(), "GELU tensor {}", uid);
  return tensor;
}

cudnnPointwiseMode_t gelu_mode(Direction direction, GeluApproximation approximation) {
  const bool tanh = approximation == GeluApproximation::tanh;
  if (direction == Direction::forward) return tanh ? CUDNN_POINTWISE_GELU_APPROX_TANH_FWD : CUDNN_POINTWISE_GELU_FWD;
  return tanh ? CUDNN_POINTWISE_GELU_APPROX_TANH_BWD : CUDNN_POINTWISE_GELU_BWD;
}

std::unique_ptr<GeluPlan> make_gelu_plan(const Shape& shape, Direction direction, GeluApproximation approximation,
                                         DType dtype, std::int64_t alignment, cudnnHandle_t handle) {
  auto result = std::make_unique<GeluPlan>();
  const std::array<std::int64_t, 4> dims = packed_4d(shape);
  const char* what = direction == Direction::forward ? "forward" : "backward";

  BackendDescriptor pointwise(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  const cudnnPointwiseMode_t mode = gelu_mode(direction, approximation);
  const cudnnDataType_t math = CUDNN_DATA_FLOAT;
  pointwise.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
  pointwise.set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &math);
  STRATA_CUDNN_CHECK(pointwise.try_finalize(), "GELU pointwise descriptor");

  // Forward: y = gelu(x). Backward: dL_dx = gelu'(x) dL_dy.
  BackendDescriptor x = graph_tensor(kUidX, dims, dtype, alignment);
  BackendDescriptor out = graph_tensor(direction == Direction::forward ? kUidY : kUidDx, dims, dtype, alignment);
  std::optional<BackendDescriptor> dy;
  BackendDescriptor operation(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  operation.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, pointwise);
  operation.set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
  if (direction == Direction::forward) {
    operation.set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, out);
  } else {
    dy.emplace(graph_tensor(kUidDy, dims, dtype, alignment));
    operation.set(CUDNN_ATTR_OPERATION_POINTWISE_DYDESC, *dy);
    operation.set(CUDNN_ATTR_OPERATION_POINTWISE_DXDESC, out);
  }
  if (const cudnnStatus_t status = operation.try_finalize(); status != CUDNN_STATUS_SUCCESS) {
    result->refusal =
        fmt::format("cuDNN's graph API does not accept a GELU {} node ({})", what, cudnnGetErrorString(status));
    return result;
  }

  BackendDescriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, operation);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
  if (const cudnnStatus_t status = graph.try_finalize(); status != CUDNN_STATUS_SUCCESS) {
    result->refusal = fmt::format("cuDNN's graph API does not accept a graph of one GELU {} node ({})", what,
                                  cudnnGetErrorString(status));
    return result;
  }

  BackendDescriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  const cudnnBackendHeurMode_t heuristic_mode = CUDNN_HEUR_MODE_A;
  heuristics.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
  heuristics.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &heuristic_mode);
  if (const cudnnStatus_t status = heuristics.try_finalize(); status != CUDNN_STATUS_SUCCESS) {
    result->refusal =
        fmt::format("cuDNN's heuristics cannot rank engines for GELU {} ({})", what, cudnnGetErrorString(status));
    return result;
  }
  std::int64_t count = 0;
  STRATA_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                              CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
                     "GELU {} heuristics: number of results", what);
  std::vector<BackendDescriptor> configs;
  std::vector<cudnnBackendDescriptor_t> raw_configs;
  for (std::int64_t i = 0; i < count; ++i) {
    configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    raw_configs.push_back(configs.back().get());
  }
  std::int64_t returned = 0;
  if (count > 0) {
    STRATA_CUDNN_CHECK(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                                CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw_configs.data()),
                       "GELU {} heuristics: results", what);
  }
  // The first configuration, in cuDNN's order, that builds with a workspace within the limit.
  // A pointwise node computes each element once, so every engine is deterministic.
  for (std::int64_t i = 0; i < returned; ++i) {
    BackendDescriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    plan.set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, configs[static_cast<std::size_t>(i)]);
    if (plan.try_finalize() != CUDNN_STATUS_SUCCESS) continue;
    std::int64_t workspace = 0;
    std::int64_t workspace_count = 0;
    STRATA_CUDNN_CHECK(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64,
                                                1, &workspace_count, &workspace),
                       "GELU {} plan workspace", what);
    if (workspace > kGeluWorkspaceLimit) continue;
    result->plan.emplace(std::move(plan));
    result->workspace_bytes = workspace;
    return result;
  }
  result->refusal = fmt::format(
      "cuDNN's heuristics offer no engine that builds a GELU {} plan for it with a workspace of at most {} MiB "
      "({} candidates)",
      what, kGeluWorkspaceLimit >> 20, returned);
  return result;
}

PlanCache<GeluKey, GeluPlan>& gelu_plans() {
  static auto* cache = new PlanCache<GeluKey, GeluPlan>;
  return *cache;
}

// The largest alignment, up to 16 bytes, that every pointer has.
std::int64_t common_alignment(std::initializer_list<const void*> pointers) {
  std::uintptr_t bits = 16;
  for (const void* pointer : pointers) bits |= reinterpret_cast<std::uintptr_t>(pointer);
  return static_cast<std::int64_t>(bits & (~bits + 1));  // lowest set bit
}

const GeluPlan& gelu_plan(const Shape& shape, Direction direction, GeluApproximation approximation, DType dtype,
                          std::int64_t alignment, cudnnHandle_t handle) {
  return gelu_plans().plan_for(GeluKey{packed_4d(shape), direction, approximation, dtype, alignment, handle}, [&] {
    return make_gelu_plan(shape, direction, approximation, dtype, alignment, handle);
  });
}

// Runs the plan of an accepted shape with the tensors (uid, pointer); pointers of Strata's
// allocations are 16-byte aligned, so the plan is normally the one refusal() built.
void run_gelu(const Shape& shape, Direction direction, GeluApproximation approximation, DType dtype,
              const std::vector<std::pair<std::int64_t, void*>>& tensors, cudaStream_t stream) {
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  std::int64_t alignment = 16;
  for (const auto& tensor : tensors) alignment = std::min(alignment, common_alignment({tensor.second}));
  const GeluPlan& plan = gelu_plan(shape, direction, approximation, dtype, alignment, handle);
  if (!plan.refusal.empty()) {
    throw NotSupported(fmt::format("gelu_{} on cuDNN (x {} {}, pointers aligned to {} bytes): {}",
                                   direction == Direction::forward ? "forward" : "backward", shape.to_string(),
                                   dtype_name(dtype), alignment, plan.refusal));
  }
  const DeviceBuffer workspace = allocate_device(static_cast<std::size_t>(plan.workspace_bytes), stream);
  std::vector<std::int64_t> uids;
  std::vector<void*> pointers;
  for (const auto& tensor : tensors) {
    uids.push_back(tensor.first);
    pointers.push_back(tensor.second);
  }
  void* workspace_pointer = workspace.data();
  BackendDescriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, static_cast<std::int64_t>(uids.size()), uids.data());
  pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, static_cast<std::int64_t>(pointers.size()),
           pointers.data());
  pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace_pointer);
  STRATA_CUDNN_CHECK(pack.try_finalize(), "GELU variant pack (x {})", shape.to_string());
  STRATA_CUDNN_CHECK(cudnnBackendExecute(handle, plan.plan->get(), pack.get()), "gelu_{} (x {})",
                     direction == Direction::forward ? "forward" : "backward", shape.to_string());
}

}  // namespace

std::string relu_refusal(const Shape& shape) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  if (shape.numel() > kInt32Max) return too_large(shape);
  return {};
}

std::string gelu_refusal(const Shape& shape, GeluApproximation approximation, DType dtype, cudaStream_t stream) {
  if (!cudnn_available()) return std::string(cudnn_unavailable_reason());
  if (shape.numel() > kInt32Max) return too_large(shape);
  const cudnnHandle_t handle = detail::cudnn_handle(stream);
  for (const Direction direction : {Direction::forward, Direction::backward}) {
    const GeluPlan& plan = gelu_plan(shape, direction, approximation, dtype, 16, handle);
    if (!plan.refusal.empty()) return plan.refusal;
  }
  return {};
}

void relu_forward(const Shape& shape, DType dtype, const void* x, void* y, cudaStream_t stream) {
  const ReluPlan& plan = relu_plan(shape, dtype);
  STRATA_CUDNN_CHECK(cudnnActivationForward(detail::cudnn_handle(stream), plan.activation, &kOne, plan.tensor, x,
                                            &kZero, plan.tensor, y),
                     "relu_forward (x {} {})", shape.to_string(), dtype_name(dtype));
}

void relu_backward(const Shape& shape, DType dtype, const void* dL_dy, const void* y, void* dL_dx,
                   cudaStream_t stream) {
  const ReluPlan& plan = relu_plan(shape, dtype);
  // y stands for x too: y > 0 exactly where x > 0 (kernels/cudnn/activation_cudnn.h).
  STRATA_CUDNN_CHECK(cudnnActivationBackward(detail::cudnn_handle(stream), plan.activation, &kOne, plan.tensor, y,
                                             plan.tensor, dL_dy, plan.tensor, y, &kZero, plan.tensor, dL_dx),
                     "relu_backward (y {} {})", shape.to_string(), dtype_name(dtype));
}

void gelu_forward(const Shape& shape, GeluApproximation approximation, DType dtype, const void* x, void* y,
                  cudaStream_t stream) {
  run_gelu(shape, Direction::forward, approximation, dtype,
           {{kUidX, const_cast<void*>(x)}, {kUidY, y}},  // NOLINT: cuDNN's variant pack takes void*
           stream);
}

void gelu_backward(const Shape& shape, GeluApproximation approximation, DType dtype, const void* dL_dy, const void* x,
                   void* dL_dx, cudaStream_t stream) {
  run_gelu(shape, Direction::backward, approximation, dtype,
           {{kUidX, const_cast<void*>(x)}, {kUidDy, const_cast<void*>(dL_dy)}, {kUidDx, dL_dx}},  // NOLINT
           stream);
}

}  // namespace strata::kernels::cudnn_activation_backend
