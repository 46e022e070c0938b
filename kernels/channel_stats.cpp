// The host checks of the per-channel statistics workspace (kernels/channel_stats.h).
#include "kernels/channel_stats.h"

#include "core/check.h"
#include "core/format.h"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace {

ChannelPartials view_of(const Tensor& partials) {
  return ChannelPartials{const_cast<float*>(partials.data<float>()), partials.size(1), partials.size(2)};
}

}  // namespace

ChannelPartials prepare_channel_statistics(ChannelStatistics* statistics, std::int64_t slots,
                                           std::int64_t channels, std::string_view op, cudaStream_t stream) {
  if (statistics == nullptr) return no_channel_partials();
  const Shape expected = channel_statistics_shape(slots, channels);
  if (!statistics->partials.defined()) {
    statistics->partials = Tensor::empty(expected, DType::f32, stream);
  } else {
    expect_device_tensor(statistics->partials, op, "statistics partials");
    expect_shape(statistics->partials, expected, op, "statistics partials");
  }
  return view_of(statistics->partials);
}

ChannelPartials expect_channel_statistics(const ChannelStatistics& statistics, std::int64_t channels,
                                          std::string_view op) {
  const Tensor& partials = statistics.partials;
  STRATA_CHECK(partials.defined(), "{}: the precomputed statistics have no partials (give those a producer wrote)",
               op);
  expect_device_tensor(partials, op, "statistics partials");
  expect_rank(partials, 3, op, "statistics partials");
  STRATA_CHECK(partials.size(0) == kChannelStatisticsRows && partials.size(1) >= 1 && partials.size(2) == channels,
               "{}: statistics partials must be (6, slots >= 1, C = {}), got {}", op, channels, partials.shape());
  return view_of(partials);
}

}  // namespace strata::kernels
