// Tests of kernels/conv2d_weight_layout.h, the orders in which the conv kernels read a weight
// (K, C/groups, R, S): each holds the weight's elements in its memory format, for weights
// stored contiguous and channels-last, with one group and with several.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "kernels/conv2d_weight_layout.h"
#include "strata/core/memory_format.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "tests/support/device_test.h"

namespace strata::kernels {
namespace {

constexpr std::int64_t kOutPerGroup = 3, kInPerGroup = 5, kHeight = 2, kWidth = 3;

class Conv2dWeightLayout : public testing::DeviceTest, public ::testing::WithParamInterface<MemoryFormat> {
 protected:
  // The weight of `groups` groups, stored in the parameter's format.
  Tensor weight(std::int64_t groups) const {
    const Shape shape{groups * kOutPerGroup, kInPerGroup, kHeight, kWidth};
    std::vector<float> values(static_cast<std::size_t>(shape.numel()));
    for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i);
    return Tensor::from_vector(values, shape).to_device(stream_).to_memory_format(GetParam(), stream_);
  }
  cudaStream_t stream_ = current_stream();
};

TEST_P(Conv2dWeightLayout, KcrsAndKrscOrdersHoldTheSameElements) {
  for (const std::int64_t groups : {1, 2}) {
    SCOPED_TRACE(::testing::Message() << groups << " groups");
    const Tensor w = weight(groups);
    const Tensor kcrs = weight_in_kcrs_order(w, stream_);
    EXPECT_TRUE(kcrs.is_contiguous());
    const Tensor krsc = weight_in_krsc_order(w, stream_);
    EXPECT_EQ(krsc.memory_format(), MemoryFormat::channels_last);
    EXPECT_EQ(kcrs.to_vector<float>(stream_), w.to_vector<float>(stream_));
    EXPECT_EQ(krsc.to_vector<float>(stream_), w.to_vector<float>(stream_));
  }
}

INSTANTIATE_TEST_SUITE_P(StoredAs, Conv2dWeightLayout,
                         ::testing::Values(MemoryFormat::contiguous, MemoryFormat::channels_last),
                         [](const ::testing::TestParamInfo<MemoryFormat>& format) {
                           return format.param == MemoryFormat::contiguous ? "Contiguous" : "ChannelsLast";
                         });

}  // namespace
}  // namespace strata::kernels
