// CrossEntropyLoss: PyTorch's nn.CrossEntropyLoss over F::cross_entropy, with the device
// record of bad targets that check_targets() reads.
#include <fmt/format.h>

#include "core/check.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/layers/functional.h"
#include "strata/layers/modules.h"

namespace strata::nn {

CrossEntropyLoss::CrossEntropyLoss(const CrossEntropyLossOptions& options)
    : params_{.label_smoothing = options.label_smoothing,
              .reduction = options.reduction,
              .ignore_index = options.ignore_index} {
  STRATA_CHECK(options.label_smoothing >= 0.0f && options.label_smoothing <= 1.0f,
               "CrossEntropyLoss: label_smoothing must be between 0 and 1, got {}", options.label_smoothing);
}

Tensor CrossEntropyLoss::forward(const Tensor& logits, const Tensor& targets) {
  return run_forward([&] {
    if (!target_check_.has_value()) target_check_.emplace(current_stream());
    return F::cross_entropy(logits, targets, params_, &*target_check_);
  });
}

void CrossEntropyLoss::check_targets() {
  if (!target_check_.has_value()) return;
  const cudaStream_t stream = current_stream();
  try {
    target_check_->check(stream);
  } catch (const InvalidArgument& error) {
    // Reported once: later checks see only new bad targets.
    target_check_->reset(stream);
    throw InvalidArgument(describe() + ": " + error.what());
  }
}

}  // namespace strata::nn
