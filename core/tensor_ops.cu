// Element-wise kernels for every dtype: fill with one value, and convert between dtypes
// (four elements per load and store where aligned); the add behind gradient accumulation
// (f32, f16 or bf16, computed in f32); and the conversion between memory formats (with a
// change of dtype on the way, for a cast into another format).
#include "core/tensor_ops.h"

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/dtype_dispatch.h"
#include "core/elementwise_map.cuh"
#include "core/launch.cuh"
#include "strata/core/device.h"

namespace strata::detail {

namespace {

constexpr unsigned kThreadsPerBlock = 256;

template <typename T>
__global__ void fill_kernel(T* data /* (count) */, std::int64_t count, T value) {
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * gridDim.x;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    data[i] = value;
  }
}

// Four elements moved as one load and one store (16 bytes of f32, 8 of f16 or bf16): the
// conversion is memory-bound, as the float4 maps of core/elementwise_map.cuh.
template <typename T>
struct alignas(4 * sizeof(T)) FourElements {
  T lanes[4];
};

template <typename T>
bool is_four_element_aligned(const void* pointer) {
  return reinterpret_cast<std::uintptr_t>(pointer) % sizeof(FourElements<T>) == 0;
}

// The first vector_count * 4 elements go four at a time (vector_count is 0 unless both
// pointers are aligned for it), the rest one by one.
template <typename To, typename From>
__global__ void convert_kernel(const From* source /* (count) */, To* destination /* (count) */, std::int64_t count,
                               std::int64_t vector_count) {
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t stride = static_cast<std::int64_t>(blockDim.x) * gridDim.x;
  const auto* source4 = reinterpret_cast<const FourElements<From>*>(source);  // (vector_count)
  auto* destination4 = reinterpret_cast<FourElements<To>*>(destination);      // (vector_count)
  for (std::int64_t v = first; v < vector_count; v += stride) {
    const FourElements<From> in = source4[v];
    FourElements<To> out;
    for (int lane = 0; lane < 4; ++lane) out.lanes[lane] = convert_element<To>(in.lanes[lane]);
    destination4[v] = out;
  }
  for (std::int64_t i = vector_count * 4 + first; i < count; i += stride) {
    destination[i] = convert_element<To>(source[i]);
  }
}

// A memory-format conversion is a transpose of each image: (C, H*W) to (H*W, C) into
// channels-last, the reverse out of it. destination[b][c][r] = source[b][r][c] for each of
// the batches (rows, cols) matrices.
struct BatchedTranspose {
  std::int64_t batches;  // N
  std::int64_t rows;     // of the source: C into channels-last, H*W out of it
  std::int64_t cols;
};

BatchedTranspose memory_format_transpose(const Shape& shape, MemoryFormat destination_format) {
  const std::int64_t channels = shape[1];
  const std::int64_t plane = shape[2] * shape[3];
  return destination_format == MemoryFormat::channels_last ? BatchedTranspose{shape[0], channels, plane}
                                                           : BatchedTranspose{shape[0], plane, channels};
}

constexpr int kTransposeTile = 32;
constexpr int kTransposeThreads = 256;  // 32 lanes x 8 rows of a tile

// One block per 32x32 tile of one matrix (grid-stride over all tiles of all matrices): the
// tile is read along the source's rows and written along the destination's, both coalesced,
// through shared memory (a padded column, so that neither pass conflicts on banks). Of one
// dtype, elements move as unsigned integers of their size (no dtype arithmetic); between
// dtypes each is converted as it is written, so a cast into another format is one pass.
template <typename From, typename To>
__global__ void transpose_kernel(const From* source, To* destination, BatchedTranspose shape) {
  __shared__ From tile[kTransposeTile][kTransposeTile + 1];
  const int lane = static_cast<int>(threadIdx.x) % kTransposeTile;
  const int first_row = static_cast<int>(threadIdx.x) / kTransposeTile;
  constexpr int kRowStep = kTransposeThreads / kTransposeTile;
  const std::int64_t row_tiles = (shape.rows + kTransposeTile - 1) / kTransposeTile;
  const std::int64_t col_tiles = (shape.cols + kTransposeTile - 1) / kTransposeTile;
  const std::int64_t tiles = shape.batches * row_tiles * col_tiles;
  const std::int64_t matrix = shape.rows * shape.cols;
  for (std::int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {  // uniform per block: barriers are safe
    const std::int64_t b = t / (row_tiles * col_tiles);
    const std::int64_t within = t - b * row_tiles * col_tiles;
    const std::int64_t row0 = within / col_tiles * kTransposeTile;
    const std::int64_t col0 = within % col_tiles * kTransposeTile;
    const From* from = source + b * matrix;  // (rows, cols)
    To* to = destination + b * matrix;       // (cols, rows)
    for (int i = first_row; i < kTransposeTile; i += kRowStep) {
      if (row0 + i < shape.rows && col0 + lane < shape.cols) {
        tile[i][lane] = from[(row0 + i) * shape.cols + col0 + lane];
      }
    }
    __syncthreads();
    for (int i = first_row; i < kTransposeTile; i += kRowStep) {
      if (col0 + i < shape.cols && row0 + lane < shape.rows) {
        to[(col0 + i) * shape.rows + row0 + lane] = convert_element<To>(tile[lane][i]);
      }
    }
    __syncthreads();  // the tile is refilled next
  }
}

// Calls f(std::type_identity<Bits>{}) with the unsigned integer type of an element of dtype.
template <typename F>
void dispatch_element_bits(DType dtype, F&& f) {
  switch (element_size(dtype)) {
    case 1: f(std::type_identity<std::uint8_t>{}); return;
    case 2: f(std::type_identity<std::uint16_t>{}); return;
    case 4: f(std::type_identity<std::uint32_t>{}); return;
    default: f(std::type_identity<std::uint64_t>{}); return;
  }
}

}  // namespace

unsigned grid_stride_blocks(std::int64_t count, unsigned threads_per_block) {
  const DeviceProperties& properties = device_properties(current_device());
  const std::int64_t resident = static_cast<std::int64_t>(properties.multiprocessor_count) *
                                properties.max_threads_per_multiprocessor / threads_per_block;
  const std::int64_t needed = (count + threads_per_block - 1) / threads_per_block;
  return static_cast<unsigned>(std::clamp<std::int64_t>(std::min(needed, resident), 1, 65535));
}

void launch_fill(void* data, DType dtype, std::int64_t count, double value, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    launch(fill_kernel<T>,
           LaunchConfig{.grid = grid_stride_blocks(count, kThreadsPerBlock), .block = kThreadsPerBlock,
                        .stream = stream, .name = "fill"},
           static_cast<T*>(data), count, convert_element<T>(value));
  });
}

void launch_convert(const void* source, DType source_dtype, void* destination, DType destination_dtype,
                    std::int64_t count, cudaStream_t stream) {
  if (count == 0) return;
  dispatch_dtype(source_dtype, [&]<typename From>(std::type_identity<From>) {
    dispatch_dtype(destination_dtype, [&]<typename To>(std::type_identity<To>) {
      const bool vectorize = is_four_element_aligned<From>(source) && is_four_element_aligned<To>(destination);
      const std::int64_t vector_count = vectorize ? count / 4 : 0;
      const std::int64_t threads = std::max(vector_count, count - vector_count * 4);
      launch(convert_kernel<To, From>,
             LaunchConfig{.grid = grid_stride_blocks(threads, kThreadsPerBlock), .block = kThreadsPerBlock,
                          .stream = stream, .name = "convert_dtype"},
             static_cast<const From*>(source), static_cast<To*>(destination), count, vector_count);
    });
  });
}

void launch_add(const void* a, const void* b, void* y, DType dtype, std::int64_t count, float alpha,
                cudaStream_t stream) {
  dispatch_floating_dtype(dtype, "add", [&]<typename T>(std::type_identity<T>) {
    launch_binary_map(static_cast<const T*>(a), static_cast<const T*>(b), static_cast<T*>(y), count, FmaAddOp{alpha},
                      stream, "add");
  });
}

void launch_convert_memory_format(const void* source, DType source_dtype, void* destination,
                                  DType destination_dtype, const Shape& shape, MemoryFormat destination_format,
                                  cudaStream_t stream) {
  if (shape.numel() == 0) return;
  const BatchedTranspose transpose = memory_format_transpose(shape, destination_format);
  const std::int64_t tiles = transpose.batches * ((transpose.rows + kTransposeTile - 1) / kTransposeTile) *
                             ((transpose.cols + kTransposeTile - 1) / kTransposeTile);
  // Resident blocks fill the device; more would only queue.
  const LaunchConfig config{.grid = static_cast<unsigned>(std::min<std::int64_t>(
                                tiles, grid_stride_blocks(tiles * kTransposeThreads, kTransposeThreads))),
                            .block = kTransposeThreads,
                            .stream = stream,
                            .name = "convert_memory_format"};
  if (source_dtype == destination_dtype) {
    dispatch_element_bits(source_dtype, [&]<typename Bits>(std::type_identity<Bits>) {
      launch(transpose_kernel<Bits, Bits>, config, static_cast<const Bits*>(source), static_cast<Bits*>(destination),
             transpose);
    });
    return;
  }
  dispatch_dtype(source_dtype, [&]<typename From>(std::type_identity<From>) {
    dispatch_dtype(destination_dtype, [&]<typename To>(std::type_identity<To>) {
      LaunchConfig converting = config;
      converting.name = "convert_dtype_memory_format";
      launch(transpose_kernel<From, To>, converting, static_cast<const From*>(source), static_cast<To*>(destination),
             transpose);
    });
  });
}

void convert_memory_format_on_host(const void* source, void* destination, DType dtype, const Shape& shape,
                                   MemoryFormat destination_format) {
  const BatchedTranspose t = memory_format_transpose(shape, destination_format);
  dispatch_element_bits(dtype, [&]<typename Bits>(std::type_identity<Bits>) {
    const auto* from = static_cast<const Bits*>(source);
    auto* to = static_cast<Bits*>(destination);
    for (std::int64_t b = 0; b < t.batches; ++b) {
      for (std::int64_t r = 0; r < t.rows; ++r) {
        for (std::int64_t c = 0; c < t.cols; ++c) {
          to[(b * t.cols + c) * t.rows + r] = from[(b * t.rows + r) * t.cols + c];
        }
      }
    }
  });
}

}  // namespace strata::detail
