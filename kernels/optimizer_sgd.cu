// SGD with momentum, dampening, Nesterov and weight decay as grouped multi-tensor maps
// (kernels/multi_tensor.cuh): one functor without momentum buffers, one with, each holding
// one group's hyperparameters, so that the groups of a step share the launches.
#include "strata/kernels/optimizer_sgd.h"

#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/nvtx.h"
#include "kernels/multi_tensor.cuh"

namespace strata::kernels {

namespace {

constexpr const char* kOp = "sgd_step";

// A step that dynamic loss scaling skips: every block returns before it reads or writes.
__device__ __forceinline__ bool skip_step(const float* found_inf) { return found_inf != nullptr && *found_inf != 0.0f; }

// Values: parameter (written), gradient.
struct SgdOp {
  static constexpr int kDepth = 2;
  static constexpr unsigned kWrittenLists = 0b01;
  DeviceScalar lr;
  float weight_decay;
  bool maximize;
  const float* found_inf;  // () or null
  bool skip = false;       // set by resolve()

  __device__ SgdOp resolve() const {
    return SgdOp{DeviceScalar{lr.get()}, weight_decay, maximize, found_inf, skip_step(found_inf)};
  }
  __device__ bool is_identity() const { return skip; }
  __device__ void operator()(float (&v)[kDepth]) const {
    float g = maximize ? -v[1] : v[1];
    if (weight_decay != 0.0f) g = fmaf(weight_decay, v[0], g);
    v[0] = fmaf(-lr.value, g, v[0]);
  }
};

// Values: parameter (written), gradient, momentum buffer (written).
struct SgdMomentumOp {
  static constexpr int kDepth = 3;
  static constexpr unsigned kWrittenLists = 0b101;
  DeviceScalar lr;
  float weight_decay;
  float momentum;
  float one_minus_dampening;
  bool nesterov;
  bool maximize;
  bool first_step;                   // unless steps_before_device is set
  const float* steps_before_device;  // () or null: 0 on the first step
  const float* found_inf;            // () or null
  bool skip = false;                 // set by resolve()

  __device__ SgdMomentumOp resolve() const {
    SgdMomentumOp resolved = *this;
    resolved.skip = skip_step(found_inf);
    if (resolved.skip) return resolved;
    resolved.lr = DeviceScalar{lr.get()};
    if (steps_before_device != nullptr) resolved.first_step = *steps_before_device == 0.0f;
    return resolved;
  }
  __device__ bool is_identity() const { return skip; }
  __device__ void operator()(float (&v)[kDepth]) const {
    float g = maximize ? -v[1] : v[1];
    if (weight_decay != 0.0f) g = fmaf(weight_decay, v[0], g);
    const float buffer = first_step ? g : fmaf(momentum, v[2], one_minus_dampening * g);
    v[2] = buffer;
    g = nesterov ? fmaf(momentum, buffer, g) : buffer;
    v[0] = fmaf(-lr.value, g, v[0]);
  }
};

}  // namespace

void check_sgd_params(const SgdParams& params) {
  if (params.lr_device == nullptr) {
    STRATA_CHECK(std::isfinite(params.lr) && params.lr >= 0.0,
                 "{}: lr must be set to a finite value >= 0 (or lr_device given), got {}", kOp, params.lr);
  }
  STRATA_CHECK(std::isfinite(params.momentum) && params.momentum >= 0.0, "{}: momentum must be finite and >= 0, got {}",
               kOp, params.momentum);
  STRATA_CHECK(std::isfinite(params.dampening), "{}: dampening must be finite, got {}", kOp, params.dampening);
  STRATA_CHECK(std::isfinite(params.weight_decay) && params.weight_decay >= 0.0,
               "{}: weight_decay must be finite and >= 0, got {}", kOp, params.weight_decay);
  STRATA_CHECK(!params.nesterov || (params.momentum > 0.0 && params.dampening == 0.0),
               "{}: Nesterov momentum requires a momentum > 0 and zero dampening, got momentum {} and dampening {}",
               kOp, params.momentum, params.dampening);
}

void sgd_step(std::span<const SgdGroup> groups, cudaStream_t stream) {
  NvtxRange range(kOp);
  for (const SgdGroup& group : groups) check_sgd_params(group.params);
  // Every group's tensors in one list each, to check the shapes and that no tensor a step
  // writes shares memory with another of any group; the buffers with the groups that have
  // them. Indices in messages count across the groups, in order.
  std::vector<Tensor> parameters;
  std::vector<Tensor> gradients;
  std::vector<Tensor> momentum_parameters;
  std::vector<Tensor> momentum_gradients;
  std::vector<Tensor> momentum_buffers;
  std::vector<MultiTensorGroup<SgdOp>> plain;
  std::vector<MultiTensorGroup<SgdMomentumOp>> with_momentum;
  for (const SgdGroup& group : groups) {
    const SgdParams& params = group.params;
    const std::span<const Tensor> group_parameters = group.tensors.parameters;
    const std::span<const Tensor> group_gradients = group.tensors.gradients;
    parameters.insert(parameters.end(), group_parameters.begin(), group_parameters.end());
    gradients.insert(gradients.end(), group_gradients.begin(), group_gradients.end());
    const DeviceScalar lr{static_cast<float>(params.lr_device == nullptr ? params.lr : 0.0), params.lr_device};
    const auto weight_decay = static_cast<float>(params.weight_decay);
    if (params.momentum == 0.0) {
      plain.push_back({{group_parameters, group_gradients}, SgdOp{lr, weight_decay, params.maximize, params.found_inf}});
      continue;
    }
    const std::span<const Tensor> group_buffers = group.tensors.momentum_buffers;
    momentum_parameters.insert(momentum_parameters.end(), group_parameters.begin(), group_parameters.end());
    momentum_gradients.insert(momentum_gradients.end(), group_gradients.begin(), group_gradients.end());
    momentum_buffers.insert(momentum_buffers.end(), group_buffers.begin(), group_buffers.end());
    // (1 - dampening) in double, then rounded once, as PyTorch's alpha = 1 - dampening.
    with_momentum.push_back({{group_parameters, group_gradients, group_buffers},
                             SgdMomentumOp{lr,
                                           weight_decay,
                                           static_cast<float>(params.momentum),
                                           static_cast<float>(1.0 - params.dampening),
                                           params.nesterov,
                                           params.maximize,
                                           group.buffers == MomentumBuffers::uninitialized,
                                           params.steps_before_device,
                                           params.found_inf}});
  }
  const NamedTensorList all_lists[] = {{"parameters", parameters, true}, {"gradients", gradients, false}};
  expect_parallel_lists(kOp, all_lists);
  for (const MultiTensorGroup<SgdMomentumOp>& group : with_momentum) {
    STRATA_CHECK(group.lists[2].size() == group.lists[0].size(),
                 "{}: momentum_buffers has {} tensors but parameters has {}", kOp, group.lists[2].size(),
                 group.lists[0].size());
  }
  const NamedTensorList momentum_lists[] = {{"parameters", momentum_parameters, true},
                                            {"gradients", momentum_gradients, false},
                                            {"momentum_buffers", momentum_buffers, true}};
  expect_parallel_lists(kOp, momentum_lists);
  launch_multi_tensor_grouped_map(std::span<const MultiTensorGroup<SgdOp>>(plain), stream, kOp);
  launch_multi_tensor_grouped_map(std::span<const MultiTensorGroup<SgdMomentumOp>>(with_momentum), stream, kOp);
}

void sgd_step(const SgdTensors& tensors, const SgdParams& params, MomentumBuffers buffers, cudaStream_t stream) {
  const SgdGroup group{.tensors = tensors, .params = params, .buffers = buffers};
  sgd_step(std::span(&group, 1), stream);
}

}  // namespace strata::kernels
