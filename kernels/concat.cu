// Concatenation along one dimension and its backward, the split. Both are the same copy in
// opposite directions between the whole, viewed as (outer, whole_row), and each piece,
// viewed as (outer, row) with its rows at columns [offset, offset + row) of the whole's rows
// (outer: the product of the sizes before dim; rows include everything after dim). One
// launch moves up to kMaxPiecesPerLaunch pieces, blockIdx.y choosing the piece, in 16-byte
// (float4) units when every row, offset and pointer allows it. A copy: exact in f32, f16 and
// bf16 alike.
#include "strata/kernels/elementwise.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "core/nvtx.h"
#include "kernels/elementwise_map.cuh"
#include "kernels/index_divider.h"

namespace strata::kernels {

namespace {

constexpr int kMaxPiecesPerLaunch = 16;

// The pieces of one launch, passed by value as a kernel parameter (640 bytes). Sizes are in
// units of the kernel's Unit.
template <typename PieceUnit>
struct PieceBatch {
  PieceUnit* data[kMaxPiecesPerLaunch];      // piece p: (outer, row[p])
  IndexDivider row[kMaxPiecesPerLaunch];     // units per outer index, the divisor of each unit's index
  std::int64_t offset[kMaxPiecesPerLaunch];  // first column in the whole's rows
};

// Concat when PieceUnit is const (pieces are read, the whole written), split otherwise.
template <typename PieceUnit, typename WholeUnit>
__global__ void copy_pieces_kernel(PieceBatch<PieceUnit> pieces, WholeUnit* whole /* (outer, whole_row) */,
                                   std::int64_t outer, std::int64_t whole_row) {
  const int p = static_cast<int>(blockIdx.y);
  const IndexDivider& row = pieces.row[p];
  const std::int64_t offset = pieces.offset[p];
  PieceUnit* piece = pieces.data[p];  // (outer, row)
  const std::int64_t count = outer * row.divisor();
  for (std::int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    const QuotientRemainder o_column = row.divide_with_remainder(i);  // the one division per unit
    const std::int64_t w = o_column.quotient * whole_row + offset + o_column.remainder;
    if constexpr (std::is_const_v<PieceUnit>) {
      whole[w] = piece[i];
    } else {
      piece[i] = whole[w];
    }
  }
}

// A piece in elements: data (outer, row) at columns [offset, offset + row) of the whole.
template <typename Element>
struct Piece {
  Element* data;
  std::int64_t row;
  std::int64_t offset;
};

template <typename PieceUnit, typename WholeUnit, typename PieceElement, typename WholeElement>
void copy_pieces_in_units(const std::vector<Piece<PieceElement>>& pieces, WholeElement* whole, std::int64_t outer,
                          std::int64_t whole_row, std::int64_t width, cudaStream_t stream, const char* name) {
  for (std::size_t first = 0; first < pieces.size(); first += kMaxPiecesPerLaunch) {
    const std::size_t batch_size = std::min<std::size_t>(kMaxPiecesPerLaunch, pieces.size() - first);
    PieceBatch<PieceUnit> batch{};
    std::int64_t largest = 0;
    for (std::size_t k = 0; k < batch_size; ++k) {
      const Piece<PieceElement>& piece = pieces[first + k];
      batch.data[k] = reinterpret_cast<PieceUnit*>(piece.data);
      batch.row[k] = IndexDivider(piece.row / width);
      batch.offset[k] = piece.offset / width;
      largest = std::max(largest, outer * batch.row[k].divisor());
    }
    const LaunchConfig config{.grid = dim3(grid_stride_blocks(largest, static_cast<int>(kElementwiseThreads)),
                                           static_cast<unsigned>(batch_size)),
                              .block = kElementwiseThreads,
                              .stream = stream,
                              .name = name};
    launch(copy_pieces_kernel<PieceUnit, WholeUnit>, config, batch, reinterpret_cast<WholeUnit*>(whole), outer,
           whole_row / width);
  }
}

template <typename From, typename To>
using same_const_as = std::conditional_t<std::is_const_v<From>, const To, To>;

// Pieces of zero size must already be left out.
template <typename PieceElement, typename WholeElement>
void copy_pieces(const std::vector<Piece<PieceElement>>& pieces, WholeElement* whole, std::int64_t outer,
                 std::int64_t whole_row, cudaStream_t stream, const char* name) {
  if (pieces.empty() || outer == 0) return;
  constexpr std::int64_t lanes = kVectorLanes<std::remove_const_t<WholeElement>>;  // elements per float4
  bool vectorize = whole_row % lanes == 0 && is_16_byte_aligned(whole);
  for (const Piece<PieceElement>& piece : pieces) {
    vectorize = vectorize && piece.row % lanes == 0 && piece.offset % lanes == 0 && is_16_byte_aligned(piece.data);
  }
  if (vectorize) {
    copy_pieces_in_units<same_const_as<PieceElement, float4>, same_const_as<WholeElement, float4>>(
        pieces, whole, outer, whole_row, lanes, stream, name);
  } else {
    copy_pieces_in_units<PieceElement, WholeElement>(pieces, whole, outer, whole_row, 1, stream, name);
  }
}

int normalized_dim(int dim, int rank) { return dim < 0 ? dim + rank : dim; }

// Sizes of the whole before and after dim: a piece's row is its size along dim times inner.
struct ConcatLayout {
  std::int64_t outer = 1;
  std::int64_t inner = 1;  // product of the sizes after dim
};

ConcatLayout concat_layout(const Shape& whole, int dim) {
  ConcatLayout layout;
  for (int d = 0; d < dim; ++d) layout.outer *= whole[d];
  for (int d = dim + 1; d < whole.rank(); ++d) layout.inner *= whole[d];
  return layout;
}

std::string element_name(const char* name, std::size_t index) {
  return std::string(name) + "[" + std::to_string(index) + "]";
}

}  // namespace

Shape concat_shape(std::span<const Shape> input_shapes, const ConcatParams& params) {
  STRATA_CHECK(!input_shapes.empty(), "concat: needs at least one input");
  const Shape& first = input_shapes[0];
  const int rank = first.rank();
  STRATA_CHECK(rank >= 1, "concat: inputs need at least one dimension, got input 0 of shape {}", first.to_string());
  const int dim = normalized_dim(params.dim, rank);
  STRATA_CHECK(dim >= 0 && dim < rank, "concat: dim {} is out of range for inputs of rank {} (input 0 {})", params.dim,
               rank, first.to_string());
  std::int64_t total = 0;
  for (std::size_t i = 0; i < input_shapes.size(); ++i) {
    const Shape& shape = input_shapes[i];
    STRATA_CHECK(shape.rank() == rank, "concat: input {} {} has rank {}, but input 0 {} has rank {}", i,
                 shape.to_string(), shape.rank(), first.to_string(), rank);
    for (int d = 0; d < rank; ++d) {
      STRATA_CHECK(d == dim || shape[d] == first[d],
                   "concat: input {} {} and input 0 {} differ in dimension {}; only dimension {} may differ", i,
                   shape.to_string(), first.to_string(), d, dim);
    }
    total += shape[dim];
  }
  return first.with_dim(dim, total);
}

void concat_forward(std::span<const Tensor> xs, Tensor& y, const ConcatParams& params, cudaStream_t stream) {
  NvtxRange range("concat_forward");
  std::vector<Shape> shapes;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    expect_floating_device_tensor(xs[i], "concat_forward", element_name("xs", i));
    expect_same_dtype(xs[i], xs[0], "concat_forward", element_name("xs", i), "xs[0]");
    shapes.push_back(xs[i].shape());
  }
  const Shape expected = concat_shape(shapes, params);
  expect_floating_device_tensor(y, "concat_forward", "y");
  expect_same_dtype(y, xs[0], "concat_forward", "y", "xs[0]");
  expect_shape(y, expected, "concat_forward", "y");
  for (std::size_t i = 0; i < xs.size(); ++i) expect_distinct(y, xs[i], "concat_forward", "y", element_name("xs", i));

  const int dim = normalized_dim(params.dim, y.dim());
  const ConcatLayout layout = concat_layout(y.shape(), dim);
  dispatch_elementwise_dtype(y.dtype(), "concat_forward", [&]<typename T>(std::type_identity<T>) {
    std::vector<Piece<const T>> pieces;
    std::int64_t offset = 0;
    for (const Tensor& x : xs) {
      const std::int64_t row = x.size(dim) * layout.inner;
      if (row > 0) pieces.push_back(Piece<const T>{x.data<T>(), row, offset});
      offset += row;
    }
    copy_pieces(pieces, y.data<T>(), layout.outer, offset, stream, "concat_forward");
  });
}

Tensor concat_forward(std::span<const Tensor> xs, const ConcatParams& params, cudaStream_t stream) {
  std::vector<Shape> shapes;
  for (std::size_t i = 0; i < xs.size(); ++i) {
    expect_floating_device_tensor(xs[i], "concat_forward", element_name("xs", i));
    shapes.push_back(xs[i].shape());
  }
  // Its own statement: concat_shape rejects an empty list before xs[0] is read.
  const Shape y_shape = concat_shape(shapes, params);
  Tensor y = Tensor::empty(y_shape, xs[0].dtype(), stream);
  concat_forward(xs, y, params, stream);
  return y;
}

void concat_backward(const Tensor& dL_dy, std::span<Tensor> dL_dxs, const ConcatParams& params, cudaStream_t stream) {
  NvtxRange range("concat_backward");
  expect_floating_device_tensor(dL_dy, "concat_backward", "dL_dy");
  std::vector<Shape> shapes;
  for (std::size_t i = 0; i < dL_dxs.size(); ++i) {
    expect_floating_device_tensor(dL_dxs[i], "concat_backward", element_name("dL_dxs", i));
    expect_same_dtype(dL_dxs[i], dL_dy, "concat_backward", element_name("dL_dxs", i), "dL_dy");
    shapes.push_back(dL_dxs[i].shape());
  }
  expect_shape(dL_dy, concat_shape(shapes, params), "concat_backward", "dL_dy");
  for (std::size_t i = 0; i < dL_dxs.size(); ++i) {
    expect_distinct(dL_dxs[i], dL_dy, "concat_backward", element_name("dL_dxs", i), "dL_dy");
    for (std::size_t j = 0; j < i; ++j) {
      expect_distinct(dL_dxs[i], dL_dxs[j], "concat_backward", element_name("dL_dxs", i), element_name("dL_dxs", j));
    }
  }

  const int dim = normalized_dim(params.dim, dL_dy.dim());
  const ConcatLayout layout = concat_layout(dL_dy.shape(), dim);
  dispatch_elementwise_dtype(dL_dy.dtype(), "concat_backward", [&]<typename T>(std::type_identity<T>) {
    std::vector<Piece<T>> pieces;
    std::int64_t offset = 0;
    for (Tensor& dL_dx : dL_dxs) {
      const std::int64_t row = dL_dx.size(dim) * layout.inner;
      if (row > 0) pieces.push_back(Piece<T>{dL_dx.data<T>(), row, offset});
      offset += row;
    }
    copy_pieces(pieces, dL_dy.data<T>(), layout.outer, offset, stream, "concat_backward");
  });
}

std::vector<Tensor> concat_backward(const Tensor& dL_dy, std::span<const Shape> input_shapes,
                                    const ConcatParams& params, cudaStream_t stream) {
  expect_floating_device_tensor(dL_dy, "concat_backward", "dL_dy");
  std::vector<Tensor> dL_dxs;
  for (const Shape& shape : input_shapes) dL_dxs.push_back(Tensor::empty(shape, dL_dy.dtype(), stream));
  concat_backward(dL_dy, dL_dxs, params, stream);
  return dL_dxs;
}

}  // namespace strata::kernels
