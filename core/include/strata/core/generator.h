// The random generator behind initialisers and dropout: a Philox4x32-10 key (the seed)
// and a position in its stream (the offset). Ops reserve the words they will use, so
// every draw is reproducible from (seed, offset) alone, on any device and in both builds,
// and a training-state file restores it exactly.
//
//   strata::manual_seed(42);                    // as torch.manual_seed
//   auto layer = Conv2d(3, 16, 3);              // its init draws from default_generator()
//   GeneratorState saved = default_generator().state();
#pragma once

#include <cstdint>
#include <mutex>

namespace strata {

struct GeneratorState {
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;
  friend bool operator==(const GeneratorState&, const GeneratorState&) = default;
};

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) : state_{seed, 0} {}

  // Restarts the stream of seed at offset 0.
  void manual_seed(std::uint64_t seed);
  GeneratorState state() const;
  void set_state(const GeneratorState& state);

  // Reserves count words of the stream and returns the offset of the first; offsets stay
  // multiples of 4 (one Philox group), which vectorised kernels rely on.
  std::uint64_t reserve(std::uint64_t count);
  // A seed for an independent stream (one per initialised tensor), drawn from this stream.
  std::uint64_t next_seed();

 private:
  mutable std::mutex mutex_;
  GeneratorState state_;
};

// The process-wide generator (seed 0 until manual_seed).
Generator& default_generator();
inline void manual_seed(std::uint64_t seed) { default_generator().manual_seed(seed); }

}  // namespace strata
