// The optimizer base of strata/layers/optimizer.h: parameter groups and learning rates, the
// batching of a step into one launch per group and state, and the state dict, written and
// read back all or nothing.
#include "strata/layers/optimizer.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include <fmt/format.h>

#include "core/check.h"
#include "strata/core/autograd.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "layers/optimizer_state_io.h"
#include "strata/core/op.h"
#include "strata/kernels/grad_scaler.h"

namespace strata::optim {

namespace {
// Integers up to 2^24 are exact in the f32 of a device step count.
constexpr std::int64_t kExactStepCounts = std::int64_t{1} << 24;
}  // namespace

struct Optimizer::LoadedState {
  struct LoadedGroup {
    double lr = 0.0;
    double initial_lr = 0.0;
    std::vector<std::int64_t> steps;                        // per parameter
    std::vector<std::vector<const Tensor*>> state_tensors;  // per parameter, in state_names order
  };
  std::vector<LoadedGroup> groups;
};

Optimizer::Optimizer(std::string name) : name_(std::move(name)) {}

Optimizer::~Optimizer() = default;

void Optimizer::add_param_group(std::vector<Tensor> params, double lr) {
  const int group = num_groups();
  STRATA_CHECK(std::isfinite(lr) && lr >= 0.0, "{}: parameter group {}: lr must be finite and >= 0, got {}", name_,
               group, lr);
  std::set<const void*> known;
  for (const Group& existing : groups_) {
    for (const Tensor& param : existing.params) known.insert(param.data_ptr());
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    const Tensor& param = params[i];
    STRATA_CHECK(param.defined(), "{}: parameter {} of group {} is undefined", name_, i, group);
    STRATA_CHECK(param.is_device() && param.dtype() == DType::f32,
                 "{}: parameter {} of group {} must be an f32 device tensor, got {} {} in {} memory", name_, i, group,
                 param.dtype(), param.shape(), memory_kind_name(param.memory_kind()));
    STRATA_CHECK(param.is_leaf(),
                 "{}: parameter {} of group {} ({}) is not a leaf: an op produced it, so it cannot be optimized "
                 "(optimize the tensor it was computed from, or detach() it)",
                 name_, i, group, param.shape());
    STRATA_CHECK(param.numel() == 0 || known.insert(param.data_ptr()).second,
                 "{}: parameter {} of group {} ({}) appears more than once in the parameter groups", name_, i, group,
                 param.shape());
  }
  Group added{.params = std::move(params), .lr = lr, .initial_lr = lr, .states = {}};
  added.states.resize(added.params.size());
  added.lr_device = Tensor::empty({}, DType::f32, current_stream());
  groups_.push_back(std::move(added));
  write_lr_device(groups_.size() - 1, current_stream());
}

void Optimizer::write_lr_device(std::size_t g, cudaStream_t stream) {
  Tensor lr_device = groups_[g].lr_device;
  graph::run_op_on(stream, "set_lr", {}, {lr_device}, [this, g, lr_device](cudaStream_t s) mutable {
    lr_device.fill(static_cast<double>(static_cast<float>(groups_[g].lr)), s);
  });
}

void Optimizer::check_has_parameters() const {
  const bool any = std::ranges::any_of(groups_, [](const Group& group) { return !group.params.empty(); });
  STRATA_CHECK(any, "{}: got an empty parameter list ({} groups, none with a parameter)", name_, groups_.size());
}

const Optimizer::Group& Optimizer::group_at(int group) const {
  STRATA_CHECK(group >= 0 && group < num_groups(), "{}: parameter group {} does not exist (it has {})", name_, group,
               num_groups());
  return groups_[static_cast<std::size_t>(group)];
}

const std::vector<Tensor>& Optimizer::params(int group) const { return group_at(group).params; }

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> all;
  for (const Group& group : groups_) all.insert(all.end(), group.params.begin(), group.params.end());
  return all;
}

double Optimizer::lr(int group) const { return group_at(group).lr; }

double Optimizer::initial_lr(int group) const { return group_at(group).initial_lr; }

void Optimizer::set_lr(int group, double lr) {
  group_at(group);
  STRATA_CHECK(std::isfinite(lr) && lr >= 0.0, "{}.set_lr: the lr of group {} must be finite and >= 0, got {}", name_,
               group, lr);
  groups_[static_cast<std::size_t>(group)].lr = lr;
  write_lr_device(static_cast<std::size_t>(group), current_stream());
}

void Optimizer::set_lr_factor(double factor) {
  STRATA_CHECK(std::isfinite(factor) && factor >= 0.0, "{}.set_lr_factor: the factor must be finite and >= 0, got {}",
               name_, factor);
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].lr = groups_[g].initial_lr * factor;
    write_lr_device(g, current_stream());
  }
}

std::int64_t Optimizer::step_count(int group, int index) const {
  const Group& chosen = group_at(group);
  STRATA_CHECK(index >= 0 && static_cast<std::size_t>(index) < chosen.params.size(),
               "{}: parameter {} of group {} does not exist (the group has {})", name_, index, group,
               chosen.params.size());
  const ParamState& state = chosen.states[static_cast<std::size_t>(index)];
  if (!state.steps_device_written) return state.steps;
  return static_cast<std::int64_t>(state.steps_device.to_vector<float>(current_stream()).front());
}

void Optimizer::set_bucket_bytes(std::size_t bytes) noexcept { bucket_bytes_ = bytes; }

void Optimizer::zero_grad(bool set_to_none) {
  for (Group& group : groups_) {
    for (Tensor& param : group.params) {
      if (set_to_none) {
        param.set_grad(Tensor());
      } else if (param.grad().defined()) {
        Tensor grad = param.grad();  // shares the gradient's storage
        grad.fill(0.0, current_stream());
      }
    }
  }
}

void Optimizer::step(cudaStream_t stream) { step_with(Tensor(), stream); }

void Optimizer::step_unless_found_inf(const Tensor& found_inf, cudaStream_t stream) {
  STRATA_CHECK(can_skip_on_device(), "{}.step_unless_found_inf: this optimizer cannot skip a step on the device",
               name_);
  STRATA_CHECK(found_inf.defined() && found_inf.is_device() && found_inf.dtype() == DType::f32 &&
                   found_inf.shape() == Shape{},
               "{}.step_unless_found_inf: found_inf must be a () f32 device tensor, got {}", name_,
               found_inf.to_string());
  step_with(found_inf, stream);
}

void Optimizer::step_with(const Tensor& found_inf, cudaStream_t stream) {
  // Nsight and the host graph see "optimizer/step" and "optimizer/sgd_step".
  const NvtxRange range("optimizer/step");
  const graph::PhaseGuard phase(graph::Phase::optimizer);
  const autograd::ScopeGuard scope("optimizer");
  std::string op_name = name_ + "_step";  // "sgd_step"
  std::ranges::transform(op_name, op_name.begin(), [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  });
  // The ops of the step: one for every batch of every group, or with bucket_bytes one per
  // bucket (so that a recorded step can update a bucket as soon as its gradients are ready).
  struct StepOp {
    std::vector<StepBatch> work;
    std::vector<PendingBatch> pending;
    std::vector<Tensor> reads;
    std::vector<Tensor> writes;
  };
  std::vector<StepOp> ops;
  if (bucket_bytes_ == 0) ops.emplace_back();
  for (int g = 0; g < num_groups(); ++g) {
    Group& group = groups_[static_cast<std::size_t>(g)];
    const std::size_t state_count = state_names(g).size();
    // By the key of each parameter's step count: one batch each, in order of the key.
    struct Batch {
      StepBatch work;
      PendingBatch pending;
      std::vector<Tensor> reads;
      std::vector<Tensor> writes;
    };
    // Keyed by (step key, bucket): with bucket_bytes, a key's parameters are cut, in
    // registration order, into runs of at most that many bytes (at least one parameter). The
    // step key is (history, steps): parameters whose counts live on the device share a batch
    // only when they shared one at their last step (so their device counts agree, whatever
    // was skipped); those counted on the host have history 0.
    using StepKey = std::pair<std::uint64_t, std::int64_t>;
    std::map<std::pair<StepKey, int>, Batch> batches;
    std::map<StepKey, std::pair<int, std::size_t>> open_bucket;  // key -> (bucket, bytes in it)
    for (std::size_t i = 0; i < group.params.size(); ++i) {
      Tensor& param = group.params[i];
      const Tensor& gradient = param.grad();
      if (!gradient.defined()) continue;
      STRATA_CHECK(gradient.is_device() && gradient.dtype() == DType::f32,
                   "{}.step: the gradient of parameter {} of group {} ({}) must be an f32 device tensor, got {} in {} "
                   "memory",
                   name_, i, g, param.shape(), gradient.dtype(), memory_kind_name(gradient.memory_kind()));
      ParamState& state = group.states[i];
      if (state.steps == 0 && state.tensors.size() != state_count) {
        state.tensors.clear();
        for (std::size_t k = 0; k < state_count; ++k)
          state.tensors.push_back(Tensor::zeros(param.shape(), DType::f32, stream));
      }
      if (found_inf.defined() && !state.steps_device.defined()) {
        // Its count moves to the device. Allocated here, not while capturing (see below).
        STRATA_CHECK(state.steps < kExactStepCounts,
                     "{}.step: parameter {} of group {} has had {} steps, more than a device step count (f32) holds "
                     "exactly (2^24)",
                     name_, i, g, state.steps);
        state.steps_device = Tensor::empty({}, DType::f32, stream);
      }
      const StepKey key{state.history,
                        batches_by_exact_step() ? state.steps : std::min<std::int64_t>(state.steps, 1)};
      auto& [bucket, bucket_bytes] = open_bucket[key];
      if (bucket_bytes_ > 0 && bucket_bytes > 0 && bucket_bytes + param.nbytes() > bucket_bytes_) {
        ++bucket;
        bucket_bytes = 0;
      }
      bucket_bytes += param.nbytes();
      Batch& batch = batches[{key, bucket}];
      batch.work.group = g;
      batch.work.parameters.push_back(param.detach());
      batch.work.gradients.push_back(gradient);
      batch.work.state.resize(state_count);
      for (std::size_t k = 0; k < state_count; ++k) batch.work.state[k].push_back(state.tensors[k]);
      batch.pending.members.push_back(i);
      batch.reads.insert(batch.reads.end(), {param, gradient});
      batch.writes.push_back(param);
      batch.reads.insert(batch.reads.end(), state.tensors.begin(), state.tensors.end());
      batch.writes.insert(batch.writes.end(), state.tensors.begin(), state.tensors.end());
      if (state.steps_device.defined()) {
        batch.pending.counts.push_back(state.steps_device);
        batch.reads.push_back(state.steps_device);
        batch.writes.push_back(state.steps_device);
      }
    }
    for (auto& [key, batch] : batches) {
      if (batch.pending.counts.empty()) {
        // Allocated here, not while capturing: memory taken during a capture may be shared
        // with the graph's temporaries, which would overwrite what the replay hook writes
        // before each launch.
        batch.pending.step_number = Tensor::empty({}, DType::f32, stream);
      }
      StepOp& op = bucket_bytes_ == 0 ? ops.front() : ops.emplace_back();
      if (op.work.empty() && found_inf.defined()) op.reads.push_back(found_inf);
      op.reads.insert(op.reads.end(), batch.reads.begin(), batch.reads.end());
      op.writes.insert(op.writes.end(), batch.writes.begin(), batch.writes.end());
      op.work.push_back(std::move(batch.work));
      op.pending.push_back(std::move(batch.pending));
    }
  }
  for (StepOp& op : ops) {
    if (op.work.empty()) continue;  // no parameter has a gradient
    run_step(op_name, std::move(op.work), std::move(op.pending), found_inf, op.reads, op.writes, stream);
  }
}

void Optimizer::run_step(const std::string& op_name, std::vector<StepBatch> work, std::vector<PendingBatch> pending,
                         const Tensor& found_inf, std::span<const Tensor> reads, std::span<const Tensor> writes,
                         cudaStream_t stream) {
  // The body reads the step counts (and update() the learning rates) when it runs and
  // advances the counts itself, so that replaying it is another step (see the header).
  // Batches whose counts live on the device: the kernels read the counts as they run and a
  // launch after the update advances them unless found_inf is set, so eager, host-graph and
  // CUDA-graph steps do the same on the device; the host only counts the attempt and
  // renumbers the batch's history. Batches counted on the host: a captured step reads its
  // step number from the device, where a replay hook writes it before each launch.
  graph::run_op_on(
      stream, op_name, reads, writes,
      [this, work = std::move(work), pending = std::move(pending), found_inf](cudaStream_t s) mutable {
        const bool capturing = graph::capturing_for_replay();
        std::vector<Tensor> device_counts;  // of every device-counted batch
        for (std::size_t b = 0; b < work.size(); ++b) {
          StepBatch& batch = work[b];
          PendingBatch& counted = pending[b];
          std::vector<ParamState>& states = groups_[static_cast<std::size_t>(batch.group)].states;
          // A count new on the device starts at the host's. The body first runs when the step
          // is called (eagerly, or while it is recorded), never first under a capture, so
          // replays do not repeat this.
          for (std::size_t k = 0; k < counted.counts.size(); ++k) {
            ParamState& state = states[counted.members[k]];
            if (state.steps_device_written) continue;
            counted.counts[k].fill(static_cast<double>(state.steps), s);
            state.steps_device_written = true;
          }
          const std::int64_t steps = states[counted.members.front()].steps;
          batch.steps_before = batches_by_exact_step() ? steps : std::min<std::int64_t>(steps, 1);
          if (!counted.counts.empty()) {
            // Device addresses are taken as the body runs, never when it is recorded: a replay
            // may place a buffer first written inside the graph (the scaler's flag) in its arena.
            batch.steps_before_device = counted.counts.front().data<float>();
            batch.found_inf = found_inf.defined() ? found_inf.data<float>() : nullptr;
            device_counts.insert(device_counts.end(), counted.counts.begin(), counted.counts.end());
          } else if (capturing) {
            batch.step_device = counted.step_number.data<float>();
          }
        }
        update(work, s);
        if (!device_counts.empty()) {
          kernels::advance_step_counts(device_counts, found_inf.defined() ? found_inf.data<float>() : nullptr, s);
        }
        std::vector<int> batch_groups;
        for (const StepBatch& batch : work) batch_groups.push_back(batch.group);
        // Counts the step (or, under a capture, each replay of it) on the host.
        auto count_steps = [this, batch_groups, pending](cudaStream_t launch, bool replaying) mutable {
          for (std::size_t b = 0; b < pending.size(); ++b) {
            std::vector<ParamState>& states = groups_[static_cast<std::size_t>(batch_groups[b])].states;
            PendingBatch& counted = pending[b];
            if (counted.counts.empty()) {
              if (replaying) {
                counted.step_number.fill(static_cast<double>(states[counted.members.front()].steps + 1), launch);
              }
              for (const std::size_t i : counted.members) ++states[i].steps;
              continue;
            }
            const std::uint64_t history = ++last_history_;
            for (const std::size_t i : counted.members) {
              ++states[i].steps;
              states[i].history = history;
            }
          }
        };
        if (capturing) {
          graph::on_each_replay([count_steps](cudaStream_t launch) mutable { count_steps(launch, true); });
        } else {
          count_steps(s, false);
        }
      });
}

OptimizerState Optimizer::state_dict() const {
  OptimizerState state;
  detail::StateWriter writer(state);
  writer.text("optimizer", name_);
  writer.integer("groups", num_groups());
  for (int g = 0; g < num_groups(); ++g) {
    const Group& group = groups_[static_cast<std::size_t>(g)];
    writer.integer(detail::group_key(g, "params"), static_cast<std::int64_t>(group.params.size()));
    writer.number(detail::group_key(g, "lr"), group.lr);
    writer.number(detail::group_key(g, "initial_lr"), group.initial_lr);
    const std::vector<std::string> names = state_names(g);
    for (std::size_t i = 0; i < group.params.size(); ++i) {
      const auto index = static_cast<int>(i);
      const ParamState& param_state = group.states[i];
      writer.text(detail::state_key(g, index, "shape"), group.params[i].shape().to_string());
      const std::int64_t steps = step_count(g, index);
      writer.integer(detail::state_key(g, index, "step"), steps);
      if (steps == 0) continue;
      for (std::size_t k = 0; k < names.size(); ++k) {
        writer.tensor(detail::state_key(g, index, names[k]), param_state.tensors[k]);
      }
    }
  }
  write_options(writer);
  return state;
}

Optimizer::LoadedState Optimizer::read_state(detail::StateReader& reader) const {
  std::string context = fmt::format("{}: the state does not match this optimizer (groups of", name_);
  for (const Group& group : groups_) context += fmt::format(" {}", group.params.size());
  context += " parameters); nothing was changed:";

  if (const std::optional<std::string> saved_name = reader.text("optimizer"); saved_name && *saved_name != name_) {
    reader.problem(fmt::format("the state is of optimizer '{}', not '{}'", *saved_name, name_));
  }
  const std::optional<std::int64_t> saved_groups = reader.integer("groups", 0);
  if (saved_groups && *saved_groups != num_groups()) {
    // Group by group comparisons would only repeat this.
    reader.problem(fmt::format("the state has {} parameter groups, this optimizer {}", *saved_groups, num_groups()));
    reader.skip_prefix("group.");
    reader.skip_prefix("state.");
    reader.finish(context);
  }

  const std::vector<std::optional<std::vector<std::string>>> names = read_options(reader);
  LoadedState loaded;
  for (int g = 0; g < num_groups(); ++g) {
    const Group& group = groups_[static_cast<std::size_t>(g)];
    LoadedState::LoadedGroup& loaded_group = loaded.groups.emplace_back();
    const auto read_learning_rate = [&](std::string_view option) {
      const std::string key = detail::group_key(g, option);
      const std::optional<double> value = reader.number(key);
      if (value && !(std::isfinite(*value) && *value >= 0.0)) {
        reader.problem(fmt::format("metadata '{}' is {}, not finite and >= 0", key, *value));
      }
      return value.value_or(0.0);
    };
    loaded_group.lr = read_learning_rate("lr");
    loaded_group.initial_lr = read_learning_rate("initial_lr");
    const std::optional<std::int64_t> saved_params = reader.integer(detail::group_key(g, "params"), 0);
    if (saved_params && *saved_params != static_cast<std::int64_t>(group.params.size())) {
      reader.problem(fmt::format("group {} has {} parameters in the state but {} in this optimizer", g, *saved_params,
                                 group.params.size()));
      reader.skip_prefix(fmt::format("state.{}.", g));
      continue;
    }
    const std::optional<std::vector<std::string>>& group_names = names.at(static_cast<std::size_t>(g));
    // Without the group's options the names of its state are unknown: its tensors are not
    // checked (the options' problem is reported).
    if (!group_names) reader.skip_prefix(fmt::format("state.{}.", g));
    for (std::size_t i = 0; i < group.params.size(); ++i) {
      const auto index = static_cast<int>(i);
      const Shape& shape = group.params[i].shape();
      const std::string shape_key = detail::state_key(g, index, "shape");
      if (const std::optional<std::string> saved_shape = reader.text(shape_key);
          saved_shape && *saved_shape != shape.to_string()) {
        reader.problem(
            fmt::format("'{}' is {} but parameter {} of group {} has shape {}", shape_key, *saved_shape, i, g, shape));
        reader.skip_prefix(detail::state_key(g, index, ""));
        continue;
      }
      const std::optional<std::int64_t> steps = reader.integer(detail::state_key(g, index, "step"), 0);
      loaded_group.steps.push_back(steps.value_or(0));
      std::vector<const Tensor*>& tensors = loaded_group.state_tensors.emplace_back();
      if (!steps) reader.skip_prefix(detail::state_key(g, index, ""));  // whether it has state is unknown
      if (steps.value_or(0) == 0 || !group_names) continue;
      const std::string owner = fmt::format("parameter {} of group {}", i, g);
      for (const std::string& name : *group_names) {
        tensors.push_back(reader.tensor(detail::state_key(g, index, name), shape, owner));
      }
    }
  }
  reader.finish(context);
  return loaded;
}

void Optimizer::check_state_dict(const OptimizerState& state) const {
  detail::StateReader reader(state);
  read_state(reader);
}

void Optimizer::load_state_dict(const OptimizerState& state, cudaStream_t stream) {
  detail::StateReader reader(state);
  const LoadedState loaded = read_state(reader);
  // Copies first: an allocation failure here leaves the optimizer as it was.
  std::vector<std::vector<ParamState>> states(groups_.size());
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    const LoadedState::LoadedGroup& loaded_group = loaded.groups[g];
    for (std::size_t i = 0; i < loaded_group.steps.size(); ++i) {
      ParamState& param_state = states[g].emplace_back();
      param_state.steps = loaded_group.steps[i];
      for (const Tensor* tensor : loaded_group.state_tensors[i])
        param_state.tensors.push_back(tensor->to_device(stream));
    }
  }
  install_options(reader);
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    groups_[g].lr = loaded.groups[g].lr;
    groups_[g].initial_lr = loaded.groups[g].initial_lr;
    groups_[g].states = std::move(states[g]);
    write_lr_device(g, stream);
  }
}

}  // namespace strata::optim
