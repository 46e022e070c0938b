// The kernels of dynamic loss scaling: the fused unscale and inf/NaN check over many
// gradients (exact for powers of two, a non-finite value found in any tensor of any launch),
// the update of the scale and its growth tracker (PyTorch's _amp_update_scale_), the
// multiplication by a device scale, SGD's step skipped on the device by the flag, and the
// step counts that a skipped step leaves as they were.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/kernels/grad_scaler.h"
#include "strata/kernels/optimizer_sgd.h"
#include "tests/kernels/device_values.h"

namespace strata::kernels {
namespace {

using testing::bit_patterns;
using testing::device_tensor;
using testing::random_uniform;

Tensor scalar_f32(float value, cudaStream_t stream) { return device_tensor({value}, Shape{}, stream); }

float value_of(const Tensor& scalar, cudaStream_t stream) { return scalar.to_vector<float>(stream).front(); }

// Odd sizes, more tensors than one launch takes (148), so the flag is shared across launches.
std::vector<std::int64_t> many_sizes() {
  std::vector<std::int64_t> sizes;
  for (int i = 0; i < 160; ++i) sizes.push_back(1 + (i * 37) % 61);
  sizes[3] = 4096 + 5;  // two chunks of one tensor
  sizes[150] = 9000;
  return sizes;
}

struct Gradients {
  std::vector<std::vector<float>> values;
  std::vector<Tensor> tensors;
};

Gradients random_gradients(std::uint64_t seed, cudaStream_t stream) {
  Gradients gradients;
  for (const std::int64_t size : many_sizes()) {
    gradients.values.push_back(random_uniform(seed++, static_cast<std::size_t>(size), -1000.0f, 1000.0f));
    gradients.tensors.push_back(device_tensor(gradients.values.back(), Shape{size}, stream));
  }
  return gradients;
}

// Dividing by a power of two is exact (no value here comes near the subnormals), so the
// unscaled gradients are x * 2^-k bit for bit, and the flag stays 0.
TEST(UnscaleGradients, ExactForPowersOfTwoAndNoFlagWhenFinite) {
  const cudaStream_t stream = current_stream();
  for (const int exponent : {0, 1, 16, 24, -3}) {
    SCOPED_TRACE("scale 2^" + std::to_string(exponent));
    Gradients gradients = random_gradients(7000 + static_cast<std::uint64_t>(exponent + 10), stream);
    const Tensor scale = scalar_f32(std::ldexp(1.0f, exponent), stream);
    Tensor found_inf = scalar_f32(0.0f, stream);
    unscale_gradients(gradients.tensors, scale, found_inf, stream);
    EXPECT_EQ(value_of(found_inf, stream), 0.0f);
    for (std::size_t t = 0; t < gradients.tensors.size(); ++t) {
      std::vector<float> expected = gradients.values[t];
      for (float& value : expected) value = std::ldexp(value, -exponent);
      ASSERT_EQ(bit_patterns(gradients.tensors[t].to_vector<float>(stream)), bit_patterns(expected)) << "tensor " << t;
    }
  }
}

// inv_scale is float(1 / double(scale)), as PyTorch's: for a scale of 3 the product rounds.
TEST(UnscaleGradients, MultipliesByTheRoundedReciprocal) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> values = random_uniform(7100, 1001);
  Tensor gradient = device_tensor(values, Shape{1001}, stream);
  std::vector<Tensor> gradients{gradient};
  Tensor found_inf = scalar_f32(0.0f, stream);
  unscale_gradients(gradients, scalar_f32(3.0f, stream), found_inf, stream);
  const auto inv_scale = static_cast<float>(1.0 / 3.0);
  std::vector<float> expected = values;
  for (float& value : expected) value *= inv_scale;
  EXPECT_EQ(bit_patterns(gradient.to_vector<float>(stream)), bit_patterns(expected));
}

// One non-finite element in any tensor, at any place (first launch, second launch, the last
// element of an odd tail), sets the flag; every gradient is still unscaled, as PyTorch's.
TEST(UnscaleGradients, FindsInfOrNanInAnyTensor) {
  const cudaStream_t stream = current_stream();
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Placement {
    std::size_t tensor;
    bool last_element;
    float value;
  };
  for (const Placement placement : {Placement{0, false, inf}, Placement{3, true, -inf}, Placement{77, true, nan},
                                    Placement{150, false, nan}, Placement{159, true, inf}}) {
    SCOPED_TRACE("tensor " + std::to_string(placement.tensor) + ", value " + std::to_string(placement.value));
    Gradients gradients = random_gradients(7200 + placement.tensor, stream);
    std::vector<float>& poisoned = gradients.values[placement.tensor];
    poisoned[placement.last_element ? poisoned.size() - 1 : 0] = placement.value;
    gradients.tensors[placement.tensor] =
        device_tensor(poisoned, Shape{static_cast<std::int64_t>(poisoned.size())}, stream);
    Tensor found_inf = scalar_f32(0.0f, stream);
    unscale_gradients(gradients.tensors, scalar_f32(4.0f, stream), found_inf, stream);
    EXPECT_EQ(value_of(found_inf, stream), 1.0f);
    const std::size_t other = placement.tensor == 0 ? 1 : 0;
    EXPECT_EQ(gradients.tensors[other].to_vector<float>(stream).front(), gradients.values[other].front() / 4.0f);
  }
}

TEST(UnscaleGradients, LeavesASetFlagSetAndChecksArguments) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> gradients{device_tensor({1.0f, 2.0f}, Shape{2}, stream)};
  Tensor found_inf = scalar_f32(1.0f, stream);
  unscale_gradients(gradients, scalar_f32(2.0f, stream), found_inf, stream);
  EXPECT_EQ(value_of(found_inf, stream), 1.0f);  // the caller zeroes it; the kernel only sets it
  EXPECT_EQ(gradients[0].to_vector<float>(stream), (std::vector<float>{0.5f, 1.0f}));
  std::vector<Tensor> none;
  unscale_gradients(none, scalar_f32(2.0f, stream), found_inf, stream);  // nothing to launch
  const Tensor wrong_scale = device_tensor({1.0f}, Shape{1}, stream);
  EXPECT_NE(testing::invalid_argument_message([&] { unscale_gradients(gradients, wrong_scale, found_inf, stream); })
                .find("scale must have shape ()"),
            std::string::npos);
  std::vector<Tensor> flag_as_gradient{found_inf};
  EXPECT_NE(testing::invalid_argument_message([&] {
              unscale_gradients(flag_as_gradient, scalar_f32(2.0f, stream), found_inf, stream);
            }).find("overlaps"),
            std::string::npos);
}

// ---- update_loss_scale ------------------------------------------------------------------

struct ScaleState {
  float scale;
  std::int32_t growth_tracker;
};

ScaleState run_update(ScaleState before, const std::vector<float>& flags, const LossScaleUpdateParams& params) {
  const cudaStream_t stream = current_stream();
  Tensor scale = scalar_f32(before.scale, stream);
  Tensor growth_tracker = device_tensor(std::vector<std::int32_t>{before.growth_tracker}, Shape{}, stream);
  std::vector<Tensor> found_infs;
  for (const float flag : flags) found_infs.push_back(scalar_f32(flag, stream));
  update_loss_scale(scale, growth_tracker, found_infs, params, stream);
  return {value_of(scale, stream), growth_tracker.to_vector<std::int32_t>(stream).front()};
}

TEST(UpdateLossScale, BacksOffOnInfAndGrowsAfterTheInterval) {
  const LossScaleUpdateParams defaults;  // x2, x0.5, 2000
  ScaleState state = run_update({65536.0f, 1234}, {0.0f, 1.0f}, defaults);  // any flag counts
  EXPECT_EQ(state.scale, 32768.0f);
  EXPECT_EQ(state.growth_tracker, 0);
  state = run_update({65536.0f, 5}, {0.0f, 0.0f}, defaults);
  EXPECT_EQ(state.scale, 65536.0f);
  EXPECT_EQ(state.growth_tracker, 6);
  state = run_update({65536.0f, 1998}, {0.0f}, defaults);
  EXPECT_EQ(state.growth_tracker, 1999);
  state = run_update({65536.0f, 1999}, {0.0f}, defaults);  // the 2000th success in a row
  EXPECT_EQ(state.scale, 131072.0f);
  EXPECT_EQ(state.growth_tracker, 0);
  // A flag holding NaN is non-zero too.
  state = run_update({8.0f, 3}, {std::numeric_limits<float>::quiet_NaN()}, defaults);
  EXPECT_EQ(state.scale, 4.0f);
}

TEST(UpdateLossScale, RoundsInDoubleOnceAndNeverGrowsToInfinity) {
  // float(scale * 0.3) computed in double, then rounded once.
  const LossScaleUpdateParams params{.growth_factor = 3.0, .backoff_factor = 0.3, .growth_interval = 1};
  EXPECT_EQ(run_update({10.0f, 0}, {1.0f}, params).scale, static_cast<float>(10.0 * 0.3));
  EXPECT_EQ(run_update({10.0f, 0}, {0.0f}, params).scale, 30.0f);
  const float huge = std::numeric_limits<float>::max() / 2.0f;
  const ScaleState capped = run_update({huge, 0}, {0.0f}, params);
  EXPECT_EQ(capped.scale, huge);  // x3 would be infinite: kept
  EXPECT_EQ(capped.growth_tracker, 0);
}

TEST(UpdateLossScale, ChecksParams) {
  EXPECT_NE(testing::invalid_argument_message([] { check_loss_scale_update_params({.growth_factor = 1.0}); })
                .find("growth_factor"),
            std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([] { check_loss_scale_update_params({.backoff_factor = 1.0}); })
                .find("backoff_factor"),
            std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([] { check_loss_scale_update_params({.growth_interval = 0}); })
                .find("growth_interval"),
            std::string::npos);
  EXPECT_NE(testing::invalid_argument_message([] { run_update({1.0f, 0}, {}, {}); }).find("found_inf flags"),
            std::string::npos);
}

TEST(MultiplyByScale, ReadsTheScaleOnTheDevice) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> values = random_uniform(7300, 13);
  const Tensor x = device_tensor(values, Shape{13}, stream);
  Tensor y = testing::poisoned_tensor(Shape{13}, stream);
  multiply_by_scale(x, scalar_f32(1024.0f, stream), y, stream);
  std::vector<float> expected = values;
  for (float& value : expected) value *= 1024.0f;
  EXPECT_EQ(bit_patterns(y.to_vector<float>(stream)), bit_patterns(expected));
}

// ---- SGD skipped on the device ------------------------------------------------------------

TEST(SgdStep, FoundInfFlagSkipsTheWholeStep) {
  const cudaStream_t stream = current_stream();
  const std::vector<float> parameter_values = random_uniform(7400, 4099);
  const std::vector<float> gradient_values = random_uniform(7401, 4099);
  const std::vector<float> buffer_values = random_uniform(7402, 4099);
  for (const float flag : {1.0f, 0.0f}) {
    SCOPED_TRACE("found_inf " + std::to_string(flag));
    std::vector<Tensor> parameters{device_tensor(parameter_values, Shape{4099}, stream)};
    const std::vector<Tensor> gradients{device_tensor(gradient_values, Shape{4099}, stream)};
    std::vector<Tensor> buffers{device_tensor(buffer_values, Shape{4099}, stream)};
    std::vector<Tensor> unflagged_parameters{device_tensor(parameter_values, Shape{4099}, stream)};
    std::vector<Tensor> unflagged_buffers{device_tensor(buffer_values, Shape{4099}, stream)};
    const Tensor found_inf = scalar_f32(flag, stream);
    const SgdParams params{.lr = 0.1, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true};
    SgdParams flagged = params;
    flagged.found_inf = found_inf.data<float>();
    sgd_step({parameters, gradients, buffers}, flagged, MomentumBuffers::initialized, stream);
    sgd_step({unflagged_parameters, gradients, unflagged_buffers}, params, MomentumBuffers::initialized, stream);
    const std::vector<float> expected_parameters =
        flag != 0.0f ? parameter_values : unflagged_parameters[0].to_vector<float>(stream);
    const std::vector<float> expected_buffers =
        flag != 0.0f ? buffer_values : unflagged_buffers[0].to_vector<float>(stream);
    EXPECT_EQ(bit_patterns(parameters[0].to_vector<float>(stream)), bit_patterns(expected_parameters));
    EXPECT_EQ(bit_patterns(buffers[0].to_vector<float>(stream)), bit_patterns(expected_buffers));
  }
}

// ---- step counts --------------------------------------------------------------------------

// More counts than one launch takes (148): each advances by one unless the flag is set.
TEST(AdvanceStepCounts, AdvancesEveryCountUnlessFoundInf) {
  const cudaStream_t stream = current_stream();
  std::vector<Tensor> counts;
  for (int i = 0; i < 150; ++i) counts.push_back(scalar_f32(static_cast<float>(i), stream));
  const Tensor found_inf = scalar_f32(0.0f, stream);
  advance_step_counts(counts, found_inf.data<float>(), stream);
  advance_step_counts(counts, nullptr, stream);  // no flag: always
  for (int i = 0; i < 150; ++i) EXPECT_EQ(value_of(counts[static_cast<std::size_t>(i)], stream), i + 2.0f) << i;
  const Tensor set = scalar_f32(1.0f, stream);
  advance_step_counts(counts, set.data<float>(), stream);
  for (int i = 0; i < 150; ++i) EXPECT_EQ(value_of(counts[static_cast<std::size_t>(i)], stream), i + 2.0f) << i;
  std::vector<Tensor> not_scalar{device_tensor({1.0f, 2.0f}, Shape{2}, stream)};
  EXPECT_THROW(advance_step_counts(not_scalar, nullptr, stream), InvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
