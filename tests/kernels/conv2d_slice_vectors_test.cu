// The thread-to-vector map of the tensor-core slices (kernels/conv2d_slice_vectors.h): it
// takes every vector of a slice once, a warp reads whole sectors of global memory, and each
// phase of 8 threads writes 8 different 16-byte columns of shared memory's banks in the wgmma
// block's swizzled slices, K-major and MN-major, where the unswizzled core-matrix layouts
// (core/wgmma.cuh) put 4 or 8 of them in one column. Host code: the map and the slice layouts
// are the kernels' own.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <set>
#include <utility>

#include "core/wgmma.cuh"
#include "kernels/conv2d_slice_vectors.h"
#include "kernels/conv2d_tensor_core_async.cuh"

namespace strata::kernels::conv2d_tensor_core {
namespace {

using T = __nv_bfloat16;
constexpr int kLanes = 8;                   // bf16 / f16 elements per 16-byte vector
constexpr int kStepK = kAsyncStepK<T>;      // k per slice
constexpr int kThreads = 256;               // WgmmaLargeBlock's
constexpr int kBlockRows = 128;             // its m and n
constexpr int kPhaseThreads = 8;            // threads per phase of a warp's 16-byte stores
constexpr int kBankRowBytes = 128;
constexpr int kSectorBytes = 32;

// A slice: K-major, `rows` rows (A's m or B's n) by kStepK, vectors along k; or MN-major,
// kStepK rows (k) by `extent` elements along m or n, vectors along those; laid out as `layout`.
struct Slice {
  wgmma::OperandLayout layout;
  int outer;  // rows of vectors
  int per_row;

  std::uint32_t byte_of(const SliceVector& vector) const {
    return layout.major == wgmma::Major::k ? layout.offset(vector.outer, vector.inner)
                                           : layout.offset(vector.inner, vector.outer);
  }
  int vectors() const { return outer * per_row; }
};

constexpr Slice kKMajor{SwizzledSlice<T, wgmma::Major::k>::layout(), kBlockRows, kStepK / kLanes};
constexpr Slice kMnMajor{SwizzledSlice<T, wgmma::Major::mn>::layout(), kStepK, kBlockRows / kLanes};
// The same slices as unswizzled core matrices, the k-neighbours 128 bytes apart.
constexpr Slice kKMajorUnswizzled{
    {wgmma::Major::k, wgmma::Swizzle::none, wgmma::kCoreMatrixBytes, kStepK / 8 * wgmma::kCoreMatrixBytes},
    kBlockRows,
    kStepK / kLanes};
constexpr Slice kMnMajorUnswizzled{
    {wgmma::Major::mn, wgmma::Swizzle::none, wgmma::kCoreMatrixBytes, kStepK / 8 * wgmma::kCoreMatrixBytes},
    kStepK,
    kBlockRows / kLanes};

// The most vectors of one phase that share a 16-byte column of the bank row, over all phases.
int worst_phase_conflict(const Slice& slice) {
  int worst = 0;
  for (int first = 0; first < slice.vectors(); first += kPhaseThreads) {
    int per_column[kBankRowBytes / 16] = {};
    for (int v = first; v < first + kPhaseThreads; ++v) {
      const std::uint32_t byte = slice.byte_of(vector_along_rows(v, slice.per_row, kLanes));
      EXPECT_EQ(byte % 16, 0u) << "vector " << v << " is 16-byte aligned";
      worst = std::max(worst, ++per_column[byte % kBankRowBytes / 16]);
    }
  }
  return worst;
}

TEST(Conv2dSliceVectors, TheMapTakesEveryVectorOnceAndTheLayoutsEveryByteOnce) {
  for (const Slice& slice : {kKMajor, kMnMajor}) {
    ASSERT_EQ(slice.vectors() % kThreads, 0) << "whole loads per thread";
    std::set<std::pair<int, int>> taken;
    std::set<std::uint32_t> bytes;
    for (int v = 0; v < slice.vectors(); ++v) {
      const SliceVector vector = vector_along_rows(v, slice.per_row, kLanes);
      ASSERT_GE(vector.outer, 0);
      ASSERT_LT(vector.outer, slice.outer);
      ASSERT_EQ(vector.inner % kLanes, 0);
      ASSERT_LT(vector.inner, slice.per_row * kLanes);
      EXPECT_TRUE(taken.insert({vector.outer, vector.inner}).second) << "vector " << v << " taken twice";
      bytes.insert(slice.byte_of(vector));
    }
    EXPECT_EQ(static_cast<int>(taken.size()), slice.vectors());
    // The vectors fill the slice's dense bytes: kAsyncSliceOf of a wgmma block.
    EXPECT_EQ(static_cast<int>(bytes.size()), slice.vectors());
    constexpr int kSliceBytes = kAsyncSliceOf<T, kBlockRows, /*kSwizzled=*/true> * 2;
    EXPECT_EQ(static_cast<int>(*bytes.rbegin()) + 16, kSliceBytes);
  }
}

TEST(Conv2dSliceVectors, SwizzledSlicesTakeEachPhaseWithoutBankConflicts) {
  EXPECT_EQ(worst_phase_conflict(kKMajor), 1);
  EXPECT_EQ(worst_phase_conflict(kMnMajor), 1);
  // Why the slices are swizzled: 4 and 8 vectors of a phase in one column of core matrices.
  EXPECT_EQ(worst_phase_conflict(kKMajorUnswizzled), 4);
  EXPECT_EQ(worst_phase_conflict(kMnMajorUnswizzled), 8);
}

TEST(Conv2dSliceVectors, AWarpReadsWholeSectors) {
  // A warp's 32 vectors: runs of neighbouring vectors along rows, each whole 32-byte sectors
  // of global memory (8 rows x 64 bytes K-major, 2 rows x 256 bytes MN-major).
  for (const Slice& slice : {kKMajor, kMnMajor}) {
    for (int first = 0; first < slice.vectors(); first += 32) {
      std::map<int, std::set<int>> inners_of_row;
      for (int v = first; v < first + 32; ++v) {
        const SliceVector vector = vector_along_rows(v, slice.per_row, kLanes);
        inners_of_row[vector.outer].insert(vector.inner);
      }
      for (const auto& [row, inners] : inners_of_row) {
        const int bytes = static_cast<int>(inners.size()) * 16;
        EXPECT_EQ(bytes % kSectorBytes, 0) << "row " << row;
        EXPECT_EQ(*inners.rbegin() - *inners.begin(), (static_cast<int>(inners.size()) - 1) * kLanes)
            << "neighbouring vectors, row " << row;
      }
    }
  }
}

}  // namespace
}  // namespace strata::kernels::conv2d_tensor_core
