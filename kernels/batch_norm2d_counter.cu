// The one-thread kernel behind the cuDNN engine's num_batches_tracked.
#include "kernels/batch_norm2d_counter.h"

#include "core/launch.cuh"

namespace strata::kernels::batch_norm {

namespace {

__global__ void increment_counter_kernel(std::int64_t* counter /* () */) { *counter += 1; }

}  // namespace

void launch_increment_counter(std::int64_t* counter, cudaStream_t stream) {
  launch(increment_counter_kernel, LaunchConfig{.grid = 1, .block = 1, .stream = stream, .name = "increment_counter"},
         counter);
}

}  // namespace strata::kernels::batch_norm
