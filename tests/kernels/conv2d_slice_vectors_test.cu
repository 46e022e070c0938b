// The thread-to-vector maps of the tensor-core slices (kernels/conv2d_slice_vectors.h): each
// takes every vector of a slice once, and across rows, the wgmma block's map, writes each
// phase of 8 threads into 8 different 16-byte columns of shared memory's banks in both core
// matrix layouts (K-major and MN-major, core/wgmma.cuh), where along rows puts 4 or 8 of them
// in one column. Host code: the maps and the core-matrix offsets are the kernels' own.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <utility>

#include "core/wgmma.cuh"
#include "kernels/conv2d_slice_vectors.h"

namespace strata::kernels::conv2d_tensor_core {
namespace {

constexpr int kLanes = 8;         // bf16 / f16 elements per 16-byte vector
constexpr int kStepK = 32;        // the async path's k per slice for 2-byte types (kAsyncStepK)
constexpr int kThreads = 256;     // WgmmaLargeBlock's
constexpr int kBlockRows = 128;   // its m and n
constexpr int kPhaseThreads = 8;  // threads per phase of a warp's 16-byte stores
constexpr int kBankRowBytes = 128;

using VectorMap = SliceVector (*)(int v, int per_row, int lanes);

// A slice of core matrices: K-major, `rows` rows (A's m or B's n) by kStepK, vectors along k;
// or MN-major, kStepK rows (k) by `extent` elements along m or n, vectors along those. The
// strides are CoreMatrices' (conv2d_tensor_core_async.cuh): k-neighbours 128 bytes apart,
// row-neighbours kStepK / 8 core matrices.
struct CoreSlice {
  wgmma::Major major;
  int outer;  // rows of vectors
  int per_row;

  std::uint32_t byte_of(const SliceVector& vector) const {
    constexpr std::uint32_t kLeading = wgmma::kCoreMatrixBytes;
    constexpr std::uint32_t kStride = kStepK / 8 * wgmma::kCoreMatrixBytes;
    return major == wgmma::Major::k ? wgmma::core_matrix_offset(vector.outer, vector.inner, kLeading, kStride, major)
                                    : wgmma::core_matrix_offset(vector.inner, vector.outer, kLeading, kStride, major);
  }
  int vectors() const { return outer * per_row; }
};

constexpr CoreSlice kKMajor{wgmma::Major::k, kBlockRows, kStepK / kLanes};
constexpr CoreSlice kMnMajor{wgmma::Major::mn, kStepK, kBlockRows / kLanes};

// The most vectors of one phase that share a 16-byte column of the bank row, over all phases.
int worst_phase_conflict(const CoreSlice& slice, VectorMap map) {
  int worst = 0;
  for (int first = 0; first < slice.vectors(); first += kPhaseThreads) {
    int per_column[kBankRowBytes / 16] = {};
    for (int v = first; v < first + kPhaseThreads; ++v) {
      const std::uint32_t byte = slice.byte_of(map(v, slice.per_row, kLanes));
      EXPECT_EQ(byte % 16, 0u) << "vector " << v << " is 16-byte aligned";
      worst = std::max(worst, ++per_column[byte % kBankRowBytes / 16]);
    }
  }
  return worst;
}

TEST(Conv2dSliceVectors, EachMapTakesEveryVectorOnce) {
  for (const CoreSlice& slice : {kKMajor, kMnMajor}) {
    ASSERT_EQ(slice.vectors() % kThreads, 0) << "whole loads per thread";
    for (const VectorMap map : {&vector_along_rows, &vector_across_rows}) {
      std::set<std::pair<int, int>> taken;
      for (int v = 0; v < slice.vectors(); ++v) {
        const SliceVector vector = map(v, slice.per_row, kLanes);
        ASSERT_GE(vector.outer, 0);
        ASSERT_LT(vector.outer, slice.outer);
        ASSERT_EQ(vector.inner % kLanes, 0);
        ASSERT_LT(vector.inner, slice.per_row * kLanes);
        EXPECT_TRUE(taken.insert({vector.outer, vector.inner}).second) << "vector " << v << " taken twice";
      }
      EXPECT_EQ(static_cast<int>(taken.size()), slice.vectors());
    }
  }
}

TEST(Conv2dSliceVectors, AcrossRowsWritesEachPhaseWithoutBankConflicts) {
  EXPECT_EQ(worst_phase_conflict(kKMajor, &vector_across_rows), 1);
  EXPECT_EQ(worst_phase_conflict(kMnMajor, &vector_across_rows), 1);
  // Why the wgmma block does not copy along rows: 4 and 8 vectors of a phase in one column.
  EXPECT_EQ(worst_phase_conflict(kKMajor, &vector_along_rows), 4);
  EXPECT_EQ(worst_phase_conflict(kMnMajor, &vector_along_rows), 8);
}

TEST(Conv2dSliceVectors, AcrossRowsKeepsAWarpOnEightRowsOfWholeSegments) {
  // A warp's 32 vectors: 8 rows x 4 neighbouring vectors (64 contiguous bytes of global
  // memory per row, whole 32-byte sectors), as along rows for K-major slices.
  for (const CoreSlice& slice : {kKMajor, kMnMajor}) {
    for (int first = 0; first < slice.vectors(); first += 32) {
      std::set<int> rows;
      std::set<int> inners;
      for (int v = first; v < first + 32; ++v) {
        const SliceVector vector = vector_across_rows(v, slice.per_row, kLanes);
        rows.insert(vector.outer);
        inners.insert(vector.inner);
      }
      EXPECT_EQ(rows.size(), 8u);
      ASSERT_EQ(inners.size(), 4u);
      EXPECT_EQ(*inners.rbegin() - *inners.begin(), 3 * kLanes) << "neighbouring vectors";
    }
  }
}

}  // namespace
}  // namespace strata::kernels::conv2d_tensor_core
