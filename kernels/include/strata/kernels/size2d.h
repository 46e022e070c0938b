// Size2d: a (height, width) pair, the type of every 2-D parameter of the kernels
// (kernel sizes, strides, padding, dilation, output sizes).
#pragma once

#include <cstdint>

namespace strata::kernels {

struct Size2d {
  std::int64_t h = 0;
  std::int64_t w = 0;
  friend bool operator==(const Size2d&, const Size2d&) = default;
};

}  // namespace strata::kernels
