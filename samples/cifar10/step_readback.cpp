#include "step_readback.h"

#include <stdexcept>
#include <string>

#include <strata/core/stream.h>

namespace cifar10 {

using strata::DType;
using strata::Tensor;

StepReadback::StepReadback(int capacity)
    : capacity_(capacity), losses_(Tensor::empty_pinned({capacity}, DType::f32)) {
  if (capacity < 1) throw std::invalid_argument("StepReadback: capacity must be at least 1");
}

void StepReadback::record(const StepResult& result, cudaStream_t stream) {
  if (full()) throw std::logic_error("StepReadback::record: full; collect() first");
  const DType correct_dtype = result.correct.dtype();
  if (correct_dtype != DType::f32 && correct_dtype != DType::i64) {
    throw std::runtime_error("the recipe's correct count is " + std::string(strata::dtype_name(correct_dtype)) +
                             ", expected f32 or i64");
  }
  if (!correct_.defined() || correct_.dtype() != correct_dtype) {
    if (!empty()) throw std::runtime_error("the recipe's correct count changed dtype between steps");
    correct_ = Tensor::empty_pinned({capacity_}, correct_dtype);
  }
  losses_.narrow(0, count_, 1).copy_from(result.loss.reshape({1}), stream);
  correct_.narrow(0, count_, 1).copy_from(result.correct.reshape({1}), stream);
  ++count_;
}

IntervalTotals StepReadback::collect(cudaStream_t stream) {
  strata::stream_synchronize(stream);
  IntervalTotals totals;
  totals.steps = count_;
  const float* losses = losses_.data<float>();
  for (int i = 0; i < count_; ++i) {
    totals.loss_sum += losses[i];
    totals.correct_sum += correct_.dtype() == DType::f32 ? static_cast<double>(correct_.data<float>()[i])
                                                         : static_cast<double>(correct_.data<std::int64_t>()[i]);
  }
  count_ = 0;
  return totals;
}

}  // namespace cifar10
