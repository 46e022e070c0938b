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
//
// A body captures what it touches by value (Tensor handles, detached), so that a replay
// writes the same memory. A copy from or to raw host memory (copy_from_host_async with a
// pointer) captures the pointer: a replay reads or writes that host memory again, which is
// right for a pinned staging buffer kept alive and wrong for a temporary vector.
//
// A run_op inside a running body is part of that body: it runs, and is not recorded again.
//
// Op names (what a recorded node is called; its scope is the module path that ran the op,
// for a backward op the module that ran the forward):
//   Tensor ops   fill (also zeros), copy (copy_from, to_device, to_host), copy_from_host,
//                copy_to_host, to_dtype, add_, fill_uniform, fill_normal
//   autograd     sum_gradients (two gradients meeting at one tensor); the seed and missing
//                output gradients are fills, AccumulateGrad a copy or an add_
//   F:: ops      the kernel's name: conv2d_forward, conv2d_backward_data,
//                conv2d_backward_filter, conv2d_backward_bias, linear_backward_weight,
//                max_pool2d_backward, dropout_forward, scale, concat_backward, ...
//   modules      target_check_reset, target_check_read (cross-entropy's TargetCheck),
//                dirac (init::dirac_); BatchNorm2d counts its batches in batch_norm2d_forward
//   optimizers   sgd_step, adamw_step (one per launch), clip_grad_norm, ema_update,
//                ema_copy, ema_swap, set_lr
//   loss scaling cast, cast_backward (F::to_dtype), grad_scaler_scale,
//                grad_scaler_scale_backward, grad_scaler_unscale, grad_scaler_update
// Phases: forward unless set; autograd::backward runs in backward, Optimizer::step,
// clip_grad_norm_ and the EMA's update and lookahead in optimizer.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

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

// As run_op, for calls that were given their stream (Tensor::fill(value, stream), an
// autograd node's backward): runs body(stream) now, with stream as the thread's current
// stream meanwhile.
void run_op_on(cudaStream_t stream, std::string_view name, TensorRefs reads, TensorRefs writes, OpBody body);
void run_op_on(cudaStream_t stream, std::string_view name, std::span<const Tensor> reads,
               std::span<const Tensor> writes, OpBody body);

// CUDA-graph capture of a recorded step (graph::Executor with cuda_graph): a captured graph
// repeats its kernels with the arguments of capture time, so a body whose work depends on
// host state that changes per step (a Philox offset, an optimizer's step count) reads it
// from device memory while capturing, and registers a hook that the executor runs on the
// host before every launch of the graph, in recording order: it does the body's host
// bookkeeping and queues the write of the new value on the launch stream. Allocate that
// device value outside the body (when the op is called): memory taken during a capture may
// be shared with the graph's temporaries, which would overwrite the hook's write.
//
//   if (graph::capturing_for_replay()) {
//     graph::on_each_replay([=](cudaStream_t s) mutable { offset.fill(next_offset(), s); });
//     ... kernel reading the offset from offset.data<std::int64_t>() ...
//   }
bool capturing_for_replay() noexcept;
// Throws InvalidArgument unless capturing_for_replay().
void on_each_replay(std::function<void(cudaStream_t stream)> hook);

namespace detail {
// Installed by the executor on its thread while it captures; collects the hooks.
class ReplayHooks {
 public:
  ReplayHooks();
  ~ReplayHooks();
  ReplayHooks(const ReplayHooks&) = delete;
  ReplayHooks& operator=(const ReplayHooks&) = delete;
  std::vector<std::function<void(cudaStream_t)>> take() { return std::move(hooks_); }
  void add(std::function<void(cudaStream_t)> hook) { hooks_.push_back(std::move(hook)); }

 private:
  ReplayHooks* previous_;
  std::vector<std::function<void(cudaStream_t)>> hooks_;
};
}  // namespace detail

}  // namespace strata::graph
