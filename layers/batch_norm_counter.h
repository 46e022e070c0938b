// BatchNorm2d's num_batches_tracked += 1, on the device: no host counter to keep in sync
// with the buffer, and a captured CUDA graph counts every replay.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace strata::nn::detail {

// *counter += 1 on stream; counter is one i64 in device memory.
void launch_increment_counter(std::int64_t* counter, cudaStream_t stream);

}  // namespace strata::nn::detail
