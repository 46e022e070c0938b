// Tensors in the channels-last format: the element order of the conversion on the device and
// on the host, copies and views that keep or refuse the format, element-wise work that does
// not care, and the refusal of code that reads (N, C, H, W) order (Tensor::data_ptr).
#include <cstdint>
#include <numeric>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using MemoryFormatTest = testing::DeviceTest;

// (N, C, H, W) holding 0, 1, 2, ... in row-major order: each value names its logical index.
std::vector<float> iota_values(const Shape& shape) {
  std::vector<float> values(static_cast<std::size_t>(shape.numel()));
  std::iota(values.begin(), values.end(), 0.0f);
  return values;
}

// The memory order of channels-last: element (n, c, h, w) at ((n * H + h) * W + w) * C + c.
std::vector<float> channels_last_order(const Shape& shape, const std::vector<float>& logical) {
  const std::int64_t n = shape[0], c = shape[1], h = shape[2], w = shape[3];
  std::vector<float> memory(logical.size());
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t k = 0; k < c; ++k) {
      for (std::int64_t y = 0; y < h; ++y) {
        for (std::int64_t x = 0; x < w; ++x) {
          memory[static_cast<std::size_t>(((i * h + y) * w + x) * c + k)] =
              logical[static_cast<std::size_t>(((i * c + k) * h + y) * w + x)];
        }
      }
    }
  }
  return memory;
}

// The elements of a channels-last tensor as they lie in memory (a host copy, read raw).
std::vector<float> memory_of(const Tensor& tensor, cudaStream_t stream) {
  const Tensor host = tensor.to_host(stream);
  const auto* first = static_cast<const float*>(host.memory_ptr());
  return {first, first + host.numel()};
}

TEST(MemoryFormat, NamesAndCoincidingLayouts) {
  EXPECT_EQ(memory_format_name(MemoryFormat::channels_last), "channels_last");
  EXPECT_TRUE(layouts_coincide({8, 256, 1, 1}));
  EXPECT_TRUE(layouts_coincide({8, 1, 5, 5}));
  EXPECT_TRUE(layouts_coincide({8, 3}));
  EXPECT_FALSE(layouts_coincide({2, 3, 4, 5}));
}

TEST_F(MemoryFormatTest, DeviceConversionPutsEveryElementWhereChannelsLastSays) {
  Stream stream;
  // Odd sizes, so no index coincides by accident; the second spans several 32x32 tiles of the
  // transpose in both directions, with ragged edges.
  for (const auto& [dtype, shape] : {std::pair{DType::f32, Shape{3, 5, 7, 2}}, std::pair{DType::bf16, Shape{3, 5, 7, 2}},
                                     std::pair{DType::i64, Shape{3, 5, 7, 2}}, std::pair{DType::u8, Shape{3, 5, 7, 2}},
                                     std::pair{DType::f32, Shape{2, 37, 9, 11}}}) {
    const Tensor logical = Tensor::from_vector(iota_values(shape), shape).to_device(stream).to_dtype(dtype, stream);
    const Tensor converted = logical.to_memory_format(MemoryFormat::channels_last, stream);
    EXPECT_EQ(converted.memory_format(), MemoryFormat::channels_last);
    EXPECT_EQ(converted.shape(), shape);
    EXPECT_FALSE(converted.is_contiguous());
    const std::vector<float> memory = memory_of(converted.to_dtype(DType::f32, stream), stream);
    EXPECT_EQ(memory, channels_last_order(shape, iota_values(shape))) << dtype;
    // Back to contiguous, and to_vector reads the shape's order whatever the format.
    EXPECT_EQ(converted.contiguous(stream).to_dtype(DType::f32, stream).to_vector<float>(stream),
              iota_values(shape)) << dtype;
    EXPECT_EQ(converted.to_dtype(DType::f32, stream).to_vector<float>(stream), iota_values(shape)) << dtype;
  }
}

TEST_F(MemoryFormatTest, HostConversionMatchesTheDevice) {
  Stream stream;
  const Shape shape{2, 3, 4, 5};
  const Tensor host = Tensor::from_vector(iota_values(shape), shape);
  const Tensor on_host = host.to_memory_format(MemoryFormat::channels_last, nullptr);
  const Tensor on_device = host.to_device(stream).to_memory_format(MemoryFormat::channels_last, stream);
  EXPECT_EQ(memory_of(on_host, nullptr), memory_of(on_device, stream));
  EXPECT_EQ(on_host.to_vector<float>(), iota_values(shape));
  EXPECT_THAT(on_host.to_string(), HasSubstr("memory_format=channels_last"));
}

TEST_F(MemoryFormatTest, ConvertingToTheSameFormatReturnsTheTensorItself) {
  Stream stream;
  const Tensor x = Tensor::zeros({2, 3, 4, 5}, DType::f32, stream, MemoryFormat::channels_last);
  EXPECT_TRUE(x.to_memory_format(MemoryFormat::channels_last, stream).shares_storage_with(x));
  const Tensor y = Tensor::zeros({2, 3}, DType::f32, stream);
  EXPECT_TRUE(y.contiguous(stream).shares_storage_with(y));
}

TEST_F(MemoryFormatTest, CopiesKeepTheFormatAndCopyFromConverts) {
  Stream stream;
  const Shape shape{2, 3, 2, 3};
  const Tensor logical = Tensor::from_vector(iota_values(shape), shape).to_device(stream);
  const Tensor last = logical.to_memory_format(MemoryFormat::channels_last, stream);
  EXPECT_EQ(last.to_host(stream).memory_format(), MemoryFormat::channels_last);
  EXPECT_EQ(last.to_device(stream).memory_format(), MemoryFormat::channels_last);
  EXPECT_EQ(last.to_dtype(DType::f16, stream).memory_format(), MemoryFormat::channels_last);
  Tensor back = Tensor::empty(shape, DType::f32, stream);
  back.copy_from(last, stream);  // channels-last into contiguous: converted
  EXPECT_EQ(back.to_vector<float>(stream), iota_values(shape));
  Tensor host_last = Tensor::empty_host(shape, DType::f32, MemoryFormat::channels_last);
  EXPECT_THAT([&] { host_last.copy_from(logical.to_host(stream), stream); },
              ThrowsMessage<InvalidArgument>(HasSubstr("only device tensors are converted")));
}

TEST_F(MemoryFormatTest, ElementWiseWorkIgnoresTheFormat) {
  Stream stream;
  const Shape shape{2, 3, 2, 3};
  Tensor a = Tensor::from_vector(iota_values(shape), shape).to_device(stream).to_memory_format(
      MemoryFormat::channels_last, stream);
  const Tensor b = Tensor::from_vector(iota_values(shape), shape).to_device(stream);  // contiguous
  a.add_(b, 2.0f, stream);  // b converted to a's format first
  std::vector<float> expected = iota_values(shape);
  for (float& value : expected) value *= 3.0f;
  EXPECT_EQ(a.memory_format(), MemoryFormat::channels_last);
  EXPECT_EQ(a.to_vector<float>(stream), expected);
  a.fill(1.5, stream);
  EXPECT_EQ(a.to_vector<float>(stream), std::vector<float>(expected.size(), 1.5f));
}

TEST_F(MemoryFormatTest, ViewsKeepTheBatchDimensionOnly) {
  Stream stream;
  const Shape shape{4, 3, 2, 5};
  const Tensor last = Tensor::from_vector(iota_values(shape), shape).to_device(stream).to_memory_format(
      MemoryFormat::channels_last, stream);
  const Tensor images = last.narrow(0, 1, 2);
  EXPECT_EQ(images.memory_format(), MemoryFormat::channels_last);
  const std::vector<float> all = iota_values(shape);
  EXPECT_EQ(images.to_vector<float>(stream), std::vector<float>(all.begin() + 30, all.begin() + 90));
  EXPECT_THAT([&] { (void)last.flatten(1); },
              ThrowsMessage<InvalidArgument>(HasSubstr("cannot be viewed as (4, 30) without a copy")));
  EXPECT_THAT([&] { (void)last.narrow(1, 0, 1); }, ThrowsMessage<InvalidArgument>(HasSubstr("only dimension 0")));
  // One pixel per plane: both layouts are the same, so the view is free (and contiguous).
  const Tensor pooled = Tensor::zeros({4, 6, 1, 1}, DType::f32, stream, MemoryFormat::channels_last);
  EXPECT_TRUE(pooled.is_contiguous());
  EXPECT_EQ(pooled.flatten(1).memory_format(), MemoryFormat::contiguous);
  EXPECT_NO_THROW((void)pooled.data_ptr());
}

TEST_F(MemoryFormatTest, CodeReadingNchwOrderRefusesChannelsLast) {
  Stream stream;
  const Tensor last = Tensor::zeros({2, 3, 4, 5}, DType::f32, stream, MemoryFormat::channels_last);
  EXPECT_THAT([&] { (void)last.data_ptr(); },
              ThrowsMessage<InvalidArgument>(HasSubstr("does not support the channels-last format")));
  EXPECT_THAT([&] { (void)last.data<float>(); }, ThrowsMessage<InvalidArgument>(HasSubstr("channels-last")));
  std::vector<float> host(static_cast<std::size_t>(last.numel()));
  EXPECT_THAT([&] { last.copy_to_host_async(std::span<float>(host), stream); },
              ThrowsMessage<InvalidArgument>(HasSubstr("Tensor::copy_to_host_async")));
  EXPECT_NE(last.memory_ptr(), nullptr);
}

// A leaf's first gradient, when autograd must copy it (the caller still holds it), keeps the
// gradient's memory format.
TEST_F(MemoryFormatTest, ALeafsCopiedFirstGradientKeepsItsFormat) {
  const Shape shape{2, 3, 2, 3};
  const cudaStream_t stream = current_stream();
  Tensor x = Tensor::zeros(shape, DType::f32, stream, MemoryFormat::channels_last).set_requires_grad();
  Tensor y = Tensor::empty(shape, DType::f32, stream, MemoryFormat::channels_last);
  autograd::record("PassBackward", {x}, y, [](autograd::Gradients dL_dy, cudaStream_t) { return dL_dy; });
  const Tensor dL_dy =
      Tensor::from_vector(iota_values(shape), shape).to_device(stream).to_memory_format(MemoryFormat::channels_last,
                                                                                        stream);
  y.backward(dL_dy);
  ASSERT_TRUE(x.grad().defined());
  EXPECT_FALSE(x.grad().shares_storage_with(dL_dy));
  EXPECT_EQ(x.grad().memory_format(), MemoryFormat::channels_last);
  EXPECT_EQ(x.grad().to_vector<float>(stream), iota_values(shape));
}

TEST_F(MemoryFormatTest, ChannelsLastNeedsFourDimensions) {
  Stream stream;
  EXPECT_THAT([&] { (void)Tensor::empty({2, 3, 4}, DType::f32, stream, MemoryFormat::channels_last); },
              ThrowsMessage<InvalidArgument>(HasSubstr("needs a 4-D (N, C, H, W) shape, got (2, 3, 4)")));
}

}  // namespace
}  // namespace strata
