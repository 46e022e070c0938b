#include "step_graph.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "profiling.h"

namespace cifar10 {

namespace graph = strata::graph;
using strata::Tensor;

std::string_view graph_mode_name(GraphMode mode) noexcept {
  switch (mode) {
    case GraphMode::off:
      return "off";
    case GraphMode::replay:
      return "replay";
    case GraphMode::cuda:
      return "cuda";
  }
  return "?";
}

GraphMode graph_mode_from_name(std::string_view name) {
  for (const GraphMode mode : {GraphMode::off, GraphMode::replay, GraphMode::cuda}) {
    if (name == graph_mode_name(mode)) return mode;
  }
  throw std::invalid_argument("unknown graph mode '" + std::string(name) + "': choose off, replay or cuda");
}

StepGraph::StepGraph(GraphMode mode, int streams) : mode_(mode), streams_(streams) {
  if (streams < 1) {
    throw std::invalid_argument("StepGraph: a replay needs at least 1 stream, not " + std::to_string(streams));
  }
}

const graph::Graph* StepGraph::graph() const noexcept {
  return recorded_ ? &recorded_->executor->graph() : nullptr;
}

void StepGraph::reset() noexcept { recorded_.reset(); }

StepResult StepGraph::run(const Batch& batch, const std::string& phase_key, bool can_record, const StepFunction& step,
                          cudaStream_t stream) {
  if (mode_ == GraphMode::off) return step(batch);
  if (recorded_ && recorded_->phase_key == phase_key) {
    if (batch.images.shape() != recorded_->inputs.images.shape() ||
        batch.labels.shape() != recorded_->inputs.labels.shape() ||
        batch.images.dtype() != recorded_->inputs.images.dtype() ||
        batch.images.memory_format() != recorded_->inputs.images.memory_format()) {
      throw std::logic_error("StepGraph: a batch of images " + batch.images.to_string() + ", labels " +
                             batch.labels.shape().to_string() + " for the graph recorded with " +
                             recorded_->inputs.images.to_string() + ", " +
                             recorded_->inputs.labels.shape().to_string() +
                             " (the phase key must name the shape, dtype and format)");
    }
    const NvtxScope range("cifar10.graph_replay");
    // Outside the graph, before it on the same stream: the graph reads its inputs in place.
    recorded_->inputs.images.copy_from(batch.images, stream);
    recorded_->inputs.labels.copy_from(batch.labels, stream);
    recorded_->executor->run(stream);
    ++replays_;
    return recorded_->outputs;
  }
  if (!can_record) {
    // A graph of another phase stays: a partial batch between full ones does not end it.
    const NvtxScope range("cifar10.eager_step");
    return step(batch);
  }
  recorded_.reset();  // a new phase: the old graph assumes what no longer holds
  return record(batch, phase_key, step, stream);
}

StepResult StepGraph::record(const Batch& batch, const std::string& phase_key, const StepFunction& step,
                             cudaStream_t stream) {
  const NvtxScope range("cifar10.graph_record");
  Recorded recorded{.phase_key = phase_key,
                    .inputs = {.images = Tensor::empty(batch.images.shape(), batch.images.dtype(), stream,
                                                       batch.images.memory_format()),
                               .labels = Tensor::empty(batch.labels.shape(), batch.labels.dtype(), stream)},
                    .outputs = {},
                    .executor = nullptr};
  // Before the recorder: copies recorded with the step would copy this batch again at
  // every replay.
  recorded.inputs.images.copy_from(batch.images, stream);
  recorded.inputs.labels.copy_from(batch.labels, stream);
  {
    graph::Recorder recorder;
    recorded.outputs = step(recorded.inputs);  // runs the step, as eagerly, and records it
    // The outputs outlive the graph's buffers: the memory plan may not give them to others.
    const std::vector<Tensor> keep{recorded.outputs.loss, recorded.outputs.correct};
    recorded.executor = std::make_unique<graph::Executor>(
        recorder.finish(keep), graph::ExecutorOptions{.streams = streams_,
                                                      .check_stream_safety = true,
                                                      .plan_memory = true,
                                                      .cuda_graph = mode_ == GraphMode::cuda});
  }
  ++recordings_;
  const StepResult outputs = recorded.outputs;
  recorded_.emplace(std::move(recorded));
  return outputs;
}

}  // namespace cifar10
