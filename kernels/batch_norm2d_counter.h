// num_batches_tracked += 1 on the device, for the cuDNN training forward (the custom one
// counts in its statistics kernel): no host counter to keep in sync with the buffer, and a
// captured CUDA graph counts every replay.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace strata::kernels::batch_norm {

// *counter += 1 on stream; counter is one i64 in device memory.
void launch_increment_counter(std::int64_t* counter, cudaStream_t stream);

}  // namespace strata::kernels::batch_norm
