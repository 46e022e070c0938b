// Settings of the SIMT simulator (schedule seed, worker threads, device memory size): read
// from the environment once at start-up, changeable by tests at any time.
#include "core/sim/runtime.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>

#include "core/check.h"

namespace strata::sim {
namespace {

constexpr size_t kDefaultDeviceMemoryBytes = size_t{16} << 30;

// The unsigned integer in environment variable name; nullopt (with a warning when the value
// is malformed) when it is unset or not a number.
std::optional<uint64_t> unsigned_from_environment(const char* name) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return std::nullopt;
  const std::string_view value(text);
  uint64_t parsed = 0;
  const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (error != std::errc() || end != value.data() + value.size()) {
    std::fprintf(stderr, "strata: simulator: ignoring %s='%s' (expected an unsigned integer)\n", name, text);
    return std::nullopt;
  }
  return parsed;
}

int default_worker_threads() {
  if (const auto threads = unsigned_from_environment("STRATA_SIM_THREADS"); threads && *threads > 0) {
    return static_cast<int>(std::min<uint64_t>(*threads, 1024));
  }
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

struct Settings {
  std::mutex seed_mutex;
  std::optional<uint64_t> seed = unsigned_from_environment("STRATA_SIM_SEED");
  std::atomic<int> worker_threads{default_worker_threads()};
  std::atomic<size_t> device_memory_limit{
      unsigned_from_environment("STRATA_SIM_DEVICE_MEMORY").value_or(kDefaultDeviceMemoryBytes)};
};

Settings& settings() {
  // Leaked on purpose: stream workers read the settings during static destruction.
  static Settings* instance = new Settings();
  return *instance;
}

}  // namespace

void set_schedule_seed(std::optional<uint64_t> seed) {
  std::lock_guard lock(settings().seed_mutex);
  settings().seed = seed;
}

std::optional<uint64_t> schedule_seed() {
  std::lock_guard lock(settings().seed_mutex);
  return settings().seed;
}

void set_worker_threads(int count) {
  STRATA_CHECK(count > 0, "simulator: worker thread count must be positive, got {}", count);
  settings().worker_threads.store(count);
}

int worker_threads() { return settings().worker_threads.load(); }

void set_device_memory_limit(size_t bytes) { settings().device_memory_limit.store(bytes); }

size_t device_memory_limit() { return settings().device_memory_limit.load(); }

}  // namespace strata::sim
