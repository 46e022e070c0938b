// Tensor basics: dtypes, construction, typed access, views sharing storage, printing and
// the errors for misuse. Host tensors need no device; device tensors use DeviceTest.
#include <cstdint>
#include <sstream>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/tensor.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::ThrowsMessage;

TEST(DType, SizesAndNames) {
  EXPECT_EQ(element_size(DType::f32), 4u);
  EXPECT_EQ(element_size(DType::f16), 2u);
  EXPECT_EQ(element_size(DType::bf16), 2u);
  EXPECT_EQ(element_size(DType::i32), 4u);
  EXPECT_EQ(element_size(DType::i64), 8u);
  EXPECT_EQ(element_size(DType::u8), 1u);
  EXPECT_EQ(dtype_name(DType::bf16), "bf16");
  EXPECT_EQ(dtype_of<__half>, DType::f16);
  EXPECT_EQ(dtype_of<const std::uint8_t>, DType::u8);
  EXPECT_TRUE(is_floating_point(DType::bf16));
  EXPECT_FALSE(is_floating_point(DType::i64));
  for (DType dtype : kAllDTypes) EXPECT_GT(element_size(dtype), 0u) << dtype;
}

TEST(Tensor, UndefinedByDefault) {
  const Tensor tensor;
  EXPECT_FALSE(tensor.defined());
  EXPECT_EQ(tensor.to_string(), "Tensor(undefined)");
  EXPECT_THAT([&] { tensor.reshape({1}); }, ThrowsMessage<InvalidArgument>(HasSubstr("the tensor is undefined")));
}

TEST(Tensor, HostTensorFromValues) {
  const Tensor tensor = Tensor::from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  EXPECT_TRUE(tensor.defined());
  EXPECT_EQ(tensor.shape(), (Shape{2, 3}));
  EXPECT_EQ(tensor.dim(), 2);
  EXPECT_EQ(tensor.size(1), 3);
  EXPECT_EQ(tensor.numel(), 6);
  EXPECT_EQ(tensor.nbytes(), 24u);
  EXPECT_EQ(tensor.dtype(), DType::f32);
  EXPECT_EQ(tensor.memory_kind(), MemoryKind::host);
  EXPECT_TRUE(tensor.is_host_accessible());
  EXPECT_EQ(tensor.data<float>()[4], 5.0f);
  EXPECT_THAT(tensor.to_vector<float>(), ElementsAre(1, 2, 3, 4, 5, 6));
}

TEST(Tensor, FromValuesChecksTheCount) {
  EXPECT_THAT([] { Tensor::from_vector(std::vector<float>{1, 2, 3}, {2, 2}); },
              ThrowsMessage<InvalidArgument>(HasSubstr("12 bytes given for a tensor of shape (2, 2), dtype f32")));
}

TEST(Tensor, TypedAccessChecksTheDType) {
  Tensor tensor = Tensor::empty_host({4, 5}, DType::i32);
  EXPECT_NO_THROW(tensor.data<std::int32_t>());
  EXPECT_THAT([&] { tensor.data<float>(); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("Tensor::data: requested element type f32 from a tensor of dtype i32 and shape (4, 5)")));
  EXPECT_THROW(tensor.to_vector<std::int64_t>(), InvalidArgument);
}

TEST(Tensor, ViewsShareStorageWithoutCopying) {
  Tensor tensor = Tensor::from_vector(std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, {3, 2, 2});
  const Tensor reshaped = tensor.reshape({4, 3});
  const Tensor viewed = tensor.view({12});
  const Tensor flat = tensor.flatten(1);
  const Tensor rows = tensor.narrow(0, 1, 2);
  for (const Tensor* view : {&reshaped, &viewed, &flat, &rows}) {
    EXPECT_TRUE(view->shares_storage_with(tensor));
  }
  EXPECT_EQ(reshaped.shape(), (Shape{4, 3}));
  EXPECT_EQ(flat.shape(), (Shape{3, 4}));
  EXPECT_EQ(rows.shape(), (Shape{2, 2, 2}));
  EXPECT_EQ(rows.data_ptr(), tensor.data<std::int32_t>() + 4);
  EXPECT_THAT(rows.to_vector<std::int32_t>(), ElementsAre(4, 5, 6, 7, 8, 9, 10, 11));

  tensor.data<std::int32_t>()[5] = 50;  // visible through every view
  EXPECT_EQ(reshaped.data<std::int32_t>()[5], 50);
  EXPECT_EQ(rows.data<std::int32_t>()[1], 50);

  const Tensor copy = Tensor::from_vector(tensor.to_vector<std::int32_t>(), tensor.shape());
  EXPECT_FALSE(copy.shares_storage_with(tensor));
}

TEST(Tensor, NarrowAlongALaterDimensionAfterUnitDimensions) {
  const Tensor tensor = Tensor::from_vector(std::vector<std::uint8_t>{0, 1, 2, 3, 4, 5}, {1, 3, 2});
  EXPECT_THAT(tensor.narrow(1, 1, 2).to_vector<std::uint8_t>(), ElementsAre(2, 3, 4, 5));
  EXPECT_EQ(tensor.narrow(1, 3, 0).numel(), 0);
}

TEST(Tensor, ViewErrorsNameTheShapes) {
  const Tensor tensor = Tensor::empty_host({8, 3}, DType::f32);
  EXPECT_THAT([&] { tensor.reshape({5, 5}); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("cannot view shape (8, 3) (24 elements) as (5, 5) (25 elements)")));
  EXPECT_THAT([&] { tensor.narrow(0, 6, 3); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("range [6, 9) out of bounds for dimension 0 of size 8 (shape (8, 3))")));
  EXPECT_THAT([&] { tensor.narrow(1, 0, 2); },
              ThrowsMessage<InvalidArgument>(HasSubstr("the view would not be contiguous")));
  EXPECT_THAT([&] { tensor.flatten(2); }, ThrowsMessage<InvalidArgument>(HasSubstr("(8, 3)")));
  EXPECT_THROW(tensor.reshape({1, 1, 1, 1, 1, 24}), InvalidArgument);
}

TEST(Tensor, PrintsSmallHostTensorsWithValues) {
  const Tensor ints = Tensor::from_vector(std::vector<std::int32_t>{1, 2, 3, 4}, {2, 2});
  EXPECT_EQ(ints.to_string(), "Tensor(shape=(2, 2), dtype=i32, device=cpu, values=[[1, 2], [3, 4]])");
  const Tensor floats = Tensor::from_vector(std::vector<float>{1.5f, -0.25f, 3.0f}, {3});
  EXPECT_EQ(floats.to_string(), "Tensor(shape=(3), dtype=f32, device=cpu, values=[1.5, -0.25, 3])");
  const Tensor bytes = Tensor::from_vector(std::vector<std::uint8_t>{0, 255}, {2});
  EXPECT_EQ(bytes.to_string(), "Tensor(shape=(2), dtype=u8, device=cpu, values=[0, 255])");
  Tensor halves = Tensor::empty_host({1, 2}, DType::f16);
  halves.fill(0.5, nullptr);
  EXPECT_EQ(halves.to_string(), "Tensor(shape=(1, 2), dtype=f16, device=cpu, values=[[0.5, 0.5]])");
  const Tensor scalar = Tensor::from_vector(std::vector<std::int64_t>{-7}, {});
  EXPECT_EQ(scalar.to_string(), "Tensor(shape=(), dtype=i64, device=cpu, values=-7)");
  const Tensor empty = Tensor::empty_host({0, 3}, DType::f32);
  EXPECT_EQ(empty.to_string(), "Tensor(shape=(0, 3), dtype=f32, device=cpu, values=[])");

  std::ostringstream os;
  os << Tensor::empty_host({100}, DType::bf16);
  EXPECT_EQ(os.str(), "Tensor(shape=(100), dtype=bf16, device=cpu)") << "large tensors print no values";
}

using DeviceTensorTest = testing::DeviceTest;

TEST_F(DeviceTensorTest, DeviceTensorsLiveOnTheCurrentDevice) {
  Stream stream;
  const Tensor tensor = Tensor::empty({2, 3}, DType::f32, stream);
  EXPECT_TRUE(tensor.is_device());
  EXPECT_FALSE(tensor.is_host_accessible());
  EXPECT_EQ(tensor.device(), current_device());
  EXPECT_EQ(tensor.allocation_stream(), stream.get());
  EXPECT_NE(tensor.data_ptr(), nullptr);
  const std::string device = "cuda:" + std::to_string(current_device());
  EXPECT_EQ(tensor.to_string(), "Tensor(shape=(2, 3), dtype=f32, device=" + device + ")");

  const Tensor pinned = Tensor::empty_pinned({2}, DType::i64);
  EXPECT_EQ(pinned.memory_kind(), MemoryKind::pinned);
  EXPECT_THAT(pinned.to_string(), HasSubstr("device=cpu (pinned)"));
}

TEST_F(DeviceTensorTest, RefusesTheDefaultStream) {
  EXPECT_THAT([] { Tensor::empty({8, 3}, DType::f32, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("Tensor::empty((8, 3), f32): no stream given")));
}

TEST_F(DeviceTensorTest, EmptyDeviceTensorsNeedNoMemory) {
  Stream stream;
  Tensor tensor = Tensor::empty({0, 16}, DType::f32, stream);
  EXPECT_TRUE(tensor.defined());
  EXPECT_EQ(tensor.nbytes(), 0u);
  tensor.fill(1.0, stream);
  EXPECT_TRUE(tensor.to_vector<float>(stream).empty());
}

}  // namespace
}  // namespace strata
