// ExponentialMovingAverage: the averages as f32 device copies, updated, copied and swapped
// by the multi-tensor kernels of strata/kernels/optimizer_ema.h, each call one op
// (strata/core/op.h).
#include "strata/layers/ema.h"

#include <utility>

#include "core/check.h"
#include "core/format.h"
#include "strata/core/op.h"
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
  graph::run_op_on(stream, "ema_copy", parameters_, averages_,
                   [sources = parameters_, destinations = averages_](cudaStream_t s) mutable {
                     kernels::copy_tensors(sources, destinations, s);
                   });
}

void ExponentialMovingAverage::update(double decay, cudaStream_t stream) {
  const graph::PhaseGuard phase(graph::Phase::optimizer);
  std::vector<Tensor> reads = averages_;
  reads.insert(reads.end(), parameters_.begin(), parameters_.end());
  graph::run_op_on(stream, "ema_update", reads, averages_,
                   [averages = averages_, parameters = parameters_, decay](cudaStream_t s) mutable {
                     kernels::ema_update(averages, parameters, {.decay = decay}, s);
                   });
}

void ExponentialMovingAverage::copy_to(std::span<Tensor> destinations, cudaStream_t stream) const {
  STRATA_CHECK(destinations.size() == averages_.size(),
               "ExponentialMovingAverage::copy_to: got {} destinations for {} averages", destinations.size(),
               averages_.size());
  graph::run_op_on(stream, "ema_copy", averages_, destinations,
                   [sources = averages_, targets = std::vector<Tensor>(destinations.begin(), destinations.end())](
                       cudaStream_t s) mutable { kernels::copy_tensors(sources, targets, s); });
}

void ExponentialMovingAverage::swap(cudaStream_t stream) {
  std::vector<Tensor> both = parameters_;
  both.insert(both.end(), averages_.begin(), averages_.end());
  graph::run_op_on(stream, "ema_swap", both, both,
                   [parameters = parameters_, averages = averages_](cudaStream_t s) mutable {
                     kernels::swap_tensors(parameters, averages, s);
                   });
}

void ExponentialMovingAverage::lookahead(double decay, cudaStream_t stream) {
  const graph::PhaseGuard phase(graph::Phase::optimizer);
  update(decay, stream);
  graph::run_op_on(stream, "ema_copy", averages_, parameters_,
                   [sources = averages_, destinations = parameters_](cudaStream_t s) mutable {
                     kernels::copy_tensors(sources, destinations, s);
                   });
}

NamedTensors ExponentialMovingAverage::state_dict(const std::string& prefix) const {
  NamedTensors named;
  for (std::size_t i = 0; i < averages_.size(); ++i) named.emplace_back(prefix + std::to_string(i), averages_[i]);
  return named;
}

}  // namespace strata::optim
