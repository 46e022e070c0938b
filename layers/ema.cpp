// ExponentialMovingAverage: the averages as f32 device copies, updated, copied and swapped
// by the multi-tensor kernels of strata/kernels/optimizer_ema.h.
#include "strata/layers/ema.h"

#include <utility>

#include "core/check.h"
#include "core/format.h"
#include "strata/kernels/optimizer_ema.h"

namespace strata::optim {

ExponentialMovingAverage::ExponentialMovingAverage(std::vector<Tensor> parameters, cudaStream_t stream)
    : parameters_(std::move(parameters)) {
  for (std::size_t i = 0; i < parameters_.size(); ++i) {
    const Tensor& parameter = parameters_[i];
    STRATA_CHECK(parameter.defined() && parameter.is_device() && parameter.dtype() == DType::f32,
                 "ExponentialMovingAverage: parameter {} must be a defined f32 device tensor, got {}", i,
                 parameter.defined() ? parameter.to_string() : std::string("an undefined tensor"));
    averages_.push_back(Tensor::empty(parameter.shape(), DType::f32, stream));
  }
  kernels::copy_tensors(parameters_, averages_, stream);
}

void ExponentialMovingAverage::update(double decay, cudaStream_t stream) {
  kernels::ema_update(averages_, parameters_, {.decay = decay}, stream);
}

void ExponentialMovingAverage::copy_to(std::span<Tensor> destinations, cudaStream_t stream) const {
  STRATA_CHECK(destinations.size() == averages_.size(),
               "ExponentialMovingAverage::copy_to: got {} destinations for {} averages", destinations.size(),
               averages_.size());
  kernels::copy_tensors(averages_, destinations, stream);
}

void ExponentialMovingAverage::swap(cudaStream_t stream) { kernels::swap_tensors(parameters_, averages_, stream); }

void ExponentialMovingAverage::lookahead(double decay, cudaStream_t stream) {
  update(decay, stream);
  kernels::copy_tensors(averages_, parameters_, stream);
}

NamedTensors ExponentialMovingAverage::state_dict(const std::string& prefix) const {
  NamedTensors named;
  for (std::size_t i = 0; i < averages_.size(); ++i) named.emplace_back(prefix + std::to_string(i), averages_[i]);
  return named;
}

}  // namespace strata::optim
