// strata_cifar10 --channels-last (RecipeOptions::memory_format): a tiny airbench94 trained a
// few steps on channels-last batches ends with the weights and buffers of the same run on
// contiguous batches, bit for bit, since every op keeps the summation order of its NCHW form.
// Under bf16 autocast, a channels-last step casts each conv weight once, straight into the
// (K, R, S, C) layout its kernels read, and converts no weight again in its backward; a batch
// normalised straight into bf16 channels-last trains as the converted f32 one, with neither
// conversion.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <strata/core/errors.h>
#include <strata/core/memory_format.h>
#include <strata/core/stream.h>
#include <strata/core/tensor.h>

#include "samples/cifar10/device_images.h"
#include "samples/cifar10/nets.h"
#include "samples/cifar10/recipe_common.h"
#include "samples/cifar10/synthetic_images.h"
#include "tests/support/device_test.h"
#include "strata/core/config.h"  // STRATA_BACKEND_SIM
#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace cifar10 {
namespace {

using strata::MemoryFormat;
using strata::Tensor;
using ChannelsLastRecipeTest = strata::testing::DeviceTest;

cudaStream_t stream() { return strata::current_stream(); }

// The bits of every f32 tensor of the recipe's state dict, in its order.
std::vector<std::vector<std::uint32_t>> state_bits(SgdRecipe& recipe) {
  std::vector<std::vector<std::uint32_t>> bits;
  for (const auto& [name, tensor] : recipe.net().state_dict()) {
    if (tensor.dtype() != strata::DType::f32) continue;
    std::vector<std::uint32_t> tensor_bits;
    for (const float value : tensor.to_vector<float>()) tensor_bits.push_back(std::bit_cast<std::uint32_t>(value));
    bits.push_back(std::move(tensor_bits));
  }
  return bits;
}

// Trains a tiny airbench94 (the simulator is slow) for steps steps of batch_size images of a
// synthetic set, in order and unaugmented, normalised into storage (f32 contiguous: the
// recipe converts them).
// around_last_step, when given, is called with true before the last step and false after it.
std::unique_ptr<SgdRecipe> trained_airbench94(RecipeOptions options, std::int64_t steps,
                                              const std::function<void(bool)>& around_last_step = {},
                                              const BatchStorage& storage = {}) {
  const int batch_size = options.batch_size;
  const DeviceImages images(make_synthetic_images(2 * batch_size, /*seed=*/3), Placement::device, stream());
  options.seed = 5;
  std::unique_ptr<SgdRecipe> recipe = make_airbench94_recipe(options, {.widths = {8, 8, 16}});
  recipe->initialise(images, stream());
  for (std::int64_t step = 0; step < steps; ++step) {
    const std::int64_t first = (step % 2) * batch_size;
    const Tensor batch = images.normalised(first, batch_size, Normalisation{}, stream(), storage);
    const bool last = step == steps - 1 && around_last_step;
    if (last) around_last_step(true);
    recipe->train_step({batch, images.labels().narrow(0, first, batch_size)}, step, stream());
    if (last) around_last_step(false);
  }
  return recipe;
}

std::unique_ptr<SgdRecipe> trained_airbench94(MemoryFormat format, int batch_size, std::int64_t steps) {
  return trained_airbench94({.batch_size = batch_size, .memory_format = format}, steps);
}

TEST_F(ChannelsLastRecipeTest, Airbench94TrainsChannelsLastToTheContiguousRunsWeightsBitForBit) {
  constexpr int kBatch = 4;
  constexpr std::int64_t kSteps = 3;
  const std::unique_ptr<SgdRecipe> contiguous = trained_airbench94(MemoryFormat::contiguous, kBatch, kSteps);
  const std::unique_ptr<SgdRecipe> channels_last = trained_airbench94(MemoryFormat::channels_last, kBatch, kSteps);
  const auto expected = state_bits(*contiguous);
  const auto actual = state_bits(*channels_last);
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(actual[i], expected[i]) << "state tensor " << i;
  // Evaluation, plain and with the six test-time views, gives the same logits too.
  const DeviceImages test(make_synthetic_images(kBatch, /*seed=*/9), Placement::device, stream());
  const strata::Tensor images = test.normalised(0, kBatch, Normalisation{}, stream());
  for (const bool tta : {false, true}) {
    EXPECT_EQ(contiguous->evaluate_logits(images, tta, stream()).to_vector<float>(),
              channels_last->evaluate_logits(images, tta, stream()).to_vector<float>())
        << (tta ? "six views" : "plain");
  }
}

constexpr RecipeOptions kBf16ChannelsLast{.batch_size = 4,
                                          .conv_math = strata::kernels::ConvMath::bf16,
                                          .precision = strata::DType::bf16,
                                          .memory_format = MemoryFormat::channels_last};

// A batch normalised straight into bf16 channels-last (the recipe's batch_storage(), as the
// loader writes it) trains to the bits of the f32 contiguous batch that the recipe converts and
// autocast casts: the first conv reads the same values.
TEST_F(ChannelsLastRecipeTest, Bf16ChannelsLastBatchesTrainAsConvertedF32Ones) {
  const std::unique_ptr<SgdRecipe> converted = trained_airbench94(kBf16ChannelsLast, /*steps=*/2);
  const BatchStorage storage = converted->batch_storage();
  EXPECT_EQ(storage.dtype, strata::DType::bf16);
  EXPECT_EQ(storage.memory_format, MemoryFormat::channels_last);
  const std::unique_ptr<SgdRecipe> direct = trained_airbench94(kBf16ChannelsLast, /*steps=*/2, {}, storage);
  const auto expected = state_bits(*converted);
  const auto actual = state_bits(*direct);
  ASSERT_EQ(actual.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(actual[i], expected[i]) << "state tensor " << i;
}

TEST_F(ChannelsLastRecipeTest, Bf16StepCastsEachConvWeightOnceIntoTheLayoutItsKernelsRead) {
#if STRATA_BACKEND_SIM
  // Widths 8, 8, 16: every trained conv's input channels fill 16-byte bf16 vectors, so all six
  // read (K, R, S, C) weights through the asynchronous copies (kernels::conv2d_weight_format).
  const auto last_step_launches = [](const BatchStorage& storage) {
    std::map<std::string, int> launches;
    const auto observe = [&](bool before) {
      if (!before) return strata::sim::set_launch_observer({});
      strata::sim::set_launch_observer([&](const strata::sim::KernelLaunch& launch) { ++launches[launch.name]; });
    };
    trained_airbench94(kBf16ChannelsLast, /*steps=*/2, observe, storage);
    return launches;
  };
  std::map<std::string, int> converted = last_step_launches({});  // f32 contiguous
  // One cast into the layout per trained conv weight (cached for the step: the backward-data
  // pass reads the forward's copy), none in two passes, and for the f32 contiguous batch a
  // conversion into channels-last (and a cast to bf16, among the other casts).
  EXPECT_EQ(converted["convert_dtype_memory_format"], 6);
  EXPECT_EQ(converted["conv2d_backward_data_tensor_core"], 6);
  EXPECT_EQ(converted["convert_memory_format"], 1);
  // Stored as the recipe's batch_storage() says, the batch needs neither.
  std::map<std::string, int> direct = last_step_launches({strata::DType::bf16, MemoryFormat::channels_last});
  EXPECT_EQ(direct["convert_dtype_memory_format"], 6);
  EXPECT_EQ(direct["convert_memory_format"], 0);
  EXPECT_EQ(direct["convert_dtype"], converted["convert_dtype"] - 1);
  // Batch norm counts its batches in its statistics kernels.
  EXPECT_EQ(direct["increment_counter"], 0);
#else
  GTEST_SKIP() << "needs the simulator's launch observer";
#endif
}

}  // namespace
}  // namespace cifar10
