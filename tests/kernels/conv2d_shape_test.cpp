// conv2d's host-side shape function, its validation messages, and the planning of its GEMM
// tiles and reduction splits.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>

#include "kernels/conv2d_plan.h"
#include "strata/core/errors.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {
namespace {

std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const InvalidArgument& error) {
    return error.what();
  }
  return "(no exception)";
}

TEST(Conv2dShape, OutputSizeFollowsPyTorchsFormula) {
  // floor((in + 2p - d(k-1) - 1)/s) + 1
  EXPECT_EQ(conv2d_output_size(32, 3, 1, 1, 1), 32);
  EXPECT_EQ(conv2d_output_size(32, 3, 2, 1, 1), 16);
  EXPECT_EQ(conv2d_output_size(7, 3, 2, 0, 1), 3);
  EXPECT_EQ(conv2d_output_size(8, 3, 3, 1, 1), 3);   // floor(7/3) + 1
  EXPECT_EQ(conv2d_output_size(7, 3, 1, 0, 2), 3);   // dilated kernel spans 5
  EXPECT_EQ(conv2d_output_size(1, 1, 1, 0, 1), 1);
  EXPECT_EQ(conv2d_output_size(1, 3, 1, 3, 1), 5);   // padding larger than the kernel
  EXPECT_EQ(conv2d_output_size(2, 3, 1, 0, 1), 0);   // kernel does not fit
  EXPECT_EQ(conv2d_output_size(2, 5, 2, 0, 1), -1);  // floor(-3/2) + 1: floor, not truncation
  EXPECT_EQ(conv2d_output_size(2, 9, 2, 0, 1), -3);
}

TEST(Conv2dShape, ResolvesEverySize) {
  const Conv2dParams params{.stride = {2, 1}, .padding = {1, 0}, .dilation = {1, 2}, .groups = 2};
  const Conv2dShape shape = conv2d_shape(Shape{3, 4, 9, 8}, Shape{6, 2, 3, 2}, params);
  EXPECT_EQ(shape.batch, 3);
  EXPECT_EQ(shape.in_channels, 4);
  EXPECT_EQ(shape.out_channels, 6);
  EXPECT_EQ(shape.in_channels_per_group(), 2);
  EXPECT_EQ(shape.out_channels_per_group(), 3);
  EXPECT_EQ(shape.out_height, 5);  // floor((9 + 2 - 2 - 1)/2) + 1
  EXPECT_EQ(shape.out_width, 6);   // floor((8 - 2*1 - 1)/1) + 1
  EXPECT_EQ(shape.output(), (Shape{3, 6, 5, 6}));
  EXPECT_EQ(shape.input(), (Shape{3, 4, 9, 8}));
  EXPECT_EQ(shape.weight(), (Shape{6, 2, 3, 2}));
  EXPECT_EQ(shape.bias(), (Shape{6}));
}

TEST(Conv2dShape, DepthwiseAndOneByOneOutput) {
  const Conv2dShape depthwise =
      conv2d_shape(Shape{1, 5, 4, 4}, Shape{10, 1, 3, 3}, Conv2dParams{.padding = {1, 1}, .groups = 5});
  EXPECT_EQ(depthwise.output(), (Shape{1, 10, 4, 4}));
  const Conv2dShape whole = conv2d_shape(Shape{2, 3, 5, 4}, Shape{7, 3, 5, 4}, Conv2dParams{});
  EXPECT_EQ(whole.output(), (Shape{2, 7, 1, 1}));
}

TEST(Conv2dShape, ParamsPrintAsInMessages) {
  EXPECT_EQ(to_string(Conv2dParams{.stride = {2, 3}, .padding = {1, 0}, .dilation = {1, 2}, .groups = 4}),
            "stride (2, 3), padding (1, 0), dilation (1, 2), groups 4");
}

TEST(Conv2dShape, MessagesNameTheOpShapesAndParams) {
  const std::string mismatch =
      message_of([] { conv2d_shape(Shape{2, 4, 5, 5}, Shape{6, 3, 3, 3}, Conv2dParams{.groups = 2}); });
  EXPECT_NE(mismatch.find("conv2d: input (2, 4, 5, 5) and weight (6, 3, 3, 3) with stride (1, 1), padding (0, 0), "
                          "dilation (1, 1), groups 2"),
            std::string::npos)
      << mismatch;
  EXPECT_NE(mismatch.find("weight has 3 input channels per group, expected 2"), std::string::npos) << mismatch;

  const std::string too_small = message_of([] { conv2d_shape(Shape{1, 1, 2, 5}, Shape{1, 1, 3, 3}, Conv2dParams{}); });
  EXPECT_NE(too_small.find("output size would be 0x3"), std::string::npos) << too_small;

  const std::string named = message_of(
      [] { conv2d_shape(Shape{1, 1, 2, 5}, Shape{1, 1, 3, 3}, Conv2dParams{}, "conv2d_backward_filter"); });
  EXPECT_NE(named.find("conv2d_backward_filter: input (1, 1, 2, 5)"), std::string::npos) << named;
}

TEST(Conv2dShape, RejectsBadParameters) {
  const Shape input{2, 4, 6, 6};
  const Shape weight{4, 4, 3, 3};
  const auto expect_rejected = [&](const Shape& in, const Shape& w, const Conv2dParams& params, const char* why) {
    const std::string message = message_of([&] { conv2d_shape(in, w, params); });
    EXPECT_NE(message.find(why), std::string::npos) << "expected '" << why << "' in: " << message;
  };
  expect_rejected(Shape{4, 6, 6}, weight, {}, "input must have 4 dimensions");
  expect_rejected(input, Shape{4, 4, 3}, {}, "weight must have 4 dimensions");
  expect_rejected(Shape{0, 4, 6, 6}, weight, {}, "every size must be at least 1");
  expect_rejected(input, Shape{0, 4, 3, 3}, {}, "every size must be at least 1");
  expect_rejected(input, Shape{4, 4, 0, 3}, {}, "every size must be at least 1");
  expect_rejected(input, weight, Conv2dParams{.stride = {0, 1}}, "stride must be at least 1");
  expect_rejected(input, weight, Conv2dParams{.stride = {1, -2}}, "stride must be at least 1");
  expect_rejected(input, weight, Conv2dParams{.dilation = {1, 0}}, "dilation must be at least 1");
  expect_rejected(input, weight, Conv2dParams{.padding = {-1, 0}}, "padding must not be negative");
  expect_rejected(input, weight, Conv2dParams{.groups = 0}, "groups must be at least 1");
  expect_rejected(input, Shape{4, 4, 3, 3}, Conv2dParams{.groups = 3}, "4 input channels are not divisible by 3 groups");
  expect_rejected(input, Shape{3, 2, 3, 3}, Conv2dParams{.groups = 2}, "3 output channels are not divisible by 2 groups");
  expect_rejected(input, Shape{4, 4, 3, 3}, Conv2dParams{.groups = 2}, "weight has 4 input channels per group");
  expect_rejected(input, Shape{4, 4, 7, 3}, {}, "output size would be 0x4");
  expect_rejected(input, weight, Conv2dParams{.dilation = {3, 1}}, "output size would be 0x4");
  expect_rejected(input, weight, Conv2dParams{.padding = {1LL << 40, 0}}, "below 2^31");
}

TEST(Conv2dPlan, TileFollowsTheGemmShape) {
  EXPECT_EQ(select_conv2d_tile(4096, 64), Conv2dTileKind::large);
  EXPECT_EQ(select_conv2d_tile(64, 576), Conv2dTileKind::large);
  EXPECT_EQ(select_conv2d_tile(4096, 32), Conv2dTileKind::small);
  EXPECT_EQ(select_conv2d_tile(9, 9), Conv2dTileKind::small);
  EXPECT_EQ(select_conv2d_tile(1, 1), Conv2dTileKind::small);
  EXPECT_EQ(select_conv2d_tile(4096, 1), Conv2dTileKind::few_columns);  // depthwise forward
  EXPECT_EQ(select_conv2d_tile(1, 9), Conv2dTileKind::few_rows);         // depthwise filter
  for (const Conv2dTileKind kind :
       {Conv2dTileKind::large, Conv2dTileKind::small, Conv2dTileKind::few_columns, Conv2dTileKind::few_rows}) {
    const Conv2dTile tile = conv2d_tile(kind);
    EXPECT_EQ(tile.block_m % tile.thread_m, 0);
    EXPECT_EQ(tile.block_n % tile.thread_n, 0);
    EXPECT_EQ(tile.threads() % 32, 0) << "whole warps";
    EXPECT_LE(tile.threads(), 1024);
  }
}

TEST(Conv2dPlan, ReductionSplitCoversEveryStepOnce) {
  for (const std::int64_t length : {1LL, 7LL, 8LL, 63LL, 64LL, 65LL, 200LL, 1000LL, 262144LL}) {
    for (const std::int64_t output_blocks : {1LL, 3LL, 9LL, 100LL, 256LL, 5000LL}) {
      const Conv2dReductionSplit split = split_conv2d_reduction(length, output_blocks, 8);
      SCOPED_TRACE("length " + std::to_string(length) + ", output blocks " + std::to_string(output_blocks));
      EXPECT_GE(split.splits, 1);
      EXPECT_EQ(split.chunk % 8, 0);
      EXPECT_GE(split.splits * split.chunk, length);             // covers the reduction
      EXPECT_LT((split.splits - 1) * split.chunk, length);       // no empty chunk
      if (split.splits > 1) {
        EXPECT_GE(split.chunk, kConv2dMinChunk);
      }
      EXPECT_LE(split.splits * output_blocks, std::max<std::int64_t>(kConv2dTargetBlocks, output_blocks) + output_blocks);
    }
  }
  EXPECT_EQ(split_conv2d_reduction(100, 1000, 8).splits, 1);  // enough blocks without splitting
  EXPECT_GT(split_conv2d_reduction(262144, 9, 8).splits, 16);
  EXPECT_THROW(split_conv2d_reduction(0, 1, 8), InvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
