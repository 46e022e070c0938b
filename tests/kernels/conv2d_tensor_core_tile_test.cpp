// The block tiles of the asynchronous tensor-core conv2d path (Conv2dTensorCoreTile): which one
// a shape gets, that a fixed setting is the one launched, and that every tile (64x64, 128x128,
// 128x64; the filter gradient runs 128x64 as 64x64) gives the register path's bits in every
// pass: y, the epilogue's pre-activation, the statistics (whose 64-row slots the 128-row tiles
// write two at a time) and both gradients, and the fused
// conv2d + max_pool2d's y, argmax and statistics (16-window slots), with edge tiles in both
// directions, a last tile with one or two row groups, and groups. The filter gradient's
// reduction is split for the tile's blocks: where the two splits differ, each tile's result is
// checked against the double reference instead.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "strata/core/config.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/channel_stats.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/conv2d_max_pool2d.h"
#include "kernels/conv2d_plan.h"
#include "kernels/conv2d_tensor_core.h"
#include "tests/kernels/layout_bits.h"
#include "tests/kernels/named_conv_case.h"
#include "tests/reference/conv2d_reference.h"
#include "tests/support/device_test.h"
#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace strata::kernels {
namespace {

using testing::NamedConvCase;
using testing::poisoned_in;
using testing::random_in;
using testing::same_bits;

constexpr MemoryFormat kContiguous = MemoryFormat::contiguous;
constexpr MemoryFormat kChannelsLast = MemoryFormat::channels_last;
constexpr Conv2dTensorCoreTile kAutomatic = Conv2dTensorCoreTile::automatic;
constexpr Conv2dTensorCoreTile kSmall = Conv2dTensorCoreTile::m64n64;
constexpr Conv2dTensorCoreTile kLarge = Conv2dTensorCoreTile::m128n128;
constexpr Conv2dTensorCoreTile kTall = Conv2dTensorCoreTile::m128n64;
constexpr Conv2dTensorCoreTile kWgmma = Conv2dTensorCoreTile::m128n128_wgmma;
constexpr Conv2dTensorCoreTile kWgmmaTma = Conv2dTensorCoreTile::m128n128_wgmma_tma;

// Sets the process-wide tile for a scope, then restores the previous one.
class TileSetting {
 public:
  explicit TileSetting(Conv2dTensorCoreTile tile) : previous_(conv2d_tensor_core_tile()) {
    set_conv2d_tensor_core_tile(tile);
  }
  ~TileSetting() { set_conv2d_tensor_core_tile(previous_); }
  TileSetting(const TileSetting&) = delete;
  TileSetting& operator=(const TileSetting&) = delete;

 private:
  Conv2dTensorCoreTile previous_;
};

// ---- The choice ------------------------------------------------------------------------------

TEST(Conv2dTensorCoreTileChoice, MostOutputsPerWarpWhileEveryMultiprocessorGetsEightWarps) {
  constexpr int kH200 = 132;
  // airbench94's 256-channel layers at batch 1024: thousands of 128x128 tiles.
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 1024 * 15 * 15, 256, 1, kH200), kLarge);
  // Exactly one 8-warp block per multiprocessor, counting groups and chunks of the reduction.
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 128 * 66, 128, 2, kH200), kLarge);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 128 * 65, 128, 2, kH200), kSmall);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 128 * 131, 128, 1, kH200), kSmall);
  // 64 columns (airbench94's 64-channel forward and data passes): the 128x64 tile, two 4-warp
  // blocks per multiprocessor at least.
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 1024 * 15 * 15, 64, 1, kH200), kTall);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 128 * 264, 64, 1, kH200), kTall);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 128 * 132, 64, 2, kH200), kTall);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 128 * 263, 64, 1, kH200), kSmall);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 1 << 20, 96, 1, kH200), kTall);
  // Fewer than 128 rows would leave half of a 128-row tile empty.
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 127, 1 << 20, 1, kH200), kSmall);
  // The filter gradient's loader takes square tiles: 64x64 where 128x64 would be chosen or set.
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 1 << 20, 64, 1, kH200, TileShapes::square), kSmall);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kTall, 1 << 20, 64, 1, kH200, TileShapes::square), kSmall);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 1024 * 15 * 15, 256, 1, kH200, TileShapes::square), kLarge);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kTall, 1 << 20, 64, 1, kH200, TileShapes::square_and_wgmma), kSmall);
  // The wgmma tile where the loader fills wgmma's slices (every pass's), else 128x128.
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmma, 8, 8, 1, kH200, TileShapes::any_and_wgmma), kWgmma);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmma, 8, 8, 1, kH200, TileShapes::square_and_wgmma), kWgmma);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmma, 1 << 20, 64, 1, kH200), kLarge);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmma, 1 << 20, 64, 1, kH200, TileShapes::square), kLarge);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmma, 8, 8, 1, kH200, TileShapes::any_and_wgmma_tma), kWgmma);
  // The weights by TMA where the loader takes them so (the forwards'), else the wgmma tile.
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmmaTma, 8, 8, 1, kH200, TileShapes::any_and_wgmma_tma), kWgmmaTma);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmmaTma, 8, 8, 1, kH200, TileShapes::any_and_wgmma), kWgmma);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmmaTma, 8, 8, 1, kH200, TileShapes::square_and_wgmma), kWgmma);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kWgmmaTma, 1 << 20, 64, 1, kH200), kLarge);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kAutomatic, 1024 * 15 * 15, 256, 1, kH200, TileShapes::any_and_wgmma),
            kLarge)
      << "never chosen automatically";
  // A fixed setting is kept whatever the shape.
  EXPECT_EQ(select_conv2d_tensor_core_tile(kLarge, 8, 8, 1, kH200), kLarge);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kTall, 8, 8, 1, kH200), kTall);
  EXPECT_EQ(select_conv2d_tensor_core_tile(kSmall, 1 << 20, 256, 1, kH200), kSmall);
}

TEST(Conv2dTensorCoreTileChoice, SettingIsProcessWideAndNamed) {
  EXPECT_EQ(conv2d_tensor_core_tile(), kAutomatic) << "the default";
  {
    const TileSetting large(kLarge);
    EXPECT_EQ(conv2d_tensor_core_tile(), kLarge);
  }
  EXPECT_EQ(conv2d_tensor_core_tile(), kAutomatic);
  EXPECT_EQ(to_string(kAutomatic), "automatic");
  EXPECT_EQ(to_string(kSmall), "64x64");
  EXPECT_EQ(to_string(kLarge), "128x128");
  EXPECT_EQ(to_string(kTall), "128x64");
  EXPECT_EQ(to_string(kWgmma), "128x128-wgmma");
  EXPECT_EQ(to_string(kWgmmaTma), "128x128-wgmma-tma");
  if (!conv2d_wgmma_available()) {
    EXPECT_THROW(set_conv2d_tensor_core_tile(kWgmma), strata::Error) << "wgmma cannot run here";
    EXPECT_THROW(set_conv2d_tensor_core_tile(kWgmmaTma), strata::Error) << "wgmma cannot run here";
    EXPECT_EQ(conv2d_tensor_core_tile(), kAutomatic);
  }
}

// ---- The bits of every pass ------------------------------------------------------------------

const NamedConvCase kCases[] = {
    // Forward M 200 = 128 + 72: the last 128-row tile holds both 64-row statistics groups, the
    // second with 8 rows; K 136: a second column tile 8 wide. Filter: 136 x 144.
    {"TwoRowGroupsInTheLastTile", {2, 16, 10, 10}, {136, 16, 3, 3}, {.padding = {1, 1}}},
    // Forward M 147 = 128 + 19 (one row group in the last tile), K 128 exactly; stride 2.
    {"OneRowGroupInTheLastTile", {3, 24, 13, 14}, {128, 24, 3, 3}, {.stride = {2, 2}, .padding = {1, 1}}},
    // Two groups of 16 input and 72 output channels, dilation and padding beyond the reach.
    {"Groups", {2, 32, 9, 9}, {144, 16, 3, 3}, {.padding = {2, 2}, .dilation = {2, 2}, .groups = 2}},
    // Fused with the pool: 108 windows = 3 x 32 + 12, the last tile's second 16-window slot
    // absent (the two-row-groups case: 50 = 32 + 18, both there, the second with 2 windows).
    {"TwelveWindowsInTheLastTile", {3, 16, 12, 12}, {136, 16, 3, 3}, {.padding = {1, 1}}},
    // 64 output channels, as airbench94's first group: one column tile in 64x64 and 128x64;
    // forward M 198 = 128 + 70, data M 198 with 16 columns; fused 40 windows = 32 + 8.
    {"SixtyFourChannels", {2, 16, 11, 9}, {64, 16, 3, 3}, {.padding = {1, 1}}},
};

// The storage dtypes whose tensor-core math multiplies the stored values (the asynchronous
// path's condition): f16 and bf16 (any math but fp32), f32 with tf32.
struct StorageCase {
  DType dtype;
  ConvMath math;
};
constexpr StorageCase kStorages[] = {{DType::bf16, ConvMath::bf16}, {DType::f16, ConvMath::tf32},
                                     {DType::f32, ConvMath::tf32}};

// The conv of tile_case on `storage`, its operands seeded: x in `format`, the weights, the bias.
struct ConvOperands {
  Conv2dParams params;
  Conv2dShape shape;
  Tensor weight;
  Tensor bias;
  Tensor x;
};
ConvOperands conv_operands(const NamedConvCase& tile_case, const StorageCase& storage, MemoryFormat format,
                           cudaStream_t stream) {
  Conv2dParams params = tile_case.params;
  params.math = storage.math;
  const Conv2dShape shape = conv2d_shape(tile_case.input, tile_case.weight, params);
  return {params, shape, random_in(21, shape.weight(), storage.dtype, kContiguous, stream),
          random_in(22, shape.bias(), storage.dtype, kContiguous, stream),
          random_in(23, shape.input(), storage.dtype, format, stream)};
}

// The forward's outputs for activations in `format`: y, and the fused forward's y,
// pre-activation and statistics.
std::vector<Tensor> run_conv_forwards(const ConvOperands& conv, const StorageCase& storage, MemoryFormat format,
                                      cudaStream_t stream) {
  const Shape output = conv.shape.output();
  Tensor y = poisoned_in(output, storage.dtype, format, stream);
  conv2d_forward(conv.x, conv.weight, conv.bias, y, conv.params, stream);
  const Shape bias_shape = conv.shape.bias();
  const Conv2dEpilogue epilogue{.scale = random_in(25, bias_shape, DType::f32, kContiguous, stream),
                                .shift = random_in(26, bias_shape, DType::f32, kContiguous, stream),
                                .activation = FusedActivation::gelu};
  Tensor fused_y = poisoned_in(output, storage.dtype, format, stream);
  Tensor preactivation = poisoned_in(output, storage.dtype, format, stream);
  ChannelStatistics statistics;
  conv2d_forward(conv.x, conv.weight, conv.bias, fused_y, conv.params, epilogue, stream, &statistics,
                 &preactivation);
  return {y, fused_y, preactivation, statistics.partials};
}

// Every output of the passes for activations in `format`: y, the fused forward's y,
// pre-activation and statistics, dL_dx, dL_dweight.
std::vector<Tensor> run_passes(const NamedConvCase& tile_case, const StorageCase& storage, MemoryFormat format,
                               cudaStream_t stream) {
  const ConvOperands conv = conv_operands(tile_case, storage, format, stream);
  std::vector<Tensor> outputs = run_conv_forwards(conv, storage, format, stream);
  const Tensor dL_dy = random_in(24, conv.shape.output(), storage.dtype, format, stream);
  Tensor dL_dx = poisoned_in(conv.shape.input(), storage.dtype, format, stream);
  conv2d_backward_data(dL_dy, conv.weight, dL_dx, conv.params, stream);
  Tensor dL_dweight = poisoned_in(conv.shape.weight(), storage.dtype, kContiguous, stream);
  conv2d_backward_filter(conv.x, dL_dy, dL_dweight, conv.params, stream);
  outputs.push_back(dL_dx);
  outputs.push_back(dL_dweight);
  return outputs;
}

// The fused conv2d + 2x2 max_pool2d's y, i64 argmax and statistics for x and y in `format`.
std::vector<Tensor> run_fused(const NamedConvCase& tile_case, const StorageCase& storage, MemoryFormat format,
                              cudaStream_t stream) {
  Conv2dParams params = tile_case.params;
  params.math = storage.math;
  const Conv2dShape shape = conv2d_shape(tile_case.input, tile_case.weight, params);
  const Pool2dParams pool{.kernel = {2, 2}};
  EXPECT_TRUE(conv2d_max_pool2d_fuses(shape, pool));
  const Shape y_shape = conv2d_max_pool2d_output_shape(shape, pool);
  const Tensor x = random_in(31, shape.input(), storage.dtype, format, stream);
  const Tensor weight = random_in(32, shape.weight(), storage.dtype, kContiguous, stream);
  const Tensor bias = random_in(33, shape.bias(), storage.dtype, kContiguous, stream);
  Tensor y = poisoned_in(y_shape, storage.dtype, format, stream);
  Tensor argmax = Tensor::empty(y_shape, DType::i64, stream, format);
  argmax.fill(-1.0, stream);  // no index the kernel writes
  ChannelStatistics statistics;
  conv2d_max_pool2d_forward(x, weight, bias, y, argmax, params, pool, stream, &statistics);
  return {y, argmax, statistics.partials};
}

// The outputs of the forwards only (y, the fused forward's y, pre-activation and statistics,
// and the fused conv2d + max_pool2d's y, argmax and statistics): what the TMA tile changes.
std::vector<Tensor> run_forwards(const NamedConvCase& tile_case, const StorageCase& storage, MemoryFormat format,
                                 cudaStream_t stream) {
  std::vector<Tensor> outputs =
      run_conv_forwards(conv_operands(tile_case, storage, format, stream), storage, format, stream);
  for (Tensor& pooled : run_fused(tile_case, storage, format, stream)) outputs.push_back(std::move(pooled));
  return outputs;
}

// The tiles whose outputs are the register path's bits: every tile; in the simulator also
// wgmma's, whose chunks it sums as its wmma does (on a GPU the hardware's order may differ:
// WgmmaTileIsTheRegisterPathWithinARounding).
std::vector<Conv2dTensorCoreTile> bit_identical_tiles() {
  if (STRATA_BACKEND_SIM) return {kSmall, kLarge, kTall, kWgmma};
  return {kSmall, kLarge, kTall};
}

// Compares outputs of the channels-last runs in each of `tiles` with the contiguous run's
// (the register path, in the small tile only).
template <typename Run>
void expect_every_tile_gives_the_register_paths_bits(const NamedConvCase& tile_case, Run run,
                                                     const std::vector<const char*>& names,
                                                     const std::vector<Conv2dTensorCoreTile>& tiles =
                                                         bit_identical_tiles()) {
  const cudaStream_t stream = current_stream();
  for (const StorageCase& storage : kStorages) {
    SCOPED_TRACE(fmt::format("{} storage, {} math", dtype_name(storage.dtype), to_string(storage.math)));
    const std::vector<Tensor> reference = run(tile_case, storage, kContiguous, stream);
    for (const Conv2dTensorCoreTile tile : tiles) {
      SCOPED_TRACE(fmt::format("channels-last, {} tile", to_string(tile)));
      const TileSetting setting(tile);
      const std::vector<Tensor> outputs = run(tile_case, storage, kChannelsLast, stream);
      for (std::size_t i = 0; i < outputs.size(); ++i) {
        EXPECT_TRUE(same_bits(outputs[i], reference[i], stream)) << names[i];
      }
    }
  }
}

class Conv2dTensorCoreTiles : public testing::DeviceTest, public ::testing::WithParamInterface<NamedConvCase> {};

TEST_P(Conv2dTensorCoreTiles, EveryTileGivesTheRegisterPathsBits) {
  expect_every_tile_gives_the_register_paths_bits(
      GetParam(), run_passes, {"y", "fused y", "pre-activation", "statistics", "dL_dx", "dL_dweight"});
}

TEST_P(Conv2dTensorCoreTiles, FusedConvMaxPoolInEveryTileGivesTheRegisterPathsBits) {
  expect_every_tile_gives_the_register_paths_bits(GetParam(), run_fused, {"y", "argmax", "statistics"});
}

// The forwards with the weights by TMA: the same bits, in the simulator (on a GPU within a
// rounding, as the wgmma tile: WgmmaTileIsTheRegisterPathWithinARounding).
TEST_P(Conv2dTensorCoreTiles, ForwardsWithTheWeightsByTmaGiveTheRegisterPathsBits) {
  if (!STRATA_BACKEND_SIM) GTEST_SKIP() << "bit for bit in the simulator; on a GPU within a rounding (below)";
  expect_every_tile_gives_the_register_paths_bits(
      GetParam(), run_forwards,
      {"y", "fused y", "pre-activation", "statistics", "pooled y", "pooled argmax", "pooled statistics"}, {kWgmmaTma});
}

// The outputs of the wgmma tile's passes (y, the fused forward's y and pre-activation, dL_dx,
// dL_dweight, the pooled y) against the register path's within a rounding of the storage type, on f16/bf16
// storage (f32 takes 128x128): on a GPU, where the hardware may sum a chunk in another order
// than wmma.
TEST_P(Conv2dTensorCoreTiles, WgmmaTileIsTheRegisterPathWithinARounding) {
  if (!conv2d_wgmma_available()) GTEST_SKIP() << "wgmma cannot run here (an sm_90a build on an H100/H200)";
  const cudaStream_t stream = current_stream();
  // y, fused y, pre-activation, dL_dx and dL_dweight of run_passes, y of run_fused.
  const auto wgmma_outputs = [&](const StorageCase& storage, MemoryFormat format) {
    const std::vector<Tensor> passes = run_passes(GetParam(), storage, format, stream);
    return std::vector<Tensor>{passes[0], passes[1], passes[2], passes[4], passes[5],
                               run_fused(GetParam(), storage, format, stream)[0]};
  };
  // Both wgmma tiles on a GPU; in the simulator the bit tests above cover the TMA tile.
  std::vector<Conv2dTensorCoreTile> tiles{kWgmma};
  if (!STRATA_BACKEND_SIM) tiles.push_back(kWgmmaTma);
  for (const StorageCase& storage : {kStorages[0], kStorages[1]}) {
    SCOPED_TRACE(fmt::format("{} storage", dtype_name(storage.dtype)));
    const std::vector<Tensor> reference = wgmma_outputs(storage, kContiguous);
    for (const Conv2dTensorCoreTile tile : tiles) {
      SCOPED_TRACE(fmt::format("{} tile", to_string(tile)));
      const TileSetting setting(tile);
      const std::vector<Tensor> outputs = wgmma_outputs(storage, kChannelsLast);
      const char* names[] = {"y", "fused y", "pre-activation", "dL_dx", "dL_dweight", "pooled y"};
      for (std::size_t i = 0; i < outputs.size(); ++i) {
        const std::vector<float> actual = testing::storage_values(outputs[i].contiguous(stream), stream);
        const std::vector<float> expected = testing::storage_values(reference[i], stream);
        const std::vector<double> wanted(expected.begin(), expected.end());
        EXPECT_TRUE(testing::all_close(actual, wanted, {.abs_tol = 1e-3, .rel_tol = 0x1p-7})) << names[i];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, Conv2dTensorCoreTiles, ::testing::ValuesIn(kCases),
                         testing::conv_case_name);

#if STRATA_BACKEND_SIM
// The grid and block sizes and the dynamic shared memory of each tensor-core conv2d launch
// while it lives.
class TensorCoreLaunches {
 public:
  struct Launch {
    std::string name;
    unsigned blocks;
    unsigned threads;
    std::size_t shared_bytes;
  };

  TensorCoreLaunches() {
    sim::set_launch_observer([this](const sim::KernelLaunch& launch) {
      const std::string name = launch.name;
      if (name.ends_with("_tensor_core")) {
        launches.push_back({name, launch.grid.x, launch.block.x, launch.shared_bytes});
      }
    });
  }
  ~TensorCoreLaunches() { sim::set_launch_observer({}); }
  TensorCoreLaunches(const TensorCoreLaunches&) = delete;
  TensorCoreLaunches& operator=(const TensorCoreLaunches&) = delete;

  std::vector<Launch> launches;
};
#endif

// A long reduction (N*P*Q 3072 over a 128 x 144 filter GEMM): 39 chunks for 64x64 blocks, 48
// for 128x128 ones. Each tile's bf16 weight gradient sums the exact products of bf16 values in
// f32 and rounds once: within one bf16 rounding plus the f32 sums' error of the reference.
using Conv2dTensorCoreFilterSplit = testing::DeviceTest;

TEST_F(Conv2dTensorCoreFilterSplit, FollowsTheTileAndBothTilesMatchTheReference) {
  const cudaStream_t stream = current_stream();
  const Conv2dParams params{.padding = {1, 1}, .math = ConvMath::bf16};
  const Conv2dShape shape = conv2d_shape({12, 16, 16, 16}, {128, 16, 3, 3}, params);
  const std::int64_t reduction = shape.batch * shape.out_height * shape.out_width;
  const std::int64_t small_blocks = 2 * 3;  // 128 x 144 in 64x64 tiles
  const std::int64_t large_blocks = 1 * 2;  // in 128x128 tiles
  const std::int64_t small_splits = split_conv2d_reduction(reduction, small_blocks, kConv2dTensorCoreStepK).splits;
  const std::int64_t large_splits = split_conv2d_reduction(reduction, large_blocks, kConv2dTensorCoreStepK).splits;
  ASSERT_NE(small_splits, large_splits) << "the case is meant to split differently in each tile";

  const Tensor x = random_in(41, shape.input(), DType::bf16, kChannelsLast, stream);
  const Tensor dL_dy = random_in(42, shape.output(), DType::bf16, kChannelsLast, stream);
  const reference::Conv2dProblem problem{.batch = 12, .in_channels = 16, .in_height = 16, .in_width = 16,
                                         .out_channels = 128, .kernel_height = 3, .kernel_width = 3,
                                         .params = params};
  const std::vector<double> x_values = testing::storage_doubles(x, stream);
  const std::vector<double> dL_dy_values = testing::storage_doubles(dL_dy, stream);
  const std::vector<double> expected = reference::conv2d_backward_filter(problem, x_values, dL_dy_values);
  std::vector<double> x_magnitude = x_values;
  std::vector<double> dL_dy_magnitude = dL_dy_values;
  for (double& value : x_magnitude) value = std::abs(value);
  for (double& value : dL_dy_magnitude) value = std::abs(value);
  const std::vector<double> magnitude = reference::conv2d_backward_filter(problem, x_magnitude, dL_dy_magnitude);

  for (const Conv2dTensorCoreTile tile : {kSmall, kLarge}) {
    SCOPED_TRACE(fmt::format("{} tile", to_string(tile)));
    const TileSetting setting(tile);
    ASSERT_EQ(conv2d_backward_filter_tensor_core_tile(shape, {kChannelsLast, kChannelsLast},
                                                      static_cast<const __nv_bfloat16*>(x.memory_ptr()),
                                                      static_cast<const __nv_bfloat16*>(dL_dy.memory_ptr())),
              tile);
    Tensor dL_dweight = poisoned_in(shape.weight(), DType::bf16, kContiguous, stream);
    {
#if STRATA_BACKEND_SIM
      TensorCoreLaunches observed;
#endif
      conv2d_backward_filter(x, dL_dy, dL_dweight, params, stream);
#if STRATA_BACKEND_SIM
      // One block per tile and chunk: the chunks are those of this tile's blocks.
      ASSERT_EQ(observed.launches.size(), 1u);
      EXPECT_EQ(observed.launches[0].blocks,
                tile == kLarge ? large_blocks * large_splits : small_blocks * small_splits);
#endif
    }
    const std::vector<double> actual = testing::storage_doubles(dL_dweight, stream);
    int mismatches = 0;
    for (std::size_t i = 0; i < expected.size(); ++i) {
      // The f32 sums' error (one rounding per step, generously) and the rounding to bf16.
      const double bound = static_cast<double>(reduction) * 0x1p-24 * magnitude[i] + 0x1p-8 * std::abs(expected[i]);
      if (!(std::abs(actual[i] - expected[i]) <= bound) && mismatches++ < 5) {
        ADD_FAILURE() << "dL_dweight[" << i << "] = " << actual[i] << ", expected " << expected[i] << " within "
                      << bound;
      }
    }
    EXPECT_EQ(mismatches, 0);
  }
}

// ---- What is launched ------------------------------------------------------------------------


using Conv2dTensorCoreTileLaunches = testing::DeviceTest;

TEST_F(Conv2dTensorCoreTileLaunches, SettingChoosesTheBlockOfTheAsynchronousPasses) {
#if STRATA_BACKEND_SIM
  const cudaStream_t stream = current_stream();
  const NamedConvCase& tile_case = kCases[0];
  const StorageCase bf16{DType::bf16, ConvMath::bf16};
  const auto threads_of = [&](Conv2dTensorCoreTile tile, MemoryFormat format) {
    const TileSetting setting(tile);
    TensorCoreLaunches observed;
    run_passes(tile_case, bf16, format, stream);
    run_fused(tile_case, bf16, format, stream);
    std::vector<unsigned> threads;
    for (const TensorCoreLaunches::Launch& launch : observed.launches) {
      threads.push_back(launch.threads);
      // The large block's stages and results pass the 48 KiB that needs no opt-in.
      EXPECT_EQ(launch.shared_bytes > 48 * 1024, launch.threads == 256) << launch.name;
      // wgmma's four stages of 16 KiB (dense swizzled A and B slices of 128 x 32 bf16 values)
      // and 1 KiB to align them fit in the 68 KiB of the result tile that follows them.
      if (tile == kWgmma || tile == kWgmmaTma) {
        EXPECT_EQ(launch.shared_bytes, 68u * 1024u) << launch.name;
      }
    }
    return threads;
  };
  // Forward, fused forward, data, filter, conv2d + max_pool2d.
  EXPECT_EQ(threads_of(kLarge, kChannelsLast), (std::vector<unsigned>{256, 256, 256, 256, 256}));
  EXPECT_EQ(threads_of(kSmall, kChannelsLast), (std::vector<unsigned>{128, 128, 128, 128, 128}));
  EXPECT_EQ(threads_of(kTall, kChannelsLast), (std::vector<unsigned>{128, 128, 128, 128, 128}));
  // wgmma: two warpgroups in every pass.
  EXPECT_EQ(threads_of(kWgmma, kChannelsLast), (std::vector<unsigned>{256, 256, 256, 256, 256}));
  EXPECT_EQ(threads_of(kWgmmaTma, kChannelsLast), (std::vector<unsigned>{256, 256, 256, 256, 256}));
  EXPECT_EQ(threads_of(kLarge, kContiguous), (std::vector<unsigned>{128, 128, 128, 128, 128}))
      << "the register path has the small block only";
  // The forward's blocks: its 200 x 136 GEMM in 64x64, 128x128 and 128x64 tiles; the register
  // path's in 64x64 whatever the setting.
  const auto forward_blocks = [&](Conv2dTensorCoreTile tile, MemoryFormat format) {
    const TileSetting setting(tile);
    TensorCoreLaunches observed;
    run_passes(tile_case, bf16, format, stream);
    return observed.launches.at(0).blocks;
  };
  EXPECT_EQ(forward_blocks(kSmall, kChannelsLast), 4u * 3u);
  EXPECT_EQ(forward_blocks(kLarge, kChannelsLast), 2u * 2u);
  EXPECT_EQ(forward_blocks(kTall, kChannelsLast), 2u * 3u);
  EXPECT_EQ(forward_blocks(kWgmma, kChannelsLast), 2u * 2u);
  EXPECT_EQ(forward_blocks(kWgmmaTma, kChannelsLast), 2u * 2u);
  EXPECT_EQ(forward_blocks(kTall, kContiguous), 4u * 3u);
#else
  GTEST_SKIP() << "needs the simulator's launch observer; the bits above cover both tiles on a GPU";
#endif
}

}  // namespace
}  // namespace strata::kernels
