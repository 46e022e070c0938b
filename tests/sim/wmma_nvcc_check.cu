// The CUDA flavour compiles the wmma test kernels for the GPU (sm_90) here; the simulator
// flavour runs the same kernels in test_wmma.cu. Every instantiation the tests launch is
// named, so that nvcc generates and checks its device code.
#include "tests/sim/wmma_test_kernels.cuh"

namespace strata::testing::wmma_kernels {

#define STRATA_WMMA_TILE_KERNEL(Input, LayoutA, LayoutB, C, D)                                               \
  template __global__ void wmma_tile_kernel<Input, wmma::LayoutA, wmma::LayoutB, C, D>(const Input*, const Input*, \
                                                                                       const C*, D*, TileArguments);
#define STRATA_WMMA_TILE_KERNELS(Input, C, D)                    \
  STRATA_WMMA_TILE_KERNEL(Input, row_major, row_major, C, D)    \
  STRATA_WMMA_TILE_KERNEL(Input, row_major, col_major, C, D)    \
  STRATA_WMMA_TILE_KERNEL(Input, col_major, row_major, C, D)    \
  STRATA_WMMA_TILE_KERNEL(Input, col_major, col_major, C, D)

STRATA_WMMA_TILE_KERNELS(__half, float, float)
STRATA_WMMA_TILE_KERNELS(__half, __half, __half)
STRATA_WMMA_TILE_KERNELS(__nv_bfloat16, float, float)
STRATA_WMMA_TILE_KERNEL(__half, row_major, col_major, float, __half)
STRATA_WMMA_TILE_KERNEL(__half, col_major, row_major, __half, float)

template __global__ void wmma_gemm_kernel<__half>(const __half*, const __half*, float*, GemmShape);
template __global__ void wmma_gemm_kernel<__nv_bfloat16>(const __nv_bfloat16*, const __nv_bfloat16*, float*,
                                                         GemmShape);

#undef STRATA_WMMA_TILE_KERNELS
#undef STRATA_WMMA_TILE_KERNEL

}  // namespace strata::testing::wmma_kernels
