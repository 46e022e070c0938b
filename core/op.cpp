// run_op: run now, and hand a copy to the thread's recorder when there is one.
#include "strata/core/op.h"

#include <utility>
#include <vector>

#include "core/allocation_watch.h"
#include "core/check.h"
#include "core/format.h"
#include "core/op_recording.h"
#include "strata/core/autograd.h"
#include "strata/core/stream.h"

namespace strata::graph {

namespace {

thread_local Phase phase_of_thread = Phase::forward;
thread_local detail::OpSink* sink_of_thread = nullptr;
thread_local int bodies_running = 0;  // run_op bodies on this thread's stack

void run_body(const OpBody& body) {
  ++bodies_running;
  try {
    body(current_stream());
  } catch (...) {
    --bodies_running;
    throw;
  }
  --bodies_running;
}

template <typename Tensors>
std::vector<Tensor> defined(const Tensors& tensors) {
  std::vector<Tensor> result;
  for (const Tensor& tensor : tensors) {
    if (tensor.defined()) result.push_back(tensor.detach());
  }
  return result;
}

template <typename Tensors>
void run(std::string_view name, const Tensors& reads, const Tensors& writes, OpBody body) {
  // A nested op replays as part of the enclosing body: recording it too would run it twice.
  const bool nested = bodies_running > 0;
  if (sink_of_thread == nullptr || nested) {
    run_body(body);
    return;
  }
  std::size_t workspace_bytes = 0;
  {
    // The memory the body allocates for itself (a kernel's workspace), for the memory plan.
    const strata::detail::AllocationWatch watch;
    run_body(body);
    workspace_bytes = watch.peak_bytes();
  }
  sink_of_thread->record({.name = std::string(name),
                          .scope = autograd::current_scope(),
                          .phase = phase_of_thread,
                          .reads = defined(reads),
                          .writes = defined(writes),
                          .body = std::move(body),
                          .workspace_bytes = workspace_bytes});
}

}  // namespace

std::string_view phase_name(Phase phase) noexcept {
  switch (phase) {
    case Phase::forward: return "forward";
    case Phase::backward: return "backward";
    case Phase::optimizer: return "optimizer";
    case Phase::other: return "other";
  }
  return "invalid";
}

Phase current_phase() noexcept { return phase_of_thread; }
PhaseGuard::PhaseGuard(Phase phase) : previous_(std::exchange(phase_of_thread, phase)) {}
PhaseGuard::~PhaseGuard() { phase_of_thread = previous_; }

void run_op(std::string_view name, TensorRefs reads, TensorRefs writes, OpBody body) {
  run(name, reads, writes, std::move(body));
}

void run_op(std::string_view name, std::span<const Tensor> reads, std::span<const Tensor> writes, OpBody body) {
  run(name, reads, writes, std::move(body));
}

void run_op_on(cudaStream_t stream, std::string_view name, TensorRefs reads, TensorRefs writes, OpBody body) {
  const StreamGuard on_stream(stream, current_device());
  run(name, reads, writes, std::move(body));
}

void run_op_on(cudaStream_t stream, std::string_view name, std::span<const Tensor> reads,
               std::span<const Tensor> writes, OpBody body) {
  const StreamGuard on_stream(stream, current_device());
  run(name, reads, writes, std::move(body));
}

namespace {
thread_local detail::ReplayHooks* hooks_of_thread = nullptr;
}  // namespace

bool capturing_for_replay() noexcept { return hooks_of_thread != nullptr; }

void on_each_replay(std::function<void(cudaStream_t stream)> hook) {
  STRATA_CHECK(hooks_of_thread != nullptr,
               "graph::on_each_replay: no CUDA graph of a recorded step is being captured on this thread");
  hooks_of_thread->add(std::move(hook));
}

namespace detail {
ReplayHooks::ReplayHooks() : previous_(std::exchange(hooks_of_thread, this)) {}
ReplayHooks::~ReplayHooks() { hooks_of_thread = previous_; }

void check_inside_op(std::string_view kind, std::string_view name) {
  STRATA_CHECK(sink_of_thread == nullptr || bodies_running > 0,
               "{} {} was queued outside graph::run_op while a graph is being recorded, so the graph would miss it: "
               "wrap the call in run_op (strata/core/op.h)",
               kind, name);
}

OpSink* op_sink() noexcept { return sink_of_thread; }
void set_op_sink(OpSink* sink) noexcept { sink_of_thread = sink; }
}  // namespace detail

}  // namespace strata::graph
