// conv2d on cuDNN (kernels/conv2d_cudnn.h) against the custom kernels: forward, backward
// data, filter and bias on a grid of shapes (odd sizes, stride, padding beyond the kernel,
// dilation, groups, depthwise, 1x1, and layers of the CIFAR networks at a small batch), in
// f32 and in f16 and bf16.
// Skipped where cuDNN is not available (the simulator build, a mismatched library) or there is
// no GPU; the simulator's own checks are in tests/layers/engine_layers_test.cpp.
//
// Tolerance (f32): both engines compute in fp32 (cuDNN's math type is FMA, no TF32), summing in
// different orders, so they differ by rounding: every element must satisfy
// |custom - cudnn| <= 1e-5 * sqrt(reduction length) * max |cudnn|, the length being the
// number of products summed per element (C/groups*R*S forward, K/groups*R*S data, N*P*Q
// filter and bias). A wrong index or a missed term gives differences of order max |cudnn|.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "core/engine_internal.h"
#include "kernels/cudnn/conv2d_cudnn.h"
#include "strata/core/cuda_graph.h"
#include "strata/core/determinism.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"
#include "tests/kernels/device_values.h"
#include "tests/support/cudnn_test.h"

namespace strata::kernels {
namespace {

using testing::agree_to_rounding;
using testing::not_supported_message;
using testing::poisoned_tensor;
using testing::random_device;

struct ParityCase {
  Shape input;   // (N, C, H, W)
  Shape weight;  // (K, C/groups, R, S)
  Conv2dParams params;
};

std::string name_of(const ParityCase& c) {
  return "input " + c.input.to_string() + ", weight " + c.weight.to_string() + ", " + to_string(c.params);
}

const std::vector<ParityCase>& parity_cases() {
  static const std::vector<ParityCase> cases = {
      {{2, 3, 9, 7}, {5, 3, 3, 3}, {.padding = {1, 1}}},
      {{2, 4, 8, 9}, {6, 4, 3, 2}, {.stride = {2, 1}, .padding = {1, 0}}},
      {{1, 3, 7, 7}, {4, 3, 2, 2}, {.padding = {3, 3}}},  // padding beyond the kernel
      {{2, 4, 9, 8}, {4, 4, 3, 3}, {.padding = {2, 2}, .dilation = {2, 2}}},
      {{2, 6, 7, 6}, {4, 2, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}, .groups = 3}},
      {{2, 8, 9, 9}, {8, 1, 3, 3}, {.padding = {1, 1}, .groups = 8}},  // depthwise
      {{2, 8, 5, 5}, {16, 8, 1, 1}, {}},                               // 1x1
      {{4, 64, 16, 16}, {128, 64, 3, 3}, {.padding = {1, 1}}},         // ResNet-18 CIFAR, small batch
      {{4, 64, 16, 16}, {128, 64, 1, 1}, {.stride = {2, 2}}},          // its projection shortcut
      {{8, 24, 32, 32}, {64, 24, 3, 3}, {.padding = {1, 1}}},          // airbench's first block
  };
  return cases;
}

using Conv2dCudnnParityTest = testing::CudnnTest;

// The activations (x, y, dL_dy, dL_dx) in format, the weight and bias contiguous; both
// engines read the same tensors (channels-last: cuDNN's NHWC descriptors).
void check_parity(const ParityCase& c, std::uint64_t seed, MemoryFormat format = MemoryFormat::contiguous) {
  SCOPED_TRACE(name_of(c) + ", " + std::string(memory_format_name(format)));
  const cudaStream_t stream = current_stream();
  const Conv2dShape shape = conv2d_shape(c.input, c.weight, c.params);
  ASSERT_EQ(conv2d_cudnn_refusal(shape, DType::f32, format, stream), "");
  const Tensor x = random_device(seed, shape.input()).to_memory_format(format, stream);  // (N, C, H, W)
  const Tensor weight = random_device(seed + 1, shape.weight());                         // (K, C/groups, R, S)
  const Tensor bias = random_device(seed + 2, shape.bias());                             // (K)
  const Tensor dL_dy = random_device(seed + 3, shape.output()).to_memory_format(format, stream);  // (N, K, P, Q)
  // out_format: format for an activation's gradient, contiguous for the weight's and bias's.
  const auto both = [&](auto&& custom_op, auto&& cudnn_op, const Shape& out_shape,
                        MemoryFormat out_format = MemoryFormat::contiguous) {
    Tensor custom = poisoned_tensor(out_shape, stream).to_memory_format(out_format, stream);
    Tensor cudnn = poisoned_tensor(out_shape, stream).to_memory_format(out_format, stream);
    custom_op(custom);
    cudnn_op(cudnn);
    return std::pair{custom.to_vector<float>(stream), cudnn.to_vector<float>(stream)};
  };
  const std::int64_t rs = shape.kernel_height * shape.kernel_width;
  const std::int64_t npq = shape.batch * shape.out_height * shape.out_width;
  {
    const auto [custom, cudnn] =
        both([&](Tensor& y) { conv2d_forward(x, weight, bias, y, c.params, stream); },
             [&](Tensor& y) { conv2d_cudnn_forward(x, weight, bias, y, c.params, stream); }, shape.output(), format);
    EXPECT_TRUE(agree_to_rounding(custom, cudnn, shape.in_channels_per_group() * rs + 1)) << "forward";
  }
  {
    const auto [custom, cudnn] =
        both([&](Tensor& dL_dx) { conv2d_backward_data(dL_dy, weight, dL_dx, c.params, stream); },
             [&](Tensor& dL_dx) { conv2d_cudnn_backward_data(dL_dy, weight, dL_dx, c.params, stream); }, shape.input(),
             format);
    EXPECT_TRUE(agree_to_rounding(custom, cudnn, shape.out_channels_per_group() * rs)) << "backward data";
  }
  {
    const auto [custom, cudnn] =
        both([&](Tensor& dL_dw) { conv2d_backward_filter(x, dL_dy, dL_dw, c.params, stream); },
             [&](Tensor& dL_dw) { conv2d_cudnn_backward_filter(x, dL_dy, dL_dw, c.params, stream); }, shape.weight());
    EXPECT_TRUE(agree_to_rounding(custom, cudnn, npq)) << "backward filter";
  }
  {
    const auto [custom, cudnn] =
        both([&](Tensor& dL_db) { conv2d_backward_bias(dL_dy, dL_db, stream); },
             [&](Tensor& dL_db) { conv2d_cudnn_backward_bias(dL_dy, dL_db, stream); }, shape.bias());
    EXPECT_TRUE(agree_to_rounding(custom, cudnn, npq)) << "backward bias";
  }
}

TEST_F(Conv2dCudnnParityTest, EveryDirectionMatchesTheCustomKernels) {
  std::uint64_t seed = 100;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10);
}

// Channels-last activations: cuDNN on NHWC descriptors (with the KCRS filter) against the
// custom kernels on the same tensors, every direction, outputs in the inputs' format.
TEST_F(Conv2dCudnnParityTest, ChannelsLastMatchesTheCustomKernels) {
  std::uint64_t seed = 700;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10, MemoryFormat::channels_last);
}

// Mixed formats, each tensor described as it lies: x channels-last, y contiguous, and back.
TEST_F(Conv2dCudnnParityTest, MixedFormatsMatchTheCustomKernels) {
  const cudaStream_t stream = current_stream();
  const ParityCase& c = parity_cases()[0];
  const Conv2dShape shape = conv2d_shape(c.input, c.weight, c.params);
  const Tensor weight = random_device(2, shape.weight());  // (K, C/groups, R, S)
  const Tensor bias = random_device(3, shape.bias());      // (K)
  for (const MemoryFormat x_format : {MemoryFormat::channels_last, MemoryFormat::contiguous}) {
    const MemoryFormat y_format =
        x_format == MemoryFormat::contiguous ? MemoryFormat::channels_last : MemoryFormat::contiguous;
    SCOPED_TRACE(std::string("x ") + std::string(memory_format_name(x_format)));
    const Tensor x = random_device(1, shape.input()).to_memory_format(x_format, stream);  // (N, C, H, W)
    Tensor custom = poisoned_tensor(shape.output(), stream).to_memory_format(y_format, stream);
    Tensor cudnn = poisoned_tensor(shape.output(), stream).to_memory_format(y_format, stream);
    conv2d_forward(x, weight, bias, custom, c.params, stream);
    conv2d_cudnn_forward(x, weight, bias, cudnn, c.params, stream);
    EXPECT_TRUE(agree_to_rounding(custom.to_vector<float>(stream), cudnn.to_vector<float>(stream),
                                  shape.in_channels_per_group() * shape.kernel_height * shape.kernel_width + 1));
  }
}

TEST_F(Conv2dCudnnParityTest, DeterministicModeMatchesAndRepeatsBitIdentically) {
  const DeterministicGuard deterministic(true);
  std::uint64_t seed = 500;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10);

  const ParityCase& c = parity_cases()[7];
  const cudaStream_t stream = current_stream();
  const Tensor x = random_device(1, c.input);
  const Conv2dShape shape = conv2d_shape(c.input, c.weight, c.params);
  const Tensor dL_dy = random_device(2, shape.output());
  const auto filter_gradient = [&] {
    Tensor dL_dw = poisoned_tensor(shape.weight(), stream);
    conv2d_cudnn_backward_filter(x, dL_dy, dL_dw, c.params, stream);
    return testing::bit_patterns(dL_dw.to_vector<float>(stream));
  };
  EXPECT_EQ(filter_gradient(), filter_gradient());
}

// f16 and bf16 tensors: cuDNN (float compute, tensor cores) against the custom kernels in the
// same dtype. Both sum in f32 and round once to the dtype, so beyond the f32 summation bound
// they may differ by one rounding of the dtype (2^-7 of the largest value for bf16, 2^-10 for
// f16), where the two f32 sums fall on either side of a rounding boundary.
TEST_F(Conv2dCudnnParityTest, ReducedDtypesMatchTheCustomKernels) {
  const cudaStream_t stream = current_stream();
  for (const DType dtype : {DType::bf16, DType::f16}) {
    const double ulp = dtype == DType::bf16 ? 0x1p-7 : 0x1p-10;
    std::uint64_t seed = 1300;
    for (const ParityCase& c : parity_cases()) {
      SCOPED_TRACE(name_of(c) + ", " + std::string(dtype_name(dtype)));
      const Conv2dShape shape = conv2d_shape(c.input, c.weight, c.params);
      ASSERT_EQ(conv2d_cudnn_refusal(shape, dtype, MemoryFormat::contiguous, stream), "");
      const Tensor x = random_device(seed += 10, shape.input()).to_dtype(dtype, stream);  // (N, C, H, W)
      const Tensor weight = random_device(seed + 1, shape.weight()).to_dtype(dtype, stream);
      const Tensor bias = random_device(seed + 2, shape.bias()).to_dtype(dtype, stream);
      const Tensor dL_dy = random_device(seed + 3, shape.output()).to_dtype(dtype, stream);
      const auto agree = [&](auto&& custom_op, auto&& cudnn_op, const Shape& out_shape, std::int64_t length) {
        Tensor custom = Tensor::empty(out_shape, dtype, stream);
        Tensor cudnn = Tensor::empty(out_shape, dtype, stream);
        custom_op(custom);
        cudnn_op(cudnn);
        const std::vector<float> expected = cudnn.to_dtype(DType::f32, stream).to_vector<float>(stream);
        double largest = 1e-30;
        for (const float value : expected) largest = std::max(largest, static_cast<double>(std::fabs(value)));
        const double tolerance = (1e-5 * std::sqrt(static_cast<double>(length)) + ulp) * largest;
        return testing::all_close(custom.to_dtype(DType::f32, stream).to_vector<float>(stream),
                                  std::vector<double>(expected.begin(), expected.end()), {.abs_tol = tolerance});
      };
      const std::int64_t rs = shape.kernel_height * shape.kernel_width;
      const std::int64_t npq = shape.batch * shape.out_height * shape.out_width;
      EXPECT_TRUE(agree([&](Tensor& y) { conv2d_forward(x, weight, bias, y, c.params, stream); },
                        [&](Tensor& y) { conv2d_cudnn_forward(x, weight, bias, y, c.params, stream); },
                        shape.output(), shape.in_channels_per_group() * rs + 1))
          << "forward";
      EXPECT_TRUE(agree([&](Tensor& dL_dx) { conv2d_backward_data(dL_dy, weight, dL_dx, c.params, stream); },
                        [&](Tensor& dL_dx) { conv2d_cudnn_backward_data(dL_dy, weight, dL_dx, c.params, stream); },
                        shape.input(), shape.out_channels_per_group() * rs))
          << "backward data";
      EXPECT_TRUE(agree([&](Tensor& dL_dw) { conv2d_backward_filter(x, dL_dy, dL_dw, c.params, stream); },
                        [&](Tensor& dL_dw) { conv2d_cudnn_backward_filter(x, dL_dy, dL_dw, c.params, stream); },
                        shape.weight(), npq))
          << "backward filter";
      EXPECT_TRUE(agree([&](Tensor& dL_db) { conv2d_backward_bias(dL_dy, dL_db, stream); },
                        [&](Tensor& dL_db) { conv2d_cudnn_backward_bias(dL_dy, dL_db, stream); }, shape.bias(), npq))
          << "backward bias";
      // f32 parameter gradients of reduced operands (autocast's) hold cuDNN's result widened:
      // narrowed back exactly, they agree with cuDNN's gradients in the dtype.
      Tensor dL_dw_f32 = Tensor::empty(shape.weight(), DType::f32, stream);
      conv2d_cudnn_backward_filter(x, dL_dy, dL_dw_f32, c.params, stream);
      EXPECT_TRUE(agree([&](Tensor& dL_dw) { dL_dw.copy_from(dL_dw_f32.to_dtype(dtype, stream), stream); },
                        [&](Tensor& dL_dw) { conv2d_cudnn_backward_filter(x, dL_dy, dL_dw, c.params, stream); },
                        shape.weight(), npq))
          << "backward filter into f32";
      Tensor dL_db_f32 = Tensor::empty(shape.bias(), DType::f32, stream);
      conv2d_cudnn_backward_bias(dL_dy, dL_db_f32, stream);
      EXPECT_TRUE(agree([&](Tensor& dL_db) { dL_db.copy_from(dL_db_f32.to_dtype(dtype, stream), stream); },
                        [&](Tensor& dL_db) { conv2d_cudnn_backward_bias(dL_dy, dL_db, stream); }, shape.bias(), npq))
          << "backward bias into f32";
    }
  }
}

// Benchmark mode (strata::cudnn_benchmark()) times the algorithms on scratch outputs and
// keeps the fastest: the results still match the custom kernels.
TEST_F(Conv2dCudnnParityTest, BenchmarkModeMatchesTheCustomKernels) {
  const CudnnBenchmarkGuard benchmark(true);
  std::uint64_t seed = 900;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10);
}

// Under the determinism switch benchmark mode changes nothing: the same algorithms as without
// it, so bit-identical results.
TEST_F(Conv2dCudnnParityTest, BenchmarkModeIsIgnoredWhileDeterministic) {
  const DeterministicGuard deterministic(true);
  const ParityCase& c = parity_cases()[7];
  const cudaStream_t stream = current_stream();
  const Conv2dShape shape = conv2d_shape(c.input, c.weight, c.params);
  const Tensor x = random_device(11, shape.input());
  const Tensor weight = random_device(12, shape.weight());
  const Tensor dL_dy = random_device(13, shape.output());
  const auto results = [&] {
    Tensor y = poisoned_tensor(shape.output(), stream);
    Tensor dL_dx = poisoned_tensor(shape.input(), stream);
    Tensor dL_dw = poisoned_tensor(shape.weight(), stream);
    conv2d_cudnn_forward(x, weight, Tensor(), y, c.params, stream);
    conv2d_cudnn_backward_data(dL_dy, weight, dL_dx, c.params, stream);
    conv2d_cudnn_backward_filter(x, dL_dy, dL_dw, c.params, stream);
    return std::vector{testing::bit_patterns(y.to_vector<float>(stream)),
                       testing::bit_patterns(dL_dx.to_vector<float>(stream)),
                       testing::bit_patterns(dL_dw.to_vector<float>(stream))};
  };
  const auto heuristics = results();
  const CudnnBenchmarkGuard benchmark(true);
  EXPECT_EQ(results(), heuristics);
}

// A direction first run inside CUDA-graph capture cannot be timed (cudnnFind* synchronises):
// the graph keeps the heuristics' algorithm, says so once, and computes the same convolution.
TEST_F(Conv2dCudnnParityTest, BenchmarkModeInsideCaptureKeepsTheHeuristicsAndWarns) {
  const CudnnBenchmarkGuard benchmark(true);
  detail::forget_warnings_for_testing();
  Stream stream;
  // A shape no other test runs, so that no direction of it has been timed yet.
  const Conv2dParams params{.padding = {1, 1}};
  const Conv2dShape shape = conv2d_shape({3, 5, 11, 9}, {7, 5, 3, 3}, params);
  const Tensor x = random_device(21, shape.input());
  const Tensor weight = random_device(22, shape.weight());
  Tensor y = poisoned_tensor(shape.output(), stream);
  Tensor expected = poisoned_tensor(shape.output(), stream);
  conv2d_forward(x, weight, Tensor(), expected, params, stream);
  // The handle and the plan, made outside the capture.
  ASSERT_EQ(conv2d_cudnn_refusal(shape, DType::f32, MemoryFormat::contiguous, stream), "");
  CudaGraph graph;
  ::testing::internal::CaptureStderr();
  graph.capture(stream, [&] { conv2d_cudnn_forward(x, weight, Tensor(), y, params, stream); });
  EXPECT_THAT(::testing::internal::GetCapturedStderr(), ::testing::HasSubstr("first ran inside CUDA-graph capture"));
  graph.replay(stream);
  EXPECT_TRUE(agree_to_rounding(expected.to_vector<float>(stream), y.to_vector<float>(stream), 5 * 9 + 1));
}

// Where cuDNN is missing (the simulator build), every launcher refuses with the reason.
using Conv2dCudnnUnavailableTest = testing::WithoutCudnnTest;
TEST_F(Conv2dCudnnUnavailableTest, LaunchersThrowNotSupportedWithTheReason) {
  const cudaStream_t stream = current_stream();
  const Conv2dShape shape = conv2d_shape({1, 2, 3, 3}, {2, 2, 1, 1}, {});
  for (const MemoryFormat format : {MemoryFormat::contiguous, MemoryFormat::channels_last}) {
    EXPECT_EQ(conv2d_cudnn_refusal(shape, DType::f32, format, stream), std::string(cudnn_unavailable_reason()));
    EXPECT_EQ(conv2d_cudnn_refusal(shape, DType::bf16, format, stream), std::string(cudnn_unavailable_reason()));
  }
  const Tensor x = random_device(1, shape.input());
  const Tensor weight = random_device(2, shape.weight());
  Tensor y = poisoned_tensor(shape.output(), stream);
  Tensor dL_dx = poisoned_tensor(shape.input(), stream);
  Tensor dL_dw = poisoned_tensor(shape.weight(), stream);
  Tensor dL_db = poisoned_tensor(shape.bias(), stream);
  EXPECT_THAT(not_supported_message([&] { conv2d_cudnn_forward(x, weight, Tensor(), y, {}, stream); }),
              ::testing::StartsWith("conv2d_forward on cuDNN (input (1, 2, 3, 3), weight (2, 2, 1, 1)"));
  EXPECT_THAT(not_supported_message([&] { conv2d_cudnn_backward_data(y, weight, dL_dx, {}, stream); }),
              ::testing::HasSubstr("simulator build"));
  EXPECT_THAT(not_supported_message([&] { conv2d_cudnn_backward_filter(x, y, dL_dw, {}, stream); }),
              ::testing::HasSubstr("simulator build"));
  EXPECT_THAT(not_supported_message([&] { conv2d_cudnn_backward_bias(y, dL_db, stream); }),
              ::testing::HasSubstr("simulator build"));
}

}  // namespace
}  // namespace strata::kernels
