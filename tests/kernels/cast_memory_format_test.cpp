// kernels::cast into another memory format: one pass of core's transposing conversion that
// casts each element as it moves it. Its results are the bits of the two passes it replaces
// (the element-wise cast, tested exhaustively in cast_test.cpp, then the format conversion),
// for every pair of floating dtypes, both directions, odd shapes and poisoned outputs.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>

#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/kernels/cast.h"
#include "tests/kernels/layout_bits.h"
#include "tests/support/device_test.h"
#include "strata/core/config.h"  // STRATA_BACKEND_SIM
#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace strata::kernels {
namespace {

using strata::testing::logical_bits;
using strata::testing::poisoned_in;
using strata::testing::random_in;
using strata::testing::same_bits;

cudaStream_t stream() { return current_stream(); }

MemoryFormat other(MemoryFormat format) {
  return format == MemoryFormat::contiguous ? MemoryFormat::channels_last : MemoryFormat::contiguous;
}

class CastIntoFormat : public strata::testing::DeviceTest,
                       public ::testing::WithParamInterface<std::tuple<DType, DType, MemoryFormat>> {};

TEST_P(CastIntoFormat, GivesTheBitsOfACastThenAFormatConversion) {
  const auto [from, to, source_format] = GetParam();
  for (const Shape& shape : {Shape{3, 5, 7, 9}, Shape{2, 40, 33, 1}, Shape{1, 64, 3, 3}, Shape{5, 1, 2, 37}}) {
    const Tensor input = random_in(11, shape, from, source_format, stream());
    const Tensor expected = cast(input, to, stream()).to_memory_format(other(source_format), stream());
    Tensor output = poisoned_in(shape, to, other(source_format), stream());
    cast(input, output, stream());
    EXPECT_TRUE(same_bits(output, expected, stream())) << shape;
    const Tensor allocated = cast(input, to, other(source_format), stream());
    EXPECT_EQ(allocated.memory_format(), other(source_format));
    EXPECT_TRUE(same_bits(allocated, expected, stream())) << shape;
  }
}

std::string cast_case_name(const ::testing::TestParamInfo<std::tuple<DType, DType, MemoryFormat>>& case_info) {
  const auto [from, to, source_format] = case_info.param;
  return fmt::format("{}_to_{}_{}", dtype_name(from), dtype_name(to),
                     source_format == MemoryFormat::contiguous ? "into_channels_last" : "out_of_channels_last");
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, CastIntoFormat,
    ::testing::Combine(::testing::Values(DType::f32, DType::f16, DType::bf16),
                       ::testing::Values(DType::f32, DType::f16, DType::bf16),
                       ::testing::Values(MemoryFormat::contiguous, MemoryFormat::channels_last)),
    cast_case_name);

using CastIntoFormatLaunches = strata::testing::DeviceTest;

TEST_F(CastIntoFormatLaunches, OneKernelForTheCastAndTheTranspose) {
#if STRATA_BACKEND_SIM
  const Tensor input = random_in(3, Shape{16, 24, 3, 3}, DType::f32, MemoryFormat::contiguous, stream());
  std::vector<std::string> launched;
  sim::set_launch_observer([&](const sim::KernelLaunch& launch) { launched.emplace_back(launch.name); });
  const Tensor output = cast(input, DType::bf16, MemoryFormat::channels_last, stream());
  sim::set_launch_observer({});
  EXPECT_EQ(launched, std::vector<std::string>{"convert_dtype_memory_format"});
  EXPECT_EQ(output.dtype(), DType::bf16);
#else
  GTEST_SKIP() << "needs the simulator's launch observer; the bits above cover the kernel on a GPU";
#endif
}

TEST_F(CastIntoFormatLaunches, ChannelsLastNeedsAFourDimensionalInput) {
  const Tensor matrix = random_in(3, Shape{4, 6}, DType::f32, MemoryFormat::contiguous, stream());
  EXPECT_THROW(
      {
        try {
          (void)cast(matrix, DType::bf16, MemoryFormat::channels_last, stream());
        } catch (const InvalidArgument& error) {
          EXPECT_NE(std::string(error.what()).find("needs a 4-D input"), std::string::npos) << error.what();
          throw;
        }
      },
      InvalidArgument);
}

}  // namespace
}  // namespace strata::kernels
