// Dynamic loss scaling on the device: multiplying by the scale, the fused unscale and
// non-finite check over all gradients as one multi-tensor map (kernels/multi_tensor.cuh),
// the single-thread update of the scale and its growth tracker, and the optimizers' step
// counts that a skipped step leaves as they were.
#include "strata/kernels/grad_scaler.h"

#include <cmath>
#include <string>

#include "core/check.h"
#include "core/elementwise_map.cuh"
#include "core/nvtx.h"
#include "kernels/multi_tensor.cuh"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace {

// Infinity and NaN are the values whose exponent bits are all ones.
__device__ __forceinline__ bool is_finite_value(float x) { return (__float_as_uint(x) & 0x7f800000u) != 0x7f800000u; }

struct MultiplyByScaleOp {
  const float* scale;  // ()
  __device__ float operator()(float x) const { return x * *scale; }
};

// Value: gradient (written). Threads that meet a non-finite value all store the same 1 to
// the flag: no atomics needed, and no order to depend on.
struct UnscaleOp {
  static constexpr int kDepth = 1;
  static constexpr unsigned kWrittenLists = 0b1;
  const float* scale;      // ()
  float* found_inf;        // ()
  float inv_scale = 1.0f;  // set by resolve()

  __device__ UnscaleOp resolve() const {
    return UnscaleOp{scale, found_inf, static_cast<float>(1.0 / static_cast<double>(*scale))};
  }
  __device__ bool is_identity() const { return false; }  // the check reads every element
  __device__ void operator()(float (&v)[kDepth]) const {
    if (!is_finite_value(v[0])) *found_inf = 1.0f;
    if (inv_scale != 1.0f) v[0] *= inv_scale;
  }
};

// Value: a step count (written), advanced unless the step was skipped.
struct AdvanceStepCountOp {
  static constexpr int kDepth = 1;
  static constexpr unsigned kWrittenLists = 0b1;
  const float* found_inf;  // () or null
  bool skip = false;       // set by resolve()

  __device__ AdvanceStepCountOp resolve() const {
    return AdvanceStepCountOp{found_inf, found_inf != nullptr && *found_inf != 0.0f};
  }
  __device__ bool is_identity() const { return skip; }
  __device__ void operator()(float (&v)[kDepth]) const { v[0] += 1.0f; }
};

struct FoundInfFlags {
  const float* flags[kMaxFoundInfFlags];  // () each
  int count;
};

__global__ void update_loss_scale_kernel(float* scale /* () */, std::int32_t* growth_tracker /* () */,
                                         FoundInfFlags found_infs, double growth_factor, double backoff_factor,
                                         std::int32_t growth_interval) {
  bool found_inf = false;
  for (int i = 0; i < found_infs.count; ++i) found_inf = found_inf || *found_infs.flags[i] != 0.0f;
  if (found_inf) {
    *scale = static_cast<float>(static_cast<double>(*scale) * backoff_factor);
    *growth_tracker = 0;
    return;
  }
  // A successful step: counted before the comparison, as PyTorch.
  const std::int32_t successful = *growth_tracker + 1;
  if (successful == growth_interval) {
    const auto grown = static_cast<float>(static_cast<double>(*scale) * growth_factor);
    if (is_finite_value(grown)) *scale = grown;  // never grow past the largest float
    *growth_tracker = 0;
  } else {
    *growth_tracker = successful;
  }
}

void expect_scalar(const Tensor& tensor, const char* op, const char* name, DType dtype) {
  expect_device_tensor(tensor, op, name, dtype);
  expect_shape(tensor, Shape{}, op, name);
}

std::string element_name(const char* list, std::size_t index) {
  return std::string(list) + "[" + std::to_string(index) + "]";
}

}  // namespace

void multiply_by_scale(const Tensor& x, const Tensor& scale, Tensor& y, cudaStream_t stream) {
  constexpr const char* kOp = "multiply_by_scale";
  NvtxRange range(kOp);
  expect_device_tensor(x, kOp, "x");
  expect_device_tensor(y, kOp, "y");
  expect_shape(y, x.shape(), kOp, "y");
  expect_scalar(scale, kOp, "scale", DType::f32);
  if (y.data_ptr() != x.data_ptr()) expect_distinct(y, x, kOp, "y", "x");
  expect_distinct(y, scale, kOp, "y", "scale");
  detail::launch_unary_map(x.data<float>(), y.data<float>(), x.numel(), MultiplyByScaleOp{scale.data<float>()},
                           stream, kOp);
}

void unscale_gradients(std::span<Tensor> gradients, const Tensor& scale, Tensor& found_inf, cudaStream_t stream) {
  constexpr const char* kOp = "unscale_gradients";
  NvtxRange range(kOp);
  const std::span<const Tensor> read_only = gradients;
  const NamedTensorList lists[] = {{"gradients", read_only, true}};
  expect_parallel_lists(kOp, lists);
  expect_scalar(scale, kOp, "scale", DType::f32);
  expect_scalar(found_inf, kOp, "found_inf", DType::f32);
  expect_distinct(found_inf, scale, kOp, "found_inf", "scale");
  for (std::size_t i = 0; i < gradients.size(); ++i) {
    expect_distinct(gradients[i], scale, kOp, element_name("gradients", i), "scale");
    expect_distinct(gradients[i], found_inf, kOp, element_name("gradients", i), "found_inf");
  }
  const UnscaleOp op{.scale = scale.data<float>(), .found_inf = found_inf.data<float>()};
  launch_multi_tensor_map(std::array{read_only}, op, stream, kOp);
}

void check_loss_scale_update_params(const LossScaleUpdateParams& params) {
  constexpr const char* kOp = "update_loss_scale";
  STRATA_CHECK(std::isfinite(params.growth_factor) && params.growth_factor > 1.0,
               "{}: growth_factor must be finite and > 1, got {}", kOp, params.growth_factor);
  STRATA_CHECK(params.backoff_factor > 0.0 && params.backoff_factor < 1.0,
               "{}: backoff_factor must be in (0, 1), got {}", kOp, params.backoff_factor);
  STRATA_CHECK(params.growth_interval >= 1 && params.growth_interval <= 2147483647,
               "{}: growth_interval must be in [1, 2^31), got {}", kOp, params.growth_interval);
}

void update_loss_scale(Tensor& scale, Tensor& growth_tracker, std::span<const Tensor> found_infs,
                       const LossScaleUpdateParams& params, cudaStream_t stream) {
  constexpr const char* kOp = "update_loss_scale";
  NvtxRange range(kOp);
  check_loss_scale_update_params(params);
  expect_scalar(scale, kOp, "scale", DType::f32);
  expect_scalar(growth_tracker, kOp, "growth_tracker", DType::i32);
  STRATA_CHECK(!found_infs.empty() && found_infs.size() <= static_cast<std::size_t>(kMaxFoundInfFlags),
               "{}: takes 1 to {} found_inf flags, got {}", kOp, kMaxFoundInfFlags, found_infs.size());
  FoundInfFlags flags{};
  for (const Tensor& found_inf : found_infs) {
    const std::string name = element_name("found_infs", static_cast<std::size_t>(flags.count));
    expect_scalar(found_inf, kOp, name.c_str(), DType::f32);
    expect_distinct(scale, found_inf, kOp, "scale", name);
    expect_distinct(growth_tracker, found_inf, kOp, "growth_tracker", name);
    flags.flags[flags.count++] = found_inf.data<float>();
  }
  expect_distinct(scale, growth_tracker, kOp, "scale", "growth_tracker");
  launch(update_loss_scale_kernel, LaunchConfig{.grid = 1, .block = 1, .stream = stream, .name = kOp},
         scale.data<float>(), growth_tracker.data<std::int32_t>(), flags, params.growth_factor, params.backoff_factor,
         static_cast<std::int32_t>(params.growth_interval));
}

void advance_step_counts(std::span<Tensor> counts, const float* found_inf, cudaStream_t stream) {
  constexpr const char* kOp = "advance_step_counts";
  NvtxRange range(kOp);
  const std::span<const Tensor> read_only = counts;
  const NamedTensorList lists[] = {{"counts", read_only, true}};
  expect_parallel_lists(kOp, lists);
  for (std::size_t i = 0; i < counts.size(); ++i) {
    expect_shape(counts[i], Shape{}, kOp, element_name("counts", i));
    STRATA_CHECK(found_inf != counts[i].data<float>(), "{}: found_inf must not be counts[{}] itself", kOp, i);
  }
  launch_multi_tensor_map(std::array{read_only}, AdvanceStepCountOp{.found_inf = found_inf}, stream, kOp);
}

}  // namespace strata::kernels
