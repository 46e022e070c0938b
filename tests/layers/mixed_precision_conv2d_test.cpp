// F::conv2d and nn::Conv2d in f16 and bf16 storage and under autocast (strata/core/autocast.h),
// through autograd. Under autocast, conv2d casts x, weight and bias to the autocast dtype, runs
// and returns that dtype, and f32 parameters (the master weights) get f32 gradients through the
// casts' nodes; outside autocast it runs in its inputs' one dtype and refuses mixed ones. Every
// value is checked against the double reference of the inputs as rounded to the dtype, within
// the f32 summation bound plus the one rounding of the result to the dtype.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "strata/core/autocast.h"
#include "strata/core/errors.h"
#include "strata/core/config.h"  // STRATA_BACKEND_SIM
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/functional_conv_pool.h"
#include "strata/layers/modules.h"
#include "tests/kernels/device_values.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace strata {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using reference::Conv2dProblem;
using testing::all_close;
using testing::random_storage;
using testing::rounded_doubles;
using testing::storage_doubles;

class MixedPrecisionConv2dTest : public testing::DeviceTest, public ::testing::WithParamInterface<DType> {};

INSTANTIATE_TEST_SUITE_P(ReducedDtypes, MixedPrecisionConv2dTest, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

// The f32 bound of these short sums plus one rounding to dtype (half an ulp, relative).
testing::Tolerance tolerance_of(DType dtype) {
  return {.abs_tol = 2e-5, .rel_tol = 2e-5 + testing::storage_rel_tol(dtype)};
}

// N 2, C 3, 7x6 images, K 5, 3x3 kernels, stride 2, padding 1.
const Conv2dProblem kProblem{.batch = 2, .in_channels = 3, .in_height = 7, .in_width = 6, .out_channels = 5,
                             .kernel_height = 3, .kernel_width = 3, .params = {.stride = {2, 2}, .padding = {1, 1}}};
const Shape kInput{2, 3, 7, 6};
const Shape kWeight{5, 3, 3, 3};
const Shape kOutput{2, 5, 4, 3};

TEST_P(MixedPrecisionConv2dTest, UnderAutocastRunsInItsDtypeWithF32ParameterGradients) {
  const DType dtype = GetParam();
  Tensor x = random_storage(1, kInput, DType::f32, true);
  Tensor weight = random_storage(2, kWeight, DType::f32, true);
  Tensor bias = random_storage(3, {5}, DType::f32, true);
  Tensor y;
  {
    AutocastGuard autocast(dtype);
    y = F::conv2d(x, weight, bias, kProblem.params);
  }
  EXPECT_EQ(y.dtype(), dtype);
  ASSERT_EQ(y.shape(), kOutput);
  // The op reads x, weight and bias as cast to dtype.
  const std::vector<double> x_read = rounded_doubles(x, dtype, current_stream());
  const std::vector<double> weight_read = rounded_doubles(weight, dtype, current_stream());
  EXPECT_TRUE(all_close(
      y.to_dtype(DType::f32, current_stream()).to_vector<float>(),
      reference::conv2d_forward(kProblem, x_read, weight_read, rounded_doubles(bias, dtype, current_stream())),
      tolerance_of(dtype)));

  const Tensor dL_dy = random_storage(4, kOutput, dtype);
  y.backward(dL_dy);
  // Gradients computed in dtype (rounded once), then cast back exactly to the f32 leaves.
  ASSERT_TRUE(x.grad().defined() && weight.grad().defined() && bias.grad().defined());
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  EXPECT_EQ(weight.grad().dtype(), DType::f32);
  EXPECT_EQ(bias.grad().dtype(), DType::f32);
  const std::vector<double> dy = storage_doubles(dL_dy, current_stream());
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), reference::conv2d_backward_data(kProblem, dy, weight_read),
                        tolerance_of(dtype)))
      << "dL/dx";
  EXPECT_TRUE(all_close(weight.grad().to_vector<float>(), reference::conv2d_backward_filter(kProblem, x_read, dy),
                        tolerance_of(dtype)))
      << "dL/dweight";
  EXPECT_TRUE(all_close(bias.grad().to_vector<float>(), reference::conv2d_backward_bias(kProblem, dy),
                        tolerance_of(dtype)))
      << "dL/dbias";
}

TEST_P(MixedPrecisionConv2dTest, ModuleKeepsF32MasterWeightsUnderAutocastOnTheTensorCores) {
  // math tf32 with 8 output channels: the forward and the filter gradient take the tensor
  // cores (fragments of the storage type), the data gradient (3 input channels) the CUDA cores.
  const DType dtype = GetParam();
  nn::Conv2d conv(3, 8, {3, 3}, {.padding = 1, .math = kernels::ConvMath::tf32});
  EXPECT_EQ(conv.weight().dtype(), DType::f32);
  EXPECT_EQ(conv.bias().dtype(), DType::f32);
  Tensor x = random_storage(5, {2, 3, 5, 6}, DType::f32, true);
  Tensor y;
  {
    AutocastGuard autocast(dtype);
    y = conv(x);
  }
  EXPECT_EQ(y.dtype(), dtype);
  const Conv2dProblem problem{.batch = 2, .in_channels = 3, .in_height = 5, .in_width = 6, .out_channels = 8,
                              .kernel_height = 3, .kernel_width = 3, .params = {.padding = {1, 1}}};
  const std::vector<double> x_read = rounded_doubles(x, dtype, current_stream());
  const std::vector<double> weight_read = rounded_doubles(conv.weight(), dtype, current_stream());
  EXPECT_TRUE(all_close(
      y.to_dtype(DType::f32, current_stream()).to_vector<float>(),
      reference::conv2d_forward(problem, x_read, weight_read, rounded_doubles(conv.bias(), dtype, current_stream())),
      tolerance_of(dtype)));
  const Tensor dL_dy = random_storage(6, y.shape(), dtype);
  y.backward(dL_dy);
  EXPECT_EQ(conv.weight().dtype(), DType::f32);  // the master weights are not replaced
  EXPECT_EQ(conv.weight().grad().dtype(), DType::f32);
  EXPECT_EQ(conv.bias().grad().dtype(), DType::f32);
  EXPECT_EQ(x.grad().dtype(), DType::f32);
  const std::vector<double> dy = storage_doubles(dL_dy, current_stream());
  EXPECT_TRUE(all_close(conv.weight().grad().to_vector<float>(), reference::conv2d_backward_filter(problem, x_read, dy),
                        tolerance_of(dtype)))
      << "dL/dweight";
  EXPECT_TRUE(all_close(conv.bias().grad().to_vector<float>(), reference::conv2d_backward_bias(problem, dy),
                        tolerance_of(dtype)))
      << "dL/dbias";
  EXPECT_TRUE(all_close(x.grad().to_vector<float>(), reference::conv2d_backward_data(problem, dy, weight_read),
                        tolerance_of(dtype)))
      << "dL/dx";
}

TEST_P(MixedPrecisionConv2dTest, OutsideAutocastRunsInItsInputsDtypeAndRefusesMixedOnes) {
  // Leaves are f32 (autograd's leaves are); the op sees x, weight and bias in dtype through
  // explicit casts, runs in dtype and hands gradients of dtype back to the casts.
  const DType dtype = GetParam();
  Tensor x_leaf = random_storage(7, kInput, DType::f32, true);
  Tensor weight_leaf = random_storage(8, kWeight, DType::f32, true);
  Tensor bias_leaf = random_storage(9, {5}, DType::f32, true);
  const Tensor x = F::to_dtype(x_leaf, dtype);
  const Tensor weight = F::to_dtype(weight_leaf, dtype);
  Tensor y = F::conv2d(x, weight, F::to_dtype(bias_leaf, dtype), kProblem.params);
  EXPECT_EQ(y.dtype(), dtype);
  const Tensor dL_dy = random_storage(10, kOutput, dtype);
  y.backward(dL_dy);
  const std::vector<double> dy = storage_doubles(dL_dy, current_stream());
  EXPECT_TRUE(all_close(x_leaf.grad().to_vector<float>(),
                        reference::conv2d_backward_data(kProblem, dy, storage_doubles(weight, current_stream())),
                        tolerance_of(dtype)))
      << "dL/dx";
  EXPECT_TRUE(all_close(weight_leaf.grad().to_vector<float>(),
                        reference::conv2d_backward_filter(kProblem, storage_doubles(x, current_stream()), dy),
                        tolerance_of(dtype)))
      << "dL/dweight";
  EXPECT_TRUE(all_close(bias_leaf.grad().to_vector<float>(), reference::conv2d_backward_bias(kProblem, dy),
                        tolerance_of(dtype)))
      << "dL/dbias";

  const Tensor f32_weight = random_storage(11, kWeight, DType::f32);
  EXPECT_THAT([&] { F::conv2d(x.detach(), f32_weight, Tensor(), kProblem.params); },
              ThrowsMessage<InvalidArgument>(HasSubstr(fmt::format(
                  "conv2d: weight has dtype f32 but x has dtype {}; the operands must share one dtype (cast one "
                  "with F::to_dtype, or run the model under strata::AutocastGuard)",
                  dtype_name(dtype)))));
  const Tensor f32_bias = random_storage(12, {5}, DType::f32);
  EXPECT_THAT([&] { F::conv2d(x.detach(), weight.detach(), f32_bias, kProblem.params); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr(fmt::format("conv2d: bias has dtype f32 but x has dtype {}", dtype_name(dtype)))));
  // Under autocast the f32 weight is cast like the rest.
  AutocastGuard autocast(dtype);
  EXPECT_EQ(F::conv2d(x.detach(), f32_weight, Tensor(), kProblem.params).dtype(), dtype);
}

// Under autocast a conv returns its f32 parameters' gradients itself, rounded to the dtype and
// widened: the bits of the same op on explicitly cast parameters, whose casts' nodes widen
// them; for F::conv2d, F::fused_conv2d and F::conv2d_max_pool2d, on the CUDA cores and the
// tensor cores, contiguous and channels-last. In the simulator: the backward casts nothing.
TEST_P(MixedPrecisionConv2dTest, ParameterGradientsAreThoseOfExplicitCastsWithoutACastBack) {
  const DType dtype = GetParam();
  const Shape input{2, 16, 6, 8};
  const Shape weight_shape{24, 16, 3, 3};
  const Shape bias_shape{24};
  enum class Op { conv2d, fused_conv2d, conv2d_max_pool2d };
  const auto run = [](Op op, const Tensor& x, const Tensor& weight, const Tensor& bias, const kernels::Conv2dParams& params) {
    switch (op) {
      case Op::conv2d: return F::conv2d(x, weight, bias, params);
      case Op::fused_conv2d: return F::fused_conv2d(x, weight, bias, params, {.activation = F::FusedActivation::relu});
      case Op::conv2d_max_pool2d: return F::conv2d_max_pool2d(x, weight, bias, params, F::Pool2dParams{.kernel = {2, 2}});
    }
    return Tensor();
  };
  for (const Op op : {Op::conv2d, Op::fused_conv2d, Op::conv2d_max_pool2d}) {
    for (const kernels::ConvMath math : {kernels::ConvMath::fp32, kernels::ConvMath::bf16}) {
      if (op == Op::conv2d_max_pool2d && math == kernels::ConvMath::fp32) continue;  // fuses on the tensor cores
      for (const MemoryFormat format : {MemoryFormat::contiguous, MemoryFormat::channels_last}) {
        SCOPED_TRACE(fmt::format("op {}, math {}, {}", static_cast<int>(op), kernels::to_string(math),
                                 memory_format_name(format)));
        const kernels::Conv2dParams params{.padding = {1, 1}, .math = math};
        const Tensor x = random_storage(21, input, DType::f32).to_memory_format(format, current_stream());
        const Tensor weight = random_storage(22, weight_shape, DType::f32, true);
        const Tensor bias = random_storage(23, bias_shape, DType::f32, true);
        Tensor y = run(op, F::to_dtype(x, dtype), F::to_dtype(weight, dtype), F::to_dtype(bias, dtype), params);
        const Tensor dL_dy = random_storage(24, y.shape(), dtype);
        y.backward(dL_dy);

        const Tensor master_weight = random_storage(22, weight_shape, DType::f32, true);
        const Tensor master_bias = random_storage(23, bias_shape, DType::f32, true);
        {
          AutocastGuard autocast(dtype);
          y = run(op, x, master_weight, master_bias, params);
        }
        std::vector<std::string> casts;
#if STRATA_BACKEND_SIM
        sim::set_launch_observer([&](const sim::KernelLaunch& launch) {
          if (std::string_view(launch.name).starts_with("convert_dtype")) casts.emplace_back(launch.name);
        });
#endif
        y.backward(dL_dy);
#if STRATA_BACKEND_SIM
        sim::set_launch_observer({});
#endif
        EXPECT_EQ(casts, std::vector<std::string>{});
        EXPECT_EQ(testing::bit_patterns(master_weight.grad().to_vector<float>()),
                  testing::bit_patterns(weight.grad().to_vector<float>()));
        EXPECT_EQ(testing::bit_patterns(master_bias.grad().to_vector<float>()),
                  testing::bit_patterns(bias.grad().to_vector<float>()));
      }
    }
  }
}

}  // namespace
}  // namespace strata
