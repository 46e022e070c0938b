// The base of Strata's optimizers (SGD, AdamW), as torch.optim.Optimizer: parameter groups
// with their own learning rate and options, per-parameter state kept by the optimizer,
// zero_grad, and the state for an exact resume (state_dict / load_state_dict).
//
// A step updates every group in fused multi-tensor launches (strata/kernels/optimizer_*.h):
// the parameters are batched by group and by the state of their step count (those whose
// state starts at this step form a batch of their own), and all batches of a step go to the
// kernel together, which updates them in one launch per kernel variant (SGD with or without
// momentum, AdamW with or without amsgrad), each batch with its group's hyperparameters and
// its own step count. Parameters without a gradient (grad() undefined: no backward reached
// them) are skipped, as in PyTorch.
//
// A step is one op (strata/core/op.h: "sgd_step", "adamw_step", in the optimizer phase; one
// per bucket with set_bucket_bytes), whose body reads the groups' learning rates and the
// parameters' step counts when it runs and advances the counts itself: replaying a recorded
// step is another step, with the learning rates set at that time. Which parameters have gradients, and whether their state
// exists, is decided when the step is recorded, so a recorded step assumes that neither
// changes between replays: record it after a warm-up step (as PyTorch's CUDA graphs do), and
// record again after load_state_dict. The body refers to the optimizer, which must outlive
// the recording.
//
// Step counts live on the host until a parameter's first step that may be skipped on the
// device (step_unless_found_inf, from optim::GradScaler). From then on its count lives on the
// device as well, as PyTorch's capturable and fused optimizers keep state["step"]: a () f32
// that the kernels read as they run and that a tiny launch after the update advances unless
// the step was skipped, so a skipped step leaves the count as it was, whether run eagerly,
// replayed by the host graph or as a CUDA graph. The device count is then the authoritative
// one (step_count() and state_dict() read it); the host keeps counting the steps attempted
// (replays included) only to batch the parameters whose device counts must agree.
//
// The learning rate follows a schedule (strata/layers/lr_schedule.h) as PyTorch's LambdaLR:
// every group's lr = its initial_lr (the lr it was built with) * the schedule's factor.
//
//   lr::Scheduler scheduler(lr::cosine_annealing_lr({.t_max = total_steps}));
//   for (std::int64_t step = 0; step < total_steps; ++step) {
//     optimizer.set_lr_factor(scheduler.factor());   // before the step it applies to
//     optimizer.zero_grad();
//     F::cross_entropy(model(x), targets).backward();
//     optimizer.step();
//     scheduler.step();
//   }
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <cuda_runtime_api.h>

#include "strata/core/safetensors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"

namespace strata::optim {

namespace detail {
class StateReader;
class StateWriter;
}  // namespace detail

// Everything an optimizer needs to resume exactly: its state tensors (momentum buffers,
// moments) and, as text, its hyperparameters, learning rates, step counts and the shapes of
// its parameters. Keys, for group g and parameter i of that group:
//   metadata  "optimizer" (e.g. "SGD"), "groups", "group.<g>.params", "group.<g>.lr",
//             "group.<g>.initial_lr", "group.<g>.<option>" (e.g. "group.0.momentum"),
//             "state.<g>.<i>.shape" ("(64, 3, 3, 3)"), "state.<g>.<i>.step" (updates so far)
//   tensors   "state.<g>.<i>.<name>" (e.g. "state.0.2.momentum_buffer"), present exactly
//             for the parameters whose step is > 0
// Numbers are written in their shortest exact decimal form, so they read back bit for bit.
struct OptimizerState {
  NamedTensors tensors;
  std::map<std::string, std::string> metadata;
};

class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // "SGD", "AdamW": names errors and the state's "optimizer" entry.
  const std::string& name() const noexcept { return name_; }

  // One update of every parameter that has a gradient, queued on stream (current_stream()
  // without one). Throws InvalidArgument when a gradient is not an f32 device tensor.
  void step(cudaStream_t stream);
  void step() { step(current_stream()); }

  // For dynamic loss scaling (strata/layers/grad_scaler.h): whether a step can be skipped on
  // the device, with the result of no step at all, by kernels that read a found-inf flag as
  // they run (no host synchronisation, and a recorded step stays replayable).
  virtual bool can_skip_on_device() const { return false; }
  // As step(stream), but when found_inf (() f32, device) is non-zero as the kernels run they
  // leave every parameter, state and step count as they were: exactly no step, as PyTorch's
  // GradScaler skipping optimizer.step(). The step counts of the parameters it reaches move
  // to the device (see the header's comment). Throws InvalidArgument unless
  // can_skip_on_device().
  void step_unless_found_inf(const Tensor& found_inf, cudaStream_t stream);

  // Clears every parameter's gradient: undefined (set_to_none, PyTorch's default since 2.0)
  // or filled with zeros on current_stream().
  void zero_grad(bool set_to_none = true);

  // Splits each group's update into ops (and launches) of at most bytes of parameters (0, the
  // default: one op for the whole step). More launches, but in a recorded step
  // (strata/core/graph.h) the update of the layers whose gradients are ready can run while
  // the backward of earlier layers is still computing. The arithmetic is the same.
  void set_bucket_bytes(std::size_t bytes) noexcept;
  std::size_t bucket_bytes() const noexcept { return bucket_bytes_; }

  int num_groups() const noexcept { return static_cast<int>(groups_.size()); }
  const std::vector<Tensor>& params(int group) const;
  // Every group's parameters, in order (e.g. for clip_grad_norm_).
  std::vector<Tensor> parameters() const;

  // The learning rate of the next step, and the one the group was built with (PyTorch's
  // "initial_lr", what schedules multiply).
  double lr(int group) const;
  double initial_lr(int group) const;
  // Sets the group's current learning rate (finite, >= 0); its initial_lr stays.
  void set_lr(int group, double lr);
  // Every group's lr = initial_lr * factor: a schedule's factor (lr::Scheduler::factor()).
  void set_lr_factor(double factor);

  // Updates parameter index of group has had (its state exists when > 0). When the count lives
  // on the device (after a step_unless_found_inf), reading it waits for current_stream().
  std::int64_t step_count(int group, int index) const;

  // The state, sharing the optimizer's tensors (device memory, as PyTorch's state_dict does):
  // save it with save_safetensors or save_training_state (strata/layers/training_state.h).
  // Waits for current_stream() when step counts live on the device.
  OptimizerState state_dict() const;
  // Throws InvalidArgument listing every difference between state and this optimizer: the
  // optimizer's name, the number of groups and of parameters in each, the shapes, missing,
  // extra or malformed entries, hyperparameters the optimizer refuses, and state tensors
  // that are not f32 of their parameter's shape.
  void check_state_dict(const OptimizerState& state) const;
  // Replaces hyperparameters, learning rates, step counts and state with state's, as
  // PyTorch's load_state_dict. Validates everything first (check_state_dict) and copies the
  // tensors (any memory kind) into new device tensors on stream before anything changes: on
  // an exception the optimizer is as it was.
  void load_state_dict(const OptimizerState& state, cudaStream_t stream);
  void load_state_dict(const OptimizerState& state) { load_state_dict(state, current_stream()); }

 protected:
  // Group g's learning rate on the device, () f32, for the kernels' lr_device.
  const float* lr_device(int group) const { return group_at(group).lr_device.data<float>(); }

  // A step's work for one kernel group: the parameters of one group that have a gradient
  // and share the state of their step count (tensor i of every list belongs to parameter i).
  struct StepBatch {
    int group = 0;  // the parameter group
    // Updates the batch's parameters have had before this one: with batches_by_exact_step()
    // the count all share; otherwise 0 (their state is new: zeros) or 1 (more than 0: their
    // state holds earlier updates). Not meaningful when steps_before_device is set.
    std::int64_t steps_before = 0;
    // While a CUDA graph of the step is captured: a () f32 device scalar holding the step
    // number of the update (steps_before + 1), written before each launch; else null.
    const float* step_device = nullptr;
    // When the batch's step counts live on the device: the first parameter's, () f32, read
    // by the kernel as it runs in place of steps_before and step_device (with
    // batches_by_exact_step() every parameter's count equals it; otherwise whether it is 0
    // does). The base advances the counts after update(), unless the step was skipped.
    const float* steps_before_device = nullptr;
    // From step_unless_found_inf: a () f32 device flag; non-zero when the kernel runs means
    // no update. Else null.
    const float* found_inf = nullptr;
    std::vector<Tensor> parameters;  // updated in place
    std::vector<Tensor> gradients;
    // state[k][i]: state tensor k (as state_names() orders them) of parameter i.
    std::vector<std::vector<Tensor>> state;
  };

  explicit Optimizer(std::string name);

  // Adds a group (parameters: defined f32 device leaves, none already in a group; empty
  // groups are allowed) with learning rate lr.
  void add_param_group(std::vector<Tensor> params, double lr);
  // Throws unless some group has a parameter (PyTorch: "got an empty parameter list").
  void check_has_parameters() const;

  // The names of the per-parameter state of group, e.g. {"momentum_buffer"}; empty when it
  // keeps none (SGD without momentum).
  virtual std::vector<std::string> state_names(int group) const = 0;
  // Whether parameters whose step counts differ need separate launches (AdamW's bias
  // correction) or only those with no state yet do (SGD).
  virtual bool batches_by_exact_step() const = 0;
  // Runs the kernel for the batches of one step (of several groups, each batch with its
  // group's options and its own step count), in as few launches as the kernel allows.
  virtual void update(std::span<StepBatch> batches, cudaStream_t stream) = 0;
  // The groups' options other than lr, as "group.<g>.<option>" metadata.
  virtual void write_options(detail::StateWriter& writer) const = 0;
  // Reads them back, recording every problem in reader (missing, malformed, refused), and
  // returns the state tensor names each group would have under them (nothing for a group
  // whose options have a problem).
  virtual std::vector<std::optional<std::vector<std::string>>> read_options(detail::StateReader& reader) const = 0;
  // Installs the options of a reader in which read_options found no problem.
  virtual void install_options(detail::StateReader& reader) = 0;

 private:
  struct ParamState {
    // Updates, or, once steps_device is defined, steps attempted (skipped ones too).
    std::int64_t steps = 0;
    std::vector<Tensor> tensors;  // named by state_names(); allocated at the first update
    // () f32 from the first step that may be skipped on the device: the updates applied.
    Tensor steps_device = {};
    bool steps_device_written = false;  // set to steps by the first run of that step's body
    // Which parameters' device counts agree: those that were in one launch at their last step
    // share its number (0 while the count is on the host). With steps it keys the batches.
    std::uint64_t history = 0;
  };
  struct Group {
    std::vector<Tensor> params;
    double lr = 0.0;
    double initial_lr = 0.0;
    std::vector<ParamState> states;  // one per parameter
    // () f32: lr where the kernels read it, rewritten whenever lr changes, so that a step
    // captured in a CUDA graph follows the schedule without being captured again.
    Tensor lr_device = {};
  };
  // step and step_unless_found_inf: found_inf undefined for an unconditional step.
  void step_with(const Tensor& found_inf, cudaStream_t stream);
  // A batch of a step with what the op's body needs beyond update()'s arguments.
  struct PendingBatch {
    std::vector<std::size_t> members;  // indices of the parameters in the group
    std::vector<Tensor> counts;        // their device step counts, when they have them (all or none)
    // Host-counted batches: where a CUDA graph of the step reads the update's step number.
    Tensor step_number = {};
  };
  // The op of these batches (work[k] with pending[k]), one kernel call for all; found_inf as
  // step_with's.
  void run_step(const std::string& op_name, std::vector<StepBatch> work, std::vector<PendingBatch> pending,
                const Tensor& found_inf, std::span<const Tensor> reads, std::span<const Tensor> writes,
                cudaStream_t stream);
  // Queues the write of group g's current lr into its lr_device (a "set_lr" op: its body
  // reads lr when it runs).
  void write_lr_device(std::size_t g, cudaStream_t stream);
  // Everything load_state_dict will install, validated.
  struct LoadedState;

  const Group& group_at(int group) const;
  // Parses and validates state (throws listing every problem); the returned tensors are
  // state's own, not yet copied.
  LoadedState read_state(detail::StateReader& reader) const;

  std::string name_;
  std::size_t bucket_bytes_ = 0;
  std::vector<Group> groups_;
  std::uint64_t last_history_ = 0;  // ParamState::history numbers given so far
};

}  // namespace strata::optim
