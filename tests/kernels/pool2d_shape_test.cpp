// The pooling ops' host-side shape math (kernels/pool2d_windows.cuh, kernels/pool2d_shape.cpp):
// output sizes against a transcription of PyTorch's pooling_output_shape on a sweep, window
// and bin ranges against brute force, and the validation messages.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/pool2d_windows.cuh"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/pool2d.h"
#include "tests/kernels/pool2d_test_support.h"
#include "tests/reference/pool2d_reference.h"

namespace strata::kernels {
namespace {

using pool2d::IndexRange;
using pool2d::PoolAxis;
using pool2d_testing::expect_invalid;

TEST(Pool2dShape, KnownSizes) {
  // ResNet's stem pool: 112 -> 56.
  EXPECT_EQ(max_pool2d_output_shape(Shape{8, 64, 112, 112}, Pool2dParams{.kernel = {3, 3}, .stride = Size2d{2, 2},
                                                                          .padding = {1, 1}}),
            (Shape{8, 64, 56, 56}));
  // Stride defaults to the kernel.
  EXPECT_EQ(max_pool2d_output_shape(Shape{1, 3, 7, 9}, Pool2dParams{.kernel = {2, 3}}), (Shape{1, 3, 3, 3}));
  EXPECT_EQ((Pool2dParams{.kernel = {2, 3}}.effective_stride()), (Size2d{2, 3}));
  // ceil_mode keeps the partial last window: floor(4/2)+1 = 3 vs ceil(4/2)+1 = 4.
  EXPECT_EQ(max_pool2d_output_shape(Shape{1, 1, 7, 7}, Pool2dParams{.kernel = {3, 3}, .stride = Size2d{2, 2}}),
            (Shape{1, 1, 3, 3}));
  EXPECT_EQ(max_pool2d_output_shape(Shape{1, 1, 6, 6},
                                    Pool2dParams{.kernel = {3, 3}, .stride = Size2d{2, 2}, .ceil_mode = true}),
            (Shape{1, 1, 3, 3}));
  EXPECT_EQ(max_pool2d_output_shape(Shape{1, 1, 6, 6}, Pool2dParams{.kernel = {3, 3}, .stride = Size2d{2, 2}}),
            (Shape{1, 1, 2, 2}));
  // ceil_mode drops a window that would start in the right padding: H = 5, k = 2, s = 2,
  // p = 1 rounds up to 4 windows, but the 4th would start at 5 = H.
  EXPECT_EQ(max_pool2d_output_shape(Shape{1, 1, 5, 5}, Pool2dParams{.kernel = {2, 2}, .padding = {1, 1},
                                                                    .ceil_mode = true}),
            (Shape{1, 1, 3, 3}));
  // Dilation widens the span to (k - 1) * d + 1.
  EXPECT_EQ(max_pool2d_output_shape(Shape{2, 1, 7, 9}, Pool2dParams{.kernel = {3, 3}, .stride = Size2d{1, 1},
                                                                    .dilation = {2, 3}}),
            (Shape{2, 1, 3, 3}));
  // N = 0 is allowed, as in PyTorch.
  EXPECT_EQ(avg_pool2d_output_shape(Shape{0, 3, 4, 4}, AvgPool2dParams{.window = {.kernel = {2, 2}}}),
            (Shape{0, 3, 2, 2}));
  EXPECT_EQ(adaptive_avg_pool2d_output_shape(Shape{2, 5, 7, 3}, AdaptivePool2dParams{.output_size = {1, 1}}),
            (Shape{2, 5, 1, 1}));
  EXPECT_EQ(adaptive_max_pool2d_output_shape(Shape{2, 5, 3, 3}, AdaptivePool2dParams{.output_size = {5, 4}}),
            (Shape{2, 5, 5, 4}));
}

// Every valid combination on a small grid: the shared __host__ __device__ formula, the public
// shape function and PyTorch's own code agree, and the shape function rejects exactly the
// combinations whose output would be empty.
TEST(Pool2dShape, OutputSizeMatchesPyTorchOnASweep) {
  int valid = 0;
  int too_small = 0;
  for (std::int64_t input = 1; input <= 13; ++input) {
    for (std::int64_t kernel = 1; kernel <= 6; ++kernel) {
      for (std::int64_t stride = 1; stride <= 4; ++stride) {
        for (std::int64_t padding = 0; padding <= kernel / 2; ++padding) {
          for (std::int64_t dilation = 1; dilation <= 3; ++dilation) {
            for (const bool ceil_mode : {false, true}) {
              const std::int64_t expected =
                  reference::pooling_output_shape(input, kernel, padding, stride, dilation, ceil_mode);
              const PoolAxis axis{.input = input, .kernel = kernel, .stride = stride, .padding = padding,
                                  .dilation = dilation};
              ASSERT_EQ(pool2d::pooled_size(axis, ceil_mode), expected)
                  << "input " << input << " kernel " << kernel << " stride " << stride << " padding " << padding
                  << " dilation " << dilation << " ceil_mode " << ceil_mode;
              const Pool2dParams params{.kernel = {kernel, 1}, .stride = Size2d{stride, 1},
                                        .padding = {padding, 0}, .dilation = {dilation, 1}, .ceil_mode = ceil_mode};
              const Shape x{1, 1, input, 1};
              if (expected >= 1) {
                ++valid;
                ASSERT_EQ(max_pool2d_output_shape(x, params), (Shape{1, 1, expected, 1}));
              } else {
                ++too_small;
                ASSERT_THROW(max_pool2d_output_shape(x, params), InvalidArgument);
              }
            }
          }
        }
      }
    }
  }
  EXPECT_GT(valid, 1000);
  EXPECT_GT(too_small, 50);
}

// The windows the kernels scan, against brute-force enumeration of the kernel taps; and the
// claims the kernels rely on: an avg window (no dilation) always holds an input element, so
// no output is averaged over padding alone (max windows with dilation can miss the input);
// tiling windows hold each input at most once, and tiled_inputs hands it to that window.
TEST(Pool2dShape, WindowsMatchBruteForceAndAvgWindowsAreNeverAllPadding) {
  int empty_dilated_windows = 0;
  int tiling_axes = 0;
  for (std::int64_t input = 1; input <= 11; ++input) {
    for (std::int64_t kernel = 1; kernel <= 5; ++kernel) {
      for (std::int64_t stride = 1; stride <= 3; ++stride) {
        for (std::int64_t padding = 0; padding <= kernel / 2; ++padding) {
          for (std::int64_t dilation = 1; dilation <= 3; ++dilation) {
            for (const bool ceil_mode : {false, true}) {
              PoolAxis axis{.input = input, .kernel = kernel, .stride = stride, .padding = padding,
                            .dilation = dilation};
              axis.output = pool2d::pooled_size(axis, ceil_mode);
              axis = pool2d::with_dividers(axis);
              for (std::int64_t o = 0; o < axis.output; ++o) {
                const std::int64_t start = o * stride - padding;
                // Max window: taps start + j*d inside the input.
                std::vector<std::int64_t> taps;
                for (std::int64_t j = 0; j < kernel; ++j) {
                  if (start + j * dilation >= 0 && start + j * dilation < input) taps.push_back(start + j * dilation);
                }
                const IndexRange window = pool2d::dilated_window(axis, o);
                std::vector<std::int64_t> scanned;
                for (std::int64_t i = window.begin; i < window.end; i += dilation) scanned.push_back(i);
                ASSERT_EQ(scanned, taps) << "input " << input << " kernel " << kernel << " stride " << stride
                                         << " padding " << padding << " dilation " << dilation << " o " << o;
                empty_dilated_windows += taps.empty();
                if (dilation != 1) continue;
                ASSERT_FALSE(taps.empty()) << "an undilated window lies wholly in the padding";
                // Avg window: the same taps, and the padded extent counts taps below input + padding.
                const pool2d::AvgWindow avg = pool2d::avg_window(axis, o);
                ASSERT_EQ(avg.inputs.begin, taps.front());
                ASSERT_EQ(avg.inputs.end, taps.back() + 1);
                std::int64_t padded = 0;
                for (std::int64_t j = 0; j < kernel; ++j) padded += start + j < input + padding;
                ASSERT_EQ(avg.padded_extent, padded);
              }
              // outputs_covering: exactly the outputs whose span [start, start + span) holds i.
              for (std::int64_t i = 0; i < input; ++i) {
                std::vector<std::int64_t> expected;
                for (std::int64_t o = 0; o < axis.output; ++o) {
                  const std::int64_t start = o * stride - padding;
                  if (start <= i && i < start + (kernel - 1) * dilation + 1) expected.push_back(o);
                }
                const IndexRange covering = pool2d::outputs_covering(axis, i);
                std::vector<std::int64_t> actual;
                for (std::int64_t o = covering.begin; o < covering.end; ++o) actual.push_back(o);
                ASSERT_EQ(actual, expected) << "input " << input << " kernel " << kernel << " stride " << stride
                                            << " padding " << padding << " dilation " << dilation << " i " << i;
                // Tiling windows: at most one holds i, and the tiled backward gives i to that one
                // (to the last output when none holds it). No outputs: the geometry refuses it.
                if (!pool2d::windows_tile(axis) || axis.output < 1) continue;
                ASSERT_LE(expected.size(), 1u);
                std::vector<std::int64_t> given;
                for (std::int64_t o = 0; o < axis.output; ++o) {
                  const IndexRange range = pool2d::tiled_inputs(axis, o);
                  if (range.begin <= i && i < range.end) given.push_back(o);
                }
                ASSERT_EQ(given, expected.empty() ? std::vector<std::int64_t>{axis.output - 1} : expected)
                    << "input " << input << " kernel " << kernel << " ceil " << ceil_mode << " i " << i;
              }
              tiling_axes += pool2d::windows_tile(axis);
            }
          }
        }
      }
    }
  }
  EXPECT_GT(empty_dilated_windows, 0);  // they exist: max_pool2d defines them (-inf, argmax -1)
  EXPECT_GT(tiling_axes, 0);
}

// The adaptive axis of input elements cut into output bins.
PoolAxis adaptive_axis(std::int64_t input, std::int64_t output) {
  return pool2d::with_dividers(PoolAxis{.input = input, .output = output});
}

TEST(Pool2dShape, AdaptiveBinsAreFloorAndCeilAndTheirInverseIsExact) {
  for (std::int64_t input = 1; input <= 17; ++input) {
    for (std::int64_t output = 1; output <= 17; ++output) {
      const PoolAxis axis = adaptive_axis(input, output);
      for (std::int64_t o = 0; o < output; ++o) {
        const IndexRange bin = pool2d::adaptive_bin(axis, o);
        ASSERT_EQ(bin.begin, static_cast<std::int64_t>(std::floor(static_cast<double>(o * input) / output)));
        ASSERT_EQ(bin.end, static_cast<std::int64_t>(std::ceil(static_cast<double>((o + 1) * input) / output)));
        ASSERT_LT(bin.begin, bin.end);
      }
      for (std::int64_t i = 0; i < input; ++i) {
        std::vector<std::int64_t> expected;
        for (std::int64_t o = 0; o < output; ++o) {
          const IndexRange bin = pool2d::adaptive_bin(axis, o);
          if (bin.begin <= i && i < bin.end) expected.push_back(o);
        }
        const IndexRange containing = pool2d::bins_containing(axis, i);
        std::vector<std::int64_t> actual;
        for (std::int64_t o = containing.begin; o < containing.end; ++o) actual.push_back(o);
        ASSERT_EQ(actual, expected) << "input " << input << " output " << output << " i " << i;
      }
    }
  }
  // Overlapping bins (5 -> 3: [0,2) [1,4) [3,5)) and repeated rows (3 -> 5).
  EXPECT_EQ(pool2d::adaptive_bin(adaptive_axis(5, 3), 1).begin, 1);
  EXPECT_EQ(pool2d::adaptive_bin(adaptive_axis(5, 3), 1).end, 4);
  EXPECT_EQ(pool2d::adaptive_bin(adaptive_axis(3, 5), 1).begin, 0);
  EXPECT_EQ(pool2d::adaptive_bin(adaptive_axis(3, 5), 1).end, 2);
}

// The kernels divide by the geometry's dividers: the geometry functions set them from the sizes.
TEST(Pool2dShape, GeometriesCarryTheDividersOfTheirAxes) {
  const auto expect_dividers = [](const PoolAxis& axis) {
    EXPECT_EQ(axis.dividers.stride.divisor(), axis.stride);
    EXPECT_EQ(axis.dividers.dilation.divisor(), axis.dilation);
    EXPECT_EQ(axis.dividers.input.divisor(), axis.input);
    EXPECT_EQ(axis.dividers.output.divisor(), axis.output);
  };
  const Shape x{2, 3, 31, 17};
  const Pool2dParams window{.kernel = {3, 2}, .stride = Size2d{2, 3}, .padding = {1, 0}, .dilation = {2, 1}};
  const AvgPool2dParams average{.window = {.kernel = {3, 2}, .stride = Size2d{2, 3}, .padding = {1, 1}}};
  const AdaptivePool2dParams adaptive{.output_size = {7, 5}};
  for (const pool2d::PoolGeometry& geometry : {pool2d::max_pool2d_geometry("max_pool2d", x, window),
                                               pool2d::avg_pool2d_geometry("avg_pool2d", x, average),
                                               pool2d::adaptive_pool2d_geometry("adaptive_avg_pool2d", x, adaptive)}) {
    expect_dividers(geometry.rows);
    expect_dividers(geometry.cols);
  }
}

TEST(Pool2dShape, FloorDivisionRoundsTowardNegativeInfinity) {
  EXPECT_EQ(pool2d::floor_div(7, 2), 3);
  EXPECT_EQ(pool2d::floor_div(-1, 2), -1);
  EXPECT_EQ(pool2d::floor_div(-4, 2), -2);
  EXPECT_EQ(pool2d::floor_div(-5, 3), -2);
  EXPECT_EQ(pool2d::floor_div(0, 3), 0);
}

TEST(Pool2dShape, InvalidParametersNameTheOpAndShapes) {
  const Shape x{2, 3, 8, 8};
  expect_invalid([&] { max_pool2d_output_shape(x, Pool2dParams{.kernel = {0, 3}}); },
                 {"max_pool2d: kernel size must be positive", "x (2, 3, 8, 8)", "kernel (0, 3)"});
  expect_invalid([&] { max_pool2d_output_shape(x, Pool2dParams{.kernel = {2, 2}, .stride = Size2d{1, 0}}); },
                 {"max_pool2d: stride must be positive", "stride (1, 0)"});
  expect_invalid([&] { max_pool2d_output_shape(x, Pool2dParams{.kernel = {2, 2}, .dilation = {0, 1}}); },
                 {"max_pool2d: dilation must be positive", "dilation (0, 1)"});
  expect_invalid([&] { max_pool2d_output_shape(x, Pool2dParams{.kernel = {3, 3}, .padding = {-1, 0}}); },
                 {"max_pool2d: padding must be non-negative", "padding (-1, 0)"});
  expect_invalid([&] { max_pool2d_output_shape(x, Pool2dParams{.kernel = {3, 4}, .padding = {1, 3}}); },
                 {"max_pool2d: padding should be at most half of the kernel size", "kernel (3, 4)", "padding (1, 3)"});
  // Padding is bounded by half the kernel, not by half the dilated span (as PyTorch).
  const Pool2dParams dilated{.kernel = {3, 3}, .padding = {2, 2}, .dilation = {2, 2}};
  expect_invalid([&] { max_pool2d_output_shape(x, dilated); },
                 {"padding should be at most half of the kernel size"});
  expect_invalid([&] { max_pool2d_output_shape(Shape{1, 1, 3, 3}, Pool2dParams{.kernel = {5, 5}}); },
                 {"max_pool2d: output size (0, 0) is too small", "x (1, 1, 3, 3)", "kernel (5, 5)"});
  expect_invalid([&] { max_pool2d_output_shape(Shape{3, 8, 8}, Pool2dParams{.kernel = {2, 2}}); },
                 {"max_pool2d: x must have 4 dimensions (N, C, H, W), got shape (3, 8, 8)"});
  expect_invalid([&] { max_pool2d_output_shape(Shape{1, 0, 8, 8}, Pool2dParams{.kernel = {2, 2}}); },
                 {"max_pool2d: x must have non-empty channel and spatial dimensions", "(1, 0, 8, 8)"});
  expect_invalid([&] { max_pool2d_output_shape(x, Pool2dParams{.kernel = {std::int64_t{1} << 32, 1}}); },
                 {"max_pool2d: spatial sizes and parameters must be below 2^31"});
  expect_invalid([&] { avg_pool2d_output_shape(x, AvgPool2dParams{.window = {.kernel = {2, 2}, .dilation = {2, 2}}}); },
                 {"avg_pool2d: avg_pool2d has no dilation", "dilation (2, 2)", "x (2, 3, 8, 8)"});
  const AvgPool2dParams zero_divisor{.window = {.kernel = {2, 2}}, .divisor_override = 0};
  expect_invalid([&] { avg_pool2d_output_shape(x, zero_divisor); },
                 {"avg_pool2d: divisor_override must not be 0"});
  expect_invalid([&] { avg_pool2d_output_shape(x, AvgPool2dParams{.window = {.kernel = {2, 0}}}); },
                 {"avg_pool2d: kernel size must be positive"});
  expect_invalid([&] { adaptive_avg_pool2d_output_shape(x, AdaptivePool2dParams{.output_size = {0, 2}}); },
                 {"adaptive_avg_pool2d: output_size must be at least (1, 1), got (0, 2) for x (2, 3, 8, 8)"});
  const AdaptivePool2dParams global{.output_size = {1, 1}};
  expect_invalid([&] { adaptive_max_pool2d_output_shape(Shape{2, 3, 0, 8}, global); },
                 {"adaptive_max_pool2d: x must have non-empty channel and spatial dimensions", "(2, 3, 0, 8)"});
  expect_invalid([&] { adaptive_max_pool2d_output_shape(Shape{8}, global); },
                 {"adaptive_max_pool2d: x must have 4 dimensions"});
}

}  // namespace
}  // namespace strata::kernels
