// fill_uniform and fill_normal: argument checks, then the kernel (device tensors) or the
// same per-element functions on the host (host tensors).
#include "strata/core/random.h"

#include <cmath>
#include <limits>

#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "core/format.h"
#include "core/random_kernels.h"
#include "strata/core/op.h"
#include "strata/core/philox.h"

namespace strata {

namespace {

void check_target(const Tensor& tensor, const char* operation, std::uint64_t offset, cudaStream_t stream) {
  STRATA_CHECK(tensor.defined(), "{}: the tensor is undefined", operation);
  STRATA_CHECK(is_floating_point(tensor.dtype()), "{}: needs a floating-point tensor (f32, f16, bf16), got dtype {} "
               "(shape {})", operation, tensor.dtype(), tensor.shape());
  STRATA_CHECK(offset <= std::numeric_limits<std::uint64_t>::max() - static_cast<std::uint64_t>(tensor.numel()),
               "{}: offset {} + {} elements overflows the stream", operation, offset, tensor.numel());
  STRATA_CHECK(!tensor.is_device() || stream != nullptr,
               "{}: no stream given for a device tensor of shape {}; Strata never uses the default stream", operation,
               tensor.shape());
}

// Host tensors: the kernel's per-element functions, on the calling thread.
template <typename ElementValue>
void fill_on_host(Tensor& tensor, cudaStream_t stream, ElementValue element_value) {
  if (stream != nullptr) stream_synchronize(stream);
  detail::dispatch_dtype(tensor.dtype(), [&]<typename T>(std::type_identity<T>) {
    if constexpr (std::is_same_v<T, float> || detail::kIsReducedFloat<T>) {
      T* elements = tensor.data<T>();
      for (std::int64_t i = 0; i < tensor.numel(); ++i) {
        elements[i] = detail::convert_element<T>(element_value(static_cast<std::uint64_t>(i)));
      }
    }
  });
}

}  // namespace

void fill_uniform(Tensor& tensor, const UniformParams& params, cudaStream_t stream) {
  check_target(tensor, "fill_uniform", params.offset, stream);
  STRATA_CHECK(std::isfinite(params.low) && std::isfinite(params.high) && params.low <= params.high,
               "fill_uniform: needs finite low <= high, got low {} and high {} (tensor shape {})", params.low,
               params.high, tensor.shape());
  if (tensor.is_device()) {
    graph::run_op_on(stream, "fill_uniform", {}, {tensor}, [target = tensor.detach(), params](cudaStream_t s) mutable {
      detail::launch_philox_fill(target.data_ptr(), target.dtype(), target.numel(),
                                 detail::RandomDistribution::uniform, params.low, params.high, params.seed,
                                 params.offset, s);
      target.record_stream(s);
    });
    return;
  }
  fill_on_host(tensor, stream, [&](std::uint64_t i) {
    return philox_uniform(params.seed, params.offset + i, params.low, params.high);
  });
}

void fill_normal(Tensor& tensor, const NormalParams& params, cudaStream_t stream) {
  check_target(tensor, "fill_normal", params.offset, stream);
  STRATA_CHECK(std::isfinite(params.mean) && std::isfinite(params.stddev) && params.stddev >= 0.0f,
               "fill_normal: needs a finite mean and a finite stddev >= 0, got mean {} and stddev {} (tensor shape {})",
               params.mean, params.stddev, tensor.shape());
  if (tensor.is_device()) {
    graph::run_op_on(stream, "fill_normal", {}, {tensor}, [target = tensor.detach(), params](cudaStream_t s) mutable {
      detail::launch_philox_fill(target.data_ptr(), target.dtype(), target.numel(),
                                 detail::RandomDistribution::normal, params.mean, params.stddev, params.seed,
                                 params.offset, s);
      target.record_stream(s);
    });
    return;
  }
  fill_on_host(tensor, stream, [&](std::uint64_t i) {
    return philox_normal(params.seed, params.offset + i, params.mean, params.stddev);
  });
}

}  // namespace strata
