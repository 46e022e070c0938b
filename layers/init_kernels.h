// The Dirac initialiser's index arithmetic (shared by its kernel and the host path) and
// the launcher of the kernel that writes its ones (init.cpp checks the arguments).
#pragma once

#include <cuda_runtime_api.h>  // __host__ __device__ in both builds

#include <cstdint>

#include "strata/core/dtype.h"

namespace strata::init::detail {

// Where the ones of dirac_ go in a zeroed weight (K, C/groups, *kernel), row-major: one
// for each (group, d), d < ones_per_group.
struct DiracLayout {
  std::int64_t out_channels_per_group = 0;  // K / groups
  std::int64_t ones_per_group = 0;          // min(K / groups, C / groups)
  std::int64_t output_channel_stride = 0;   // elements between weight[k] and weight[k + 1]
  std::int64_t input_channel_stride = 0;    // elements between weight[k][c] and weight[k][c + 1]
  std::int64_t centre_offset = 0;           // the centre tap inside one (k, c) kernel
};

// Element index of the one_index-th one, 0 <= one_index < groups * ones_per_group.
__host__ __device__ inline std::int64_t dirac_element(const DiracLayout& layout, std::int64_t one_index) {
  const std::int64_t group = one_index / layout.ones_per_group;
  const std::int64_t d = one_index % layout.ones_per_group;
  const std::int64_t output_channel = group * layout.out_channels_per_group + d;
  return output_channel * layout.output_channel_stride + d * layout.input_channel_stride + layout.centre_offset;
}

// Writes 1 (in dtype) at the count elements dirac_element(layout, 0 .. count - 1) of data,
// on stream; the other elements are left as they are.
void launch_dirac_ones(void* data, DType dtype, const DiracLayout& layout, std::int64_t count, cudaStream_t stream);

}  // namespace strata::init::detail
