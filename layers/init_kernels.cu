// The kernel of dirac_: after the weight has been zeroed, one thread per (group, channel)
// writes the centre tap's 1. The ones never share an element, so there are no races.
#include "layers/init_kernels.h"

#include <type_traits>

#include "core/dtype_dispatch.h"
#include "core/launch.cuh"
#include "kernels/common.cuh"

namespace strata::init::detail {

namespace {

constexpr int kThreadsPerBlock = 128;

template <typename T>
__global__ void dirac_ones_kernel(T* weight /* (K, C/groups, *kernel) */, DiracLayout layout, std::int64_t count) {
  for (std::int64_t i = kernels::global_thread_index(); i < count; i += kernels::global_thread_count()) {
    weight[dirac_element(layout, i)] = strata::detail::convert_element<T>(1.0f);
  }
}

}  // namespace

void launch_dirac_ones(void* data, DType dtype, const DiracLayout& layout, std::int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  const LaunchConfig config{.grid = kernels::grid_stride_blocks(count, kThreadsPerBlock),
                            .block = kThreadsPerBlock,
                            .stream = stream,
                            .name = "dirac_ones"};
  strata::detail::dispatch_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    launch(dirac_ones_kernel<T>, config, static_cast<T*>(data), layout, count);
  });
}

}  // namespace strata::init::detail
