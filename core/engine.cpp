// The engine switch and cuDNN's benchmark mode (strata/core/engine.h). As the determinism
// switch, the environment is read lazily, on the first use, so that a malformed STRATA_ENGINE
// or STRATA_CUDNN_BENCHMARK is an exception a program can catch and report, not a crash
// during static initialisation.
#include "strata/core/engine.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/engine_internal.h"
#include "strata/core/errors.h"

namespace strata {
namespace {

constexpr const char* kEnvironmentVariable = "STRATA_ENGINE";
constexpr const char* kBenchmarkVariable = "STRATA_CUDNN_BENCHMARK";

// An Engine, or the marker of a malformed environment.
constexpr std::uint8_t kInvalidEnvironment = 0xff;

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  });
}

struct Setting {
  std::atomic<std::uint8_t> engine{static_cast<std::uint8_t>(Engine::custom)};
  std::string environment_error;  // written before engine is first read, never after

  Setting() {
    const char* text = std::getenv(kEnvironmentVariable);
    if (text == nullptr || *text == '\0') return;
    const std::string_view value(text);
    if (const std::optional<Engine> chosen = engine_from_name(value)) {
      engine.store(static_cast<std::uint8_t>(*chosen));
      if (*chosen != Engine::custom) detail::warn_custom_only_ops();
    } else {
      environment_error = fmt::format(
          "{}='{}' is not a valid setting: use custom (the default: Strata's own kernels), cudnn (NVIDIA cuDNN "
          "where Strata has a cuDNN path) or auto (cuDNN where it can run, the custom kernels elsewhere), or call "
          "strata::set_default_engine() before the first op",
          kEnvironmentVariable, value);
      engine.store(kInvalidEnvironment);
    }
  }
};

Setting& setting() {
  static Setting instance;  // initialised on first use, thread-safely
  return instance;
}

// The benchmark mode: off, on, or the marker of a malformed environment.
enum class BenchmarkMode : std::uint8_t { off, on, invalid_environment };

struct BenchmarkSetting {
  std::atomic<BenchmarkMode> mode{BenchmarkMode::off};
  std::string environment_error;  // written before mode is first read, never after

  BenchmarkSetting() {
    const char* text = std::getenv(kBenchmarkVariable);
    if (text == nullptr || *text == '\0') return;
    const std::string_view value(text);
    if (value == "1" || equals_ignoring_case(value, "true")) {
      mode.store(BenchmarkMode::on);
    } else if (value != "0" && !equals_ignoring_case(value, "false")) {
      environment_error = fmt::format(
          "{}='{}' is not a valid setting: use 1 or true to let conv2d on cuDNN time its algorithms once per shape "
          "and keep the fastest, 0 or false (the default) for cuDNN's heuristics, or call "
          "strata::set_cudnn_benchmark() before the first op",
          kBenchmarkVariable, value);
      mode.store(BenchmarkMode::invalid_environment);
    }
  }
};

BenchmarkSetting& benchmark_setting() {
  static BenchmarkSetting instance;  // initialised on first use, thread-safely
  return instance;
}

struct LoggedWarnings {
  std::mutex mutex;
  std::set<std::string, std::less<>> messages;
};

LoggedWarnings& logged_warnings() {
  static auto* warnings = new LoggedWarnings;  // leaked: warnings may come during exit
  return *warnings;
}

}  // namespace

std::string_view engine_name(Engine engine) noexcept {
  switch (engine) {
    case Engine::custom:
      return "custom";
    case Engine::cudnn:
      return "cudnn";
    case Engine::automatic:
      return "auto";
  }
  return "unknown";
}

std::optional<Engine> engine_from_name(std::string_view name) noexcept {
  for (const Engine engine : {Engine::custom, Engine::cudnn, Engine::automatic}) {
    if (equals_ignoring_case(name, engine_name(engine))) return engine;
  }
  return std::nullopt;
}

Engine default_engine() {
  Setting& current = setting();
  const std::uint8_t engine = current.engine.load(std::memory_order_relaxed);
  if (engine == kInvalidEnvironment) throw InvalidArgument(current.environment_error);
  return static_cast<Engine>(engine);
}

void set_default_engine(Engine engine) noexcept {
  setting().engine.store(static_cast<std::uint8_t>(engine), std::memory_order_relaxed);
  if (engine != Engine::custom) detail::warn_custom_only_ops();
}

bool cudnn_benchmark() {
  BenchmarkSetting& current = benchmark_setting();
  const BenchmarkMode mode = current.mode.load(std::memory_order_relaxed);
  if (mode == BenchmarkMode::invalid_environment) throw InvalidArgument(current.environment_error);
  return mode == BenchmarkMode::on;
}

void set_cudnn_benchmark(bool enabled) noexcept {
  benchmark_setting().mode.store(enabled ? BenchmarkMode::on : BenchmarkMode::off, std::memory_order_relaxed);
}

namespace detail {

bool warn_once(const std::string& message) noexcept {
  try {
    LoggedWarnings& warnings = logged_warnings();
    {
      std::lock_guard lock(warnings.mutex);
      if (!warnings.messages.insert(message).second) return false;
    }
    log_warning(message);
    return true;
  } catch (...) {
    return false;  // a lost warning is better than a crash
  }
}

void warn_custom_only_ops() noexcept {
  warn_once(
      "engine cudnn/auto requested: ops without a cuDNN path run Strata's custom kernels under any engine (linear, "
      "dropout, the residual add and the cross-entropy loss among them); docs/engines.md lists the ops that have one");
}

void forget_warnings_for_testing() noexcept {
  LoggedWarnings& warnings = logged_warnings();
  std::lock_guard lock(warnings.mutex);
  warnings.messages.clear();
}

}  // namespace detail
}  // namespace strata
