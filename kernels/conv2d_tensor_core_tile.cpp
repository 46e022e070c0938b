// Which block tile the asynchronous tensor-core conv2d passes take (strata/kernels/conv2d.h:
// Conv2dTensorCoreTile): the process-wide setting and the per-shape choice.
#include <atomic>

#include "kernels/conv2d_tensor_core.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {
std::atomic<Conv2dTensorCoreTile> tensor_core_tile_setting{Conv2dTensorCoreTile::automatic};
}  // namespace

void set_conv2d_tensor_core_tile(Conv2dTensorCoreTile tile) { tensor_core_tile_setting.store(tile); }

Conv2dTensorCoreTile conv2d_tensor_core_tile() { return tensor_core_tile_setting.load(); }

std::string_view to_string(Conv2dTensorCoreTile tile) {
  switch (tile) {
    case Conv2dTensorCoreTile::automatic: return "automatic";
    case Conv2dTensorCoreTile::m64n64: return "64x64";
    case Conv2dTensorCoreTile::m128n128: return "128x128";
  }
  return "unknown";
}

Conv2dTensorCoreTile select_conv2d_tensor_core_tile(Conv2dTensorCoreTile setting, std::int64_t gemm_m,
                                                    std::int64_t gemm_n, std::int64_t batches, int multiprocessors) {
  if (setting != Conv2dTensorCoreTile::automatic) return setting;
  constexpr std::int64_t kLarge = kConv2dTensorCoreLargeBlock;
  // A half-empty 128-wide tile wastes what the larger warp tiles gain; too few blocks leave
  // multiprocessors idle, which costs more than the smaller tile's extra shared-memory traffic.
  if (gemm_m < kLarge || gemm_n < kLarge) return Conv2dTensorCoreTile::m64n64;
  const std::int64_t large_blocks = (gemm_m + kLarge - 1) / kLarge * ((gemm_n + kLarge - 1) / kLarge) * batches;
  return large_blocks >= multiprocessors ? Conv2dTensorCoreTile::m128n128 : Conv2dTensorCoreTile::m64n64;
}

}  // namespace strata::kernels
