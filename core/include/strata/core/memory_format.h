// MemoryFormat: the order in which a tensor's elements lie in memory. A tensor's shape is
// always (N, C, H, W) whatever its format, as in PyTorch: channels_last only changes where
// element (n, c, h, w) is, at ((n * H + h) * W + w) * C + c instead of ((n * C + c) * H + h)
// * W + w. Tensor::to_memory_format converts; ops that read a format they do not support
// refuse it (Tensor::data_ptr), so that nothing reads the elements in the wrong order.
#pragma once

#include <cstdint>
#include <string_view>

#include "strata/core/shape.h"

namespace strata {

enum class MemoryFormat : std::uint8_t {
  contiguous,     // row-major in the shape's order: (N, C, H, W)
  channels_last,  // 4-D only: (N, H, W, C) in memory, the channels of a pixel adjacent
};

constexpr std::string_view memory_format_name(MemoryFormat format) noexcept {
  switch (format) {
    case MemoryFormat::contiguous: return "contiguous";
    case MemoryFormat::channels_last: return "channels_last";
  }
  return "invalid";
}

// Whether both formats put every element of shape at the same place: a 4-D shape with one
// channel or one pixel per plane (airbench94's (N, 256, 1, 1) before its linear layer).
// A channels-last tensor of such a shape reads like a contiguous one.
inline bool layouts_coincide(const Shape& shape) {
  return shape.rank() != 4 || shape[1] == 1 || shape[2] * shape[3] == 1;
}

}  // namespace strata
