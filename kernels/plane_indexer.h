// Index arithmetic of the kernels that walk an (N, C, H, W) tensor in memory order, contiguous
// or channels-last, and need each element's plane, row and column (pooling, image
// augmentation): the layout's rules and their inverse, with the divisions set up on the host.
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cstdint>

#include "kernels/index_divider.h"

namespace strata::kernels {

// A position in an (N, C, H, W) tensor: plane n * C + c, row h, column w.
struct PlanePixel {
  std::int64_t plane = 0;
  std::int64_t row = 0;
  std::int64_t column = 0;
};

// Where the (H, W) planes of an op's (N, C, H, W) tensors lie in memory: plane n * C + c
// starts at (n * C + c) * H * W with its elements 1 apart (contiguous), or, channels_last, at
// n * H * W * C + c with its elements C apart. A pooling op's input and output are laid out
// alike, so its kernels, written over planes, serve both layouts with the same window order:
// the results are bit for bit the same in either.
struct PlaneLayout {
  std::int64_t channels = 1;  // C
  bool channels_last = false;

  // The distance in memory from element h * W + w of a plane to the next.
  __host__ __device__ constexpr std::int64_t element_step() const { return channels_last ? channels : 1; }
};

// A layout's index arithmetic for one of the op's tensors, whose planes are height x width:
// the divisions that take a memory index back to its plane, row and column are set up on the
// host (IndexDivider), so that a kernel pays a few multiplies for each element instead of the
// GPU's 64-bit division routine.
class PlaneIndexer {
 public:
  PlaneIndexer(const PlaneLayout& layout, std::int64_t height, std::int64_t width)
      : layout_(layout), channels_(layout.channels), plane_size_(height * width), width_(width) {}

  __host__ __device__ std::int64_t element_step() const { return layout_.element_step(); }

  // The first element of plane plane of any of the op's tensors, whose planes hold plane_size
  // elements (this tensor's or another's).
  __host__ __device__ std::int64_t plane_start(std::int64_t plane, std::int64_t plane_size) const {
    if (!layout_.channels_last) return plane * plane_size;
    const QuotientRemainder n_c = channels_.divide_with_remainder(plane);
    return n_c.quotient * plane_size * layout_.channels + n_c.remainder;
  }
  // The plane, row and column of memory index index, the inverse of
  // plane_start(plane, H * W) + (row * W + column) * element_step(). Kernels walk their
  // output in memory order, so neighbouring threads write neighbours.
  __host__ __device__ PlanePixel pixel(std::int64_t index) const {
    if (!layout_.channels_last) {
      const QuotientRemainder plane_within = plane_size_.divide_with_remainder(index);
      return in_plane(plane_within.quotient, plane_within.remainder);
    }
    const QuotientRemainder pixel_c = channels_.divide_with_remainder(index);  // (n * H * W + within, c)
    const QuotientRemainder n_within = plane_size_.divide_with_remainder(pixel_c.quotient);
    return in_plane(n_within.quotient * layout_.channels + pixel_c.remainder, n_within.remainder);
  }
  // Image n and channel c of plane n * C + c.
  __host__ __device__ QuotientRemainder image_and_channel(std::int64_t plane) const {
    return channels_.divide_with_remainder(plane);
  }
  // The pixel of value k of channel c, k = n * H * W + row * W + column: channel c's values
  // in the same order in either layout.
  __host__ __device__ PlanePixel channel_pixel(std::int64_t k, std::int64_t c) const {
    const QuotientRemainder n_within = plane_size_.divide_with_remainder(k);
    return in_plane(n_within.quotient * layout_.channels + c, n_within.remainder);
  }

 private:
  __host__ __device__ PlanePixel in_plane(std::int64_t plane, std::int64_t within) const {
    const QuotientRemainder row_column = width_.divide_with_remainder(within);
    return {plane, row_column.quotient, row_column.remainder};
  }

  PlaneLayout layout_;
  IndexDivider channels_;
  IndexDivider plane_size_;
  IndexDivider width_;
};

}  // namespace strata::kernels
