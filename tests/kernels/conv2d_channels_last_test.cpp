// conv2d on channels-last activations: every pass (forward with and without the epilogue, its
// pre-activation and statistics; backward data, filter and bias; the element-wise epilogue
// kernels; the fused conv2d + max_pool2d with its argmax) on every path (fp32 CUDA-core, tf32
// and bf16 tensor-core math; f32, f16 and bf16 storage) gives, on channels-last tensors, the
// bits it gives on contiguous ones: the kernels address each activation through its own
// strides and sum in the same order; where the channels fill 16-byte vectors, the tensor-core
// passes copy their slices asynchronously instead (conv2d_tensor_core_async.cuh), and still
// give the register path's bits. Mixed formats (x and y, dL_dy and dL_dx) too; the
// returning overloads allocate in the documented format; a channels-last weight gives the same
// bits on every path (read as it is by the asynchronous copies, copied back for the others); a
// channels-last filter gradient and the mixes that one index cannot serve are refused. Then
// F::conv2d, F::fused_conv2d and F::conv2d_max_pool2d on a channels-last leaf (x or the weight): the same values and
// gradients as on a contiguous one, gradients in the leaf's format.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "strata/core/autograd.h"
#include "strata/core/engine.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/channel_stats.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/conv2d_max_pool2d.h"
#include "strata/layers/functional.h"
#include "strata/layers/functional_conv_pool.h"
#include "kernels/conv2d_tensor_core.h"
#include "tests/kernels/device_values.h"
#include "tests/kernels/layout_bits.h"
#include "tests/kernels/named_conv_case.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using testing::invalid_argument_message;
using testing::NamedConvCase;
using testing::poisoned_in;
using testing::random_in;
using testing::random_uniform;
using testing::same_bits;
using ::testing::HasSubstr;

constexpr MemoryFormat kContiguous = MemoryFormat::contiguous;
constexpr MemoryFormat kChannelsLast = MemoryFormat::channels_last;

// ---- Helpers ---------------------------------------------------------------------------------

std::string format_pair(MemoryFormat a, MemoryFormat b) {
  return fmt::format("{} / {}", memory_format_name(a), memory_format_name(b));
}

// The storage dtypes with the maths each runs: fp32 (CUDA cores), tf32 and bf16 (tensor
// cores; with f16/bf16 storage both run the same kernel, so tf32 is enough).
struct PathCase {
  DType dtype;
  ConvMath math;
};
constexpr PathCase kPaths[] = {{DType::f32, ConvMath::fp32},  {DType::f32, ConvMath::tf32},
                               {DType::f32, ConvMath::bf16},  {DType::f16, ConvMath::fp32},
                               {DType::f16, ConvMath::tf32},  {DType::bf16, ConvMath::fp32},
                               {DType::bf16, ConvMath::tf32}};

std::string path_name(const PathCase& path) {
  return fmt::format("{} storage, {} math", dtype_name(path.dtype), to_string(path.math));
}

// Format pairs against which (contiguous, contiguous) is the reference.
constexpr MemoryFormat kFormatPairs[][2] = {
    {kChannelsLast, kChannelsLast}, {kChannelsLast, kContiguous}, {kContiguous, kChannelsLast}};

// ---- The kernels, pass by pass ---------------------------------------------------------------

const NamedConvCase kCases[] = {
    // Edge tiles in M and N on every tile; K/groups 9 and C/groups 5: tensor cores for forward
    // and filter, fp32 for the data gradient.
    {"OddSizes", {2, 5, 7, 6}, {9, 5, 3, 3}, {.padding = {1, 1}}},
    // Stride, padding beyond the kernel's reach, dilation and two groups (8 channels each).
    {"StrideDilationGroups", {2, 6, 9, 8}, {16, 3, 3, 3}, {.stride = {2, 2}, .padding = {2, 2}, .dilation = {2, 2},
                                                         .groups = 2}},
    // Depthwise: the few-columns tile, fp32 always.
    {"Depthwise", {2, 6, 7, 7}, {6, 1, 3, 3}, {.padding = {1, 1}, .groups = 6}},
    // The large fp32 tile (M 128, N 64), 8 input channels (tensor cores in every pass), and a
    // filter reduction split into chunks.
    {"WideSplitReduction", {2, 8, 8, 8}, {64, 8, 1, 1}, {}},
    // An asymmetric kernel with stride and padding in one direction only.
    {"Asymmetric", {1, 3, 5, 11}, {8, 3, 2, 5}, {.stride = {1, 2}, .padding = {0, 2}}},
    // Channels in whole 16-byte vectors: the channels-last forward copies its slices
    // asynchronously (conv2d_tensor_core_async.cuh), nine slices through the three stages, edge
    // tiles in M (189 pixels) and N (24 channels).
    {"VectorChannels", {3, 16, 9, 7}, {24, 16, 3, 3}, {.padding = {1, 1}}},
    // The same with stride, dilation, padding beyond the reach and two groups of 8 channels.
    {"VectorChannelsStrideDilationGroups", {2, 16, 11, 10}, {32, 8, 3, 3},
     {.stride = {2, 2}, .padding = {2, 2}, .dilation = {2, 2}, .groups = 2}},
};

class Conv2dChannelsLast : public testing::DeviceTest, public ::testing::WithParamInterface<NamedConvCase> {};

TEST_P(Conv2dChannelsLast, EveryPassGivesTheContiguousBits) {
  const cudaStream_t stream = current_stream();
  const NamedConvCase& layout_case = GetParam();
  const Conv2dShape shape = conv2d_shape(layout_case.input, layout_case.weight, layout_case.params);
  for (const PathCase& path : kPaths) {
    SCOPED_TRACE(path_name(path));
    Conv2dParams params = layout_case.params;
    params.math = path.math;
    const DType dtype = path.dtype;
    const Tensor weight = random_in(11, shape.weight(), dtype, kContiguous, stream);
    const Tensor bias = random_in(12, shape.bias(), dtype, kContiguous, stream);
    const Tensor x = random_in(13, shape.input(), dtype, kContiguous, stream);
    const Tensor dL_dy = random_in(14, shape.output(), dtype, kContiguous, stream);

    // Forward: every format pair of (x, y) against the contiguous run, into poisoned outputs.
    Tensor y = poisoned_in(shape.output(), dtype, kContiguous, stream);
    conv2d_forward(x, weight, bias, y, params, stream);
    for (const auto& formats : kFormatPairs) {
      SCOPED_TRACE("forward x / y " + format_pair(formats[0], formats[1]));
      Tensor y_other = poisoned_in(shape.output(), dtype, formats[1], stream);
      conv2d_forward(x.to_memory_format(formats[0], stream), weight, bias, y_other, params, stream);
      EXPECT_TRUE(same_bits(y_other, y, stream));
    }
    // A channels-last weight: read as it is where the slices are copied asynchronously (its
    // layout is theirs), copied back to (K, C/groups, R, S) for the other paths.
    const Tensor weight_channels_last = weight.to_memory_format(kChannelsLast, stream);
    for (const MemoryFormat x_format : {kContiguous, kChannelsLast}) {
      SCOPED_TRACE(fmt::format("forward, channels-last weight, x and y {}", memory_format_name(x_format)));
      Tensor y_other = poisoned_in(shape.output(), dtype, x_format, stream);
      conv2d_forward(x.to_memory_format(x_format, stream), weight_channels_last, bias, y_other, params, stream);
      EXPECT_TRUE(same_bits(y_other, y, stream));
    }
    const Tensor y_returned = conv2d_forward(x.to_memory_format(kChannelsLast, stream), weight, bias, params, stream);
    EXPECT_EQ(y_returned.memory_format(), kChannelsLast) << "y in x's format";
    EXPECT_TRUE(same_bits(y_returned, y, stream));

    // The epilogue (scale, shift, GELU) with its pre-activation and the statistics of y.
    const Conv2dEpilogue epilogue{.scale = random_in(15, shape.bias(), DType::f32, kContiguous, stream),
                                  .shift = random_in(16, shape.bias(), DType::f32, kContiguous, stream),
                                  .activation = FusedActivation::gelu};
    const auto fused = [&](MemoryFormat x_format, MemoryFormat y_format) {
      Tensor fused_y = poisoned_in(shape.output(), dtype, y_format, stream);
      Tensor preactivation = poisoned_in(shape.output(), dtype, y_format, stream);
      ChannelStatistics statistics;
      conv2d_forward(x.to_memory_format(x_format, stream), weight, bias, fused_y, params, epilogue, stream,
                     &statistics, &preactivation);
      return std::vector<Tensor>{fused_y, preactivation, statistics.partials};
    };
    const std::vector<Tensor> fused_reference = fused(kContiguous, kContiguous);
    for (const auto& formats : kFormatPairs) {
      SCOPED_TRACE("epilogue x / y " + format_pair(formats[0], formats[1]));
      const std::vector<Tensor> fused_other = fused(formats[0], formats[1]);
      EXPECT_TRUE(same_bits(fused_other[0], fused_reference[0], stream)) << "y";
      EXPECT_TRUE(same_bits(fused_other[1], fused_reference[1], stream)) << "pre-activation";
      EXPECT_TRUE(same_bits(fused_other[2], fused_reference[2], stream)) << "statistics";
    }

    // Backward data: every format pair of (dL_dy, dL_dx).
    Tensor dL_dx = poisoned_in(shape.input(), dtype, kContiguous, stream);
    conv2d_backward_data(dL_dy, weight, dL_dx, params, stream);
    for (const auto& formats : kFormatPairs) {
      SCOPED_TRACE("backward data dL_dy / dL_dx " + format_pair(formats[0], formats[1]));
      Tensor dL_dx_other = poisoned_in(shape.input(), dtype, formats[1], stream);
      conv2d_backward_data(dL_dy.to_memory_format(formats[0], stream), weight, dL_dx_other, params, stream);
      EXPECT_TRUE(same_bits(dL_dx_other, dL_dx, stream));
    }
    for (const MemoryFormat dL_dy_format : {kContiguous, kChannelsLast}) {
      SCOPED_TRACE(fmt::format("backward data, channels-last weight, dL_dy and dL_dx {}",
                               memory_format_name(dL_dy_format)));
      Tensor dL_dx_other = poisoned_in(shape.input(), dtype, dL_dy_format, stream);
      conv2d_backward_data(dL_dy.to_memory_format(dL_dy_format, stream), weight_channels_last, dL_dx_other, params,
                           stream);
      EXPECT_TRUE(same_bits(dL_dx_other, dL_dx, stream));
    }
    const Tensor dL_dx_returned =
        conv2d_backward_data(dL_dy.to_memory_format(kChannelsLast, stream), weight, shape.input(), params, stream);
    EXPECT_EQ(dL_dx_returned.memory_format(), kChannelsLast) << "dL_dx in dL_dy's format";
    EXPECT_TRUE(same_bits(dL_dx_returned, dL_dx, stream));

    // Backward filter: every format pair of (x, dL_dy); the weight gradient stays contiguous.
    Tensor dL_dweight = poisoned_in(shape.weight(), dtype, kContiguous, stream);
    conv2d_backward_filter(x, dL_dy, dL_dweight, params, stream);
    for (const auto& formats : kFormatPairs) {
      SCOPED_TRACE("backward filter x / dL_dy " + format_pair(formats[0], formats[1]));
      Tensor dL_dweight_other = poisoned_in(shape.weight(), dtype, kContiguous, stream);
      conv2d_backward_filter(x.to_memory_format(formats[0], stream), dL_dy.to_memory_format(formats[1], stream),
                             dL_dweight_other, params, stream);
      EXPECT_TRUE(same_bits(dL_dweight_other, dL_dweight, stream));
    }

    // Backward bias.
    Tensor dL_dbias = poisoned_in(shape.bias(), dtype, kContiguous, stream);
    conv2d_backward_bias(dL_dy, dL_dbias, stream);
    Tensor dL_dbias_other = poisoned_in(shape.bias(), dtype, kContiguous, stream);
    conv2d_backward_bias(dL_dy.to_memory_format(kChannelsLast, stream), dL_dbias_other, stream);
    EXPECT_TRUE(same_bits(dL_dbias_other, dL_dbias, stream)) << "bias gradient";
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, Conv2dChannelsLast, ::testing::ValuesIn(kCases),
                         testing::conv_case_name);

using Conv2dChannelsLastKernels = testing::DeviceTest;

// The cases above that should copy their slices asynchronously do (so that the bit-for-bit
// comparisons cover those paths), and the shapes the copies cannot serve do not.
TEST_F(Conv2dChannelsLastKernels, VectorChannelsTakeTheAsynchronousCopies) {
  const Conv2dFormats channels_last{.input = kChannelsLast, .output = kChannelsLast};
  const Conv2dFormats x_only{.input = kChannelsLast};
  const Conv2dFormats y_only{.output = kChannelsLast};
  const auto shape_with = [](std::int64_t channels, std::int64_t out_channels, std::int64_t groups, ConvMath math) {
    return conv2d_shape({2, channels, 9, 7}, {out_channels, channels / groups, 3, 3},
                        {.padding = {1, 1}, .groups = groups, .math = math});
  };
  alignas(16) static const __nv_bfloat16 bf16[16] = {};
  alignas(16) static const __half f16[16] = {};
  alignas(16) static const float f32[8] = {};
  const Conv2dShape bf16_shape = shape_with(16, 24, 1, ConvMath::tf32);
  EXPECT_TRUE(conv2d_forward_copies_asynchronously(bf16_shape, x_only, bf16));
  EXPECT_TRUE(conv2d_backward_data_copies_asynchronously(bf16_shape, y_only, bf16));
  EXPECT_TRUE(conv2d_backward_filter_copies_asynchronously(bf16_shape, channels_last, bf16, bf16));
  const Conv2dShape f16_groups = shape_with(16, 32, 2, ConvMath::bf16);
  EXPECT_TRUE(conv2d_forward_copies_asynchronously(f16_groups, channels_last, f16));
  EXPECT_TRUE(conv2d_backward_data_copies_asynchronously(f16_groups, channels_last, f16));
  EXPECT_TRUE(conv2d_backward_filter_copies_asynchronously(f16_groups, channels_last, f16, f16));
  const Conv2dShape f32_shape = shape_with(4, 12, 1, ConvMath::tf32);
  EXPECT_TRUE(conv2d_forward_copies_asynchronously(f32_shape, channels_last, f32));
  EXPECT_TRUE(conv2d_backward_data_copies_asynchronously(f32_shape, channels_last, f32));
  EXPECT_TRUE(conv2d_backward_filter_copies_asynchronously(f32_shape, channels_last, f32, f32));

  // The register path: the operand read in vectors is contiguous, its channels per group are
  // not a whole vector, bf16 math rounds f32 storage, or a pointer is off the 16-byte grid.
  EXPECT_FALSE(conv2d_forward_copies_asynchronously(bf16_shape, y_only, bf16));
  EXPECT_FALSE(conv2d_backward_data_copies_asynchronously(bf16_shape, x_only, bf16));
  EXPECT_FALSE(conv2d_backward_filter_copies_asynchronously(bf16_shape, x_only, bf16, bf16));
  EXPECT_FALSE(conv2d_backward_filter_copies_asynchronously(bf16_shape, y_only, bf16, bf16));
  const Conv2dShape odd_in = shape_with(12, 24, 1, ConvMath::tf32);
  EXPECT_FALSE(conv2d_forward_copies_asynchronously(odd_in, channels_last, bf16));
  EXPECT_FALSE(conv2d_backward_data_copies_asynchronously(odd_in, channels_last, bf16));
  EXPECT_FALSE(conv2d_backward_filter_copies_asynchronously(odd_in, channels_last, bf16, bf16));
  const Conv2dShape odd_out = shape_with(16, 20, 1, ConvMath::tf32);
  EXPECT_TRUE(conv2d_forward_copies_asynchronously(odd_out, channels_last, bf16)) << "K is not read in vectors";
  EXPECT_FALSE(conv2d_backward_data_copies_asynchronously(odd_out, channels_last, bf16));
  EXPECT_FALSE(conv2d_backward_filter_copies_asynchronously(odd_out, channels_last, bf16, bf16));
  EXPECT_FALSE(conv2d_forward_copies_asynchronously(shape_with(16, 24, 4, ConvMath::tf32), channels_last, bf16));
  EXPECT_FALSE(conv2d_forward_copies_asynchronously(shape_with(16, 24, 1, ConvMath::bf16), channels_last, f32));
  EXPECT_FALSE(conv2d_backward_filter_copies_asynchronously(shape_with(16, 24, 1, ConvMath::bf16), channels_last, f32,
                                                            f32));
  EXPECT_FALSE(conv2d_forward_copies_asynchronously(bf16_shape, channels_last, bf16 + 1));
  EXPECT_FALSE(conv2d_backward_data_copies_asynchronously(bf16_shape, channels_last, bf16 + 1));
  EXPECT_FALSE(conv2d_backward_filter_copies_asynchronously(bf16_shape, channels_last, bf16, bf16 + 1));
}

// The bias gradient over more values per channel than the reduction's 256 chains, and more
// channels than its channels-last tile of 32 (channel_reduction.cuh), in every dtype.
TEST_F(Conv2dChannelsLastKernels, BiasGradientOfManyValuesGivesTheContiguousBits) {
  const cudaStream_t stream = current_stream();
  for (const DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Tensor dL_dy = random_in(71, {3, 40, 11, 9}, dtype, kContiguous, stream);
    Tensor expected = poisoned_in({40}, dtype, kContiguous, stream);
    conv2d_backward_bias(dL_dy, expected, stream);
    Tensor actual = poisoned_in({40}, dtype, kContiguous, stream);
    conv2d_backward_bias(dL_dy.to_memory_format(kChannelsLast, stream), actual, stream);
    EXPECT_TRUE(same_bits(actual, expected, stream));
  }
}

TEST_F(Conv2dChannelsLastKernels, ElementWiseEpilogueGivesTheContiguousBits) {
  // conv2d_epilogue_forward (in place and not) and conv2d_epilogue_backward, the channel of
  // each element read from its layout.
  const cudaStream_t stream = current_stream();
  const Shape shape{2, 5, 3, 4};
  for (const DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Conv2dEpilogue epilogue{.scale = random_in(21, Shape{5}, DType::f32, kContiguous, stream),
                                  .shift = random_in(22, Shape{5}, DType::f32, kContiguous, stream),
                                  .activation = FusedActivation::gelu_tanh};
    const auto run = [&](MemoryFormat format) {
      const Tensor z = random_in(23, shape, dtype, format, stream);
      Tensor y = poisoned_in(shape, dtype, format, stream);
      Tensor preactivation = poisoned_in(shape, dtype, format, stream);
      conv2d_epilogue_forward(z, epilogue, y, stream, &preactivation);
      Tensor in_place = random_in(23, shape, dtype, format, stream);  // z's values
      conv2d_epilogue_forward(in_place, epilogue, in_place, stream);
      Tensor dL_dz = poisoned_in(shape, dtype, format, stream);
      conv2d_epilogue_backward(random_in(24, shape, dtype, format, stream), preactivation, epilogue, dL_dz, stream);
      return std::vector<Tensor>{y, preactivation, in_place, dL_dz};
    };
    const std::vector<Tensor> contiguous = run(kContiguous);
    const std::vector<Tensor> channels_last = run(kChannelsLast);
    for (std::size_t i = 0; i < contiguous.size(); ++i) {
      EXPECT_EQ(channels_last[i].memory_format(), kChannelsLast) << "result " << i;
      EXPECT_TRUE(same_bits(channels_last[i], contiguous[i], stream)) << "result " << i;
    }
  }
}

TEST_F(Conv2dChannelsLastKernels, FusedConvMaxPoolGivesTheContiguousBits) {
  // The fused kernel (tensor cores, 2x2 pool; odd P and Q leave a row and a column out) and
  // its unfused fallback (fp32: conv2d_forward, then max_pool2d_forward), y, both argmax dtypes
  // and the statistics of y: x and the pooled outputs in either format. The argmax stays the
  // index p * Q + q in the conv plane. 16 input channels: the channels-last x's slices are
  // copied asynchronously (conv2d_tensor_core_async.cuh).
  const cudaStream_t stream = current_stream();
  for (const Conv2dShape& shape : {conv2d_shape({2, 5, 9, 9}, {12, 5, 3, 3}, {.padding = {1, 1}}),
                                   conv2d_shape({2, 16, 9, 11}, {24, 16, 3, 3}, {.padding = {1, 1}})}) {
    SCOPED_TRACE(fmt::format("{} input channels", shape.in_channels));
    const Pool2dParams pool{.kernel = {2, 2}};
    const Shape y_shape = conv2d_max_pool2d_output_shape(shape, pool);
    for (const PathCase& path : kPaths) {
      SCOPED_TRACE(path_name(path));
      Conv2dParams params = shape.params;
      params.math = path.math;
      ASSERT_EQ(conv2d_max_pool2d_fuses(conv2d_shape(shape.input(), shape.weight(), params), pool),
                path.math != ConvMath::fp32);
      const Tensor x = random_in(31, shape.input(), path.dtype, kContiguous, stream);
      const Tensor weight = random_in(32, shape.weight(), path.dtype, kContiguous, stream);
      const Tensor bias = random_in(33, shape.bias(), path.dtype, kContiguous, stream);
      const auto run = [&](MemoryFormat x_format, MemoryFormat y_format, DType argmax_dtype,
                           MemoryFormat weight_format = kContiguous) {
        Tensor y = poisoned_in(y_shape, path.dtype, y_format, stream);
        Tensor argmax = Tensor::empty(y_shape, argmax_dtype, stream, y_format);
        argmax.fill(-1.0, stream);  // no index the kernel writes
        ChannelStatistics statistics;
        conv2d_max_pool2d_forward(x.to_memory_format(x_format, stream), weight.to_memory_format(weight_format, stream),
                                  bias, y, argmax, params, pool, stream, &statistics);
        return std::vector<Tensor>{y, argmax, statistics.partials};
      };
      for (const DType argmax_dtype : {DType::i64, DType::i32}) {
        const std::vector<Tensor> reference = run(kContiguous, kContiguous, argmax_dtype);
        for (const auto& formats : kFormatPairs) {
          SCOPED_TRACE(fmt::format("x / y {}, argmax {}", format_pair(formats[0], formats[1]), dtype_name(argmax_dtype)));
          const std::vector<Tensor> other = run(formats[0], formats[1], argmax_dtype);
          EXPECT_TRUE(same_bits(other[0], reference[0], stream)) << "y";
          EXPECT_TRUE(same_bits(other[1], reference[1], stream)) << "argmax";
          EXPECT_TRUE(same_bits(other[2], reference[2], stream)) << "statistics";
        }
        for (const MemoryFormat x_format : {kContiguous, kChannelsLast}) {
          SCOPED_TRACE(fmt::format("channels-last weight, x and y {}, argmax {}", memory_format_name(x_format),
                                   dtype_name(argmax_dtype)));
          const std::vector<Tensor> other = run(x_format, x_format, argmax_dtype, kChannelsLast);
          EXPECT_TRUE(same_bits(other[0], reference[0], stream)) << "y";
          EXPECT_TRUE(same_bits(other[1], reference[1], stream)) << "argmax";
          EXPECT_TRUE(same_bits(other[2], reference[2], stream)) << "statistics";
        }
      }
      const MaxPool2dResult returned =
          conv2d_max_pool2d_forward(x.to_memory_format(kChannelsLast, stream), weight, bias, params, pool, stream);
      EXPECT_EQ(returned.y.memory_format(), kChannelsLast);
      EXPECT_EQ(returned.argmax.memory_format(), kChannelsLast);
      const std::vector<Tensor> reference = run(kContiguous, kContiguous, DType::i64);
      EXPECT_TRUE(same_bits(returned.y, reference[0], stream));
      EXPECT_TRUE(same_bits(returned.argmax, reference[1], stream));
    }
  }
}

TEST_F(Conv2dChannelsLastKernels, RefusesAChannelsLastFilterGradientAndMixesOfOneIndex) {
  const cudaStream_t stream = current_stream();
  const Conv2dShape shape = conv2d_shape({1, 4, 5, 5}, {8, 4, 3, 3}, {.padding = {1, 1}});
  const Tensor x = random_in(41, shape.input(), DType::f32, kChannelsLast, stream);
  const Tensor weight = random_in(42, shape.weight(), DType::f32, kContiguous, stream);
  const Tensor dL_dy = random_in(43, shape.output(), DType::f32, kChannelsLast, stream);
  Tensor y = poisoned_in(shape.output(), DType::f32, kChannelsLast, stream);

  // The filter gradient is written in (K, C/groups, R, S) order only.
  Tensor dL_dweight_channels_last = poisoned_in(shape.weight(), DType::f32, kChannelsLast, stream);
  const std::string filter_message = invalid_argument_message(
      [&] { conv2d_backward_filter(x, dL_dy, dL_dweight_channels_last, {.padding = {1, 1}}, stream); });
  EXPECT_THAT(filter_message, HasSubstr("conv2d_backward_filter: dL_dweight (8, 4, 3, 3) must be contiguous"));
  EXPECT_THAT(filter_message, HasSubstr("channels_last"));

  // The pre-activation is stored at y's index; the pooled argmax at the pooled y's.
  Tensor preactivation = poisoned_in(shape.output(), DType::f32, kContiguous, stream);
  const std::string preactivation_message = invalid_argument_message([&] {
    conv2d_forward(x, weight, Tensor(), y, {.padding = {1, 1}}, Conv2dEpilogue{.activation = FusedActivation::gelu},
                   stream, nullptr, &preactivation);
  });
  EXPECT_THAT(preactivation_message, HasSubstr("conv2d_forward: preactivation"));
  EXPECT_THAT(preactivation_message, HasSubstr("is contiguous but y"));
  EXPECT_THAT(preactivation_message, HasSubstr("is channels_last"));
  const std::string argmax_message = invalid_argument_message([&] {
    Tensor pooled = poisoned_in({1, 8, 2, 2}, DType::f32, kChannelsLast, stream);
    Tensor argmax = Tensor::empty({1, 8, 2, 2}, DType::i64, stream);
    conv2d_max_pool2d_forward(x, weight, Tensor(), pooled, argmax, {.padding = {1, 1}, .math = ConvMath::tf32},
                              {.kernel = {2, 2}}, stream);
  });
  EXPECT_THAT(argmax_message, HasSubstr("conv2d_max_pool2d_forward: argmax"));
  EXPECT_THAT(argmax_message, HasSubstr("one memory format"));
  // The element-wise epilogue kernels walk all their tensors with one index.
  const Tensor z_contiguous = random_in(44, shape.output(), DType::f32, kContiguous, stream);
  EXPECT_THAT(invalid_argument_message([&] { conv2d_epilogue_forward(z_contiguous, Conv2dEpilogue{}, y, stream); }),
              HasSubstr("conv2d_epilogue_forward: y"));
  Tensor dL_dz = poisoned_in(shape.output(), DType::f32, kContiguous, stream);
  EXPECT_THAT(invalid_argument_message([&] {
                conv2d_epilogue_backward(dL_dy, Tensor(), Conv2dEpilogue{}, dL_dz, stream);
              }),
              HasSubstr("conv2d_epilogue_backward: dL_dz"));
  // A layout that coincides (one pixel per plane) is no mix.
  const Tensor one_pixel = random_in(45, {2, 8, 1, 1}, DType::f32, kChannelsLast, stream);
  Tensor one_pixel_out = poisoned_in({2, 8, 1, 1}, DType::f32, kContiguous, stream);
  conv2d_epilogue_forward(one_pixel, Conv2dEpilogue{}, one_pixel_out, stream);
  EXPECT_TRUE(same_bits(one_pixel_out, one_pixel, stream));
}

}  // namespace
}  // namespace strata::kernels

// ---- Through the functional layer (Engine::custom) -------------------------------------------

namespace strata::F {
namespace {

using kernels::ConvMath;
using kernels::Conv2dEpilogue;
using kernels::Conv2dParams;
using kernels::FusedActivation;
using kernels::Pool2dParams;

using Conv2dChannelsLastFunctional = testing::DeviceTest;

// y and the gradients of x, weight and bias of op on a leaf x in format, from the seeded
// upstream gradient (contiguous, so the kernels also see a mix in the backward).
template <typename Op>
std::vector<Tensor> run_leaf(MemoryFormat format, const Shape& x_shape, const Shape& weight_shape, Op op) {
  const cudaStream_t stream = current_stream();
  Tensor x = testing::random_device(51, x_shape).to_memory_format(format, stream);
  x.set_requires_grad();
  Tensor weight = testing::random_leaf(52, weight_shape);
  Tensor bias = testing::random_leaf(53, Shape{weight_shape[0]});
  const Tensor y = op(x, weight, bias);
  autograd::backward(y, testing::random_device(54, y.shape()), stream);
  return {y, x.grad(), weight.grad(), bias.grad()};
}

template <typename Op>
void expect_formats_agree(const Shape& x_shape, const Shape& weight_shape, Op op) {
  const cudaStream_t stream = current_stream();
  const std::vector<Tensor> contiguous = run_leaf(MemoryFormat::contiguous, x_shape, weight_shape, op);
  const std::vector<Tensor> channels_last = run_leaf(MemoryFormat::channels_last, x_shape, weight_shape, op);
  EXPECT_EQ(channels_last[0].memory_format(), MemoryFormat::channels_last) << "y in x's format";
  EXPECT_EQ(channels_last[1].memory_format(), MemoryFormat::channels_last) << "dL/dx in x's format";
  EXPECT_TRUE(channels_last[2].is_contiguous()) << "dL/dweight contiguous";
  const char* names[] = {"y", "dL/dx", "dL/dweight", "dL/dbias"};
  for (std::size_t i = 0; i < contiguous.size(); ++i) {
    EXPECT_EQ(testing::bit_patterns(channels_last[i].to_vector<float>(stream)),
              testing::bit_patterns(contiguous[i].to_vector<float>(stream)))
        << names[i];
  }
}

TEST_F(Conv2dChannelsLastFunctional, Conv2dGradientsMatchTheContiguousRun) {
  for (const ConvMath math : {ConvMath::fp32, ConvMath::tf32}) {
    SCOPED_TRACE(kernels::to_string(math));
    expect_formats_agree({2, 4, 6, 5}, {8, 4, 3, 3}, [&](const Tensor& x, const Tensor& weight, const Tensor& bias) {
      return conv2d(x, weight, bias, Conv2dParams{.padding = {1, 1}, .math = math}, Engine::custom);
    });
  }
}

// y and the gradients of x, weight and bias of op on a channels-last x and a weight leaf in
// weight_format.
template <typename Op>
std::vector<Tensor> run_weight_leaf(MemoryFormat weight_format, const Shape& x_shape, const Shape& weight_shape,
                                    Op op) {
  const cudaStream_t stream = current_stream();
  Tensor x = testing::random_device(61, x_shape).to_memory_format(MemoryFormat::channels_last, stream);
  x.set_requires_grad();
  Tensor weight = testing::random_device(62, weight_shape).to_memory_format(weight_format, stream);
  weight.set_requires_grad();
  Tensor bias = testing::random_leaf(63, Shape{weight_shape[0]});
  const Tensor y = op(x, weight, bias);
  autograd::backward(y, testing::random_device(64, y.shape()), stream);
  return {y, x.grad(), weight.grad(), bias.grad()};
}

TEST_F(Conv2dChannelsLastFunctional, ChannelsLastWeightGivesTheContiguousWeightsValuesAndGradients) {
  // 16 input channels: on tf32 math the weight is read channels-last by the asynchronous copies
  // (conv2d_weight_format), on fp32 it is copied back to (K, C, R, S) for the call.
  const cudaStream_t stream = current_stream();
  const Shape x_shape{2, 16, 6, 5};
  const Shape weight_shape{8, 16, 3, 3};
  for (const ConvMath math : {ConvMath::fp32, ConvMath::tf32}) {
    SCOPED_TRACE(kernels::to_string(math));
    const auto ops = {std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>(
                          [&](const Tensor& x, const Tensor& weight, const Tensor& bias) {
                            return conv2d(x, weight, bias, Conv2dParams{.padding = {1, 1}, .math = math},
                                          Engine::custom);
                          }),
                      std::function<Tensor(const Tensor&, const Tensor&, const Tensor&)>(
                          [&](const Tensor& x, const Tensor& weight, const Tensor& bias) {
                            return conv2d_max_pool2d(x, weight, bias, Conv2dParams{.padding = {1, 1}, .math = math},
                                                     Pool2dParams{.kernel = {2, 2}}, Engine::custom);
                          })};
    for (const auto& op : ops) {
      const std::vector<Tensor> contiguous = run_weight_leaf(MemoryFormat::contiguous, x_shape, weight_shape, op);
      const std::vector<Tensor> channels_last =
          run_weight_leaf(MemoryFormat::channels_last, x_shape, weight_shape, op);
      EXPECT_EQ(channels_last[2].memory_format(), MemoryFormat::channels_last) << "dL/dweight in the leaf's format";
      const char* names[] = {"y", "dL/dx", "dL/dweight", "dL/dbias"};
      for (std::size_t i = 0; i < contiguous.size(); ++i) {
        EXPECT_EQ(testing::bit_patterns(channels_last[i].to_vector<float>(stream)),
                  testing::bit_patterns(contiguous[i].to_vector<float>(stream)))
            << names[i];
      }
    }
  }
}

TEST_F(Conv2dChannelsLastFunctional, FusedConv2dGradientsMatchTheContiguousRun) {
  for (const FusedActivation activation : {FusedActivation::relu, FusedActivation::gelu}) {
    SCOPED_TRACE(static_cast<int>(activation));
    const Tensor scale = testing::random_device(55, Shape{8}, 0.5f, 1.5f);
    const Tensor shift = testing::random_device(56, Shape{8});
    expect_formats_agree({2, 4, 6, 5}, {8, 4, 3, 3}, [&](const Tensor& x, const Tensor& weight, const Tensor& bias) {
      return fused_conv2d(x, weight, bias, Conv2dParams{.stride = {2, 1}, .padding = {1, 1}},
                          Conv2dEpilogue{.scale = scale, .shift = shift, .activation = activation}, Engine::custom);
    });
  }
}

TEST_F(Conv2dChannelsLastFunctional, Conv2dMaxPool2dGradientsMatchTheContiguousRun) {
  expect_formats_agree({2, 3, 7, 6}, {8, 3, 3, 3}, [](const Tensor& x, const Tensor& weight, const Tensor& bias) {
    return conv2d_max_pool2d(x, weight, bias, Conv2dParams{.padding = {1, 1}, .math = ConvMath::tf32},
                             Pool2dParams{.kernel = {2, 2}}, Engine::custom);
  });
}

}  // namespace
}  // namespace strata::F
