// Helpers shared by the pooling tests: device tensors from host values, poisoned outputs,
// inputs without ties, golden-case parameters, capturing an error's message, and the check
// of an op in f16/bf16 against its f32 run on the same rounded values.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/pool2d.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/golden.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels::pool2d_testing {

// A device tensor holding values (copied bit for bit).
template <typename T>
Tensor device_tensor(const std::vector<T>& values, const Shape& shape, cudaStream_t stream) {
  Tensor tensor = Tensor::empty(shape, dtype_of<T>, stream);
  tensor.copy_from_host_async(std::span<const T>(values), stream);
  return tensor;
}

// An output that fails every comparison until a kernel writes it: floats hold the poison
// NaN pattern, indices a value no kernel produces.
inline Tensor poisoned(const Shape& shape, cudaStream_t stream) {
  return device_tensor(std::vector<float>(static_cast<size_t>(shape.numel()), testing::poison_value()), shape,
                       stream);
}
inline constexpr std::int64_t kPoisonIndex = -777;
template <typename Index>
Tensor poisoned_indices(const Shape& shape, cudaStream_t stream) {
  return device_tensor(std::vector<Index>(static_cast<size_t>(shape.numel()), static_cast<Index>(kPoisonIndex)), shape,
                       stream);
}

template <typename T>
std::vector<T> host_values(const Tensor& tensor, cudaStream_t stream) {
  return tensor.to_vector<T>(stream);
}

// Distinct values in [-1, 1), at least 2 / count apart, in random order: no ties and no
// near ties, so finite differences of a max never cross a switch of the argmax.
inline std::vector<float> distinct_values(std::uint64_t seed, size_t count) {
  std::vector<int> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(seed));
  std::vector<float> values(count);
  for (size_t i = 0; i < count; ++i) {
    values[i] = -1.0f + 2.0f * static_cast<float>(order[i]) / static_cast<float>(count);
  }
  return values;
}

inline std::vector<double> to_double(std::span<const float> values) { return {values.begin(), values.end()}; }
inline std::vector<double> to_double(std::span<const std::int64_t> values) {
  std::vector<double> result(values.size());
  for (size_t i = 0; i < values.size(); ++i) result[i] = static_cast<double>(values[i]);
  return result;
}

inline std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const InvalidArgument& error) {
    return error.what();
  }
  return "(no exception)";
}

// Expects call to throw InvalidArgument whose message contains every one of parts.
inline void expect_invalid(const std::function<void()>& call, const std::vector<std::string>& parts) {
  const std::string message = message_of(call);
  for (const std::string& part : parts) {
    EXPECT_NE(message.find(part), std::string::npos) << "message: " << message << "\nlacks: " << part;
  }
}

inline Shape golden_shape(const testing::GoldenTensor& tensor) {
  return Shape(std::span<const std::int64_t>(tensor.shape));
}

inline Size2d golden_pair(const testing::GoldenCase& golden, const std::string& key) {
  const std::vector<std::int64_t>& values = golden.ints_of(key);
  return Size2d{values.at(0), values.at(1)};
}

// The golden cases of one op: those whose name starts with "<op>.".
inline std::vector<testing::GoldenCase> golden_cases(const std::string& op) {
  std::vector<testing::GoldenCase> cases;
  for (testing::GoldenCase& golden : testing::read_golden("pool2d.txt")) {
    if (golden.name.rfind(op + ".", 0) == 0) cases.push_back(std::move(golden));
  }
  return cases;
}

// Golden indices are stored as floats (exact for these small planes).
inline std::vector<std::int64_t> golden_indices(const testing::GoldenTensor& tensor) {
  std::vector<std::int64_t> indices(tensor.values.size());
  for (size_t i = 0; i < indices.size(); ++i) indices[i] = static_cast<std::int64_t>(tensor.values[i]);
  return indices;
}

// One pooling op's launchers with its parameters bound: forward(x, y, argmax) and
// backward(dL_dy, argmax, dL_dx); argmax is undefined for the average pools.
struct PoolLaunchers {
  std::function<void(const Tensor& x, Tensor& y, Tensor& argmax)> forward;
  std::function<void(const Tensor& dL_dy, const Tensor& argmax, Tensor& dL_dx)> backward;
  bool with_argmax = false;
};

// The op in dtype (f16 or bf16) against its f32 run on the same rounded x and dL_dy: both
// compute in f32, so y and dL_dx must be the f32 results rounded once to dtype, bit for bit
// (for max pooling's y no rounding at all: it copies an input element), and an argmax must
// be the f32 run's. Outputs start poisoned.
inline void expect_reduced_pool_is_rounded_f32(DType dtype, const Shape& x_shape, const Shape& y_shape,
                                               const PoolLaunchers& op, std::uint64_t seed) {
  const cudaStream_t stream = current_stream();
  const testing::RoundedTensor x = testing::rounded_device(
      testing::random_uniform(seed, static_cast<size_t>(x_shape.numel()), -2.0f, 2.0f), x_shape, dtype, stream);
  const testing::RoundedTensor dL_dy = testing::rounded_device(
      testing::random_uniform(seed + 1, static_cast<size_t>(y_shape.numel())), y_shape, dtype, stream);
  const auto argmax_for = [&] { return op.with_argmax ? poisoned_indices<std::int32_t>(y_shape, stream) : Tensor(); };

  Tensor y_f32 = poisoned(y_shape, stream);
  Tensor argmax_f32 = argmax_for();
  op.forward(device_tensor(x.values, x_shape, stream), y_f32, argmax_f32);
  Tensor dL_dx_f32 = poisoned(x_shape, stream);
  op.backward(device_tensor(dL_dy.values, y_shape, stream), argmax_f32, dL_dx_f32);

  Tensor y = testing::poisoned_storage(y_shape, dtype, stream);
  Tensor argmax = argmax_for();
  op.forward(x.tensor, y, argmax);
  ASSERT_EQ(y.dtype(), dtype);
  EXPECT_EQ(testing::bit_patterns(testing::storage_values(y, stream)),
            testing::bit_patterns(testing::storage_values(y_f32.to_dtype(dtype, stream), stream)));
  if (op.with_argmax) {
    EXPECT_EQ(host_values<std::int32_t>(argmax, stream), host_values<std::int32_t>(argmax_f32, stream));
  }
  Tensor dL_dx = testing::poisoned_storage(x_shape, dtype, stream);
  op.backward(dL_dy.tensor, argmax, dL_dx);
  EXPECT_EQ(testing::bit_patterns(testing::storage_values(dL_dx, stream)),
            testing::bit_patterns(testing::storage_values(dL_dx_f32.to_dtype(dtype, stream), stream)));
  // And the f32 run itself wrote every element (NaN rounds to NaN, which would compare equal).
  for (const float value : host_values<float>(dL_dx_f32, stream)) ASSERT_FALSE(std::isnan(value));
  for (const float value : host_values<float>(y_f32, stream)) ASSERT_FALSE(std::isnan(value));
}

}  // namespace strata::kernels::pool2d_testing
