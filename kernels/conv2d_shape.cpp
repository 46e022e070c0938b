// Host-side shape arithmetic and validation of conv2d, and the planning of its GEMM tiles
// and reduction splits (kernels/conv2d_plan.h).
#include <algorithm>
#include <limits>

#include <fmt/format.h>

#include "core/check.h"
#include "kernels/conv2d_plan.h"
#include "strata/kernels/conv2d.h"

namespace strata::kernels {

namespace {

constexpr std::int64_t kInt32Max = std::numeric_limits<std::int32_t>::max();

constexpr std::int64_t ceil_div(std::int64_t a, std::int64_t b) { return (a + b - 1) / b; }

}  // namespace

std::string_view to_string(ConvMath math) {
  switch (math) {
    case ConvMath::fp32: return "fp32";
    case ConvMath::tf32: return "tf32";
    case ConvMath::bf16: return "bf16";
  }
  return "unknown";
}

std::string to_string(const Conv2dParams& params) {
  std::string text = fmt::format("stride ({}, {}), padding ({}, {}), dilation ({}, {}), groups {}", params.stride.h,
                                 params.stride.w, params.padding.h, params.padding.w, params.dilation.h,
                                 params.dilation.w, params.groups);
  if (params.math != ConvMath::fp32) text += fmt::format(", math {}", to_string(params.math));
  return text;
}

std::int64_t conv2d_output_size(std::int64_t in, std::int64_t kernel, std::int64_t stride, std::int64_t padding,
                                std::int64_t dilation) {
  const std::int64_t span = in + 2 * padding - dilation * (kernel - 1) - 1;
  // floor division: span may be negative when the dilated kernel does not fit.
  const std::int64_t quotient = span >= 0 ? span / stride : -((-span + stride - 1) / stride);
  return quotient + 1;
}

Conv2dShape conv2d_shape(const Shape& input, const Shape& weight, const Conv2dParams& params, std::string_view op) {
  const std::string context = fmt::format("{}: input {} and weight {} with {}", op, input.to_string(),
                                          weight.to_string(), to_string(params));
  STRATA_CHECK(input.rank() == 4, "{}: input must have 4 dimensions (N, C, H, W)", context);
  STRATA_CHECK(weight.rank() == 4, "{}: weight must have 4 dimensions (K, C/groups, R, S)", context);
  for (int dim = 0; dim < 4; ++dim) {
    STRATA_CHECK(input[dim] >= 1 && weight[dim] >= 1, "{}: every size must be at least 1", context);
  }
  STRATA_CHECK(params.stride.h >= 1 && params.stride.w >= 1, "{}: stride must be at least 1", context);
  STRATA_CHECK(params.dilation.h >= 1 && params.dilation.w >= 1, "{}: dilation must be at least 1", context);
  STRATA_CHECK(params.padding.h >= 0 && params.padding.w >= 0, "{}: padding must not be negative", context);
  STRATA_CHECK(params.groups >= 1, "{}: groups must be at least 1", context);
  // Before any arithmetic on them, so that nothing below can overflow.
  for (const std::int64_t value : {input[2], input[3], weight[2], weight[3], params.stride.h, params.stride.w,
                                   params.padding.h, params.padding.w, params.dilation.h, params.dilation.w}) {
    STRATA_CHECK(value <= kInt32Max, "{}: spatial sizes and parameters must be below 2^31", context);
  }

  Conv2dShape shape;
  shape.batch = input[0];
  shape.in_channels = input[1];
  shape.in_height = input[2];
  shape.in_width = input[3];
  shape.out_channels = weight[0];
  shape.kernel_height = weight[2];
  shape.kernel_width = weight[3];
  shape.params = params;
  STRATA_CHECK(shape.in_channels % params.groups == 0, "{}: {} input channels are not divisible by {} groups",
               context, shape.in_channels, params.groups);
  STRATA_CHECK(shape.out_channels % params.groups == 0, "{}: {} output channels are not divisible by {} groups",
               context, shape.out_channels, params.groups);
  STRATA_CHECK(weight[1] == shape.in_channels_per_group(),
               "{}: weight has {} input channels per group, expected {} = {} channels / {} groups", context,
               weight[1], shape.in_channels_per_group(), shape.in_channels, params.groups);

  shape.out_height = conv2d_output_size(shape.in_height, shape.kernel_height, params.stride.h, params.padding.h,
                                        params.dilation.h);
  shape.out_width =
      conv2d_output_size(shape.in_width, shape.kernel_width, params.stride.w, params.padding.w, params.dilation.w);
  STRATA_CHECK(shape.out_height >= 1 && shape.out_width >= 1,
               "{}: output size would be {}x{}; the dilated kernel ({}x{}) must fit in the padded input ({}x{})",
               context, shape.out_height, shape.out_width, params.dilation.h * (shape.kernel_height - 1) + 1,
               params.dilation.w * (shape.kernel_width - 1) + 1, shape.in_height + 2 * params.padding.h,
               shape.in_width + 2 * params.padding.w);

  // The kernels' coordinates, pixel indices and reduction indices are 32-bit.
  const std::int64_t kernel_area = shape.kernel_height * shape.kernel_width;
  STRATA_CHECK(shape.in_channels_per_group() * kernel_area <= kInt32Max &&
                   shape.out_channels_per_group() * kernel_area <= kInt32Max,
               "{}: channels per group times kernel area must be below 2^31", context);
  STRATA_CHECK(shape.in_height + 2 * params.padding.h <= kInt32Max && shape.in_width + 2 * params.padding.w <= kInt32Max &&
                   params.dilation.h * (shape.kernel_height - 1) < kInt32Max &&
                   params.dilation.w * (shape.kernel_width - 1) < kInt32Max,
               "{}: padded input and dilated kernel sizes must be below 2^31", context);
  STRATA_CHECK(shape.batch * shape.in_height * shape.in_width <= kInt32Max &&
                   shape.batch * shape.out_height * shape.out_width <= kInt32Max,
               "{}: N*H*W and N*P*Q must be below 2^31 (the kernels count pixels in 32 bits)", context);
  return shape;
}

Conv2dTileKind select_conv2d_tile(std::int64_t gemm_m, std::int64_t gemm_n) {
  constexpr std::int64_t kNarrow = 8;
  constexpr std::int64_t kWide = 64;
  if (gemm_n <= kNarrow && gemm_m > kNarrow) return Conv2dTileKind::few_columns;
  if (gemm_m <= kNarrow && gemm_n > kNarrow) return Conv2dTileKind::few_rows;
  if (gemm_m >= kWide && gemm_n >= kWide) return Conv2dTileKind::large;
  return Conv2dTileKind::small;
}

Conv2dReductionSplit split_conv2d_reduction(std::int64_t length, std::int64_t output_blocks, int block_k) {
  STRATA_CHECK(length >= 1 && output_blocks >= 1 && block_k >= 1,
               "split_conv2d_reduction: length {}, output_blocks {} and block_k {} must be positive", length,
               output_blocks, block_k);
  const std::int64_t wanted = ceil_div(kConv2dTargetBlocks, output_blocks);
  const std::int64_t most = std::max<std::int64_t>(1, length / kConv2dMinChunk);
  const std::int64_t splits = std::clamp<std::int64_t>(wanted, 1, most);
  const std::int64_t chunk = ceil_div(ceil_div(length, splits), block_k) * block_k;
  // Rounding the chunk up to block_k can leave fewer non-empty chunks than asked for.
  return {.splits = ceil_div(length, chunk), .chunk = chunk};
}

}  // namespace strata::kernels
