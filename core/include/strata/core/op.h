// run_op: the one way library code queues device work, so that the host graph
// (strata/core/graph.h) can see it. An op names itself, lists the tensors it reads and
// writes, and gives a body that queues its kernels on a stream:
//
//   Tensor y = Tensor::empty(shape, DType::f32, stream);           // allocation: outside
//   graph::run_op("conv2d_forward", {x, weight, bias}, {y},
//                 [=](cudaStream_t s) mutable { kernels::conv2d_forward(x, weight, bias, y, params, s); });
//
// The body runs at once on current_stream(). While a graph::Recorder is active on the
// thread it is also recorded, with its reads and writes, as a node of the step's graph, which
// the executor later replays on several streams: so a body must queue the same work every
// time it runs (it may read host state that changes between runs, such as a learning rate,
// and must do its own host bookkeeping), it must not allocate tensors that outlive it, and
// its reads and writes must be complete (a tensor updated in place is in both).
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::graph {

// Which part of a training step an op belongs to: names NVTX ranges and timing reports
// ("layer2.conv1/backward_filter", "optimizer/step").
enum class Phase : std::uint8_t { forward, backward, optimizer, other };
std::string_view phase_name(Phase phase) noexcept;

// The phase ops are recorded under on this thread (forward unless set); set by the autograd
// engine (backward) and the optimizers (optimizer).
Phase current_phase() noexcept;
class PhaseGuard {
 public:
  explicit PhaseGuard(Phase phase);
  ~PhaseGuard();
  PhaseGuard(const PhaseGuard&) = delete;
  PhaseGuard& operator=(const PhaseGuard&) = delete;

 private:
  Phase previous_;
};

using OpBody = std::function<void(cudaStream_t stream)>;
using TensorRefs = std::initializer_list<std::reference_wrapper<const Tensor>>;

// Runs body(current_stream()) now and, while a Recorder is active, records it. Undefined
// tensors in reads and writes are ignored (an absent bias).
void run_op(std::string_view name, TensorRefs reads, TensorRefs writes, OpBody body);
void run_op(std::string_view name, std::span<const Tensor> reads, std::span<const Tensor> writes, OpBody body);

}  // namespace strata::graph
