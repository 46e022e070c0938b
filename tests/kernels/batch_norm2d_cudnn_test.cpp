// batch_norm2d on cuDNN (kernels/cudnn/batch_norm2d_cudnn.h) against the custom kernels:
// training forward (y, saved mean and invstd, the running-statistics update), eval forward,
// the training backward (dL/dx, dL/dweight, dL/dbias) for every affine variant, with and
// without running statistics, on a grid of shapes: airbench94's batch norms at batch 1024
// (64x15x15, 256x7x7, 256x3x3 as the net runs them, and 64x16x16, 256x8x8, 256x4x4), with
// its bias-only affine and eps 1e-12 (which cuDNN 9 accepts) and with eps 1e-5; ResNet-18 on
// CIFAR at batch 128; odd sizes (a 1x1 plane, batch 1, 33 channels, few values per channel).
// Also: gradient subsets (cuDNN writes the ones not asked for to scratch), the backward from
// the other engine's saved statistics, and bit-identical reruns. Skipped where cuDNN is not
// available (the simulator build, a mismatched library) or there is no GPU; the simulator's
// own checks are in tests/layers/engine_softmax_batch_norm_test.cpp.
//
// Tolerance: both engines compute in fp32 from per-channel sums over L = N*H*W values in
// different orders (the custom kernel in double), so every element must satisfy
// |custom - cudnn| <= 1e-5 * sqrt(L) * max |cudnn| (as the conv2d parity test, with the
// reduction length L); eval's forward reduces nothing (L = 1). A wrong channel, a missed term
// or a swapped statistic gives differences of order max |cudnn|. The running variance's
// convention (unbiased, n / (n - 1)) shows on the shapes with few values per channel, where
// the biased one would differ by 1 / (L - 1) >= 1e-2, far above the tolerance.
//
// In f16 and bf16 storage (x, y, dL_dy, dL_dx; the per-channel tensors f32) on a few of the
// cases: both engines read the same rounded inputs, so the statistics and parameter gradients
// keep the fp32 bound, and y and dL_dx, each rounded once to the dtype by either engine, may
// differ by one unit in the last place more (2 * the dtype's unit roundoff, relative).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cudnn/batch_norm2d_cudnn.h"
#include "strata/core/engine.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/batch_norm2d.h"
#include "tests/kernels/device_values.h"
#include "tests/support/cudnn_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using testing::agree_to_rounding;
using testing::poisoned_tensor;
using testing::random_device;

struct ParityCase {
  Shape x;  // (N, C, H, W)
  BatchNormParams params;
  bool track_running_stats = true;
};

std::string name_of(const ParityCase& c) {
  return "x " + c.x.to_string() + ", eps " + std::to_string(c.params.eps) + ", momentum " +
         std::to_string(c.params.momentum) + ", affine " + batch_norm_affine_name(c.params.affine) +
         (c.track_running_stats ? "" : ", running statistics not tracked");
}

const std::vector<ParityCase>& parity_cases() {
  constexpr BatchNormAffine kBoth = BatchNormAffine::weight_and_bias;
  constexpr BatchNormAffine kBias = BatchNormAffine::bias_only;
  constexpr BatchNormAffine kNone = BatchNormAffine::none;
  const BatchNormParams airbench{.eps = 1e-12f, .momentum = 0.4f, .affine = kBias};  // as airbench94 runs it
  const BatchNormParams airbench_eps5{.eps = 1e-5f, .momentum = 0.4f, .affine = kBias};
  const BatchNormParams resnet{.eps = 1e-5f, .momentum = 0.1f, .affine = kBoth};
  static const std::vector<ParityCase> cases = {
      {{1024, 64, 15, 15}, airbench},
      {{1024, 256, 7, 7}, airbench},
      {{1024, 256, 3, 3}, airbench},
      {{1024, 64, 16, 16}, airbench_eps5},
      {{1024, 256, 8, 8}, airbench_eps5},
      {{1024, 256, 4, 4}, airbench_eps5},
      {{128, 64, 32, 32}, resnet},
      {{128, 128, 16, 16}, resnet},
      {{128, 256, 8, 8}, resnet},
      {{128, 512, 4, 4}, resnet},
      {{7, 13, 11, 9}, {.eps = 1e-3f, .momentum = 0.3f, .affine = kBoth}},
      {{5, 3, 1, 1}, {.eps = 1e-5f, .momentum = 0.5f, .affine = kBias}},    // a 1x1 plane, L = 5
      {{1, 33, 3, 4}, {.eps = 1e-5f, .momentum = 0.25f, .affine = kNone}},  // batch 1, L = 12
      {{2, 6, 5, 1}, {.eps = 0.1f, .momentum = 1.0f, .affine = kBoth}},     // the batch's statistics replace
      {{3, 5, 4, 4}, {.eps = 1e-5f, .momentum = 0.1f, .affine = kBoth}, false},
      {{9, 17, 7, 5}, {.eps = 1e-5f, .momentum = 0.1f, .affine = kNone}, false},
  };
  return cases;
}

using BatchNorm2dCudnnParityTest = testing::CudnnTest;

Tensor copy_of(const Tensor& tensor) {
  Tensor copy = Tensor::empty(tensor.shape(), tensor.dtype(), current_stream());
  copy.copy_from(tensor, current_stream());
  return copy;
}

// One case's inputs on the device, x and dL_dy stored in dtype and laid out in format; weight
// and bias undefined where the affine variant has none.
struct Inputs {
  Tensor x, weight, bias, running_mean, running_var, dL_dy;
};

Inputs make_inputs(const ParityCase& c, std::uint64_t seed, DType dtype = DType::f32,
                   MemoryFormat format = MemoryFormat::contiguous) {
  const cudaStream_t stream = current_stream();
  const Shape channels{c.x[1]};
  const bool weight = c.params.affine == BatchNormAffine::weight_and_bias;
  const bool bias = c.params.affine != BatchNormAffine::none;
  const auto values = [&](std::uint64_t values_seed, float low, float high) {
    return testing::random_uniform(values_seed, static_cast<std::size_t>(c.x.numel()), low, high);
  };
  // x with a mean away from zero.
  return {.x = testing::storage_tensor(values(seed, -2.0f, 3.0f), c.x, dtype, stream).to_memory_format(format, stream),
          .weight = weight ? random_device(seed + 1, channels, 0.5f, 1.5f) : Tensor(),
          .bias = bias ? random_device(seed + 2, channels) : Tensor(),
          .running_mean = random_device(seed + 3, channels),
          .running_var = random_device(seed + 4, channels, 0.5f, 1.5f),
          .dL_dy = testing::storage_tensor(values(seed + 5, -1.0f, 1.0f), c.x, dtype, stream)
                       .to_memory_format(format, stream)};
}

// What one engine wrote, on the host, as float.
struct Outputs {
  std::vector<float> y{}, saved_mean{}, saved_invstd{}, running_mean{}, running_var{}, dL_dx{}, dL_dweight{},
      dL_dbias{}, y_eval{};
  std::vector<std::int64_t> num_batches_tracked{};  // after one training forward from 7
};

// y, y_eval and dL_dx are written in x's memory format.
Outputs run_engine(const ParityCase& c, const Inputs& in, bool on_cudnn) {
  const cudaStream_t stream = current_stream();
  const Shape channels{c.x[1]};
  const DType dtype = in.x.dtype();
  const auto poisoned_like_x = [&] {
    return testing::poisoned_storage(c.x, dtype, stream).to_memory_format(in.x.memory_format(), stream);
  };
  BatchNormRunningStats running;
  if (c.track_running_stats) {
    running = {copy_of(in.running_mean), copy_of(in.running_var), Tensor::zeros(Shape(), DType::i64, stream)};
    running.num_batches_tracked.fill(7.0, stream);
  }
  Tensor y = poisoned_like_x();
  BatchNormSaved saved{poisoned_tensor(channels, stream), poisoned_tensor(channels, stream)};
  if (on_cudnn) {
    batch_norm2d_cudnn_forward_training(in.x, in.weight, in.bias, running, y, saved, c.params, stream);
  } else {
    batch_norm2d_forward_training(in.x, in.weight, in.bias, running, y, saved, c.params, stream);
  }
  BatchNormGradients gradients{.dL_dx = poisoned_like_x()};
  if (in.weight.defined()) gradients.dL_dweight = poisoned_tensor(channels, stream);
  if (in.bias.defined()) gradients.dL_dbias = poisoned_tensor(channels, stream);
  if (on_cudnn) {
    batch_norm2d_cudnn_backward(in.dL_dy, in.x, in.weight, saved, gradients, c.params, stream);
  } else {
    batch_norm2d_backward(in.dL_dy, in.x, in.weight, saved, gradients, c.params, stream);
  }
  // Eval from the given running statistics (untouched by the training forward above).
  const BatchNormRunningStats frozen{in.running_mean, in.running_var};
  Tensor y_eval = poisoned_like_x();
  if (on_cudnn) {
    batch_norm2d_cudnn_forward_eval(in.x, in.weight, in.bias, frozen, y_eval, c.params, stream);
  } else {
    batch_norm2d_forward_eval(in.x, in.weight, in.bias, frozen, y_eval, c.params, stream);
  }
  Outputs out{.y = testing::storage_values(y, stream),
              .saved_mean = saved.mean.to_vector<float>(stream),
              .saved_invstd = saved.invstd.to_vector<float>(stream),
              .dL_dx = testing::storage_values(gradients.dL_dx, stream),
              .y_eval = testing::storage_values(y_eval, stream)};
  if (running.mean.defined()) {
    out.running_mean = running.mean.to_vector<float>(stream);
    out.running_var = running.var.to_vector<float>(stream);
    out.num_batches_tracked = running.num_batches_tracked.to_vector<std::int64_t>(stream);
  }
  if (gradients.dL_dweight.defined()) out.dL_dweight = gradients.dL_dweight.to_vector<float>(stream);
  if (gradients.dL_dbias.defined()) out.dL_dbias = gradients.dL_dbias.to_vector<float>(stream);
  return out;
}

// agree_to_rounding's fp32 bound plus one unit in the last place of dtype, for outputs that
// each engine rounds once to dtype from slightly different floats.
::testing::AssertionResult agree_to_storage_rounding(const std::vector<float>& custom,
                                                     const std::vector<float>& cudnn, std::int64_t reduction_length,
                                                     DType dtype) {
  double largest = 1e-30;
  for (const float value : cudnn) largest = std::max(largest, static_cast<double>(std::fabs(value)));
  return testing::all_close(custom, std::vector<double>(cudnn.begin(), cudnn.end()),
                            {.abs_tol = 1e-5 * std::sqrt(static_cast<double>(reduction_length)) * largest,
                             .rel_tol = 2.0 * testing::storage_rel_tol(dtype)});
}

void check_parity(const ParityCase& c, std::uint64_t seed, MemoryFormat format = MemoryFormat::contiguous) {
  SCOPED_TRACE(name_of(c) + ", " + std::string(memory_format_name(format)));
  ASSERT_EQ(batch_norm2d_cudnn_refusal(c.x, c.params), "");
  const Inputs in = make_inputs(c, seed, DType::f32, format);
  const Outputs custom = run_engine(c, in, false);
  const Outputs cudnn = run_engine(c, in, true);
  const std::int64_t length = c.x[0] * c.x[2] * c.x[3];
  EXPECT_TRUE(agree_to_rounding(custom.y, cudnn.y, length)) << "training forward y";
  EXPECT_TRUE(agree_to_rounding(custom.saved_mean, cudnn.saved_mean, length)) << "saved mean";
  EXPECT_TRUE(agree_to_rounding(custom.saved_invstd, cudnn.saved_invstd, length)) << "saved invstd";
  EXPECT_TRUE(agree_to_rounding(custom.running_mean, cudnn.running_mean, length)) << "running mean";
  EXPECT_TRUE(agree_to_rounding(custom.running_var, cudnn.running_var, length)) << "running var (unbiased)";
  if (c.track_running_stats) {
    EXPECT_EQ(cudnn.num_batches_tracked, std::vector<std::int64_t>{8});
  }
  EXPECT_EQ(custom.num_batches_tracked, cudnn.num_batches_tracked);
  EXPECT_TRUE(agree_to_rounding(custom.dL_dx, cudnn.dL_dx, length)) << "dL_dx";
  EXPECT_TRUE(agree_to_rounding(custom.dL_dweight, cudnn.dL_dweight, length)) << "dL_dweight";
  EXPECT_TRUE(agree_to_rounding(custom.dL_dbias, cudnn.dL_dbias, length)) << "dL_dbias";
  EXPECT_TRUE(agree_to_rounding(custom.y_eval, cudnn.y_eval, 1)) << "eval forward y";
}

TEST_F(BatchNorm2dCudnnParityTest, EveryDirectionMatchesTheCustomKernels) {
  std::uint64_t seed = 100;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10);
}

// Channels-last x, y and gradients: cuDNN on NHWC descriptors against the custom kernels on
// the same tensors.
TEST_F(BatchNorm2dCudnnParityTest, ChannelsLastMatchesTheCustomKernels) {
  std::uint64_t seed = 700;
  for (const ParityCase& c : parity_cases()) check_parity(c, seed += 10, MemoryFormat::channels_last);
}

// airbench94's first batch norm, ResNet's last, and the odd shapes, in f16 and bf16 storage,
// contiguous and channels-last.
TEST_F(BatchNorm2dCudnnParityTest, ReducedStorageMatchesTheCustomKernels) {
  const std::vector<ParityCase>& cases = parity_cases();
  std::uint64_t seed = 500;
  for (const MemoryFormat format : {MemoryFormat::contiguous, MemoryFormat::channels_last}) {
    for (const DType dtype : testing::kReducedDtypes) {
      for (const std::size_t index : {0, 9, 10, 11, 12, 14}) {
        const ParityCase& c = cases.at(index);
        SCOPED_TRACE(name_of(c) + ", " + std::string(dtype_name(dtype)) + ", " +
                     std::string(memory_format_name(format)));
        ASSERT_EQ(batch_norm2d_cudnn_refusal(c.x, c.params), "");
        const Inputs in = make_inputs(c, seed += 10, dtype, format);
        const Outputs custom = run_engine(c, in, false);
        const Outputs cudnn = run_engine(c, in, true);
        const std::int64_t length = c.x[0] * c.x[2] * c.x[3];
        EXPECT_TRUE(agree_to_storage_rounding(custom.y, cudnn.y, length, dtype)) << "training forward y";
        EXPECT_TRUE(agree_to_rounding(custom.saved_mean, cudnn.saved_mean, length)) << "saved mean";
        EXPECT_TRUE(agree_to_rounding(custom.saved_invstd, cudnn.saved_invstd, length)) << "saved invstd";
        EXPECT_TRUE(agree_to_rounding(custom.running_mean, cudnn.running_mean, length)) << "running mean";
        EXPECT_TRUE(agree_to_rounding(custom.running_var, cudnn.running_var, length)) << "running var";
        EXPECT_TRUE(agree_to_storage_rounding(custom.dL_dx, cudnn.dL_dx, length, dtype)) << "dL_dx";
        EXPECT_TRUE(agree_to_rounding(custom.dL_dweight, cudnn.dL_dweight, length)) << "dL_dweight";
        EXPECT_TRUE(agree_to_rounding(custom.dL_dbias, cudnn.dL_dbias, length)) << "dL_dbias";
        EXPECT_TRUE(agree_to_storage_rounding(custom.y_eval, cudnn.y_eval, 1, dtype)) << "eval forward y";
      }
    }
  }
}

// The gradients asked for, alone: cuDNN computes all three and drops the others.
TEST_F(BatchNorm2dCudnnParityTest, GradientSubsetsMatchAndTheBackwardTakesEitherEnginesSavedStatistics) {
  const cudaStream_t stream = current_stream();
  const ParityCase c{{6, 5, 7, 3}, {.eps = 1e-4f, .momentum = 0.1f, .affine = BatchNormAffine::weight_and_bias}};
  const Inputs in = make_inputs(c, 900);
  const Shape channels{5};
  BatchNormRunningStats untracked;
  Tensor y = poisoned_tensor(c.x, stream);
  BatchNormSaved saved{poisoned_tensor(channels, stream), poisoned_tensor(channels, stream)};
  batch_norm2d_forward_training(in.x, in.weight, in.bias, untracked, y, saved, c.params, stream);  // custom's
  const std::int64_t length = 6 * 7 * 3;
  for (const int wanted : {0b001, 0b010, 0b100, 0b110}) {  // dL_dx, dL_dweight, dL_dbias, the two parameters
    SCOPED_TRACE("gradients " + std::to_string(wanted));
    const auto gradients_of = [&](bool on_cudnn) {
      BatchNormGradients gradients;
      if ((wanted & 0b001) != 0) gradients.dL_dx = poisoned_tensor(c.x, stream);
      if ((wanted & 0b010) != 0) gradients.dL_dweight = poisoned_tensor(channels, stream);
      if ((wanted & 0b100) != 0) gradients.dL_dbias = poisoned_tensor(channels, stream);
      if (on_cudnn) {
        batch_norm2d_cudnn_backward(in.dL_dy, in.x, in.weight, saved, gradients, c.params, stream);
      } else {
        batch_norm2d_backward(in.dL_dy, in.x, in.weight, saved, gradients, c.params, stream);
      }
      return gradients;
    };
    const BatchNormGradients custom = gradients_of(false);
    const BatchNormGradients cudnn = gradients_of(true);
    for (const auto& [mine, theirs] :
         {std::pair{custom.dL_dx, cudnn.dL_dx}, std::pair{custom.dL_dweight, cudnn.dL_dweight},
          std::pair{custom.dL_dbias, cudnn.dL_dbias}}) {
      ASSERT_EQ(mine.defined(), theirs.defined());
      if (mine.defined()) {
        EXPECT_TRUE(agree_to_rounding(mine.to_vector<float>(stream), theirs.to_vector<float>(stream), length));
      }
    }
  }
}

TEST_F(BatchNorm2dCudnnParityTest, RepeatsBitIdentically) {
  const ParityCase c{{128, 64, 8, 8}, {.affine = BatchNormAffine::weight_and_bias}};
  const Inputs in = make_inputs(c, 1000);
  const auto run = [&] {
    const Outputs out = run_engine(c, in, true);
    std::vector<float> all = out.y;
    for (const std::vector<float>* part : {&out.saved_mean, &out.saved_invstd, &out.running_mean, &out.running_var,
                                           &out.dL_dx, &out.dL_dweight, &out.dL_dbias, &out.y_eval}) {
      all.insert(all.end(), part->begin(), part->end());
    }
    return testing::bit_patterns(all);
  };
  EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace strata::kernels
