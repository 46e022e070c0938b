// AdamW as a multi-tensor map (kernels/multi_tensor.cuh). The per-step scalars (step size,
// bias corrections, decay factor) are computed once per thread from the learning rate and
// step count, which may come from device memory, in double as PyTorch computes them in Python;
// a set found-inf flag makes every block return before it touches a tensor.
#include "strata/kernels/optimizer_adamw.h"

#include <cmath>

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

void adamw_step(const AdamWTensors& tensors, const AdamWParams& params, const AdamWStep& step, cudaStream_t stream) {
  NvtxRange range(kOp);
  check_adamw_params(params);
  STRATA_CHECK(step.step_device != nullptr || step.steps_before_device != nullptr || step.step >= 1,
               "{}: the step count must be >= 1 (PyTorch's state step after its increment), got {}", kOp, step.step);
  const std::span<const Tensor> parameters = tensors.parameters;
  const std::span<const Tensor> exp_avgs = tensors.exp_avgs;
  const std::span<const Tensor> exp_avg_sqs = tensors.exp_avg_sqs;
  const std::span<const Tensor> max_exp_avg_sqs = tensors.max_exp_avg_sqs;
  if (!params.amsgrad) {
    const NamedTensorList lists[] = {{"parameters", parameters, true},
                                     {"gradients", tensors.gradients, false},
                                     {"exp_avgs", exp_avgs, true},
                                     {"exp_avg_sqs", exp_avg_sqs, true}};
    expect_parallel_lists(kOp, lists);
    launch_multi_tensor_map(std::array{parameters, tensors.gradients, exp_avgs, exp_avg_sqs},
                            make_op<false>(params, step), stream, kOp);
    return;
  }
  const NamedTensorList lists[] = {{"parameters", parameters, true},
                                   {"gradients", tensors.gradients, false},
                                   {"exp_avgs", exp_avgs, true},
                                   {"exp_avg_sqs", exp_avg_sqs, true},
                                   {"max_exp_avg_sqs", max_exp_avg_sqs, true}};
  expect_parallel_lists(kOp, lists);
  launch_multi_tensor_map(std::array{parameters, tensors.gradients, exp_avgs, exp_avg_sqs, max_exp_avg_sqs},
                          make_op<true>(params, step), stream, kOp);
}

}  // namespace strata::kernels
