// The one-thread kernel behind BatchNorm2d's num_batches_tracked.
#include "layers/batch_norm_counter.h"

#include "core/launch.cuh"

namespace strata::nn::detail {

namespace {

__global__ void increment_counter_kernel(std::int64_t* counter /* () */) { *counter += 1; }

}  // namespace

void launch_increment_counter(std::int64_t* counter, cudaStream_t stream) {
  launch(increment_counter_kernel, LaunchConfig{.grid = 1, .block = 1, .stream = stream, .name = "increment_counter"},
         counter);
}

}  // namespace strata::nn::detail
