// Error messages: a failed CUDA call names the call, the file:line and the caller's context;
// a failed precondition names what was wrong. (OOM messages: allocator_test.cpp.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/check.h"
#include "strata/core/errors.h"
#include "strata/core/shape.h"

namespace strata {
namespace {

using ::testing::HasSubstr;

TEST(Errors, CudaCheckNamesTheCallTheFileAndTheContext) {
  try {
    STRATA_CUDA_CHECK(cudaSetDevice(-1), "selecting device {} for the test", -1);
    FAIL() << "cudaSetDevice(-1) did not fail";
  } catch (const CudaError& error) {
    EXPECT_THAT(error.what(), HasSubstr("cudaSetDevice(-1)"));
    EXPECT_THAT(error.what(), HasSubstr("errors_test.cpp:"));
    EXPECT_THAT(error.what(), HasSubstr("selecting device -1 for the test"));
    EXPECT_NE(error.code(), cudaSuccess);
  }
  static_cast<void>(cudaGetLastError());
}

TEST(Errors, CheckThrowsInvalidArgumentWithTheMessageAndLocation) {
  const Shape shape{8, 3, 32, 32};
  try {
    STRATA_CHECK(shape.rank() == 2, "linear: input must be 2-D, got shape {}", shape.to_string());
    FAIL() << "STRATA_CHECK did not throw";
  } catch (const InvalidArgument& error) {
    EXPECT_THAT(error.what(), HasSubstr("linear: input must be 2-D, got shape (8, 3, 32, 32)"));
    EXPECT_THAT(error.what(), HasSubstr("errors_test.cpp:"));
  }
}

TEST(Errors, EveryStrataExceptionIsAnError) {
  EXPECT_THROW(throw InvalidArgument("x"), Error);
  EXPECT_THROW(throw OutOfMemoryError("x", 1, 2, 3), Error);
  EXPECT_THROW(throw CudaError("x", cudaErrorInvalidValue), Error);
}

TEST(Errors, ShapeErrorsNameTheDimensions) {
  EXPECT_THAT([] { Shape({1, 2, 3, 4, 5, 6}); },
              ::testing::ThrowsMessage<InvalidArgument>(
                  HasSubstr("at most 5 dimensions are supported, got 6 (1, 2, 3, 4, 5, 6)")));
  EXPECT_THAT([] { Shape({4, -1}); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("non-negative, got (4, -1)")));
}

}  // namespace
}  // namespace strata
