// Pooling on cuDNN (kernels/cudnn/pool2d_cudnn.h). On the host, in both builds: which cuDNN
// window computes each op, and which configurations are refused and why. Where cuDNN runs,
// every op forward and backward against the custom kernels on a grid of shapes: airbench94's
// max pools at batch 1024, ResNet-18's global average pool at batch 128, padding, overlapping
// windows, odd sizes, count_include_pad both ways, a ceil_mode that does not grow the output,
// adaptive pools with fixed windows, and NaN. Skipped where cuDNN is not available (the
// simulator build, a mismatched library) or there is no GPU; the simulator's own checks of the
// engine switch are in tests/layers/engine_pool_activation_test.cpp.
//
// Tolerances. Max pooling picks an element: its forward must equal the custom kernel's
// exactly. Its backward adds the gradients of the windows sharing an element (overlapping
// windows), possibly in another order: |custom - cudnn| <= 1e-6 * (1 + |cudnn|). Inputs are
// random floats, so no window holds its maximum twice: cuDNN does not document which of tied
// elements receives the gradient (the custom kernels: the first, as PyTorch). Average pooling
// sums a window in another order: |custom - cudnn| <= 1e-6 * sqrt(window area) * (1 + |cudnn|),
// forward and backward.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cudnn/pool2d_cudnn.h"
#include "strata/core/determinism.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/pool2d.h"
#include "tests/kernels/device_values.h"
#include "tests/support/cudnn_test.h"

namespace strata::kernels {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::device_tensor;
using testing::not_supported_message;
using testing::poisoned_tensor;
using testing::random_device;
using testing::to_doubles;

// ---- the windows: host arithmetic, both builds ------------------------------------------

TEST(Pool2dCudnnWindowTest, MaxPoolMapsItsWindowAndOutput) {
  const CudnnPoolMapping mapping =
      max_pool2d_cudnn_window({2, 3, 9, 8}, {.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}});
  EXPECT_EQ(mapping.refusal, "");
  EXPECT_EQ(mapping.output, (Shape{2, 3, 5, 4}));
  EXPECT_EQ(mapping.window.input, (Shape{2, 3, 9, 8}));
  EXPECT_EQ(mapping.window.output, mapping.output);
  EXPECT_EQ(mapping.window.kernel, (Size2d{3, 3}));
  EXPECT_EQ(mapping.window.stride, (Size2d{2, 2}));
  EXPECT_EQ(mapping.window.padding, (Size2d{1, 1}));
  EXPECT_EQ(mapping.window.mode, CudnnPoolMode::max);
  EXPECT_EQ(mapping.description,
            "x (2, 3, 9, 8), kernel (3, 3), stride (2, 2), padding (1, 1), dilation (1, 1), ceil_mode off");
  // No stride: the kernel size, as PyTorch's stride=None.
  EXPECT_EQ(max_pool2d_cudnn_window({1, 1, 31, 31}, {.kernel = {2, 2}}).window.stride, (Size2d{2, 2}));
}

TEST(Pool2dCudnnWindowTest, CeilModeIsAcceptedExactlyWhereItDoesNotGrowTheOutput) {
  // 8 = 4 windows of 2 either way.
  EXPECT_EQ(max_pool2d_cudnn_window({1, 2, 8, 8}, {.kernel = {2, 2}, .ceil_mode = true}).refusal, "");
  // 9: ceil_mode adds a fifth, partial window, which cuDNN cannot pool.
  const CudnnPoolMapping grown = max_pool2d_cudnn_window({1, 2, 9, 8}, {.kernel = {2, 2}, .ceil_mode = true});
  EXPECT_EQ(grown.output, (Shape{1, 2, 5, 4}));
  EXPECT_EQ(grown.refusal,
            "ceil_mode gives an output of (1, 2, 5, 4), where cuDNN's rule (rounding down) gives (1, 2, 4, 4); cuDNN "
            "cannot pool the partial last window");
  // The last window must start inside the input or its left padding (PyTorch's rule): here
  // ceil_mode gives nothing more, so cuDNN runs it.
  EXPECT_EQ(avg_pool2d_cudnn_window({1, 1, 5, 5}, {.window = {.kernel = {3, 3}, .stride = Size2d{2, 2},
                                                               .padding = {1, 1}, .ceil_mode = true}})
                .refusal,
            "");
}

TEST(Pool2dCudnnWindowTest, DilationAndDivisorOverrideAreRefused) {
  EXPECT_EQ(max_pool2d_cudnn_window({1, 1, 9, 9}, {.kernel = {2, 2}, .dilation = {2, 1}}).refusal,
            "cuDNN pooling has no dilation (dilation (2, 1))");
  const CudnnPoolMapping overridden = avg_pool2d_cudnn_window({1, 1, 8, 8}, {.window = {.kernel = {2, 2}},
                                                                              .divisor_override = 3});
  EXPECT_THAT(overridden.refusal, StartsWith("cuDNN pooling has no divisor_override"));
  EXPECT_THAT(overridden.description, HasSubstr("divisor_override 3"));
}

TEST(Pool2dCudnnWindowTest, CountIncludePadChoosesCudnnsAveragingMode) {
  const AvgPool2dParams include{.window = {.kernel = {3, 3}, .stride = Size2d{1, 1}, .padding = {1, 1}}};
  AvgPool2dParams exclude = include;
  exclude.count_include_pad = false;
  EXPECT_EQ(avg_pool2d_cudnn_window({2, 3, 7, 7}, include).window.mode,
            CudnnPoolMode::average_count_include_padding);
  EXPECT_EQ(avg_pool2d_cudnn_window({2, 3, 7, 7}, exclude).window.mode,
            CudnnPoolMode::average_count_exclude_padding);
}

TEST(Pool2dCudnnWindowTest, AdaptivePoolsRunWhereEveryBinIsOneFixedWindow) {
  const CudnnPoolMapping global = adaptive_avg_pool2d_cudnn_window({128, 512, 4, 4}, {.output_size = {1, 1}});
  EXPECT_EQ(global.refusal, "");
  EXPECT_EQ(global.window.kernel, (Size2d{4, 4}));
  EXPECT_EQ(global.window.stride, (Size2d{4, 4}));
  EXPECT_EQ(global.window.padding, (Size2d{0, 0}));
  EXPECT_EQ(global.window.output, (Shape{128, 512, 1, 1}));
  const CudnnPoolMapping uneven_axes = adaptive_max_pool2d_cudnn_window({2, 3, 9, 8}, {.output_size = {3, 4}});
  EXPECT_EQ(uneven_axes.refusal, "");
  EXPECT_EQ(uneven_axes.window.kernel, (Size2d{3, 2}));
  EXPECT_EQ(uneven_axes.window.mode, CudnnPoolMode::max);
  // Overlapping bins, and more outputs than inputs (repeated rows).
  EXPECT_EQ(adaptive_avg_pool2d_cudnn_window({1, 1, 7, 7}, {.output_size = {2, 2}}).refusal,
            "the input's spatial size (7, 7) is not a multiple of the output size (2, 2), so the adaptive bins differ "
            "in size or overlap; cuDNN pools with one fixed window");
  EXPECT_NE(adaptive_max_pool2d_cudnn_window({1, 1, 3, 3}, {.output_size = {5, 5}}).refusal, "");
}

TEST(Pool2dCudnnWindowTest, ParametersWrongForAnyEngineAreInvalidArguments) {
  EXPECT_THROW(max_pool2d_cudnn_window({1, 1, 4, 4}, {.kernel = {2, 2}, .padding = {2, 2}}), InvalidArgument);
  EXPECT_THROW(avg_pool2d_cudnn_refusal({1, 4, 4}, {.window = {.kernel = {2, 2}}}), InvalidArgument);
  EXPECT_THROW(adaptive_avg_pool2d_cudnn_refusal({1, 1, 4, 4}, {.output_size = {0, 1}}), InvalidArgument);
}

// ---- where cuDNN is missing: the simulator build -------------------------------------------

using Pool2dCudnnUnavailableTest = testing::WithoutCudnnTest;
TEST_F(Pool2dCudnnUnavailableTest, RefusalsAreTheReasonAndLaunchersThrowNotSupported) {
  const std::string reason(cudnn_unavailable_reason());
  const Pool2dParams params{.kernel = {2, 2}};
  // The reason comes first, even for a configuration cuDNN could not run anyway.
  EXPECT_EQ(max_pool2d_cudnn_refusal({1, 2, 4, 4}, {.kernel = {2, 2}, .dilation = {2, 2}}), reason);
  EXPECT_EQ(avg_pool2d_cudnn_refusal({1, 2, 4, 4}, {.window = params}), reason);
  EXPECT_EQ(adaptive_avg_pool2d_cudnn_refusal({1, 2, 4, 4}, {.output_size = {1, 1}}), reason);
  EXPECT_EQ(adaptive_max_pool2d_cudnn_refusal({1, 2, 4, 4}, {.output_size = {2, 2}}), reason);
  const cudaStream_t stream = current_stream();
  const Tensor x = random_device(1, {1, 2, 4, 4});
  Tensor y = poisoned_tensor({1, 2, 2, 2}, stream);
  Tensor dL_dx = poisoned_tensor({1, 2, 4, 4}, stream);
  EXPECT_THAT(not_supported_message([&] { max_pool2d_cudnn_forward(x, y, params, stream); }),
              StartsWith("max_pool2d_forward on cuDNN (x (1, 2, 4, 4), kernel (2, 2)"));
  EXPECT_THAT(not_supported_message([&] { max_pool2d_cudnn_backward(x, y, y, dL_dx, params, stream); }),
              HasSubstr("simulator build"));
  EXPECT_THAT(not_supported_message([&] { avg_pool2d_cudnn_forward(x, y, {.window = params}, stream); }),
              HasSubstr("simulator build"));
  EXPECT_THAT(not_supported_message(
                  [&] { adaptive_max_pool2d_cudnn_backward(x, y, y, dL_dx, {.output_size = {2, 2}}, stream); }),
              StartsWith("adaptive_max_pool2d_backward on cuDNN (x (1, 2, 4, 4), output_size (2, 2))"));
}

// cuDNN's pooling reads x, y and the gradients through one pair of descriptors, in x's memory
// order: another order is an InvalidArgument naming both, before cuDNN is consulted (so on
// every build, the simulator's included).
using Pool2dCudnnFormatTest = testing::DeviceTest;
TEST_F(Pool2dCudnnFormatTest, TensorsInAnotherMemoryOrderThanXAreInvalidArguments) {
  const cudaStream_t stream = current_stream();
  const Pool2dParams params{.kernel = {2, 2}};
  const Tensor x = random_device(1, {1, 2, 4, 4}).to_memory_format(MemoryFormat::channels_last, stream);
  Tensor y = poisoned_tensor({1, 2, 2, 2}, stream);  // contiguous
  Tensor dL_dx = poisoned_tensor({1, 2, 4, 4}, stream).to_memory_format(MemoryFormat::channels_last, stream);
  const auto message = [](auto&& run) {
    try {
      run();
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("no InvalidArgument");
  };
  EXPECT_THAT(message([&] { max_pool2d_cudnn_forward(x, y, params, stream); }),
              AllOf(HasSubstr("max_pool2d_forward"), HasSubstr("y"), HasSubstr("channels_last")));
  EXPECT_THAT(message([&] { max_pool2d_cudnn_backward(x, y, y, dL_dx, params, stream); }),
              HasSubstr("max_pool2d_backward"));
}

// ---- parity with the custom kernels, where cuDNN runs ------------------------------------

// One op on one input shape: both engines' launchers, and the window area of its tolerance.
struct ParityCase {
  std::string name;
  Shape x;  // (N, C, H, W)
  bool is_max = true;
  std::int64_t window_area = 1;
  std::function<Shape(const Shape&)> output_shape;
  std::function<void(const Tensor& x, Tensor& y, cudaStream_t)> custom_forward;
  // dL_dx from dL_dy; x for the custom max pools' argmax.
  std::function<void(const Tensor& x, const Tensor& dL_dy, Tensor& dL_dx, cudaStream_t)> custom_backward;
  std::function<void(const Tensor& x, Tensor& y, cudaStream_t)> cudnn_forward;
  std::function<void(const Tensor& x, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx, cudaStream_t)>
      cudnn_backward;
};

ParityCase max_case(const std::string& set, const Shape& x, const Pool2dParams& params) {
  return {.name = set + " max_pool2d x " + x.to_string(),
          .x = x,
          .is_max = true,
          .window_area = params.kernel.h * params.kernel.w,
          .output_shape = [params](const Shape& s) { return max_pool2d_output_shape(s, params); },
          .custom_forward = [params](const Tensor& in, Tensor& y,
                                     cudaStream_t s) { Tensor none; max_pool2d_forward(in, y, none, params, s); },
          .custom_backward =
              [params](const Tensor& in, const Tensor& dL_dy, Tensor& dL_dx, cudaStream_t s) {
                const MaxPool2dResult pooled = max_pool2d_forward(in, params, s);
                max_pool2d_backward(dL_dy, pooled.argmax, dL_dx, params, s);
              },
          .cudnn_forward = [params](const Tensor& in, Tensor& y,
                                    cudaStream_t s) { max_pool2d_cudnn_forward(in, y, params, s); },
          .cudnn_backward = [params](const Tensor& in, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                                     cudaStream_t s) { max_pool2d_cudnn_backward(in, y, dL_dy, dL_dx, params, s); }};
}

ParityCase avg_case(const std::string& set, const Shape& x, const AvgPool2dParams& params) {
  return {.name = set + " avg_pool2d x " + x.to_string() + (params.count_include_pad ? "" : ", exclude padding"),
          .x = x,
          .is_max = false,
          .window_area = params.window.kernel.h * params.window.kernel.w,
          .output_shape = [params](const Shape& s) { return avg_pool2d_output_shape(s, params); },
          .custom_forward = [params](const Tensor& in, Tensor& y,
                                     cudaStream_t s) { avg_pool2d_forward(in, y, params, s); },
          .custom_backward = [params](const Tensor&, const Tensor& dL_dy, Tensor& dL_dx,
                                      cudaStream_t s) { avg_pool2d_backward(dL_dy, dL_dx, params, s); },
          .cudnn_forward = [params](const Tensor& in, Tensor& y,
                                    cudaStream_t s) { avg_pool2d_cudnn_forward(in, y, params, s); },
          .cudnn_backward = [params](const Tensor& in, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                                     cudaStream_t s) { avg_pool2d_cudnn_backward(in, y, dL_dy, dL_dx, params, s); }};
}

ParityCase adaptive_case(const std::string& set, const Shape& x, Size2d output_size, bool is_max) {
  const AdaptivePool2dParams params{.output_size = output_size};
  ParityCase c{.name = set + (is_max ? " adaptive_max_pool2d x " : " adaptive_avg_pool2d x ") + x.to_string(),
               .x = x,
               .is_max = is_max,
               .window_area = (x[2] / output_size.h) * (x[3] / output_size.w),
               .output_shape = [params](const Shape& s) { return adaptive_avg_pool2d_output_shape(s, params); },
               .custom_forward = {},
               .custom_backward = {},
               .cudnn_forward = {},
               .cudnn_backward = {}};
  if (is_max) {
    c.custom_forward = [params](const Tensor& in, Tensor& y, cudaStream_t s) {
      Tensor none;
      adaptive_max_pool2d_forward(in, y, none, params, s);
    };
    c.custom_backward = [params](const Tensor& in, const Tensor& dL_dy, Tensor& dL_dx, cudaStream_t s) {
      const MaxPool2dResult pooled = adaptive_max_pool2d_forward(in, params, s);
      adaptive_max_pool2d_backward(dL_dy, pooled.argmax, dL_dx, params, s);
    };
    c.cudnn_forward = [params](const Tensor& in, Tensor& y, cudaStream_t s) {
      adaptive_max_pool2d_cudnn_forward(in, y, params, s);
    };
    c.cudnn_backward = [params](const Tensor& in, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                                cudaStream_t s) { adaptive_max_pool2d_cudnn_backward(in, y, dL_dy, dL_dx, params, s); };
  } else {
    c.custom_forward = [params](const Tensor& in, Tensor& y, cudaStream_t s) {
      adaptive_avg_pool2d_forward(in, y, params, s);
    };
    c.custom_backward = [params](const Tensor&, const Tensor& dL_dy, Tensor& dL_dx, cudaStream_t s) {
      adaptive_avg_pool2d_backward(dL_dy, dL_dx, params, s);
    };
    c.cudnn_forward = [params](const Tensor& in, Tensor& y, cudaStream_t s) {
      adaptive_avg_pool2d_cudnn_forward(in, y, params, s);
    };
    c.cudnn_backward = [params](const Tensor& in, const Tensor& y, const Tensor& dL_dy, Tensor& dL_dx,
                                cudaStream_t s) { adaptive_avg_pool2d_cudnn_backward(in, y, dL_dy, dL_dx, params, s); };
  }
  return c;
}

std::vector<ParityCase> parity_cases() {
  const Pool2dParams two{.kernel = {2, 2}};
  const Pool2dParams three_stride2_pad1{.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}};
  return {
      // airbench94 at batch 1024: a 2x2 max pool after each block's first conv, 3x3 at the end.
      max_case("airbench94", {1024, 64, 31, 31}, two),
      max_case("airbench94", {1024, 256, 15, 15}, two),
      max_case("airbench94", {1024, 256, 7, 7}, two),
      max_case("airbench94", {1024, 256, 3, 3}, {.kernel = {3, 3}}),
      // ResNet-18 on CIFAR at batch 128: its global average pool.
      adaptive_case("resnet18", {128, 512, 4, 4}, {1, 1}, false),
      // Padding, overlapping windows, odd sizes, rectangles.
      max_case("odd", {9, 13, 27, 21}, three_stride2_pad1),
      max_case("odd", {2, 3, 11, 7}, {.kernel = {3, 2}, .stride = Size2d{1, 2}, .padding = {1, 1}}),
      max_case("odd", {3, 5, 8, 8}, {.kernel = {2, 2}, .ceil_mode = true}),
      avg_case("odd", {9, 13, 27, 21}, {.window = three_stride2_pad1}),
      avg_case("odd", {9, 13, 27, 21}, {.window = three_stride2_pad1, .count_include_pad = false}),
      avg_case("odd", {2, 3, 10, 9}, {.window = {.kernel = {4, 3}, .stride = Size2d{3, 2}, .padding = {2, 1}},
                                      .count_include_pad = false}),
      avg_case("odd", {4, 64, 32, 32}, {.window = two}),
      adaptive_case("odd", {3, 7, 9, 8}, {3, 4}, false),
      adaptive_case("odd", {3, 7, 9, 8}, {3, 4}, true),
      adaptive_case("odd", {5, 6, 7, 7}, {1, 1}, true),
  };
}

using Pool2dCudnnParityTest = testing::CudnnTest;

// Every tensor in format (channels-last: cuDNN's NHWC descriptors); both engines read the same
// inputs.
void check_parity(const ParityCase& c, std::uint64_t seed, MemoryFormat format = MemoryFormat::contiguous) {
  SCOPED_TRACE(c.name + ", " + std::string(memory_format_name(format)));
  const cudaStream_t stream = current_stream();
  const Shape y_shape = c.output_shape(c.x);
  const auto in_format = [&](const Tensor& tensor) { return tensor.to_memory_format(format, stream); };
  const Tensor x = in_format(random_device(seed, c.x));             // (N, C, H, W)
  const Tensor dL_dy = in_format(random_device(seed + 1, y_shape));  // (N, C, Ho, Wo)
  Tensor y_custom = in_format(poisoned_tensor(y_shape, stream));
  Tensor y_cudnn = in_format(poisoned_tensor(y_shape, stream));
  c.custom_forward(x, y_custom, stream);
  c.cudnn_forward(x, y_cudnn, stream);
  Tensor dL_dx_custom = in_format(poisoned_tensor(c.x, stream));
  Tensor dL_dx_cudnn = in_format(poisoned_tensor(c.x, stream));
  c.custom_backward(x, dL_dy, dL_dx_custom, stream);
  c.cudnn_backward(x, y_cudnn, dL_dy, dL_dx_cudnn, stream);
  const std::vector<float> forward_cudnn = y_cudnn.to_vector<float>(stream);
  const std::vector<float> backward_cudnn = dL_dx_cudnn.to_vector<float>(stream);
  const double scale = c.is_max ? 1e-6 : 1e-6 * std::sqrt(static_cast<double>(c.window_area));
  if (c.is_max) {
    EXPECT_TRUE(testing::all_equal(y_custom.to_vector<float>(stream), forward_cudnn)) << "forward";
  } else {
    EXPECT_TRUE(testing::all_close(y_custom.to_vector<float>(stream), to_doubles(forward_cudnn),
                                   {.abs_tol = scale, .rel_tol = scale}))
        << "forward";
  }
  EXPECT_TRUE(testing::all_close(dL_dx_custom.to_vector<float>(stream), to_doubles(backward_cudnn),
                                 {.abs_tol = scale, .rel_tol = scale}))
      << "backward";
}

TEST_F(Pool2dCudnnParityTest, EveryOpMatchesTheCustomKernelsForwardAndBackward) {
  std::uint64_t seed = 100;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10);
}

// Channels-last tensors, described to cuDNN as NHWC: the same agreement, outputs in x's format.
TEST_F(Pool2dCudnnParityTest, ChannelsLastMatchesTheCustomKernels) {
  std::uint64_t seed = 700;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10, MemoryFormat::channels_last);
}

TEST_F(Pool2dCudnnParityTest, DeterministicModeMatchesAndRepeatsBitIdentically) {
  const DeterministicGuard deterministic(true);
  std::uint64_t seed = 500;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10);
  const ParityCase c = max_case("odd", {9, 13, 27, 21}, {.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}});
  const cudaStream_t stream = current_stream();
  const Tensor x = random_device(1, c.x);
  const Shape y_shape = c.output_shape(c.x);
  const Tensor dL_dy = random_device(2, y_shape);
  Tensor y = poisoned_tensor(y_shape, stream);
  c.cudnn_forward(x, y, stream);
  const auto gradient = [&] {
    Tensor dL_dx = poisoned_tensor(c.x, stream);
    c.cudnn_backward(x, y, dL_dy, dL_dx, stream);
    return testing::bit_patterns(dL_dx.to_vector<float>(stream));
  };
  EXPECT_EQ(gradient(), gradient());
}

TEST_F(Pool2dCudnnParityTest, MaxPoolPropagatesNaNAsPyTorch) {
  const cudaStream_t stream = current_stream();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // (1, 1, 2, 4): one NaN in the first 2x2 window.
  const Tensor x = device_tensor({1.0f, nan, 3.0f, 4.0f, 5.0f, 0.5f, -1.0f, 2.0f}, Shape{1, 1, 2, 4}, stream);
  Tensor y = poisoned_tensor({1, 1, 1, 2}, stream);
  max_pool2d_cudnn_forward(x, y, {.kernel = {2, 2}}, stream);
  const std::vector<float> values = y.to_vector<float>(stream);
  EXPECT_TRUE(std::isnan(values[0]));
  EXPECT_EQ(values[1], 4.0f);
}

TEST_F(Pool2dCudnnParityTest, EmptyBatchIsANoOp) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::empty({0, 3, 4, 4}, DType::f32, stream);
  Tensor y = Tensor::empty({0, 3, 2, 2}, DType::f32, stream);
  EXPECT_EQ(max_pool2d_cudnn_refusal(x.shape(), {.kernel = {2, 2}}), "");
  EXPECT_NO_THROW(max_pool2d_cudnn_forward(x, y, {.kernel = {2, 2}}, stream));
}

}  // namespace
}  // namespace strata::kernels
