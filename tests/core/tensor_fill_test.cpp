// Tensor::fill for every dtype, on device (kernel) and host tensors, and its value checks.
#include <cstdint>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/tensor.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::Each;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using TensorFillTest = testing::DeviceTest;

// Not a multiple of the block size, so the last partial block is exercised.
constexpr std::int64_t kCount = 70001;

template <typename T>
std::vector<float> as_floats(const std::vector<T>& values) {
  std::vector<float> floats;
  for (const T& value : values) floats.push_back(static_cast<float>(value));
  return floats;
}

TEST_F(TensorFillTest, FillsEveryDTypeOnTheDevice) {
  Stream stream;
  struct Case {
    DType dtype;
    double value;
  };
  for (const Case& c : {Case{DType::f32, -1.25}, Case{DType::f16, 0.75}, Case{DType::bf16, -3.0},
                        Case{DType::i32, -123456}, Case{DType::i64, 1099511627777.0}, Case{DType::u8, 200}}) {
    SCOPED_TRACE(::testing::Message() << "dtype " << c.dtype);
    Tensor tensor = Tensor::empty({kCount}, c.dtype, stream);
    tensor.fill(7.0, stream);  // first something else, so a skipped element would show
    tensor.fill(c.value, stream);
    switch (c.dtype) {
      case DType::f32: EXPECT_THAT(tensor.to_vector<float>(stream), Each(-1.25f)); break;
      case DType::f16: EXPECT_THAT(as_floats(tensor.to_vector<__half>(stream)), Each(0.75f)); break;
      case DType::bf16: EXPECT_THAT(as_floats(tensor.to_vector<__nv_bfloat16>(stream)), Each(-3.0f)); break;
      case DType::i32: EXPECT_THAT(tensor.to_vector<std::int32_t>(stream), Each(-123456)); break;
      case DType::i64: EXPECT_THAT(tensor.to_vector<std::int64_t>(stream), Each(1099511627777LL)); break;
      case DType::u8: EXPECT_THAT(tensor.to_vector<std::uint8_t>(stream), Each(200)); break;
    }
  }
}

TEST_F(TensorFillTest, ZerosAreZero) {
  Stream stream;
  EXPECT_THAT(Tensor::zeros({3, 333}, DType::f32, stream).to_vector<float>(stream), Each(0.0f));
  EXPECT_THAT(Tensor::zeros({5}, DType::i64, stream).to_vector<std::int64_t>(stream), Each(0));
}

TEST_F(TensorFillTest, FillsOnlyTheNarrowedRows) {
  Stream stream;
  Tensor tensor = Tensor::zeros({4, 3}, DType::i32, stream);
  tensor.narrow(0, 1, 2).fill(9, stream);
  EXPECT_THAT(tensor.to_vector<std::int32_t>(stream), ::testing::ElementsAre(0, 0, 0, 9, 9, 9, 9, 9, 9, 0, 0, 0));
}

TEST(TensorFill, FillsHostTensorsOnTheCallingThread) {
  Tensor tensor = Tensor::empty_host({17}, DType::bf16);
  tensor.fill(2.5, nullptr);
  EXPECT_THAT(as_floats(tensor.to_vector<__nv_bfloat16>()), Each(2.5f));
  Tensor bytes = Tensor::empty_host({3}, DType::u8);
  bytes.fill(255, nullptr);
  EXPECT_THAT(bytes.to_vector<std::uint8_t>(), Each(255));
}

TEST(TensorFill, IntegerFillsNeedAnIntegerInRange) {
  Tensor bytes = Tensor::empty_host({3}, DType::u8);
  EXPECT_THAT([&] { bytes.fill(256, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("256 is not a value of dtype u8 (tensor of shape (3))")));
  EXPECT_THROW(bytes.fill(-1, nullptr), InvalidArgument);
  Tensor ints = Tensor::empty_host({2}, DType::i32);
  EXPECT_THAT([&] { ints.fill(0.5, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("0.5 is not a value of dtype i32")));
  EXPECT_THROW(ints.fill(2147483648.0, nullptr), InvalidArgument);
  EXPECT_NO_THROW(ints.fill(-2147483648.0, nullptr));
  Tensor longs = Tensor::empty_host({2}, DType::i64);
  EXPECT_THROW(longs.fill(9223372036854775808.0, nullptr), InvalidArgument);
}

}  // namespace
}  // namespace strata
