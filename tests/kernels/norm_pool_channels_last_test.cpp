// Channels-last batch norm, fused batch norm + activation, per-channel statistics and pooling
// (strata/core/memory_format.h). Every kernel serves both layouts with the same summation and
// window order, so the key check is exactness: each op and direction run on channels-last
// tensors gives the bits of the same op on the same values laid out contiguously (whose own
// tests compare it with the double references), in f32, f16 and bf16, on odd shapes (C no
// multiple of 4 or 32, N * H * W odd), with outputs allocated channels-last and poisoned first.
// Also: producer statistics (max_pool2d -> batch norm) the same bits in either layout, results
// unchanged under shuffled simulator schedules, the returning overloads' formats, refusals of
// mixed formats, and at the end gradients through the functional ops with a channels-last leaf.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "strata/core/autograd.h"
#include "strata/core/engine.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/batch_norm2d_activation.h"
#include "strata/kernels/channel_stats.h"
#include "strata/kernels/pool2d.h"
#include "core/format.h"
#include "kernels/pool2d_windows.cuh"
#include "strata/layers/functional.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using testing::bit_patterns;
using testing::random_uniform;
using testing::storage_values;

constexpr MemoryFormat kContiguous = MemoryFormat::contiguous;
constexpr MemoryFormat kChannelsLast = MemoryFormat::channels_last;
constexpr DType kDtypes[] = {DType::f32, DType::f16, DType::bf16};

// Odd sizes: C = 5 and 37 (no multiple of 4 or 32), N * H * W = 45 and 15 (odd).
// C = 37 and 40: two tiles of the channels-last reductions' 32 channels, the second partial;
// N * H * W = 286 > 256: chains of two values (channel_reduction.cuh).
const Shape kShapes[] = {Shape{3, 5, 3, 5}, Shape{1, 37, 3, 5}, Shape{2, 40, 13, 11}};

cudaStream_t stream() { return current_stream(); }

// Seeded values in [low, high) of dtype, in format.
Tensor random_in(std::uint64_t seed, const Shape& shape, DType dtype, MemoryFormat format, float low = -1.0f,
                 float high = 1.0f) {
  return testing::storage_tensor(random_uniform(seed, static_cast<std::size_t>(shape.numel()), low, high), shape,
                                 dtype, stream())
      .to_memory_format(format, stream());
}

// An output of dtype in format whose every element is NaN until a kernel writes it.
Tensor poisoned_in(const Shape& shape, DType dtype, MemoryFormat format) {
  Tensor tensor = Tensor::empty(shape, dtype, stream(), format);
  tensor.fill(std::nan(""), stream());
  return tensor;
}

// The bits of every element in the shape's order, whatever the format (as float: exact).
std::vector<std::uint32_t> bits_of(const Tensor& tensor) {
  if (!tensor.defined()) return {};
  if (tensor.dtype() == DType::i64 || tensor.dtype() == DType::i32) {
    const Tensor indices = tensor.dtype() == DType::i64 ? tensor.to_dtype(DType::i32, stream()) : tensor;
    std::vector<std::uint32_t> bits;
    for (const std::int32_t index : indices.to_vector<std::int32_t>(stream())) {
      bits.push_back(static_cast<std::uint32_t>(index));
    }
    return bits;
  }
  return bit_patterns(storage_values(tensor, stream()));
}

// Every element of a float output written (no NaN left of the poison).
void expect_written(const Tensor& tensor, const char* name) {
  for (const float value : storage_values(tensor, stream())) ASSERT_FALSE(std::isnan(value)) << name;
}

// ---- batch norm and batch norm + activation ------------------------------------------------

// One case: the plain op (no activation) or the fused one with activation.
struct NormCase {
  Shape shape;
  DType dtype;
  BatchNormAffine affine;
  std::optional<FusedActivation> activation;  // none: batch_norm2d itself
};

// Every output of a training forward, its backward, the eval forward and its backward, each
// as bits in the shape's order.
struct NormRun {
  std::vector<std::vector<std::uint32_t>> outputs;
  std::vector<std::string> names;

  void add(const char* name, const Tensor& tensor) {
    names.emplace_back(name);
    outputs.push_back(bits_of(tensor));
  }
};

// A (C) f32 device tensor of seeded values in [low, high), or none when absent.
Tensor channel_tensor(bool present, std::uint64_t seed, std::int64_t channels, float low = -1.0f, float high = 1.0f) {
  return present ? testing::random_device(seed, Shape{channels}, low, high) : Tensor();
}

BatchNormGradients poisoned_gradients(const NormCase& c, MemoryFormat format) {
  const Shape channels{c.shape[1]};
  return {.dL_dx = poisoned_in(c.shape, c.dtype, format),
          .dL_dweight = c.affine == BatchNormAffine::weight_and_bias ? poisoned_in(channels, DType::f32, kContiguous)
                                                                     : Tensor(),
          .dL_dbias = c.affine != BatchNormAffine::none ? poisoned_in(channels, DType::f32, kContiguous) : Tensor()};
}

void add_gradients(NormRun& run, const BatchNormGradients& gradients, const char* mode) {
  run.add(fmt::format("dL_dx {}", mode).c_str(), gradients.dL_dx);
  run.add(fmt::format("dL_dweight {}", mode).c_str(), gradients.dL_dweight);
  run.add(fmt::format("dL_dbias {}", mode).c_str(), gradients.dL_dbias);
}

// The case's four launches in format, outputs poisoned; the same seeds whatever the format.
// statistics: the producer statistics of x for the training forward, or null.
NormRun run_norm(const NormCase& c, MemoryFormat format, const ChannelStatistics* statistics = nullptr,
                 const Tensor& given_x = Tensor()) {
  const std::int64_t channels = c.shape[1];
  const Tensor x = given_x.defined() ? given_x : random_in(41, c.shape, c.dtype, format, -1.0f, 3.0f);
  const Tensor dL_dy = random_in(42, c.shape, c.dtype, format);
  const Tensor weight = channel_tensor(c.affine == BatchNormAffine::weight_and_bias, 43, channels, 0.5f, 1.5f);
  const Tensor bias = channel_tensor(c.affine != BatchNormAffine::none, 44, channels);
  BatchNormRunningStats running{testing::random_device(45, {channels}),
                                testing::random_device(46, {channels}, 0.5f, 1.5f)};
  const BatchNormActivationParams params{.norm = {.affine = c.affine},
                                         .activation = c.activation.value_or(FusedActivation::none)};
  BatchNormSaved saved{poisoned_in({channels}, DType::f32, kContiguous),
                       poisoned_in({channels}, DType::f32, kContiguous)};
  Tensor y = poisoned_in(c.shape, c.dtype, format);
  BatchNormGradients gradients = poisoned_gradients(c, format);
  Tensor y_eval = poisoned_in(c.shape, c.dtype, format);
  BatchNormGradients eval_gradients = poisoned_gradients(c, format);
  if (c.activation) {
    batch_norm2d_activation_forward_training(x, weight, bias, running, y, saved, params, stream(), statistics);
    batch_norm2d_activation_backward(dL_dy, x, weight, bias, saved, gradients, params, stream());
    batch_norm2d_activation_forward_eval(x, weight, bias, running, y_eval, params, stream());
    batch_norm2d_activation_backward_eval(dL_dy, x, weight, bias, running, eval_gradients, params, stream());
  } else {
    batch_norm2d_forward_training(x, weight, bias, running, y, saved, params.norm, stream(), statistics);
    batch_norm2d_backward(dL_dy, x, weight, saved, gradients, params.norm, stream());
    batch_norm2d_forward_eval(x, weight, bias, running, y_eval, params.norm, stream());
    batch_norm2d_backward_eval(dL_dy, x, weight, running, eval_gradients, params.norm, stream());
  }
  EXPECT_EQ(y.memory_format(), format);
  expect_written(y, "y");
  expect_written(gradients.dL_dx, "dL_dx");
  expect_written(y_eval, "y eval");
  expect_written(eval_gradients.dL_dx, "dL_dx eval");
  NormRun run;
  run.add("y", y);
  run.add("saved mean", saved.mean);
  run.add("saved invstd", saved.invstd);
  run.add("running mean", running.mean);
  run.add("running var", running.var);
  add_gradients(run, gradients, "training");
  run.add("y eval", y_eval);
  add_gradients(run, eval_gradients, "eval");
  return run;
}

void expect_same_bits(const NormRun& channels_last, const NormRun& contiguous) {
  ASSERT_EQ(channels_last.outputs.size(), contiguous.outputs.size());
  for (std::size_t i = 0; i < contiguous.outputs.size(); ++i) {
    EXPECT_EQ(channels_last.outputs[i], contiguous.outputs[i]) << contiguous.names[i];
  }
}

std::string norm_case_name(const NormCase& c) {
  return fmt::format("{} {} {} {}", c.shape, dtype_name(c.dtype), batch_norm_affine_name(c.affine),
                     c.activation ? fused_activation_name(*c.activation) : "batch_norm2d");
}

using NormPoolChannelsLastTest = testing::DeviceTest;

TEST_F(NormPoolChannelsLastTest, BatchNormEveryDirectionIsTheContiguousBits) {
  for (const Shape& shape : kShapes) {
    for (const DType dtype : kDtypes) {
      for (const BatchNormAffine affine :
           {BatchNormAffine::weight_and_bias, BatchNormAffine::bias_only, BatchNormAffine::none}) {
        // The affine variants differ only per channel: C = 37 with one of them is enough.
        if (shape[1] > 8 && affine != BatchNormAffine::weight_and_bias) continue;
        const NormCase c{shape, dtype, affine, std::nullopt};
        SCOPED_TRACE(norm_case_name(c));
        expect_same_bits(run_norm(c, kChannelsLast), run_norm(c, kContiguous));
      }
    }
  }
}

TEST_F(NormPoolChannelsLastTest, FusedBatchNormActivationEveryActivationIsTheContiguousBits) {
  for (const Shape& shape : kShapes) {
    for (const DType dtype : kDtypes) {
      for (const FusedActivation activation :
           {FusedActivation::none, FusedActivation::relu, FusedActivation::gelu, FusedActivation::gelu_tanh}) {
        // Every activation on the small C; C = 37 (layout arithmetic) with one of them.
        if (shape[1] > 8 && activation != FusedActivation::gelu) continue;
        const NormCase c{shape, dtype, BatchNormAffine::weight_and_bias, activation};
        SCOPED_TRACE(norm_case_name(c));
        expect_same_bits(run_norm(c, kChannelsLast), run_norm(c, kContiguous));
      }
    }
  }
}

// The channels-last reductions pass each warp's chains through shared memory to another warp:
// the same bits under any schedule of threads and blocks.
TEST_F(NormPoolChannelsLastTest, BatchNormIsDeterministicUnderShuffledSchedules) {
  const NormCase c{Shape{2, 40, 13, 11}, DType::f32, BatchNormAffine::weight_and_bias, FusedActivation::gelu};
  const std::vector<NormRun> runs =
      testing::run_with_schedule_seeds<NormRun>([&] { return run_norm(c, kChannelsLast); });
  for (const NormRun& run : runs) expect_same_bits(run, runs.front());
}

// A stride-C gather that were wrong would still be deterministic: one check against the double
// reference's meaning, channel means, with values far from zero in one channel only.
TEST_F(NormPoolChannelsLastTest, BatchNormStatisticsAreEachChannelsOwn) {
  const Shape shape{3, 5, 3, 5};
  std::vector<float> values(static_cast<std::size_t>(shape.numel()));
  for (std::int64_t i = 0; i < shape.numel(); ++i) {
    const std::int64_t c = (i / (shape[2] * shape[3])) % shape[1];  // contiguous order
    values[static_cast<std::size_t>(i)] = static_cast<float>(c * 10 + i % 3);
  }
  const Tensor x = testing::device_tensor(values, shape, stream()).to_memory_format(kChannelsLast, stream());
  Tensor y = poisoned_in(shape, DType::f32, kChannelsLast);
  BatchNormRunningStats running;
  BatchNormSaved saved{poisoned_in({5}, DType::f32, kContiguous), poisoned_in({5}, DType::f32, kContiguous)};
  batch_norm2d_forward_training(x, Tensor(), Tensor(), running, y, saved, {.affine = BatchNormAffine::none},
                                stream());
  const std::vector<float> means = saved.mean.to_vector<float>(stream());
  for (std::int64_t c = 0; c < shape[1]; ++c) {
    double sum = 0.0;
    for (std::int64_t i = 0; i < shape.numel(); ++i) {
      if ((i / (shape[2] * shape[3])) % shape[1] == c) sum += values[static_cast<std::size_t>(i)];
    }
    EXPECT_NEAR(means[static_cast<std::size_t>(c)], sum / 45.0, 1e-5) << "channel " << c;
  }
}

// ---- producer statistics: max_pool2d -> batch norm -----------------------------------------

TEST_F(NormPoolChannelsLastTest, ProducerStatisticsAreTheContiguousBits) {
  const Shape x_shape{3, 37, 5, 7};
  const Pool2dParams pool{.kernel = {2, 2}, .ceil_mode = true};
  for (const DType dtype : kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    struct Produced {
      Tensor y;
      ChannelStatistics statistics;
    };
    const auto produce = [&](MemoryFormat format) {
      const Tensor x = random_in(51, x_shape, dtype, format, -1.0f, 3.0f);
      Produced produced;
      MaxPool2dResult result = max_pool2d_forward(x, pool, stream(), &produced.statistics);
      EXPECT_EQ(result.y.memory_format(), format);
      EXPECT_EQ(result.argmax.memory_format(), format);
      produced.y = result.y;
      return produced;
    };
    Produced channels_last = produce(kChannelsLast);
    Produced contiguous = produce(kContiguous);
    EXPECT_EQ(bits_of(channels_last.statistics.partials), bits_of(contiguous.statistics.partials));
    EXPECT_EQ(bits_of(channels_last.y), bits_of(contiguous.y));
    for (const std::optional<FusedActivation> activation :
         {std::optional<FusedActivation>{}, std::optional<FusedActivation>{FusedActivation::relu}}) {
      const NormCase c{contiguous.y.shape(), dtype, BatchNormAffine::weight_and_bias, activation};
      SCOPED_TRACE(norm_case_name(c));
      expect_same_bits(run_norm(c, kChannelsLast, &channels_last.statistics, channels_last.y),
                       run_norm(c, kContiguous, &contiguous.statistics, contiguous.y));
    }
  }
}

// ---- pooling -------------------------------------------------------------------------------

// One pooling op bound to its parameters: forward(x, y, argmax), backward(dL_dy, argmax,
// dL_dx); argmax undefined for the average pools.
struct PoolOp {
  std::string name;
  Shape x_shape;
  Shape y_shape;
  bool with_argmax;
  std::function<void(const Tensor&, Tensor&, Tensor&)> forward;
  std::function<void(const Tensor&, const Tensor&, Tensor&)> backward;
};

PoolOp max_pool(const Shape& x_shape, const Pool2dParams& params) {
  return {fmt::format("max_pool2d {}", pool2d::describe(x_shape, params)), x_shape,
          max_pool2d_output_shape(x_shape, params), true,
          [params](const Tensor& x, Tensor& y, Tensor& argmax) { max_pool2d_forward(x, y, argmax, params, stream()); },
          [params](const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx) {
            max_pool2d_backward(dL_dy, argmax, dL_dx, params, stream());
          }};
}

PoolOp avg_pool(const Shape& x_shape, const AvgPool2dParams& params) {
  return {fmt::format("avg_pool2d {} count_include_pad {}", pool2d::describe(x_shape, params.window),
                      params.count_include_pad),
          x_shape, avg_pool2d_output_shape(x_shape, params), false,
          [params](const Tensor& x, Tensor& y, Tensor&) { avg_pool2d_forward(x, y, params, stream()); },
          [params](const Tensor& dL_dy, const Tensor&, Tensor& dL_dx) {
            avg_pool2d_backward(dL_dy, dL_dx, params, stream());
          }};
}

PoolOp adaptive_avg_pool(const Shape& x_shape, Size2d output_size) {
  const AdaptivePool2dParams params{.output_size = output_size};
  return {fmt::format("adaptive_avg_pool2d x {} to ({}, {})", x_shape, output_size.h, output_size.w), x_shape,
          adaptive_avg_pool2d_output_shape(x_shape, params), false,
          [params](const Tensor& x, Tensor& y, Tensor&) { adaptive_avg_pool2d_forward(x, y, params, stream()); },
          [params](const Tensor& dL_dy, const Tensor&, Tensor& dL_dx) {
            adaptive_avg_pool2d_backward(dL_dy, dL_dx, params, stream());
          }};
}

PoolOp adaptive_max_pool(const Shape& x_shape, Size2d output_size) {
  const AdaptivePool2dParams params{.output_size = output_size};
  return {fmt::format("adaptive_max_pool2d x {} to ({}, {})", x_shape, output_size.h, output_size.w), x_shape,
          adaptive_max_pool2d_output_shape(x_shape, params), true,
          [params](const Tensor& x, Tensor& y, Tensor& argmax) {
            adaptive_max_pool2d_forward(x, y, argmax, params, stream());
          },
          [params](const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx) {
            adaptive_max_pool2d_backward(dL_dy, argmax, dL_dx, params, stream());
          }};
}

std::vector<PoolOp> pool_ops() {
  const Shape odd{3, 5, 7, 9};  // N * H * W odd, C = 5
  const Shape wide{1, 37, 5, 5};
  return {
      max_pool(odd, {.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}}),
      max_pool(odd, {.kernel = {2, 3}, .stride = Size2d{2, 2}, .dilation = {2, 1}, .ceil_mode = true}),
      max_pool(wide, {.kernel = {2, 2}, .ceil_mode = true}),
      max_pool(odd, {.kernel = {2, 2}}),  // tiling windows, a row and a column in none
      avg_pool(odd, {.window = {.kernel = {3, 3}, .stride = Size2d{2, 2}, .padding = {1, 1}}}),
      avg_pool(odd, {.window = {.kernel = {3, 2}, .stride = Size2d{2, 2}, .padding = {1, 1}, .ceil_mode = true},
                     .count_include_pad = false}),
      avg_pool(wide, {.window = {.kernel = {2, 2}}, .divisor_override = 3}),
      adaptive_avg_pool(odd, {3, 4}),
      adaptive_avg_pool(wide, {1, 1}),
      adaptive_max_pool(odd, {4, 5}),
      adaptive_max_pool(wide, {2, 3}),
  };
}

struct PoolRun {
  std::vector<std::uint32_t> y, argmax, dL_dx;
};

// op in format and dtype, outputs poisoned; argmax of index dtype when the op has one. The
// input has ties (values on a coarse grid), so that the first-maximum rule is exercised.
PoolRun run_pool(const PoolOp& op, DType dtype, DType index_dtype, MemoryFormat format) {
  std::vector<float> grid = random_uniform(61, static_cast<std::size_t>(op.x_shape.numel()), -4.0f, 4.0f);
  for (float& value : grid) value = std::round(value);
  const Tensor x =
      testing::storage_tensor(grid, op.x_shape, dtype, stream()).to_memory_format(format, stream());  // (N, C, H, W)
  const Tensor dL_dy = random_in(62, op.y_shape, dtype, format);
  Tensor y = poisoned_in(op.y_shape, dtype, format);
  Tensor argmax;
  if (op.with_argmax) {
    argmax = Tensor::empty(op.y_shape, index_dtype, stream(), format);
    argmax.fill(-777, stream());
  }
  op.forward(x, y, argmax);
  Tensor dL_dx = poisoned_in(op.x_shape, dtype, format);
  op.backward(dL_dy, argmax, dL_dx);
  expect_written(y, "y");
  expect_written(dL_dx, "dL_dx");
  return {bits_of(y), bits_of(argmax), bits_of(dL_dx)};
}

TEST_F(NormPoolChannelsLastTest, PoolingEveryOpAndDirectionIsTheContiguousBits) {
  for (const PoolOp& op : pool_ops()) {
    for (const DType dtype : kDtypes) {
      for (const DType index_dtype : {DType::i64, DType::i32}) {
        if (!op.with_argmax && index_dtype == DType::i32) continue;
        SCOPED_TRACE(fmt::format("{} {} argmax {}", op.name, dtype_name(dtype), dtype_name(index_dtype)));
        const PoolRun channels_last = run_pool(op, dtype, index_dtype, kChannelsLast);
        const PoolRun contiguous = run_pool(op, dtype, index_dtype, kContiguous);
        EXPECT_EQ(channels_last.y, contiguous.y);
        EXPECT_EQ(channels_last.argmax, contiguous.argmax);
        EXPECT_EQ(channels_last.dL_dx, contiguous.dL_dx);
      }
    }
  }
}

// The returning overloads allocate in the input's format (backward: dL_dy's).
TEST_F(NormPoolChannelsLastTest, ReturningOverloadsKeepTheFormat) {
  const Shape x_shape{2, 5, 6, 7};
  const Pool2dParams params{.kernel = {2, 2}};
  const Tensor x = random_in(71, x_shape, DType::bf16, kChannelsLast);
  const MaxPool2dResult pooled = max_pool2d_forward(x, params, stream());
  EXPECT_EQ(pooled.y.memory_format(), kChannelsLast);
  EXPECT_EQ(pooled.argmax.memory_format(), kChannelsLast);
  const Tensor dL_dy = random_in(72, pooled.y.shape(), DType::bf16, kChannelsLast);
  const Tensor dL_dx = max_pool2d_backward(dL_dy, pooled.argmax, x_shape, params, stream());
  EXPECT_EQ(dL_dx.memory_format(), kChannelsLast);
  const MaxPool2dResult contiguous = max_pool2d_forward(x.contiguous(stream()), params, stream());
  EXPECT_EQ(bits_of(pooled.y), bits_of(contiguous.y));
  EXPECT_EQ(bits_of(dL_dx), bits_of(max_pool2d_backward(dL_dy.contiguous(stream()), contiguous.argmax, x_shape,
                                                        params, stream())));

  const AvgPool2dParams avg{.window = {.kernel = {3, 3}, .padding = {1, 1}}};
  EXPECT_EQ(avg_pool2d_forward(x, avg, stream()).memory_format(), kChannelsLast);
  EXPECT_EQ(avg_pool2d_backward(dL_dy, x_shape, {.window = {.kernel = {2, 2}}}, stream()).memory_format(),
            kChannelsLast);
  EXPECT_EQ(adaptive_avg_pool2d_forward(x, {.output_size = {2, 3}}, stream()).memory_format(), kChannelsLast);
  EXPECT_EQ(adaptive_max_pool2d_forward(x, {.output_size = {2, 3}}, stream()).argmax.memory_format(),
            kChannelsLast);
}

// ---- refusals ------------------------------------------------------------------------------

void expect_refused(const std::function<void()>& call, const std::vector<std::string>& parts) {
  const std::string message = testing::invalid_argument_message(call);
  for (const std::string& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "message: " << message << "\nlacks: " << part;
  }
}

TEST_F(NormPoolChannelsLastTest, MixedFormatsAreRefusedNamingTheTensors) {
  const Shape shape{2, 5, 4, 3};
  const Tensor x = random_in(81, shape, DType::f32, kChannelsLast);
  const Tensor x_contiguous = x.contiguous(stream());
  BatchNormRunningStats running{testing::random_device(82, {5}), testing::random_device(83, {5}, 0.5f, 1.5f)};
  BatchNormSaved saved{Tensor::empty({5}, DType::f32, stream()), Tensor::empty({5}, DType::f32, stream())};
  const BatchNormParams none{.affine = BatchNormAffine::none};
  Tensor y_contiguous = Tensor::empty(shape, DType::f32, stream());
  expect_refused([&] { batch_norm2d_forward_training(x, Tensor(), Tensor(), running, y_contiguous, saved, none,
                                                     stream()); },
                 {"batch_norm2d", "y must have x's memory format", "contiguous", "channels_last"});
  expect_refused([&] { batch_norm2d_activation_forward_eval(x, Tensor(), Tensor(), running, y_contiguous,
                                                            {.norm = none}, stream()); },
                 {"batch_norm2d_activation", "y must have x's memory format"});
  BatchNormGradients gradients{.dL_dx = Tensor::empty(shape, DType::f32, stream(), kChannelsLast)};
  expect_refused([&] { batch_norm2d_backward(x_contiguous, x, Tensor(), saved, gradients, none, stream()); },
                 {"batch_norm2d", "dL_dy must have x's memory format"});
  gradients.dL_dx = Tensor::empty(shape, DType::f32, stream());
  expect_refused([&] { batch_norm2d_backward_eval(x, x, Tensor(), running, gradients, none, stream()); },
                 {"batch_norm2d", "dL_dx must have x's memory format"});

  const Pool2dParams pool{.kernel = {2, 2}};
  const Shape pooled = max_pool2d_output_shape(shape, pool);
  Tensor y = Tensor::empty(pooled, DType::f32, stream(), kChannelsLast);
  Tensor argmax_contiguous = Tensor::empty(pooled, DType::i64, stream());
  expect_refused([&] { max_pool2d_forward(x, y, argmax_contiguous, pool, stream()); },
                 {"max_pool2d_forward", "argmax", "contiguous", "share one memory format"});
  Tensor pooled_contiguous = Tensor::empty(pooled, DType::f32, stream());
  Tensor no_argmax;
  expect_refused([&] { max_pool2d_forward(x, pooled_contiguous, no_argmax, pool, stream()); },
                 {"max_pool2d_forward", "x is channels_last", "y is contiguous"});
  expect_refused([&] { avg_pool2d_forward(x, pooled_contiguous, {.window = pool}, stream()); },
                 {"avg_pool2d_forward", "share one memory format"});
  Tensor dL_dx = Tensor::empty(shape, DType::f32, stream());
  expect_refused([&] { avg_pool2d_backward(y, dL_dx, {.window = pool}, stream()); },
                 {"avg_pool2d_backward", "dL_dy is channels_last", "dL_dx is contiguous"});
  expect_refused([&] { adaptive_max_pool2d_backward(y, argmax_contiguous, dL_dx, {.output_size = {2, 1}}, stream()); },
                 {"adaptive_max_pool2d_backward", "share one memory format"});

  // A tensor whose layouts coincide (here (N, C, 1, 1)) matches either format.
  const Tensor column = random_in(84, {2, 5, 1, 1}, DType::f32, kContiguous);
  Tensor spread = Tensor::empty({2, 5, 2, 3}, DType::f32, stream(), kChannelsLast);
  adaptive_avg_pool2d_forward(column, spread, {.output_size = {2, 3}}, stream());
  EXPECT_EQ(bits_of(spread), bits_of(adaptive_avg_pool2d_forward(column, {.output_size = {2, 3}}, stream())));
}

}  // namespace
}  // namespace strata::kernels

// ---- the functional ops with a channels-last leaf ------------------------------------------

namespace strata {
namespace {

using FunctionalChannelsLastTest = testing::DeviceTest;

// The forward and the gradients of x (and of the norm's parameters) with x a leaf in format:
// each f(x) runs on the custom kernels and its backward takes a contiguous dL_dy, which the
// node converts; the gradient of x comes back in x's format.
struct FunctionalRun {
  std::vector<std::uint32_t> y, dL_dx, dL_dweight, dL_dbias;
};

template <typename Forward>
FunctionalRun run_functional(const Shape& x_shape, DType dtype, MemoryFormat format, Forward forward) {
  Tensor x = kernels::random_in(91, x_shape, dtype, format, -1.0f, 2.0f);
  x.set_requires_grad();
  Tensor weight = testing::random_leaf(92, {x_shape[1]}, 0.5f, 1.5f);
  Tensor bias = testing::random_leaf(93, {x_shape[1]});
  const Tensor y = forward(x, weight, bias);
  EXPECT_EQ(y.memory_format(), format);
  y.backward(kernels::random_in(94, y.shape(), dtype, MemoryFormat::contiguous));
  EXPECT_EQ(x.grad().memory_format(), format);
  return {kernels::bits_of(y), kernels::bits_of(x.grad()), kernels::bits_of(weight.grad()),
          kernels::bits_of(bias.grad())};
}

template <typename Forward>
void expect_formats_agree(const Shape& x_shape, Forward forward) {
  for (const DType dtype : kernels::kDtypes) {
    SCOPED_TRACE(dtype_name(dtype));
    const FunctionalRun channels_last = run_functional(x_shape, dtype, MemoryFormat::channels_last, forward);
    const FunctionalRun contiguous = run_functional(x_shape, dtype, MemoryFormat::contiguous, forward);
    EXPECT_EQ(channels_last.y, contiguous.y);
    EXPECT_EQ(channels_last.dL_dx, contiguous.dL_dx);
    EXPECT_EQ(channels_last.dL_dweight, contiguous.dL_dweight);
    EXPECT_EQ(channels_last.dL_dbias, contiguous.dL_dbias);
  }
}

const Shape kFunctionalShape{3, 5, 5, 7};

TEST_F(FunctionalChannelsLastTest, BatchNormGradientsInTheLeafsFormat) {
  for (const bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    expect_formats_agree(kFunctionalShape, [training](const Tensor& x, const Tensor& weight, const Tensor& bias) {
      F::BatchNormRunningStats running{testing::random_device(95, {5}), testing::random_device(96, {5}, 0.5f, 1.5f)};
      return F::batch_norm2d(x, weight, bias, running, training, {}, Engine::custom);
    });
  }
}

TEST_F(FunctionalChannelsLastTest, BatchNormActivationGradientsInTheLeafsFormat) {
  for (const bool training : {true, false}) {
    SCOPED_TRACE(training ? "training" : "eval");
    expect_formats_agree(kFunctionalShape, [training](const Tensor& x, const Tensor& weight, const Tensor& bias) {
      F::BatchNormRunningStats running{testing::random_device(95, {5}), testing::random_device(96, {5}, 0.5f, 1.5f)};
      return F::batch_norm2d_activation(x, weight, bias, running, training,
                                        {.activation = kernels::FusedActivation::gelu_tanh});
    });
  }
}

TEST_F(FunctionalChannelsLastTest, PoolingGradientsInTheLeafsFormat) {
  expect_formats_agree(kFunctionalShape, [](const Tensor& x, const Tensor& weight, const Tensor& bias) {
    // max pool -> batch norm on the pool's statistics -> the other pools, summed into one y.
    F::ChannelStatistics statistics;
    const Tensor pooled = F::max_pool2d(x, {.kernel = {2, 2}, .ceil_mode = true}, Engine::custom, &statistics);
    F::BatchNormRunningStats running;
    const Tensor normed = F::batch_norm2d(pooled, weight, bias, running, true, {}, Engine::custom, &statistics);
    const Tensor averaged = F::avg_pool2d(normed, {.window = {.kernel = {3, 3}, .stride = F::Size2d{1, 1},
                                                              .padding = {1, 1}}},
                                          Engine::custom);
    const Tensor bins = F::adaptive_max_pool2d(averaged, {2, 3}, Engine::custom);
    return F::adaptive_avg_pool2d(bins, {1, 2}, Engine::custom);
  });
}

}  // namespace
}  // namespace strata
