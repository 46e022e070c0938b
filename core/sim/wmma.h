// CUDA's warp matrix API (nvcuda::wmma, <mma.h>) for kernels compiled by the host compiler,
// so that tensor-core kernels run in the simulator. Kernels include core/wmma.cuh, which
// picks <mma.h> under nvcc and this file otherwise. The fragments have CUDA's element counts
// and element types; load, store and mma are warp-wide operations of the simulator
// (strata::sim::warp_task) that check what the GPU silently gets wrong: lanes passing
// different arguments, a partial warp, misaligned pointers and strides. docs/simulator.md,
// "Tensor cores (wmma)", describes the element mapping and the summation order.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <source_location>
#include <type_traits>

#include "core/sim/simt.h"

// ---- The simulator's side: fragments described at run time ------------------------------
namespace strata::sim::tensor_core {

enum class Use : uint8_t { matrix_a, matrix_b, accumulator };
// Storage of one element: f16 -> __half, bf16 -> __nv_bfloat16, tf32 and f32 -> float.
enum class Element : uint8_t { f16, bf16, tf32, f32 };

// What the simulator needs to know about a fragment type. num_elements == 0: CUDA has no
// such fragment.
struct FragmentKind {
  Use use = Use::accumulator;
  Element element = Element::f32;
  int rows = 0;  // of the matrix held: a (m, k), b (k, n), accumulator (m, n)
  int cols = 0;
  int num_elements = 0;    // per lane
  bool col_major = false;  // a and b: the layout named by the fragment's type
  bool operator==(const FragmentKind&) const = default;
};

// The warp-wide operations behind nvcuda::wmma. elements is the calling lane's x[];
// memory_col_major is the layout of the matrix in memory.
void load_matrix(const FragmentKind& kind, void* elements, const void* memory, unsigned ldm, bool memory_col_major,
                 const std::source_location& where);
void store_matrix(const FragmentKind& kind, const void* elements, void* memory, unsigned ldm, bool memory_col_major,
                  const std::source_location& where);
void mma(const FragmentKind& d_kind, void* d, const FragmentKind& a_kind, const void* a, const FragmentKind& b_kind,
         const void* b, const FragmentKind& c_kind, const void* c, const std::source_location& where);

}  // namespace strata::sim::tensor_core

// ---- nvcuda::wmma, as <mma.h> declares it ---------------------------------------------------
namespace nvcuda::wmma {

struct row_major;
struct col_major;
struct matrix_a;
struct matrix_b;
struct accumulator;
namespace precision {
struct tf32;
}

enum layout_t { mem_row_major, mem_col_major };

template <typename T>
struct helper_traits {
  using element_type = T;
  using storage_element_type = T;
  using fill_argument_type = T;
};
template <>
struct helper_traits<precision::tf32> {
  using element_type = precision::tf32;
  using storage_element_type = float;
  using fill_argument_type = float;
};

namespace detail {

using ::strata::sim::tensor_core::Element;
using ::strata::sim::tensor_core::FragmentKind;
using ::strata::sim::tensor_core::Use;

template <typename T>
constexpr bool is_input_type = std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16> ||
                               std::is_same_v<T, precision::tf32>;

// CUDA's fragments of floating-point tensor-core operations (crt/mma.h): m16n16k16, m32n8k16
// and m8n32k16 with __half or __nv_bfloat16 inputs, m16n16k8 with tf32 inputs; __half inputs
// hold 16 elements a lane whatever the shape (some of them copies), the others their share of
// the matrix; accumulators (float, or __half with __half inputs' shapes) hold 8.
template <typename UseTag, int m, int n, int k, typename T, typename Layout>
constexpr FragmentKind fragment_kind() {
  const bool half_shape = k == 16 && ((m == 16 && n == 16) || (m == 32 && n == 8) || (m == 8 && n == 32));
  const bool tf32_shape = m == 16 && n == 16 && k == 8;
  FragmentKind kind;
  if constexpr (std::is_same_v<UseTag, accumulator>) {
    if (!std::is_void_v<Layout>) return kind;
    if (!(std::is_same_v<T, float> && (half_shape || tf32_shape)) && !(std::is_same_v<T, __half> && half_shape)) {
      return kind;
    }
    kind.use = Use::accumulator;
    kind.element = std::is_same_v<T, float> ? Element::f32 : Element::f16;
    kind.rows = m;
    kind.cols = n;
    kind.num_elements = 8;
  } else if constexpr (std::is_same_v<UseTag, matrix_a> || std::is_same_v<UseTag, matrix_b>) {
    if (!std::is_same_v<Layout, row_major> && !std::is_same_v<Layout, col_major>) return kind;
    const bool tf32 = std::is_same_v<T, precision::tf32>;
    if (!is_input_type<T> || (tf32 ? !tf32_shape : !half_shape)) return kind;
    const bool a = std::is_same_v<UseTag, matrix_a>;
    kind.use = a ? Use::matrix_a : Use::matrix_b;
    kind.element = std::is_same_v<T, __half> ? Element::f16 : (tf32 ? Element::tf32 : Element::bf16);
    kind.rows = a ? m : k;
    kind.cols = a ? k : n;
    kind.num_elements = std::is_same_v<T, __half> ? 16 : kind.rows * kind.cols / 32;
    kind.col_major = std::is_same_v<Layout, col_major>;
  }
  return kind;
}

}  // namespace detail

template <typename Use, int m, int n, int k, typename T, typename Layout = void>
class fragment {
 public:
  static_assert(detail::fragment_kind<Use, m, n, k, T, Layout>().num_elements > 0,
                "nvcuda::wmma::fragment: no such fragment in the simulator (supported: m16n16k16, m32n8k16, "
                "m8n32k16 with __half or __nv_bfloat16 inputs and float or __half accumulators; m16n16k8 with "
                "precision::tf32 inputs; matrix_a and matrix_b need row_major or col_major, accumulators no layout)");
  enum { num_elements = detail::fragment_kind<Use, m, n, k, T, Layout>().num_elements };
  enum { num_storage_elements = num_elements };
  using element_type = T;
  using storage_element_type = typename helper_traits<T>::storage_element_type;

  storage_element_type x[num_elements > 0 ? num_elements : 1];
};

// Sets every element a lane holds; lane-local, as in CUDA.
template <typename Use, int m, int n, int k, typename T, typename Layout>
void fill_fragment(fragment<Use, m, n, k, T, Layout>& f, const typename helper_traits<T>::fill_argument_type& value) {
  using Storage = typename helper_traits<T>::storage_element_type;
  const Storage stored = static_cast<Storage>(value);
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = stored;
}

// matrix_a and matrix_b: the layout in memory is the fragment's. Memory holds float for tf32.
template <typename Use, int m, int n, int k, typename T, typename Layout>
  requires(!std::is_same_v<Use, accumulator>)
void load_matrix_sync(fragment<Use, m, n, k, T, Layout>& f,
                      const typename helper_traits<T>::storage_element_type* p, unsigned ldm,
                      const std::source_location& where = std::source_location::current()) {
  ::strata::sim::tensor_core::load_matrix(detail::fragment_kind<Use, m, n, k, T, Layout>(), f.x, p, ldm,
                                          std::is_same_v<Layout, col_major>, where);
}

template <int m, int n, int k, typename T>
void load_matrix_sync(fragment<accumulator, m, n, k, T>& f, const T* p, unsigned ldm, layout_t layout,
                      const std::source_location& where = std::source_location::current()) {
  ::strata::sim::tensor_core::load_matrix(detail::fragment_kind<accumulator, m, n, k, T, void>(), f.x, p, ldm,
                                          layout == mem_col_major, where);
}

template <int m, int n, int k, typename T>
void store_matrix_sync(T* p, const fragment<accumulator, m, n, k, T>& f, unsigned ldm, layout_t layout,
                       const std::source_location& where = std::source_location::current()) {
  ::strata::sim::tensor_core::store_matrix(detail::fragment_kind<accumulator, m, n, k, T, void>(), f.x, p, ldm,
                                           layout == mem_col_major, where);
}

// d = a * b + c. The overloads CUDA has: __half inputs with float or __half c and d;
// __nv_bfloat16 and tf32 inputs with float c and d.
template <int m, int n, int k, typename Input, typename LayoutA, typename LayoutB, typename C, typename D>
  requires(std::is_same_v<Input, __half> ? ((std::is_same_v<C, float> || std::is_same_v<C, __half>) &&
                                            (std::is_same_v<D, float> || std::is_same_v<D, __half>))
                                         : (std::is_same_v<C, float> && std::is_same_v<D, float>))
void mma_sync(fragment<accumulator, m, n, k, D>& d, const fragment<matrix_a, m, n, k, Input, LayoutA>& a,
              const fragment<matrix_b, m, n, k, Input, LayoutB>& b, const fragment<accumulator, m, n, k, C>& c,
              const std::source_location& where = std::source_location::current()) {
  ::strata::sim::tensor_core::mma(detail::fragment_kind<accumulator, m, n, k, D, void>(), d.x,
                                  detail::fragment_kind<matrix_a, m, n, k, Input, LayoutA>(), a.x,
                                  detail::fragment_kind<matrix_b, m, n, k, Input, LayoutB>(), b.x,
                                  detail::fragment_kind<accumulator, m, n, k, C, void>(), c.x, where);
}

// Rounds to tf32 (10 mantissa bits), to nearest with ties away from zero, as cvt.rna.tf32.f32.
inline float __float_to_tf32(float in) {
  if (!std::isfinite(in)) return in;
  const uint32_t bits = std::bit_cast<uint32_t>(in);
  return std::bit_cast<float>((bits + 0x1000u) & ~0x1fffu);
}

}  // namespace nvcuda::wmma
