// Engines: which implementation runs an op. Engine::custom runs Strata's own kernels (the
// default); Engine::cudnn runs NVIDIA cuDNN, the yardstick the custom kernels are compared
// with; Engine::automatic runs cuDNN where it can and falls back to the custom kernels, with
// a one-time warning, where cuDNN is not available or refuses the op.
//
//   strata::set_default_engine(strata::Engine::cudnn);    // or STRATA_ENGINE=cudnn
//   { strata::EngineGuard custom(strata::Engine::custom); run(); }   // restored after
//   model.set_engine(strata::Engine::cudnn);              // every layer of one model
//   nn::Conv2d conv(64, 128, 3, {.padding = 1, .engine = strata::Engine::cudnn});   // one layer
//   Tensor y = F::conv2d(x, w, b, {.padding = {1, 1}}, strata::Engine::cudnn);     // one call
//
// A layer's own engine (its option, or what Module::set_engine wrote into it) wins over the
// process default; a layer without one follows the default at the time it runs. The engine
// is chosen when an op is queued, and its backward runs on the engine its forward ran on.
//
// docs/engines.md lists the ops with a cuDNN path (conv2d, the pooling ops, relu and gelu,
// among others). Every other op runs the custom kernels under any engine; asking for cuDNN
// (by the default or by Module::set_engine) says so once per process, as a warning.
//
// Engine::cudnn fails loudly instead: NotSupported naming the layer and the reason (no cuDNN
// in the simulator build, no cuDNN library that loads, one of another major version than
// Strata was built with, a configuration cuDNN refuses).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace strata {

enum class Engine : std::uint8_t { custom, cudnn, automatic };

// "custom", "cudnn", "auto": what STRATA_ENGINE takes.
std::string_view engine_name(Engine engine) noexcept;
// The engine called name ("custom", "cudnn" or "auto", case ignored), or nullopt.
std::optional<Engine> engine_from_name(std::string_view name) noexcept;

// The process-wide default. The first call (from any thread) reads the environment variable
// STRATA_ENGINE: unset or empty means custom; a name other than the three above makes this
// throw InvalidArgument naming the variable and its value, on every call, until
// set_default_engine() decides.
Engine default_engine();
// Sets the default for the whole process (every thread), overriding the environment. Ops
// already queued are not affected.
void set_default_engine(Engine engine) noexcept;

// The engine an op runs on: the layer's own choice when it has one, else the default.
inline Engine resolve_engine(std::optional<Engine> own) { return own ? *own : default_engine(); }

// Sets the default while alive and restores the previous one after. Process-wide, so not for
// toggling from several threads at once.
class EngineGuard {
 public:
  explicit EngineGuard(Engine engine) : previous_(default_engine()) { set_default_engine(engine); }
  ~EngineGuard() { set_default_engine(previous_); }
  EngineGuard(const EngineGuard&) = delete;
  EngineGuard& operator=(const EngineGuard&) = delete;

 private:
  Engine previous_;
};

// Whether this process can run cuDNN. libstrata.so does not link cuDNN: the first call loads
// it (dlopen), from the file the environment variable STRATA_CUDNN_LIBRARY names when set,
// else libcudnn.so.<major> from the dynamic loader's path (LD_LIBRARY_PATH, the system's
// folders), then from the folder CMake found it in at build time. False in the simulator
// build, and when no library loads, when it has another major version than the headers
// Strata was built with (or one older than 9), or when it lacks a function Strata calls.
// cudnn_unavailable_reason() says why, in a sentence (what failed, the name looked for, what
// to install or set); it is empty when cuDNN is available. Decided once per process.
bool cudnn_available();
std::string_view cudnn_unavailable_reason();

// cuDNN's benchmark mode, as torch.backends.cudnn.benchmark: off (the default), conv2d on
// cuDNN takes the first algorithm cuDNN's heuristics rank that fits the workspace limit; on,
// the first conv2d of each shape and direction times cuDNN's candidates
// (cudnnFindConvolution*AlgorithmEx, on scratch outputs, with a workspace from Strata's
// allocator) and keeps the fastest for that shape, device and direction, for the life of the
// process. The timing runs once per shape and synchronises the device, so it pays off for
// training loops that repeat shapes. Two exceptions keep the heuristics' choice:
//  - while is_deterministic() (strata/core/determinism.h): timings differ between runs and
//    could pick different algorithms, which would break bit-reproducibility;
//  - a first run inside CUDA-graph capture, where cudnnFind* cannot run: the captured graph
//    keeps the heuristics' algorithm, and a one-time warning says so (run one step before
//    capturing, as warm-up, to capture the benchmark's choice).
// The first call (from any thread) reads the environment variable STRATA_CUDNN_BENCHMARK: "1"
// or "true" turns it on, "0" or "false" off, unset or empty leaves it off; any other value
// makes this throw InvalidArgument naming the variable and its value, on every call, until
// set_cudnn_benchmark() decides. Read when an op is queued.
bool cudnn_benchmark();
void set_cudnn_benchmark(bool enabled) noexcept;

// Sets the benchmark mode while alive and restores the previous one after (process-wide).
class CudnnBenchmarkGuard {
 public:
  explicit CudnnBenchmarkGuard(bool enabled = true) : previous_(cudnn_benchmark()) { set_cudnn_benchmark(enabled); }
  ~CudnnBenchmarkGuard() { set_cudnn_benchmark(previous_); }
  CudnnBenchmarkGuard(const CudnnBenchmarkGuard&) = delete;
  CudnnBenchmarkGuard& operator=(const CudnnBenchmarkGuard&) = delete;

 private:
  bool previous_;
};

}  // namespace strata
