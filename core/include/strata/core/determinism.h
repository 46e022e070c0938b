// The determinism switch: one process-wide setting under which every op Strata runs is
// bit-reproducible, so that two runs of a training program, or a run and a run resumed from
// a checkpoint, end with bit-identical weights (docs/determinism.md says exactly under which
// conditions: same build, same device model, same program).
//
//   strata::set_deterministic(true);    // or STRATA_DETERMINISTIC=1 in the environment
//   { strata::DeterministicGuard off(false); benchmark(); }   // restored at the end
//
// Off by default, as PyTorch's torch.use_deterministic_algorithms. Being off changes nothing
// by itself: every Strata kernel is deterministic unless its caller asks otherwise (today only
// conv2d_backward_filter with Conv2dParams::deterministic = false, float atomics across the
// chunks of its reduction). On would cost nothing today; it is off so that the cuDNN engine
// may benchmark and use its fastest, sometimes atomic, algorithms unless a program asks for
// reproducibility. The switch turns the default into a guarantee:
//  - A request for a non-deterministic variant is overridden, not rejected: the op runs its
//    deterministic variant, which computes the same values (to rounding). The request is a
//    speed hint written into a model; the switch is a policy set by whoever runs it, often
//    from the environment without touching code, and it must win without editing every call
//    site. An op that has no deterministic variant would throw NotSupported naming itself
//    and the switch (none exists today).
//  - Ops read the switch when they are queued. A captured CUDA Graph keeps the kernels it
//    was captured with, so set the switch before building the model and capturing.
//
// For the cuDNN engine (issue 6): when is_deterministic() is true it must (1) consider only
// algorithms that cuDNN reports deterministic (cudnnConvolution*AlgoPerf_t::determinism ==
// CUDNN_DETERMINISTIC; in the graph API, engines without CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC),
// (2) choose among them by a rule that depends only on the shapes, the device and a fixed
// workspace limit (heuristics, never cudnnFind* timings: two runs may time differently and
// pick different, individually deterministic, algorithms whose results differ in the last
// bits), and (3) keep the math type fixed (no TF32 fallback chosen by availability). When it
// is false the engine may benchmark and use any algorithm.
#pragma once

namespace strata {

// Whether ops must be bit-reproducible. The first call (from any thread) reads the environment
// variable STRATA_DETERMINISTIC: "1" or "true" switches it on, "0" or "false" off (case does
// not matter), unset or empty leaves it off. Any other value makes this throw InvalidArgument
// naming the variable and its value, on every call, until set_deterministic() decides.
bool is_deterministic();

// Sets the switch for the whole process (every thread, every stream), overriding the
// environment. Meant for program start-up and tests: ops already queued are not affected.
void set_deterministic(bool enabled) noexcept;

// Sets the switch while alive and restores the previous setting after. Process-wide like
// the switch itself, so not for toggling from several threads at once.
class DeterministicGuard {
 public:
  explicit DeterministicGuard(bool enabled = true) : previous_(is_deterministic()) { set_deterministic(enabled); }
  ~DeterministicGuard() { set_deterministic(previous_); }
  DeterministicGuard(const DeterministicGuard&) = delete;
  DeterministicGuard& operator=(const DeterministicGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace strata
