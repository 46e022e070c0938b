// The default generator: a seed and a stream position guarded by a mutex.
#include "strata/core/generator.h"

#include "strata/core/philox.h"

namespace strata {

void Generator::manual_seed(std::uint64_t seed) {
  const std::lock_guard lock(mutex_);
  state_ = {seed, 0};
}

GeneratorState Generator::state() const {
  const std::lock_guard lock(mutex_);
  return state_;
}

void Generator::set_state(const GeneratorState& state) {
  const std::lock_guard lock(mutex_);
  state_ = state;
}

std::uint64_t Generator::reserve(std::uint64_t count) {
  const std::lock_guard lock(mutex_);
  const std::uint64_t first = state_.offset;
  state_.offset += (count + 3) / 4 * 4;
  return first;
}

std::uint64_t Generator::next_seed() {
  const std::uint64_t offset = reserve(4);
  const Philox4x32 words = philox_group(state().seed, offset / 4);
  return (static_cast<std::uint64_t>(words.x[0]) << 32) | words.x[1];
}

Generator& default_generator() {
  static Generator generator;
  return generator;
}

}  // namespace strata
