// Which block tile the asynchronous tensor-core conv2d passes take (strata/kernels/conv2d.h:
// Conv2dTensorCoreTile): the process-wide setting and the per-shape choice.
#include <atomic>

#include "core/check.h"
#include "core/wgmma_available.h"
#include "kernels/conv2d_tensor_core.h"
#include "strata/core/config.h"
#include "strata/core/errors.h"

namespace strata::kernels {

namespace {
std::atomic<Conv2dTensorCoreTile> tensor_core_tile_setting{Conv2dTensorCoreTile::automatic};
}  // namespace

bool conv2d_wgmma_available() { return wgmma::available(); }

void set_conv2d_tensor_core_tile(Conv2dTensorCoreTile tile) {
  STRATA_CHECK(!is_wgmma(tile) || conv2d_wgmma_available(),
               "set_conv2d_tensor_core_tile({}): wgmma needs a build for sm_90a (CMAKE_CUDA_ARCHITECTURES 90a; "
               "this one: STRATA_WGMMA_BUILT {}) and a GPU of compute capability 9.0 (H100/H200)",
               to_string(tile), STRATA_WGMMA_BUILT);
  tensor_core_tile_setting.store(tile);
}

Conv2dTensorCoreTile conv2d_tensor_core_tile() { return tensor_core_tile_setting.load(); }

std::string_view to_string(Conv2dTensorCoreTile tile) {
  switch (tile) {
    case Conv2dTensorCoreTile::automatic: return "automatic";
    case Conv2dTensorCoreTile::m64n64: return "64x64";
    case Conv2dTensorCoreTile::m128n128: return "128x128";
    case Conv2dTensorCoreTile::m128n64: return "128x64";
    case Conv2dTensorCoreTile::m128n128_wgmma: return "128x128-wgmma";
    case Conv2dTensorCoreTile::m128n128_wgmma_tma: return "128x128-wgmma-tma";
  }
  return "unknown";
}

Conv2dTensorCoreTile select_conv2d_tensor_core_tile(Conv2dTensorCoreTile setting, std::int64_t gemm_m,
                                                    std::int64_t gemm_n, std::int64_t batches, int multiprocessors,
                                                    TileShapes shapes) {
  const bool square = square_only(shapes);
  if (setting == Conv2dTensorCoreTile::m128n64 && square) return Conv2dTensorCoreTile::m64n64;
  if (setting == Conv2dTensorCoreTile::m128n128_wgmma_tma && !with_tma_weights(shapes)) {
    setting = Conv2dTensorCoreTile::m128n128_wgmma;
  }
  if (setting == Conv2dTensorCoreTile::m128n128_wgmma && !with_wgmma(shapes)) {
    return Conv2dTensorCoreTile::m128n128;
  }
  if (setting != Conv2dTensorCoreTile::automatic) return setting;
  const auto warps_of = [&](std::int64_t block_m, std::int64_t block_n, std::int64_t warps_per_block) {
    return (gemm_m + block_m - 1) / block_m * ((gemm_n + block_n - 1) / block_n) * batches * warps_per_block;
  };
  // A half-empty 128-wide tile wastes what the larger warp tiles gain; a grid of fewer than
  // eight warps a multiprocessor leaves too little to hide the copies' latency, which costs
  // more than the smaller tile's extra shared-memory traffic.
  constexpr std::int64_t kLarge = kConv2dTensorCoreLargeBlock;
  constexpr std::int64_t kSmall = kConv2dTensorCoreBlockN;
  const std::int64_t enough_warps = std::int64_t{8} * multiprocessors;
  if (gemm_m < kLarge) return Conv2dTensorCoreTile::m64n64;
  if (gemm_n >= kLarge && warps_of(kLarge, kLarge, 8) >= enough_warps) return Conv2dTensorCoreTile::m128n128;
  if (!square && warps_of(kLarge, kSmall, 4) >= enough_warps) return Conv2dTensorCoreTile::m128n64;
  return Conv2dTensorCoreTile::m64n64;
}

}  // namespace strata::kernels
