// Reads the steps' losses and correct counts back to the host without waiting for every
// step: each step's two device scalars are copied, queued on the step's stream, into slots
// of pinned host buffers; collect() waits once for the interval and sums it. The recipe may
// reuse its result tensors from step to step (a CUDA graph's outputs): the copies are
// ordered on the stream, so each slot holds its own step's values.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include <strata/core/tensor.h>

#include "recipe.h"

namespace cifar10 {

struct IntervalTotals {
  std::int64_t steps = 0;
  double loss_sum = 0;     // of the steps' mean losses
  double correct_sum = 0;  // images classified right
};

class StepReadback {
 public:
  explicit StepReadback(int capacity);

  bool full() const noexcept { return count_ == capacity_; }
  bool empty() const noexcept { return count_ == 0; }
  // Queues the copy of result's loss () and correct () on stream. Throws std::logic_error
  // when full, std::runtime_error for a correct count of a dtype other than f32 or i64.
  void record(const StepResult& result, cudaStream_t stream);
  // Waits for stream, sums the recorded steps and empties the buffers.
  IntervalTotals collect(cudaStream_t stream);

 private:
  int capacity_;
  int count_ = 0;
  strata::Tensor losses_;   // (capacity) f32, pinned
  strata::Tensor correct_;  // (capacity) f32 or i64 (the recipe's dtype), pinned; made at the first record
};

}  // namespace cifar10
