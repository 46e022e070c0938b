// gemm() against a double-precision reference: every transpose combination, odd sizes,
// padded leading dimensions, beta 0 (C never read) and not, k = 0, and argument checks; in
// f32 through gemm() and in f16 and bf16 through gemm_ex().
// Inputs, product and result all travel on one stream without synchronising in between,
// which also checks that the product runs in stream order.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/gemm.h"
#include "strata/core/tensor.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using GemmTest = testing::DeviceTest;

struct GemmCase {
  bool trans_a;
  bool trans_b;
  int m, n, k;
  int padding;  // extra elements per stored row of A, B and C
  float alpha, beta;
};

// C (m, ldc) = alpha * op(A) op(B) + beta * C in double; the padding columns of C keep
// their input values.
std::vector<double> reference_gemm(const GemmCase& c, const std::vector<float>& a, int lda, const std::vector<float>& b,
                                   int ldb, const std::vector<float>& c_in, int ldc) {
  std::vector<double> result(c_in.begin(), c_in.end());
  for (int i = 0; i < c.m; ++i) {
    for (int j = 0; j < c.n; ++j) {
      double sum = 0.0;
      for (int p = 0; p < c.k; ++p) {
        const int a_index = c.trans_a ? p * lda + i : i * lda + p;
        const int b_index = c.trans_b ? j * ldb + p : p * ldb + j;
        const double a_ip = a[static_cast<std::size_t>(a_index)], b_pj = b[static_cast<std::size_t>(b_index)];
        sum += a_ip * b_pj;
      }
      const auto index = static_cast<std::size_t>(i * ldc + j);
      result[index] = c.alpha * sum + (c.beta == 0.0f ? 0.0 : c.beta * static_cast<double>(c_in[index]));
    }
  }
  return result;
}

// The case with A, B and C stored in dtype: f32 through gemm(), others through gemm_ex().
// The reference reads the inputs as rounded to dtype.
void run_case(const GemmCase& c, std::uint64_t seed, DType dtype = DType::f32) {
  SCOPED_TRACE(::testing::Message() << dtype << ", trans_a " << c.trans_a << ", trans_b " << c.trans_b << ", m "
                                    << c.m << ", n " << c.n << ", k " << c.k << ", padding " << c.padding
                                    << ", alpha " << c.alpha << ", beta " << c.beta << ", seed " << seed);
  const int a_rows = c.trans_a ? c.k : c.m, a_columns = c.trans_a ? c.m : c.k;
  const int b_rows = c.trans_b ? c.n : c.k, b_columns = c.trans_b ? c.k : c.n;
  // As in BLAS, a leading dimension is at least 1 even when a matrix has no columns.
  const int lda = std::max(1, a_columns + c.padding), ldb = std::max(1, b_columns + c.padding);
  const int ldc = c.n + c.padding;
  Stream stream;
  const std::vector<float> a =
      testing::rounded_to(testing::random_uniform(seed, static_cast<std::size_t>(a_rows * lda)), dtype, stream);
  const std::vector<float> b =
      testing::rounded_to(testing::random_uniform(seed + 1, static_cast<std::size_t>(b_rows * ldb)), dtype, stream);
  std::vector<float> c_in =
      testing::rounded_to(testing::random_uniform(seed + 2, static_cast<std::size_t>(c.m * ldc)), dtype, stream);
  if (c.beta == 0.0f) std::ranges::fill(c_in, testing::poison_value());  // must be neither read nor kept

  const Tensor a_device = testing::storage_tensor(a, {a_rows, lda}, dtype, stream);  // (a_rows, lda)
  const Tensor b_device = testing::storage_tensor(b, {b_rows, ldb}, dtype, stream);  // (b_rows, ldb)
  Tensor c_device = testing::storage_tensor(c_in, {c.m, ldc}, dtype, stream);        // (m, ldc)
  if (dtype == DType::f32) {
    gemm(GemmArgs{.trans_a = c.trans_a, .trans_b = c.trans_b, .m = c.m, .n = c.n, .k = c.k, .alpha = c.alpha,
                  .a = a_device.data<float>(), .lda = lda, .b = b_device.data<float>(), .ldb = ldb, .beta = c.beta,
                  .c = c_device.data<float>(), .ldc = ldc},
         stream);
  } else {
    gemm_ex(GemmExArgs{.dtype = dtype, .trans_a = c.trans_a, .trans_b = c.trans_b, .m = c.m, .n = c.n, .k = c.k,
                       .alpha = c.alpha, .a = a_device.data_ptr(), .lda = lda, .b = b_device.data_ptr(), .ldb = ldb,
                       .beta = c.beta, .c = c_device.data_ptr(), .ldc = ldc},
            stream);
    // The poison as dtype stores it, for the padding comparison below.
    c_in = testing::storage_values(testing::storage_tensor(c_in, {c.m, ldc}, dtype, stream), stream);
  }
  std::vector<double> expected = reference_gemm(c, a, lda, b, ldb, c_in, ldc);
  std::vector<float> actual = testing::storage_values(c_device, stream);
  // Padding columns must be untouched: compare their bits (they may be poison) ...
  for (int i = 0; i < c.m; ++i) {
    for (int j = c.n; j < ldc; ++j) {
      const auto index = static_cast<std::size_t>(i * ldc + j);
      EXPECT_EQ(std::bit_cast<std::uint32_t>(actual[index]), std::bit_cast<std::uint32_t>(c_in[index]))
          << "padding element (" << i << ", " << j << ") was written";
      actual[index] = 0.0f;
      expected[index] = 0.0;
    }
  }
  // ... and the product within fp32 rounding of a k-term sum of values of magnitude <= 1,
  // plus the one rounding of the result to dtype.
  const double tolerance = 4.0 * c.k * 1.2e-7 * (std::abs(c.alpha) + std::abs(c.beta)) + 1e-6;
  EXPECT_TRUE(testing::all_close(
      actual, expected,
      testing::Tolerance{.abs_tol = tolerance, .rel_tol = std::max(1e-6, testing::storage_rel_tol(dtype))}));
}

TEST_F(GemmTest, MatchesTheReferenceForEveryTransposeCombination) {
  std::uint64_t seed = 100;
  for (bool trans_a : {false, true}) {
    for (bool trans_b : {false, true}) {
      run_case({trans_a, trans_b, 37, 23, 19, 0, 1.0f, 0.0f}, seed++);
      run_case({trans_a, trans_b, 17, 29, 31, 3, 0.75f, -1.5f}, seed++);
      run_case({trans_a, trans_b, 1, 1, 1, 0, 2.0f, 0.5f}, seed++);
    }
  }
}

TEST_F(GemmTest, LongInnerDimension) { run_case({false, true, 9, 11, 1000, 1, 1.0f, 1.0f}, 7); }

TEST_F(GemmTest, ReducedDtypesAccumulateInF32AndRoundOnce) {
  std::uint64_t seed = 200;
  for (const DType dtype : testing::kReducedDtypes) {
    for (bool trans_a : {false, true}) {
      for (bool trans_b : {false, true}) {
        run_case({trans_a, trans_b, 13, 21, 17, 0, 1.0f, 0.0f}, seed++, dtype);
        run_case({trans_a, trans_b, 9, 7, 33, 3, 0.75f, -1.5f}, seed++, dtype);
      }
    }
    run_case({false, true, 5, 6, 300, 1, 1.0f, 1.0f}, seed++, dtype);  // a long sum, C read
    run_case({true, false, 5, 4, 0, 2, 1.0f, 2.0f}, seed++, dtype);    // k = 0 scales C
  }
}

TEST_F(GemmTest, SmallIntegersAreExactInEveryDtype) {
  // Products and sums of small integers are exact in f16 and bf16 storage too.
  Stream stream;
  const std::vector<float> a = {1, 2, -3, 0, 4, 1};  // (2, 3)
  const std::vector<float> b = {2, -1, 0, 3, 1, 1};  // (3, 2)
  for (const DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    const Tensor a_device = testing::storage_tensor(a, {2, 3}, dtype, stream);
    const Tensor b_device = testing::storage_tensor(b, {3, 2}, dtype, stream);
    Tensor c_device = testing::poisoned_storage({2, 2}, dtype, stream);
    gemm_ex(GemmExArgs{.dtype = dtype, .m = 2, .n = 2, .k = 3, .a = a_device.data_ptr(), .lda = 3,
                       .b = b_device.data_ptr(), .ldb = 2, .c = c_device.data_ptr(), .ldc = 2},
            stream);
    EXPECT_TRUE(testing::all_equal(testing::storage_values(c_device, stream), std::vector<float>{-1, 2, 1, 13}))
        << dtype;
  }
}

TEST_F(GemmTest, EmptyInnerDimensionScalesC) {
  run_case({false, false, 5, 4, 0, 0, 1.0f, 2.0f}, 11);
  run_case({true, true, 5, 4, 0, 2, 1.0f, 0.0f}, 12);
}

TEST_F(GemmTest, EmptyOutputIsANoOp) {
  Stream stream;
  EXPECT_NO_THROW(gemm(GemmArgs{.m = 0, .n = 4, .k = 3}, stream));
  EXPECT_NO_THROW(gemm(GemmArgs{.m = 4, .n = 0, .k = 3}, stream));
  stream.synchronize();
}

TEST_F(GemmTest, RefusesBadArgumentsNamingThem) {
  Stream stream;
  Tensor a = Tensor::empty({4, 3}, DType::f32, stream), b = Tensor::empty({3, 5}, DType::f32, stream);
  Tensor c = Tensor::empty({4, 5}, DType::f32, stream);
  const GemmArgs good{.m = 4, .n = 5, .k = 3, .a = a.data<float>(), .lda = 3, .b = b.data<float>(), .ldb = 5,
                      .c = c.data<float>(), .ldc = 5};
  GemmArgs args = good;
  args.lda = 2;
  EXPECT_THAT([&] { gemm(args, stream); },
              ThrowsMessage<InvalidArgument>(HasSubstr("gemm(trans_a=false, trans_b=false, m=4, n=5, k=3, lda=2, "
                                                       "ldb=5, ldc=5): lda must be >= 3 (A is stored (4, 3))")));
  args = good;
  args.trans_b = true;  // B is then stored (5, 3)
  args.ldb = 2;
  EXPECT_THAT([&] { gemm(args, stream); },
              ThrowsMessage<InvalidArgument>(HasSubstr("ldb must be >= 3 (B is stored (5, 3))")));
  args = good;
  args.ldc = 4;
  EXPECT_THAT([&] { gemm(args, stream); }, ThrowsMessage<InvalidArgument>(HasSubstr("ldc must be >= n = 5")));
  args = good;
  args.k = -1;
  EXPECT_THAT([&] { gemm(args, stream); }, ThrowsMessage<InvalidArgument>(HasSubstr("sizes must be non-negative")));
  args = good;
  args.b = nullptr;
  EXPECT_THAT([&] { gemm(args, stream); }, ThrowsMessage<InvalidArgument>(HasSubstr("A or B is null")));
  EXPECT_THAT([&] { gemm(good, nullptr); }, ThrowsMessage<InvalidArgument>(HasSubstr("no stream given")));
  const GemmExArgs integers{.dtype = DType::i32, .m = 4, .n = 5, .k = 3, .a = a.data_ptr(), .lda = 3,
                            .b = b.data_ptr(), .ldb = 5, .c = c.data_ptr(), .ldc = 5};
  EXPECT_THAT([&] { gemm_ex(integers, stream); },
              ThrowsMessage<InvalidArgument>(HasSubstr("ldc=5, dtype=i32): dtype must be f32, f16 or bf16, got i32")));
}

}  // namespace
}  // namespace strata
