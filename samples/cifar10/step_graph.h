// A recipe's training step through Strata's host graph (strata/core/graph.h), for --graph
// replay and cuda: the first step of a phase runs as usual and is recorded (forward, loss,
// backward, optimizer step, and the reported loss and correct count) on fixed input tensors;
// later steps copy their batch into those inputs, on the step's stream, and replay the graph
// (GraphMode::cuda: captured as one CUDA graph by the first replay, then one launch a step).
//
// A recording assumes what it saw: which parameters train, that their optimizer state exists,
// the batch's shape, and the optimizer's and model's tensors themselves. The caller names the
// first three as a phase key; another key records anew (airbench94's whitening bias freezing),
// and reset() drops the graph when the tensors are replaced (a checkpoint loaded). What
// changes per step outside the graph (the learning rate: the optimizer's device scalar, set
// before the replay; airbench's lookahead, after it) is the caller's, on the same stream.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <cuda_runtime_api.h>

#include <strata/core/graph.h>
#include <strata/core/tensor.h>

#include "device_images.h"
#include "recipe.h"

namespace cifar10 {

class StepGraph {
 public:
  // forward, loss, backward and update of one batch, returning the step's reported results;
  // queues its work on current_stream().
  using StepFunction = std::function<StepResult(const Batch& batch)>;

  // streams: what a replay runs on (>= 1). Throws std::invalid_argument for fewer.
  StepGraph(GraphMode mode, int streams);

  GraphMode mode() const noexcept { return mode_; }

  // One step of batch on stream (the thread's current stream). With GraphMode::off the step
  // runs eagerly; else a graph recorded under phase_key is replayed; else, when can_record,
  // the step is recorded now under phase_key (the previous graph dropped); else (a warm-up
  // step before the optimizer state a recording assumes exists, or a partial batch) it runs
  // eagerly, and the previous graph stays for its phase. The results of a replayed step are the graph's output
  // tensors, overwritten by the next replay (read them, or copy them, on stream first).
  StepResult run(const Batch& batch, const std::string& phase_key, bool can_record, const StepFunction& step,
                 cudaStream_t stream);

  // Drops the graph: the next step that may record, does.
  void reset() noexcept;

  // For tests and reports: graphs recorded so far, steps replayed so far, and whether the
  // current graph has been captured as a CUDA graph.
  int recordings() const noexcept { return recordings_; }
  std::int64_t replays() const noexcept { return replays_; }
  bool captured() const noexcept { return recorded_ && recorded_->executor->captured(); }
  // The current graph (nullptr when none), e.g. to list its nodes.
  const strata::graph::Graph* graph() const noexcept;

 private:
  struct Recorded {
    std::string phase_key;
    Batch inputs;                  // (B, 3, 32, 32) f32 and (B) i64: each replay's batch is copied here
    StepResult outputs;            // () f32 loss and () correct count, written by each replay
    std::unique_ptr<strata::graph::Executor> executor;
  };

  StepResult record(const Batch& batch, const std::string& phase_key, const StepFunction& step,
                    cudaStream_t stream);

  GraphMode mode_;
  int streams_;
  std::optional<Recorded> recorded_;
  int recordings_ = 0;
  std::int64_t replays_ = 0;
};

}  // namespace cifar10
