// The CUDA device-side language for kernels compiled by the host compiler: thread
// coordinates, __shared__, barriers, warp primitives, atomics and intrinsics. Kernel files
// get it through core/launch.cuh in the simulator build; nothing here exists under nvcc.
#pragma once

#include <cuda_runtime_api.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <string>
#include <type_traits>

namespace strata::sim {

// Coordinates of the simulated thread that runs on this OS thread right now.
struct ThreadCoordinates {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
extern thread_local const ThreadCoordinates* current_coordinates;

// Block-wide barrier. Returns how many participating threads passed a nonzero predicate
// (for __syncthreads_count/_and/_or).
int block_barrier(int predicate, const std::source_location& where);

enum class WarpOp : uint8_t { sync, shuffle_index, shuffle_up, shuffle_down, shuffle_xor, ballot, task };

// One warp-collective step: every non-exited lane named in mask must make the same call.
// The payload is up to 16 bytes of the caller's value; the result is the payload of the
// lane the operation selects (or the ballot mask in the low word).
struct WarpPayload {
  alignas(16) unsigned char bytes[16];
};
WarpPayload warp_collective(WarpOp op, unsigned mask, const WarpPayload& value, int argument, int width,
                            const std::source_location& where);
unsigned active_lanes_mask();

// A warp-wide operation that the simulator implements in C++ (the wmma functions of
// core/sim/wmma.h). All 32 lanes must call it at the same place in the source, each with a
// pointer to its own operands; when every live lane has arrived, task runs once with the 32
// lanes' operand pointers (nullptr for a lane that has exited or does not exist) and may read
// and write all of them. It returns "" or what the lanes did wrong, which fails the block.
using WarpTask = std::string (*)(void* const* lane_operands);
void warp_task(const char* name, WarpTask task, void* operands, const std::source_location& where);

// Aborts the current block with a message (reported as the kernel's failure).
[[noreturn]] void fail_thread(const char* what, const std::source_location& where);
unsigned char* dynamic_shared_memory();
size_t dynamic_shared_bytes();  // the launch's LaunchConfig::shared_bytes

template <typename T>
T shuffle(WarpOp op, unsigned mask, T value, int argument, int width, const std::source_location& where) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= sizeof(WarpPayload), "cannot shuffle this type");
  WarpPayload payload{};
  std::memcpy(payload.bytes, &value, sizeof(T));
  const WarpPayload result = warp_collective(op, mask, payload, argument, width, where);
  T out;
  std::memcpy(&out, result.bytes, sizeof(T));
  return out;
}

}  // namespace strata::sim

// ---- Thread coordinates and qualifiers -------------------------------------------------
#define threadIdx (::strata::sim::current_coordinates->thread_idx)
#define blockIdx (::strata::sim::current_coordinates->block_idx)
#define blockDim (::strata::sim::current_coordinates->block_dim)
#define gridDim (::strata::sim::current_coordinates->grid_dim)
#ifndef warpSize
#define warpSize 32
#endif

// One instance per block: a block runs on one OS thread from start to end.
#undef __shared__
#define __shared__ static thread_local
#define __launch_bounds__(...)
#ifndef __grid_constant__
#define __grid_constant__
#endif

// ---- Barriers and warp primitives -----------------------------------------------------
inline void __syncthreads(const std::source_location& where = std::source_location::current()) {
  ::strata::sim::block_barrier(0, where);
}
inline int __syncthreads_count(int predicate, const std::source_location& where = std::source_location::current()) {
  return ::strata::sim::block_barrier(predicate != 0, where);
}
inline int __syncthreads_and(int predicate, const std::source_location& where = std::source_location::current()) {
  // Count of threads whose predicate is zero must be zero.
  return ::strata::sim::block_barrier(predicate == 0, where) == 0;
}
inline int __syncthreads_or(int predicate, const std::source_location& where = std::source_location::current()) {
  return ::strata::sim::block_barrier(predicate != 0, where) != 0;
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const std::source_location& where = std::source_location::current()) {
  ::strata::sim::warp_collective(::strata::sim::WarpOp::sync, mask, {}, 0, 32, where);
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32,
              const std::source_location& where = std::source_location::current()) {
  return ::strata::sim::shuffle(::strata::sim::WarpOp::shuffle_index, mask, var, src_lane, width, where);
}
template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                 const std::source_location& where = std::source_location::current()) {
  return ::strata::sim::shuffle(::strata::sim::WarpOp::shuffle_up, mask, var, static_cast<int>(delta), width, where);
}
template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                   const std::source_location& where = std::source_location::current()) {
  return ::strata::sim::shuffle(::strata::sim::WarpOp::shuffle_down, mask, var, static_cast<int>(delta), width, where);
}
template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32,
                  const std::source_location& where = std::source_location::current()) {
  return ::strata::sim::shuffle(::strata::sim::WarpOp::shuffle_xor, mask, var, lane_mask, width, where);
}
inline unsigned __ballot_sync(unsigned mask, int predicate,
                              const std::source_location& where = std::source_location::current()) {
  return ::strata::sim::shuffle(::strata::sim::WarpOp::ballot, mask, static_cast<unsigned>(predicate != 0), 0, 32, where);
}
inline int __any_sync(unsigned mask, int predicate, const std::source_location& where = std::source_location::current()) {
  return __ballot_sync(mask, predicate, where) != 0;
}
inline int __all_sync(unsigned mask, int predicate, const std::source_location& where = std::source_location::current()) {
  return __ballot_sync(mask, !predicate, where) == 0;
}
inline unsigned __activemask() { return ::strata::sim::active_lanes_mask(); }

// ---- Memory ordering, traps, clocks ----------------------------------------------------
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }
[[noreturn]] inline void __trap(const std::source_location& where = std::source_location::current()) {
  ::strata::sim::fail_thread("__trap() called", where);
}
inline long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline void __nanosleep(unsigned) {}
template <typename T>
T __ldg(const T* address) {
  return *address;
}

// ---- Atomics (CUDA's overload set; all device-wide) ------------------------------------
namespace strata::sim::detail {
template <typename T>
std::atomic_ref<T> atomic(T* address) {
  return std::atomic_ref<T>(*address);
}
template <typename T>
T atomic_update(T* address, auto update) {
  auto ref = atomic(address);
  T old = ref.load(std::memory_order_relaxed);
  while (!ref.compare_exchange_weak(old, update(old), std::memory_order_seq_cst, std::memory_order_relaxed)) {
  }
  return old;
}
}  // namespace strata::sim::detail

#define STRATA_SIM_ATOMIC_ARITH(T)                                                                            \
  inline T atomicAdd(T* address, T value) { return ::strata::sim::detail::atomic(address).fetch_add(value); } \
  inline T atomicSub(T* address, T value) { return ::strata::sim::detail::atomic(address).fetch_sub(value); } \
  inline T atomicExch(T* address, T value) { return ::strata::sim::detail::atomic(address).exchange(value); } \
  inline T atomicMin(T* address, T value) {                                                                   \
    return ::strata::sim::detail::atomic_update(address, [value](T old) { return old < value ? old : value; }); \
  }                                                                                                           \
  inline T atomicMax(T* address, T value) {                                                                   \
    return ::strata::sim::detail::atomic_update(address, [value](T old) { return old > value ? old : value; }); \
  }                                                                                                           \
  inline T atomicAnd(T* address, T value) { return ::strata::sim::detail::atomic(address).fetch_and(value); } \
  inline T atomicOr(T* address, T value) { return ::strata::sim::detail::atomic(address).fetch_or(value); }   \
  inline T atomicXor(T* address, T value) { return ::strata::sim::detail::atomic(address).fetch_xor(value); } \
  inline T atomicCAS(T* address, T compare, T value) {                                                        \
    ::strata::sim::detail::atomic(address).compare_exchange_strong(compare, value);                           \
    return compare;                                                                                           \
  }
STRATA_SIM_ATOMIC_ARITH(int)
STRATA_SIM_ATOMIC_ARITH(unsigned int)
STRATA_SIM_ATOMIC_ARITH(unsigned long long int)
STRATA_SIM_ATOMIC_ARITH(long long int)
#undef STRATA_SIM_ATOMIC_ARITH

inline float atomicAdd(float* address, float value) { return ::strata::sim::detail::atomic(address).fetch_add(value); }
inline double atomicAdd(double* address, double value) { return ::strata::sim::detail::atomic(address).fetch_add(value); }
inline float atomicExch(float* address, float value) { return ::strata::sim::detail::atomic(address).exchange(value); }
inline unsigned short int atomicCAS(unsigned short int* address, unsigned short int compare, unsigned short int value) {
  ::strata::sim::detail::atomic(address).compare_exchange_strong(compare, value);
  return compare;
}
// Wrapping increment and decrement, as CUDA defines them.
inline unsigned int atomicInc(unsigned int* address, unsigned int limit) {
  return ::strata::sim::detail::atomic_update(address, [limit](unsigned int old) { return old >= limit ? 0u : old + 1; });
}
inline unsigned int atomicDec(unsigned int* address, unsigned int limit) {
  return ::strata::sim::detail::atomic_update(
      address, [limit](unsigned int old) { return (old == 0 || old > limit) ? limit : old - 1; });
}

// ---- Math intrinsics and integer bit functions -----------------------------------------
// The fast-math intrinsics are computed exactly here; tests tolerate the GPU's ulp errors.
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float normcdff(float x) { return 0.5f * std::erfc(-x * 0.70710678118654752f); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline unsigned int __float_as_uint(float x) { return std::bit_cast<unsigned int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline float __uint_as_float(unsigned int x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline int __popc(unsigned int x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(static_cast<unsigned int>(x)); }
inline int __clzll(long long x) { return std::countl_zero(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return x == 0 ? 0 : std::countr_zero(static_cast<unsigned int>(x)) + 1; }
inline int __ffsll(long long x) { return x == 0 ? 0 : std::countr_zero(static_cast<unsigned long long>(x)) + 1; }
inline unsigned int __brev(unsigned int x) {
  unsigned int reversed = 0;
  for (int bit = 0; bit < 32; ++bit) reversed |= ((x >> bit) & 1u) << (31 - bit);
  return reversed;
}
inline unsigned int __umulhi(unsigned int a, unsigned int b) {
  return static_cast<unsigned int>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  __extension__ using uint128 = unsigned __int128;
  return static_cast<unsigned long long>((static_cast<uint128>(a) * b) >> 64);
}

// CUDA's min/max accept mixed arithmetic types in device code.
template <typename A, typename B>
  requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(b) < static_cast<C>(a) ? static_cast<C>(b) : static_cast<C>(a);
}
template <typename A, typename B>
  requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return static_cast<C>(a) < static_cast<C>(b) ? static_cast<C>(b) : static_cast<C>(a);
}
