// Random fills of tensors from the Philox4x32-10 counter-based generator (philox.h).
// Element i of the tensor takes element offset + i of the stream for seed, so the values
// are the same in both builds, for any launch shape, on host and device tensors alike;
// a second fill continues a stream by advancing offset by the first tensor's numel().
//
//   fill_uniform(weight, {.low = -bound, .high = bound, .seed = 42}, stream);
//   fill_normal(noise, {.mean = 0.0f, .stddev = 0.1f, .seed = 7, .offset = step * noise.numel()}, stream);
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata {

struct UniformParams {
  float low = 0.0f;
  float high = 1.0f;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;  // first element of the stream to use
};

struct NormalParams {
  float mean = 0.0f;
  float stddev = 1.0f;
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
};

// Values in [low, high), computed in float and rounded to the tensor's dtype (f32, f16 or
// bf16). Device tensors: by a kernel on stream; host tensors: on the calling thread after
// stream's queued work (stream may be null).
void fill_uniform(Tensor& tensor, const UniformParams& params, cudaStream_t stream);

// Normally distributed values (Box-Muller), same rules as fill_uniform.
void fill_normal(Tensor& tensor, const NormalParams& params, cudaStream_t stream);

}  // namespace strata
