// Philox fill kernels: each thread generates one group of four stream elements with a
// single Philox call and writes those that fall inside the tensor.
#include "core/random_kernels.h"

#include <type_traits>

#include "core/dtype_dispatch.h"
#include "core/launch.cuh"
#include "core/tensor_ops.h"
#include "strata/core/philox.h"

namespace strata::detail {

namespace {

constexpr unsigned kThreadsPerBlock = 256;

template <typename T, RandomDistribution kDistribution>
__global__ void philox_fill_kernel(T* data /* (count) */, std::int64_t count, float a, float b, std::uint64_t seed,
                                   std::uint64_t offset) {
  const std::uint64_t first_group = offset / 4;
  const std::uint64_t group_count = (offset + static_cast<std::uint64_t>(count) - 1) / 4 - first_group + 1;
  const std::uint64_t stride = static_cast<std::uint64_t>(blockDim.x) * gridDim.x;
  for (std::uint64_t g = static_cast<std::uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; g < group_count;
       g += stride) {
    const std::uint64_t group = first_group + g;
    const Philox4x32 words = philox_group(seed, group);
    for (unsigned lane = 0; lane < 4; ++lane) {
      const std::uint64_t index = group * 4 + lane;  // in the stream
      if (index < offset || index - offset >= static_cast<std::uint64_t>(count)) continue;
      const float value = kDistribution == RandomDistribution::uniform ? uniform_in(words.x[lane], a, b)
                                                                       : normal_in(words, lane, a, b);
      data[index - offset] = convert_element<T>(value);
    }
  }
}

}  // namespace

void launch_philox_fill(void* data, DType dtype, std::int64_t count, RandomDistribution distribution, float a,
                        float b, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream) {
  if (count == 0) return;
  const std::int64_t groups = (static_cast<std::int64_t>(offset % 4) + count + 3) / 4;
  const LaunchConfig config{.grid = grid_stride_blocks(groups, kThreadsPerBlock),
                            .block = kThreadsPerBlock,
                            .stream = stream,
                            .name = distribution == RandomDistribution::uniform ? "philox_uniform" : "philox_normal"};
  dispatch_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    if constexpr (std::is_same_v<T, float> || kIsReducedFloat<T>) {
      if (distribution == RandomDistribution::uniform) {
        launch(philox_fill_kernel<T, RandomDistribution::uniform>, config, static_cast<T*>(data), count, a, b, seed,
               offset);
      } else {
        launch(philox_fill_kernel<T, RandomDistribution::normal>, config, static_cast<T*>(data), count, a, b, seed,
               offset);
      }
    }
  });
}

}  // namespace strata::detail
