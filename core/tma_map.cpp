// Tensor maps (core/tma_map.h): the checks of cuTensorMapEncodeTiled's rules, then the
// simulator's map or the driver's.
#include "core/tma_map.h"

#include <fmt/format.h>

#include <cstddef>

#include "core/check.h"

#if !STRATA_BACKEND_SIM
#include <cudaTypedefs.h>
#include <cuda_runtime_api.h>

#include <mutex>
#endif

namespace strata::tma {

std::uint32_t TiledMap::box_bytes() const {
  std::uint32_t bytes = element_bytes(element);
  for (int d = 0; d < rank && d < kMaxRank; ++d) bytes *= box[static_cast<std::size_t>(d)];
  return bytes;
}

std::string check_tiled(const TiledMap& map) {
  if (map.rank < 1 || map.rank > kMaxRank) return fmt::format("rank {} (1 to {})", map.rank, kMaxRank);
  if (map.global == nullptr) return "no global address";
  if (reinterpret_cast<std::uintptr_t>(map.global) % 16 != 0) {
    return fmt::format("global address {} is not 16-byte aligned", map.global);
  }
  const auto rank = static_cast<std::size_t>(map.rank);
  const std::uint64_t element = element_bytes(map.element);
  for (std::size_t d = 0; d < rank; ++d) {
    if (map.extents[d] == 0 || map.extents[d] > (std::uint64_t{1} << 32)) {
      return fmt::format("extent {} of dimension {} (1 to 2^32)", map.extents[d], d);
    }
    if (map.box[d] == 0 || map.box[d] > kMaxBoxExtent) {
      return fmt::format("box extent {} along dimension {} (1 to {})", map.box[d], d, kMaxBoxExtent);
    }
  }
  // Each dimension's stride passes the bytes of the one inside it: no two elements overlap.
  std::uint64_t inner_bytes = map.extents[0] * element;
  for (std::size_t d = 1; d < rank; ++d) {
    const std::uint64_t stride = map.strides[d - 1];
    if (stride % 16 != 0 || stride >= (std::uint64_t{1} << 40)) {
      return fmt::format("stride {} bytes of dimension {} (a multiple of 16 below 2^40)", stride, d);
    }
    if (stride < inner_bytes) {
      return fmt::format("stride {} bytes of dimension {} overlaps the {} bytes of dimension {}", stride, d,
                         inner_bytes, d - 1);
    }
    inner_bytes = stride * map.extents[d];
  }
  const std::uint64_t box_row = map.box[0] * element;
  if (box_row % 16 != 0) return fmt::format("a box row of {} bytes (a multiple of 16)", box_row);
  if (map.swizzle != wgmma::Swizzle::none && box_row != wgmma::swizzle_row_bytes(map.swizzle)) {
    return fmt::format("a box row of {} bytes under a {}-byte swizzle (a swizzled box row is one swizzled row)",
                       box_row, wgmma::swizzle_row_bytes(map.swizzle));
  }
  return {};
}

namespace {

#if STRATA_BACKEND_SIM

TensorMap encode(const TiledMap& map) {
  TensorMap encoded;
  encoded.encoded = TensorMap::kEncoded;
  encoded.rank = static_cast<std::uint8_t>(map.rank);
  encoded.element_bytes = static_cast<std::uint8_t>(element_bytes(map.element));
  encoded.swizzle = static_cast<std::uint8_t>(map.swizzle);
  encoded.global = static_cast<const unsigned char*>(map.global);
  for (std::size_t d = 0; d < static_cast<std::size_t>(map.rank); ++d) {
    encoded.extents[d] = map.extents[d];
    encoded.strides[d] = d == 0 ? element_bytes(map.element) : map.strides[d - 1];
    encoded.box[d] = map.box[d];
  }
  return encoded;
}

#else

CUtensorMapDataType data_type(Element element) {
  switch (element) {
    case Element::f16: return CU_TENSOR_MAP_DATA_TYPE_FLOAT16;
    case Element::bf16: return CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    case Element::f32: return CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
  }
  return CU_TENSOR_MAP_DATA_TYPE_FLOAT32;
}

CUtensorMapSwizzle map_swizzle(wgmma::Swizzle swizzle) {
  switch (swizzle) {
    case wgmma::Swizzle::bytes32: return CU_TENSOR_MAP_SWIZZLE_32B;
    case wgmma::Swizzle::bytes64: return CU_TENSOR_MAP_SWIZZLE_64B;
    case wgmma::Swizzle::bytes128: return CU_TENSOR_MAP_SWIZZLE_128B;
    case wgmma::Swizzle::none: break;
  }
  return CU_TENSOR_MAP_SWIZZLE_NONE;
}

// The driver's cuTensorMapEncodeTiled, through the runtime (libstrata does not link libcuda).
PFN_cuTensorMapEncodeTiled_v12000 driver_encode(const char* name) {
  static PFN_cuTensorMapEncodeTiled_v12000 function = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    void* entry = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &entry, 12000, cudaEnableDefault, &found) ==
            cudaSuccess &&
        found == cudaDriverEntryPointSuccess) {
      function = reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(entry);
    }
    cudaGetLastError();  // a failed lookup is reported below, not left as the last error
  });
  if (function == nullptr) {
    throw CudaError(fmt::format("tensor map for {}: the driver has no cuTensorMapEncodeTiled (TMA needs a CUDA 12 "
                                "driver and a GPU of compute capability 9.0)",
                                name),
                    cudaErrorNotSupported);
  }
  return function;
}

TensorMap encode(const TiledMap& map, const char* name) {
  std::array<cuuint64_t, kMaxRank> extents{};
  std::array<cuuint64_t, kMaxRank - 1> strides{};
  std::array<cuuint32_t, kMaxRank> box{};
  std::array<cuuint32_t, kMaxRank> element_strides{};
  for (std::size_t d = 0; d < static_cast<std::size_t>(map.rank); ++d) {
    extents[d] = map.extents[d];
    if (d > 0) strides[d - 1] = map.strides[d - 1];
    box[d] = map.box[d];
    element_strides[d] = 1;
  }
  TensorMap encoded{};
  const CUresult result = driver_encode(name)(
      &encoded, data_type(map.element), static_cast<cuuint32_t>(map.rank), const_cast<void*>(map.global),
      extents.data(), strides.data(), box.data(), element_strides.data(), CU_TENSOR_MAP_INTERLEAVE_NONE,
      map_swizzle(map.swizzle), CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    throw CudaError(fmt::format("tensor map for {}: cuTensorMapEncodeTiled failed with CUresult {}", name,
                                static_cast<int>(result)),
                    cudaErrorInvalidValue);
  }
  return encoded;
}

#endif

}  // namespace

TensorMap encode_tiled(const TiledMap& map, const char* name) {
  const std::string problem = check_tiled(map);
  STRATA_CHECK(problem.empty(), "tensor map for {}: {}", name, problem);
#if STRATA_BACKEND_SIM
  return encode(map);
#else
  return encode(map, name);
#endif
}

}  // namespace strata::tma
