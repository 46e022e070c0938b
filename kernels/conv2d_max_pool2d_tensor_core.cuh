// The row order of conv2d_max_pool2d's implicit GEMM (conv2d_max_pool2d_tensor_core.cu), host
// and device code so that the host tests check it: the GEMM's rows are the conv pixels that
// some 2x2 pooling window holds, numbered m = window * 4 + position, windows in y's order
// (image, pooled row, pooled column) and positions in the window's row-major order (the order
// max_pool2d scans it). Every block tile (64 or 128 rows) then holds 16 or 32 whole windows,
// which its epilogue pools. The last row or column of an odd P or Q is in no window and has no row.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cstdint>

#include "kernels/index_divider.h"

namespace strata::kernels::conv2d_max_pool2d {

inline constexpr int kWindowPixels = 4;  // 2x2

// The pooled plane (Ho, Wo) = (P / 2, Q / 2) of a conv output (P, Q), with the divisions that
// take a window's index to its image, row and column (kernels/index_divider.h).
struct PooledPlane {
  int height;  // Ho
  int width;   // Wo
  int area;    // Ho * Wo
  IndexDivider32 by_area;
  IndexDivider32 by_width;
};

// Host only (the dividers); an empty plane's are by 1 (no window is divided).
inline PooledPlane pooled_plane(int out_height, int out_width) {
  const int height = out_height / 2;
  const int width = out_width / 2;
  const auto divider = [](int size) { return IndexDivider32(size > 0 ? size : 1); };
  return {height, width, height * width, divider(height * width), divider(width)};
}

// GEMM row m's conv pixel: image, p, q, and its window's index in y (image * Ho * Wo + oh *
// Wo + ow), with m < batch * plane.area * kWindowPixels.
struct WindowPixel {
  int image;
  int p;
  int q;
  int window;
};

// It divides by the plane's dividers, or with kDividers false by its sizes (the GPU's division
// routine): the asynchronous loader's setup does, once per thread and load, because with the
// dividers there ptxas spilled registers in the TF32 128x64 kernel.
template <bool kDividers = true>
__host__ __device__ inline WindowPixel window_pixel(int m, const PooledPlane& plane) {
  using Split = QuotientRemainderOf<int>;
  const auto split = [](int n, const IndexDivider32& divider, int size) {
    if constexpr (kDividers) {
      return divider.divide_with_remainder(n);
    } else {
      return Split{n / size, n % size};
    }
  };
  const int window = m / kWindowPixels;
  const int position = m - window * kWindowPixels;  // dy * 2 + dx
  const auto [image, within] = split(window, plane.by_area, plane.area);
  const auto [oh, ow] = split(within, plane.by_width, plane.width);
  return {image, 2 * oh + position / 2, 2 * ow + position % 2, window};
}

}  // namespace strata::kernels::conv2d_max_pool2d
