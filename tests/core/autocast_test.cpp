// The autocast setting (strata/core/autocast.h): off by default, nested guards restore the
// previous dtype, nullopt switches it off inside a region, it is per thread, and only the
// reduced floating dtypes are accepted. What each op does under it is tested with the ops.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <thread>

#include "strata/core/autocast.h"
#include "strata/core/errors.h"

namespace strata {
namespace {

using ::testing::HasSubstr;

TEST(Autocast, OffByDefaultAndGuardsNest) {
  EXPECT_EQ(autocast_dtype(), std::nullopt);
  {
    AutocastGuard outer(DType::bf16);
    EXPECT_EQ(autocast_dtype(), DType::bf16);
    {
      AutocastGuard inner(DType::f16);
      EXPECT_EQ(autocast_dtype(), DType::f16);
      {
        AutocastGuard off(std::nullopt);
        EXPECT_EQ(autocast_dtype(), std::nullopt);
      }
      EXPECT_EQ(autocast_dtype(), DType::f16);
    }
    EXPECT_EQ(autocast_dtype(), DType::bf16);
  }
  EXPECT_EQ(autocast_dtype(), std::nullopt);
}

TEST(Autocast, IsPerThread) {
  AutocastGuard autocast(DType::bf16);
  std::optional<DType> seen_by_other = DType::f32;
  std::thread other([&] { seen_by_other = autocast_dtype(); });
  other.join();
  EXPECT_EQ(seen_by_other, std::nullopt);
  EXPECT_EQ(autocast_dtype(), DType::bf16);
}

TEST(Autocast, RejectsDtypesOtherThanBf16AndF16) {
  for (const DType dtype : {DType::f32, DType::i32, DType::i64, DType::u8}) {
    try {
      AutocastGuard autocast(dtype);
      FAIL() << "accepted " << dtype;
    } catch (const InvalidArgument& error) {
      EXPECT_THAT(error.what(), HasSubstr("bf16 or f16"));
      EXPECT_THAT(error.what(), HasSubstr(std::string(dtype_name(dtype))));
    }
    EXPECT_EQ(autocast_dtype(), std::nullopt) << "a refused guard changed the setting";
  }
}

}  // namespace
}  // namespace strata
