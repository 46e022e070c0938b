// The row order of conv2d_max_pool2d's implicit GEMM (conv2d_max_pool2d_tensor_core.cu), host
// and device code so that the host tests check it: the GEMM's rows are the conv pixels that
// some 2x2 pooling window holds, numbered m = window * 4 + position, windows in y's order
// (image, pooled row, pooled column) and positions in the window's row-major order (the order
// max_pool2d scans it). Every block tile (64 or 128 rows) then holds 16 or 32 whole windows,
// which its epilogue pools. The last row or column of an odd P or Q is in no window and has no row.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cstdint>

namespace strata::kernels::conv2d_max_pool2d {

inline constexpr int kWindowPixels = 4;  // 2x2

// The pooled plane (Ho, Wo) = (P / 2, Q / 2) of a conv output (P, Q).
struct PooledPlane {
  int height;  // Ho
  int width;   // Wo
  int area;    // Ho * Wo
};

__host__ __device__ constexpr PooledPlane pooled_plane(int out_height, int out_width) {
  return {out_height / 2, out_width / 2, out_height / 2 * (out_width / 2)};
}

// GEMM row m's conv pixel: image, p, q, and its window's index in y (image * Ho * Wo + oh *
// Wo + ow), with m < batch * plane.area * kWindowPixels.
struct WindowPixel {
  int image;
  int p;
  int q;
  int window;
};

__host__ __device__ constexpr WindowPixel window_pixel(int m, const PooledPlane& plane) {
  const int window = m / kWindowPixels;
  const int position = m - window * kWindowPixels;  // dy * 2 + dx
  const int image = window / plane.area;
  const int within = window - image * plane.area;
  const int oh = within / plane.width;
  const int ow = within - oh * plane.width;
  return {image, 2 * oh + position / 2, 2 * ow + position % 2, window};
}

}  // namespace strata::kernels::conv2d_max_pool2d
