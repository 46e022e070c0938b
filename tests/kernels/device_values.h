// Helpers of the kernel and layer tests: host values to and from device tensors, seeded
// random inputs, poisoned outputs, the message of an expected exception, and reruns
// under different simulator schedules for determinism checks.
#pragma once

#include <bit>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "tests/support/compare.h"
#include "tests/support/schedule_seed.h"

namespace strata::testing {

template <typename T>
Tensor device_tensor(const std::vector<T>& values, const Shape& shape, cudaStream_t stream) {
  return Tensor::from_vector(values, shape).to_device(stream);
}
// The f32 form, which also takes a braced list: device_tensor({1, -2, 3}, Shape{3}, stream).
inline Tensor device_tensor(const std::vector<float>& values, const Shape& shape, cudaStream_t stream) {
  return Tensor::from_vector(values, shape).to_device(stream);
}

// An f32 device tensor of shape on the current stream, of fresh seeded values uniform in
// [low, high).
inline Tensor random_device(std::uint64_t seed, const Shape& shape, float low = -1.0f, float high = 1.0f) {
  return device_tensor(random_uniform(seed, static_cast<std::size_t>(shape.numel()), low, high), shape,
                       current_stream());
}

// random_device marked as a leaf that requires gradients (a parameter or an input whose
// gradient a test reads).
inline Tensor random_leaf(std::uint64_t seed, const Shape& shape, float low = -1.0f, float high = 1.0f) {
  Tensor tensor = random_device(seed, shape, low, high);
  tensor.set_requires_grad();
  return tensor;
}

// An f32 device tensor whose every element is the poison value.
inline Tensor poisoned_tensor(const Shape& shape, cudaStream_t stream) {
  return device_tensor(std::vector<float>(static_cast<std::size_t>(shape.numel()), poison_value()), shape, stream);
}

// The bits of each value, for bit-identical comparisons (gtest prints the differences).
inline std::vector<std::uint32_t> bit_patterns(const std::vector<float>& values) {
  std::vector<std::uint32_t> bits;
  for (const float value : values) bits.push_back(std::bit_cast<std::uint32_t>(value));
  return bits;
}

inline std::vector<double> to_doubles(const std::vector<float>& values) { return {values.begin(), values.end()}; }

// The message of the Error (InvalidArgument, NotSupported, ...) that call throws, or
// "(no exception)"; another exception propagates.
template <typename Error>
std::string thrown_message(const std::function<void()>& call) {
  try {
    call();
  } catch (const Error& error) {
    return error.what();
  }
  return "(no exception)";
}

inline std::string invalid_argument_message(const std::function<void()>& call) {
  return thrown_message<InvalidArgument>(call);
}

inline std::string not_supported_message(const std::function<void()>& call) {
  return thrown_message<NotSupported>(call);
}

// Runs run() once per schedule seed (thread and block order in the simulator; a plain
// rerun on a GPU) and returns the results, to check that they are bit-identical.
template <typename Result>
std::vector<Result> run_with_schedule_seeds(const std::function<Result()>& run) {
  std::vector<Result> results;
  for (const std::optional<std::uint64_t> seed : {std::optional<std::uint64_t>{}, std::optional<std::uint64_t>{3},
                                                  std::optional<std::uint64_t>{11}}) {
    const ScheduleSeedGuard order(seed);
    results.push_back(run());
  }
  return results;
}

}  // namespace strata::testing
