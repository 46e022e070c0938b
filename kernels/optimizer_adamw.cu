// AdamW as a grouped multi-tensor map (kernels/multi_tensor.cuh): each group's op holds its
// hyperparameters and step count, so the groups of a step share a launch. The per-step scalars (step size,
// bias corrections, decay factor) are computed once per thread from the learning rate and
// step count, which may come from device memory, in double as PyTorch computes them in Python;
// a set found-inf flag makes every block return before it touches a tensor.
#include "strata/kernels/optimizer_adamw.h"

#include <array>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "core/nvtx.h"
#include "kernels/multi_tensor.cuh"

namespace strata::kernels {

namespace {

constexpr const char* kOp = "adamw_step";

// Values: parameter (written), gradient, m (written), v (written), and with amsgrad v_max
// (written).
template <bool Amsgrad>
struct AdamWOp {
  static constexpr int kDepth = Amsgrad ? 5 : 4;
  static constexpr unsigned kWrittenLists = Amsgrad ? 0b11101u : 0b1101u;
  // Set on the host.
  DeviceScalar lr;
  double step;                       // t, unless a device scalar gives it
  const float* step_device;          // () on the device: t
  const float* steps_before_device;  // () on the device: t - 1; wins over step_device
  const float* found_inf;            // () on the device, or null
  double beta1;
  double beta2;
  double weight_decay;
  float beta1_f;
  float beta2_f;
  float one_minus_beta1;
  float one_minus_beta2;
  float eps;
  bool maximize;
  // Set by resolve().
  float decay_factor = 1.0f;  // 1 - lr * weight_decay
  float step_size = 0.0f;     // lr / (1 - beta1^t)
  float bias_correction2_sqrt = 1.0f;
  bool skip = false;

  __device__ double step_number() const {
    if (steps_before_device != nullptr) return static_cast<double>(*steps_before_device) + 1.0;
    return step_device != nullptr ? static_cast<double>(*step_device) : step;
  }
  __device__ AdamWOp resolve() const {
    AdamWOp resolved = *this;
    resolved.skip = found_inf != nullptr && *found_inf != 0.0f;
    if (resolved.skip) return resolved;
    const double lr_value = lr.get();
    const double t = step_number();
    resolved.decay_factor = static_cast<float>(1.0 - lr_value * weight_decay);
    resolved.step_size = static_cast<float>(lr_value / (1.0 - pow(beta1, t)));
    resolved.bias_correction2_sqrt = static_cast<float>(sqrt(1.0 - pow(beta2, t)));
    return resolved;
  }
  __device__ bool is_identity() const { return skip; }
  __device__ void operator()(float (&v)[kDepth]) const {
    const float g = maximize ? -v[1] : v[1];
    const float parameter = v[0] * decay_factor;
    const float m = fmaf(one_minus_beta1, g, beta1_f * v[2]);
    const float v_new = fmaf(one_minus_beta2 * g, g, beta2_f * v[3]);
    v[2] = m;
    v[3] = v_new;
    float v_used = v_new;
    if constexpr (Amsgrad) {
      // torch.maximum: NaN wins.
      const float v_max = v[4];
      v_used = (v_max > v_new || v_max != v_max) ? v_max : v_new;
      v[4] = v_used;
    }
    const float denominator = sqrtf(v_used) / bias_correction2_sqrt + eps;
    v[0] = fmaf(-step_size, m / denominator, parameter);
  }
};

template <bool Amsgrad>
AdamWOp<Amsgrad> make_op(const AdamWParams& params, const AdamWStep& step) {
  // The learning rate is rounded to float first, as a device lr is, so that both give the
  // same bits. (1 - beta) in double then rounded once, as PyTorch's alpha = 1 - beta.
  return AdamWOp<Amsgrad>{
      .lr = DeviceScalar{static_cast<float>(params.lr_device == nullptr ? params.lr : 0.0), params.lr_device},
      .step = static_cast<double>(step.step),
      .step_device = step.step_device,
      .steps_before_device = step.steps_before_device,
      .found_inf = params.found_inf,
      .beta1 = params.beta1,
      .beta2 = params.beta2,
      .weight_decay = params.weight_decay,
      .beta1_f = static_cast<float>(params.beta1),
      .beta2_f = static_cast<float>(params.beta2),
      .one_minus_beta1 = static_cast<float>(1.0 - params.beta1),
      .one_minus_beta2 = static_cast<float>(1.0 - params.beta2),
      .eps = static_cast<float>(params.eps),
      .maximize = params.maximize,
  };
}

}  // namespace

void check_adamw_params(const AdamWParams& params) {
  if (params.lr_device == nullptr) {
    STRATA_CHECK(std::isfinite(params.lr) && params.lr >= 0.0, "{}: lr must be finite and >= 0, got {}", kOp,
                 params.lr);
  }
  STRATA_CHECK(std::isfinite(params.eps) && params.eps >= 0.0, "{}: eps must be finite and >= 0, got {}", kOp,
               params.eps);
  STRATA_CHECK(params.beta1 >= 0.0 && params.beta1 < 1.0, "{}: beta1 must be in [0, 1), got {}", kOp, params.beta1);
  STRATA_CHECK(params.beta2 >= 0.0 && params.beta2 < 1.0, "{}: beta2 must be in [0, 1), got {}", kOp, params.beta2);
  STRATA_CHECK(std::isfinite(params.weight_decay) && params.weight_decay >= 0.0,
               "{}: weight_decay must be finite and >= 0, got {}", kOp, params.weight_decay);
}

namespace {

// The lists of one group for the op of depth Depth (4, or 5 with amsgrad).
template <bool Amsgrad>
MultiTensorGroup<AdamWOp<Amsgrad>> make_group(const AdamWGroup& group) {
  const AdamWTensors& tensors = group.tensors;
  std::array<std::span<const Tensor>, AdamWOp<Amsgrad>::kDepth> lists;
  lists[0] = tensors.parameters;
  lists[1] = tensors.gradients;
  lists[2] = tensors.exp_avgs;
  lists[3] = tensors.exp_avg_sqs;
  if constexpr (Amsgrad) lists[4] = tensors.max_exp_avg_sqs;
  return {lists, make_op<Amsgrad>(group.params, group.step)};
}

void append(std::vector<Tensor>& all, std::span<const Tensor> tensors) {
  all.insert(all.end(), tensors.begin(), tensors.end());
}

}  // namespace

void adamw_step(std::span<const AdamWGroup> groups, cudaStream_t stream) {
  NvtxRange range(kOp);
  for (const AdamWGroup& group : groups) {
    check_adamw_params(group.params);
    const AdamWStep& step = group.step;
    STRATA_CHECK(step.step_device != nullptr || step.steps_before_device != nullptr || step.step >= 1,
                 "{}: the step count must be >= 1 (PyTorch's state step after its increment), got {}", kOp, step.step);
  }
  // Every group's tensors in one list each, for the shape and overlap checks across the
  // groups (indices in messages count across the groups, in order); the amsgrad groups'
  // lists again with their v_max.
  std::vector<Tensor> parameters;
  std::vector<Tensor> gradients;
  std::vector<Tensor> exp_avgs;
  std::vector<Tensor> exp_avg_sqs;
  std::vector<Tensor> amsgrad_parameters;
  std::vector<Tensor> amsgrad_gradients;
  std::vector<Tensor> amsgrad_exp_avgs;
  std::vector<Tensor> amsgrad_exp_avg_sqs;
  std::vector<Tensor> max_exp_avg_sqs;
  std::vector<MultiTensorGroup<AdamWOp<false>>> plain;
  std::vector<MultiTensorGroup<AdamWOp<true>>> with_amsgrad;
  for (const AdamWGroup& group : groups) {
    append(parameters, group.tensors.parameters);
    append(gradients, group.tensors.gradients);
    append(exp_avgs, group.tensors.exp_avgs);
    append(exp_avg_sqs, group.tensors.exp_avg_sqs);
    if (!group.params.amsgrad) {
      plain.push_back(make_group<false>(group));
      continue;
    }
    STRATA_CHECK(group.tensors.max_exp_avg_sqs.size() == group.tensors.parameters.size(),
                 "{}: max_exp_avg_sqs has {} tensors but parameters has {}", kOp,
                 group.tensors.max_exp_avg_sqs.size(), group.tensors.parameters.size());
    append(amsgrad_parameters, group.tensors.parameters);
    append(amsgrad_gradients, group.tensors.gradients);
    append(amsgrad_exp_avgs, group.tensors.exp_avgs);
    append(amsgrad_exp_avg_sqs, group.tensors.exp_avg_sqs);
    append(max_exp_avg_sqs, group.tensors.max_exp_avg_sqs);
    with_amsgrad.push_back(make_group<true>(group));
  }
  const NamedTensorList lists[] = {{"parameters", parameters, true},
                                   {"gradients", gradients, false},
                                   {"exp_avgs", exp_avgs, true},
                                   {"exp_avg_sqs", exp_avg_sqs, true}};
  expect_parallel_lists(kOp, lists);
  const NamedTensorList amsgrad_lists[] = {{"parameters", amsgrad_parameters, true},
                                           {"gradients", amsgrad_gradients, false},
                                           {"exp_avgs", amsgrad_exp_avgs, true},
                                           {"exp_avg_sqs", amsgrad_exp_avg_sqs, true},
                                           {"max_exp_avg_sqs", max_exp_avg_sqs, true}};
  expect_parallel_lists(kOp, amsgrad_lists);
  launch_multi_tensor_grouped_map(std::span<const MultiTensorGroup<AdamWOp<false>>>(plain), stream, kOp);
  launch_multi_tensor_grouped_map(std::span<const MultiTensorGroup<AdamWOp<true>>>(with_amsgrad), stream, kOp);
}

void adamw_step(const AdamWTensors& tensors, const AdamWParams& params, const AdamWStep& step, cudaStream_t stream) {
  const AdamWGroup group{.tensors = tensors, .params = params, .step = step};
  adamw_step(std::span(&group, 1), stream);
}

}  // namespace strata::kernels
