// Hopper's warpgroup matrix multiply (wgmma.mma_async, sm_90a) in both builds: inline PTX under
// nvcc when the kernel is compiled for sm_90a (CMAKE_CUDA_ARCHITECTURES 90a), the simulator's
// implementation (core/sim/wgmma.h) in the simulator build. A warpgroup is 4 consecutive warps
// starting at a warp index divisible by 4; all 128 threads issue each call together.
//
//   d (64, N) f32 (+)= A (64, 16) * B (16, N)      A and B in shared memory, bf16 or f16
//
// An operand's layout (OperandLayout) is K-major (Major::k: 16-byte lines of 8 k values of
// one row) or MN-major (Major::mn, the PTX ISA's transposed layout: lines of 8 rows at one k),
// and unswizzled or swizzled (Swizzle). A descriptor (descriptor()) names the operand's first
// element and two byte strides, `leading` and `stride`, whose meaning depends on both:
//
//   unswizzled ("core matrices" of 8 lines, 128 contiguous bytes):
//     byte of (row, k) = (row / 8) * stride + (k / 8) * leading
//                        + (row % 8) * 16 + (k % 8) * 2      K-major
//                        + (k % 8) * 16 + (row % 8) * 2      MN-major
//   swizzled, rows of W = 128, 64 or 32 bytes (Swizzle::bytes128, bytes64, bytes32):
//     K-major:  (row / 8) * stride + (row % 8) * W + k * 2        (k < W / 2; leading unused)
//     MN-major: (row / (W / 2)) * leading + (k / 8) * stride + (k % 8) * W + (row % (W / 2)) * 2
//   and then the 16-byte chunk within each 128-byte row of the address, bits 4.., is XORed
//   with that row's index, bits 7.. (log2(W / 16) bits: CuTe's Swizzle<3|2|1, 4, 3>).
//
// The swizzle acts on shared-memory addresses, so a swizzled operand's pattern (8 rows of
// W bytes) must start at a multiple of kSwizzlePatternBytes: align_to_swizzle_pattern().
// OperandLayout::offset() gives where the loaders store (row, k); a descriptor takes the
// unswizzled address of the first element (OperandLayout::start_offset()).
//
// The accumulators: thread t of the warpgroup (warp w = t / 32, lane l = t % 32) holds N / 2
// floats, d[4 j + i] being element (16 w + l / 4 + 8 (i / 2), 8 j + 2 (l % 4) + i % 2) of the
// 64 x N tile (accumulator_row(), accumulator_column()).
//
// The order of a kernel's calls, as PTX requires it:
//   fence_operands(d); fence();                 // before the first mma_async touching d
//   mma_async<T, N>(d, a, b, accumulate) ...;   // accumulate false: d = A * B
//   commit_group(); wait_group<0>(); fence_operands(d);   // before d is read or written
// and shared memory written by ordinary stores or cp.async must be followed, in each writing
// thread, by fence_shared_to_async_proxy() before the barrier that precedes the mma_async (the
// simulator checks this for cp.async).
//
// The simulator performs each mma_async at the wait_group that covers it, the latest moment the
// GPU may: an operand overwritten, or accumulators touched, before that wait give wrong values
// there too (docs/simulator.md, "Warpgroup matrix multiply").
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "core/launch.cuh"
#include "core/shared_swizzle.h"
#include "core/wgmma_available.h"
#include "strata/core/config.h"

#if STRATA_BACKEND_SIM
#include "core/sim/wgmma.h"
#endif

// Whether this device pass emits the wgmma instructions (sm_90a); host code asks available().
#if !STRATA_BACKEND_SIM && defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define STRATA_WGMMA_PTX 1
#else
#define STRATA_WGMMA_PTX 0
#endif

namespace strata::wgmma {

constexpr int kWarpgroupThreads = 128;
constexpr int kRows = 64;            // of A and of the accumulator tile
constexpr int kStepK = 16;           // k per mma_async
constexpr int kCoreMatrixBytes = 128;  // 8 rows x 16 bytes

template <typename T>
constexpr bool kInputType = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;
template <int N>
constexpr bool kSupportedN = N == 64 || N == 128;

// Which index runs along an operand's 16-byte lines: k (K-major) or the rows (MN-major).
enum class Major : std::uint8_t { k, mn };

// Byte offset of element (row, k) of an unswizzled operand of 2-byte elements.
__host__ __device__ constexpr std::uint32_t core_matrix_offset(int row, int k, std::uint32_t leading,
                                                               std::uint32_t stride, Major major = Major::k) {
  const int line = major == Major::k ? row % 8 : k % 8;
  const int within = major == Major::k ? k % 8 : row % 8;
  return static_cast<std::uint32_t>(row / 8) * stride + static_cast<std::uint32_t>(k / 8) * leading +
         static_cast<std::uint32_t>(line) * 16u + static_cast<std::uint32_t>(within) * 2u;
}

// The shared-memory layout of an operand of 2-byte elements, as a descriptor describes it.
struct OperandLayout {
  Major major = Major::k;
  Swizzle swizzle = Swizzle::none;
  std::uint32_t leading = 0;  // bytes; unused by swizzled K-major layouts
  std::uint32_t stride = 0;

  // Where (row, k) lies before the swizzle, from the start of its pattern.
  __host__ __device__ constexpr std::uint32_t start_offset(int row, int k) const {
    if (swizzle == Swizzle::none) return core_matrix_offset(row, k, leading, stride, major);
    const std::uint32_t width = swizzle_row_bytes(swizzle);
    const auto r = static_cast<std::uint32_t>(row), c = static_cast<std::uint32_t>(k);
    if (major == Major::k) return r / 8 * stride + r % 8 * width + c * 2;
    const std::uint32_t rows_per_line = width / 2;
    return r / rows_per_line * leading + c / 8 * stride + c % 8 * width + r % rows_per_line * 2;
  }
  // Where (row, k) lies, from a pattern-aligned origin.
  __host__ __device__ constexpr std::uint32_t offset(int row, int k) const {
    return swizzle_address(start_offset(row, k), swizzle);
  }
};

// Row and column of accumulator d[index] of the calling thread (thread index t in its
// warpgroup, 0..127).
__host__ __device__ constexpr int accumulator_row(int t, int index) {
  return 16 * (t / 32) + (t % 32) / 4 + 8 * ((index % 4) / 2);
}
__host__ __device__ constexpr int accumulator_column(int t, int index) {
  return 8 * (index / 4) + 2 * (t % 4) + index % 2;
}

// The shared-memory address (the state space's, not the generic pointer) of `shared`; in the
// simulator it must lie in the block's dynamic shared memory.
__device__ __forceinline__ std::uint32_t shared_address(const void* shared) {
#if STRATA_BACKEND_SIM
  return sim::wgmma::shared_address(shared);
#else
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(shared));
#endif
}

// The first byte at or after `shared` where a swizzle pattern may start: a kernel whose dynamic
// shared memory holds swizzled operands asks for kSwizzlePatternBytes more and starts there.
__device__ __forceinline__ unsigned char* align_to_swizzle_pattern(unsigned char* shared) {
  const std::uint32_t misalignment = shared_address(shared) % kSwizzlePatternBytes;
  return misalignment == 0 ? shared : shared + (kSwizzlePatternBytes - misalignment);
}

// The shared-memory matrix descriptor: the unswizzled address of the first element (16-byte
// aligned), the layout's strides (each stored >> 4, 14 bits), base offset 0 (a swizzled
// pattern starts at a multiple of kSwizzlePatternBytes) and the swizzle mode.
__device__ __forceinline__ std::uint64_t descriptor(const void* shared, const OperandLayout& layout) {
  const std::uint32_t address = shared_address(shared);
  // A swizzled K-major layout has no leading stride: the PTX ISA assumes an encoded 1.
  const std::uint32_t leading = layout.swizzle != Swizzle::none && layout.major == Major::k ? 16u : layout.leading;
  return static_cast<std::uint64_t>((address >> 4) & 0x3fffu) |
         static_cast<std::uint64_t>((leading >> 4) & 0x3fffu) << 16 |
         static_cast<std::uint64_t>((layout.stride >> 4) & 0x3fffu) << 32 |
         static_cast<std::uint64_t>(layout.swizzle) << 62;
}

// An unswizzled operand's descriptor (major-ness is the mma's, not the descriptor's).
__device__ __forceinline__ std::uint64_t descriptor(const void* shared, std::uint32_t leading, std::uint32_t stride) {
  return descriptor(shared, OperandLayout{Major::k, Swizzle::none, leading, stride});
}

// Orders this thread's earlier generic-proxy writes of shared memory (stores, cp.async that
// has landed) before later reads by the asynchronous proxy (wgmma, bulk copies).
__device__ __forceinline__ void fence_shared_to_async_proxy() {
#if STRATA_BACKEND_SIM
  sim::wgmma::fence_shared_to_async_proxy();
#elif STRATA_WGMMA_PTX
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// wgmma.fence: orders earlier register and shared-memory accesses before the next mma_async.
__device__ __forceinline__ void fence() {
#if STRATA_WGMMA_PTX
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#elif !STRATA_BACKEND_SIM && defined(__CUDA_ARCH__)
  __trap();  // not compiled for sm_90a: launchers check available() first
#endif
}

__device__ __forceinline__ void commit_group() {
#if STRATA_BACKEND_SIM
  sim::wgmma::commit_group();
#elif STRATA_WGMMA_PTX
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

// Waits until at most kPending of this warpgroup's committed groups are in flight.
template <int kPending>
__device__ __forceinline__ void wait_group() {
  static_assert(kPending >= 0 && kPending <= 7, "wgmma.wait_group takes 0..7");
#if STRATA_BACKEND_SIM
  sim::wgmma::wait_group(kPending);
#elif STRATA_WGMMA_PTX
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
#endif
}

// Keeps the compiler from moving accesses of the accumulators across the asynchronous
// operations (they are registers the instructions write behind its back).
template <int kCount>
__device__ __forceinline__ void fence_operands(float (&d)[kCount]) {
#if STRATA_WGMMA_PTX
#pragma unroll
  for (int i = 0; i < kCount; ++i) asm volatile("" : "+f"(d[i])::"memory");
#else
  (void)d;
#endif
}

#define STRATA_WGMMA_D8(i)                                                                                    \
  "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
      "+f"(d[i + 7])
#define STRATA_WGMMA_REGISTERS_32                                                                          \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define STRATA_WGMMA_REGISTERS_64                                                                           \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, "  \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "   \
  "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "   \
  "%62, %63}"
// d, then descriptors a and b at %(n/2) and %(n/2 + 1), accumulate at %(n/2 + 2), the
// transposes of A and B (1: MN-major) at %(n/2 + 3) and %(n/2 + 4); scale-a and scale-b 1.
#define STRATA_WGMMA_MMA_64(TYPE)                                                                              \
  asm volatile("{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %34, 0;\n"                                  \
               "wgmma.mma_async.sync.aligned.m64n64k16.f32." TYPE "." TYPE " " STRATA_WGMMA_REGISTERS_32        \
               ", %32, %33, accumulate, 1, 1, %35, %36;\n}\n"                                                  \
               : STRATA_WGMMA_D8(0), STRATA_WGMMA_D8(8), STRATA_WGMMA_D8(16), STRATA_WGMMA_D8(24)              \
               : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)), "n"(kTransposeA), "n"(kTransposeB))
#define STRATA_WGMMA_MMA_128(TYPE)                                                                             \
  asm volatile("{\n.reg .pred accumulate;\nsetp.ne.b32 accumulate, %66, 0;\n"                                  \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " " STRATA_WGMMA_REGISTERS_64       \
               ", %64, %65, accumulate, 1, 1, %67, %68;\n}\n"                                                  \
               : STRATA_WGMMA_D8(0), STRATA_WGMMA_D8(8), STRATA_WGMMA_D8(16), STRATA_WGMMA_D8(24),             \
                 STRATA_WGMMA_D8(32), STRATA_WGMMA_D8(40), STRATA_WGMMA_D8(48), STRATA_WGMMA_D8(56)            \
               : "l"(a), "l"(b), "r"(static_cast<int>(accumulate)), "n"(kTransposeA), "n"(kTransposeB))

// d (+)= A * B for the descriptors a (64 x 16) and b (16 x N), laid out kMajorA and kMajorB,
// issued asynchronously by the whole warpgroup; accumulate false ignores d's values.
template <typename T, int N, Major kMajorA = Major::k, Major kMajorB = Major::k>
__device__ __forceinline__ void mma_async(float (&d)[N / 2], std::uint64_t a, std::uint64_t b, bool accumulate) {
  static_assert(kInputType<T>, "wgmma::mma_async: T is __nv_bfloat16 or __half");
  static_assert(kSupportedN<N>, "wgmma::mma_async: N is 64 or 128");
  constexpr int kTransposeA = kMajorA == Major::mn ? 1 : 0;
  constexpr int kTransposeB = kMajorB == Major::mn ? 1 : 0;
#if STRATA_BACKEND_SIM
  sim::wgmma::mma_async(std::is_same_v<T, __half>, N, d, a, b, accumulate, kTransposeA != 0, kTransposeB != 0);
#elif STRATA_WGMMA_PTX
  if constexpr (N == 64 && std::is_same_v<T, __nv_bfloat16>) STRATA_WGMMA_MMA_64("bf16");
  if constexpr (N == 64 && std::is_same_v<T, __half>) STRATA_WGMMA_MMA_64("f16");
  if constexpr (N == 128 && std::is_same_v<T, __nv_bfloat16>) STRATA_WGMMA_MMA_128("bf16");
  if constexpr (N == 128 && std::is_same_v<T, __half>) STRATA_WGMMA_MMA_128("f16");
#else
  (void)d, (void)a, (void)b, (void)accumulate, (void)kTransposeA, (void)kTransposeB;
#endif
}

#undef STRATA_WGMMA_MMA_128
#undef STRATA_WGMMA_MMA_64
#undef STRATA_WGMMA_REGISTERS_64
#undef STRATA_WGMMA_REGISTERS_32
#undef STRATA_WGMMA_D8

}  // namespace strata::wgmma
