// Launchers of the Philox fill kernels behind fill_uniform and fill_normal (random.cpp
// checks their arguments).
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/dtype.h"

namespace strata::detail {

enum class RandomDistribution : bool { uniform, normal };

// data (count) = elements offset .. offset + count - 1 of the stream for seed. For uniform,
// a and b are low and high; for normal, mean and stddev. dtype: f32, f16 or bf16.
void launch_philox_fill(void* data, DType dtype, std::int64_t count, RandomDistribution distribution, float a,
                        float b, std::uint64_t seed, std::uint64_t offset, cudaStream_t stream);

}  // namespace strata::detail
