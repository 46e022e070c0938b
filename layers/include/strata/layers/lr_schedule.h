// Learning-rate schedules, as torch.optim.lr_scheduler, as pure functions of the step: a
// Schedule maps a step index (0 = the first optimizer step) to a factor that multiplies
// the base learning rate. Nothing mutates, so the factor of any step can be queried at
// any time, and resuming needs only the step count (Scheduler). Each schedule prints as
// a short text holding all its parameters, which parse_schedule reads back exactly.
//
//   // Linear warm-up over 5 steps, then cosine to 0 over the remaining 95:
//   lr::SchedulePtr schedule = lr::sequential_lr(
//       {lr::linear_lr({.start_factor = 0.1, .total_iters = 5}), lr::cosine_annealing_lr({.t_max = 95})}, {5});
//   double lr_now = schedule->lr(step, /*base_lr=*/0.4);
//   // The airbench triangle: 0.2 -> 1 over the first 20% of the steps, then down to 0.
//   auto triangle = lr::piecewise_linear_lr({{0, 0.2}, {total / 5, 1.0}, {total, 0.0}});
//
// Each schedule gives PyTorch's closed form (_get_closed_form_lr where it has one): with
// one parameter group and a scheduler stepped once per optimizer step, PyTorch's lr at
// last_epoch == step is base_lr * factor(step), up to the rounding of its recursive
// (chainable) updates, a few ulps. Where PyTorch takes absolute learning rates (eta_min,
// max_lr) the schedule takes the same value divided by the base learning rate.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace strata::lr {

class Schedule {
 public:
  virtual ~Schedule() = default;
  Schedule(const Schedule&) = delete;
  Schedule& operator=(const Schedule&) = delete;

  // The factor of the base learning rate at step. Throws InvalidArgument for a negative
  // step and for a step past the end of a schedule that has one (one_cycle_lr).
  double factor(std::int64_t step) const;
  double lr(std::int64_t step, double base_lr) const { return base_lr * factor(step); }

  // The schedule and all its parameters, e.g. "step_lr(step_size=30,gamma=0.1)", numbers in
  // their shortest exact form: parse_schedule(to_string()) gives the same factors bit for bit.
  virtual std::string to_string() const = 0;

 protected:
  Schedule() = default;
  // step >= 0, checked by factor().
  virtual double factor_at(std::int64_t step) const = 0;
};

// Schedules are immutable, so composites share their children.
using SchedulePtr = std::shared_ptr<const Schedule>;

// ConstantLR: factor for steps < total_iters, then 1. 0 <= factor <= 1.
struct ConstantParams {
  double factor = 1.0 / 3;
  std::int64_t total_iters = 5;
};
SchedulePtr constant_lr(const ConstantParams& params);

// LinearLR (warm-up or decay): from start_factor at step 0 linearly to end_factor at
// step total_iters, then end_factor. Factors in [0, 1], total_iters >= 1.
struct LinearParams {
  double start_factor = 1.0 / 3;
  double end_factor = 1.0;
  std::int64_t total_iters = 5;
};
SchedulePtr linear_lr(const LinearParams& params);

// StepLR: gamma^(step / step_size), integer division.
struct StepParams {
  std::int64_t step_size = 1;
  double gamma = 0.1;
};
SchedulePtr step_lr(const StepParams& params);

// MultiStepLR: gamma^(number of milestones <= step). Milestones strictly increasing and
// >= 0 (PyTorch counts a repeated milestone twice; here repeating one is an error).
struct MultiStepParams {
  std::vector<std::int64_t> milestones;
  double gamma = 0.1;
};
SchedulePtr multi_step_lr(const MultiStepParams& params);

// ExponentialLR: gamma^step.
struct ExponentialParams {
  double gamma = 1.0;
};
SchedulePtr exponential_lr(const ExponentialParams& params);

// CosineAnnealingLR: min_factor + (1 - min_factor) * (1 + cos(pi * step / t_max)) / 2,
// where min_factor = PyTorch's eta_min / base_lr. Past t_max the cosine goes on (back up
// at 2 * t_max), as PyTorch's recursive form does.
struct CosineParams {
  std::int64_t t_max = 1;
  double min_factor = 0.0;
};
SchedulePtr cosine_annealing_lr(const CosineParams& params);

// OneCycleLR's learning rate (not its momentum cycle), relative to max_lr: from
// 1 / div_factor up to 1 over the first pct_start of total_steps, then down to
// 1 / (div_factor * final_div_factor) at step total_steps - 1; three_phase goes back to
// 1 / div_factor before the final descent. Phase boundaries and the step past the end
// (total_steps, PyTorch's last allowed value) are as in PyTorch; later steps throw.
enum class Anneal : std::uint8_t { cos, linear };
struct OneCycleParams {
  std::int64_t total_steps = 1;
  double pct_start = 0.3;
  Anneal anneal = Anneal::cos;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool three_phase = false;
};
SchedulePtr one_cycle_lr(const OneCycleParams& params);

// Linear interpolation through knots (step, factor), steps strictly increasing and >= 0;
// constant before the first knot and after the last, as numpy.interp.
struct Knot {
  std::int64_t step = 0;
  double factor = 1.0;
};
SchedulePtr piecewise_linear_lr(const std::vector<Knot>& knots);

// SequentialLR: schedules[i] runs from milestones[i - 1] (0 for the first) to
// milestones[i], restarting at its own step 0. milestones.size() == schedules.size() - 1,
// strictly increasing, >= 1.
SchedulePtr sequential_lr(const std::vector<SchedulePtr>& schedules, const std::vector<std::int64_t>& milestones);

// ChainedScheduler: the product of the schedules' factors at the same step (PyTorch's
// chained recursive updates multiply, except cosine with eta_min != 0 or past t_max).
SchedulePtr chained_lr(const std::vector<SchedulePtr>& schedules);

// Reads the text of Schedule::to_string (spaces between tokens allowed). Throws
// InvalidArgument naming the position for malformed text, an unknown schedule or key, a
// missing key, or parameters the schedule refuses.
SchedulePtr parse_schedule(std::string_view text);

// A schedule and the number of optimizer steps taken: what a training loop keeps, and
// all of it a training-state file needs to resume exactly.
class Scheduler {
 public:
  explicit Scheduler(SchedulePtr schedule, std::int64_t steps_taken = 0);

  const Schedule& schedule() const noexcept { return *schedule_; }
  std::int64_t steps_taken() const noexcept { return steps_taken_; }
  // For the next optimizer step.
  double factor() const { return schedule_->factor(steps_taken_); }
  double lr(double base_lr) const { return schedule_->lr(steps_taken_, base_lr); }
  // Call after each optimizer step.
  void step() { ++steps_taken_; }

  // {"schedule": schedule().to_string(), "step": steps taken, in decimal}.
  std::map<std::string, std::string> state_dict() const;
  // Replaces schedule and step count with the saved ones, as PyTorch's load_state_dict
  // does. Throws InvalidArgument, leaving this scheduler as it was, when a key is
  // missing or extra (all named) or a value does not parse.
  void load_state_dict(const std::map<std::string, std::string>& state);

 private:
  SchedulePtr schedule_;
  std::int64_t steps_taken_ = 0;
};

}  // namespace strata::lr
