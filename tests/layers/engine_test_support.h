// Helpers of the engine tests of the functional API and the modules (engine_layers_test.cpp,
// engine_pool_activation_test.cpp, engine_softmax_batch_norm_test.cpp): inputs that require
// gradients, the fixture of the tests where cuDNN cannot run, what a call writes to stderr
// with the one-time warnings reset, Engine::auto's fallback warning, and a unary op's output
// and input gradient through autograd.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "core/engine_internal.h"
#include "strata/core/engine.h"
#include "strata/core/tensor.h"
#include "tests/kernels/device_values.h"
#include "tests/support/cudnn_test.h"

namespace strata::testing {

// The tests of what happens where cuDNN cannot run (the simulator build), with Engine::custom
// as the default engine unless a test sets another.
class EngineWithoutCudnnTest : public WithoutCudnnTest {
 protected:
  EngineGuard default_engine_{Engine::custom};
};

// What call writes to stderr, the one-time warnings forgotten first so that each shows again.
template <typename Call>
std::string stderr_of(const Call& call) {
  detail::forget_warnings_for_testing();
  ::testing::internal::CaptureStderr();
  call();
  return ::testing::internal::GetCapturedStderr();
}

// The warning of Engine::auto running op on the custom kernels where cuDNN is unavailable.
inline std::string auto_fallback_warning(std::string_view op) {
  return "strata: warning: " + std::string(op) +
         ": Engine::auto runs Strata's custom kernels where cuDNN cannot: " + std::string(cudnn_unavailable_reason()) +
         "\n";
}

// A unary op's output and the gradient of its input.
struct UnaryResult {
  std::vector<float> y, dL_dx;
};

// y = op(x, engine) for x = random_leaf(seed, x_shape, low, high), and dL/dx through autograd
// for the upstream gradient random_device(seed + 1, y's shape).
template <typename Op>
UnaryResult run_unary(const Op& op, Engine engine, const Shape& x_shape, std::uint64_t seed, float low = -1.0f,
                      float high = 1.0f) {
  Tensor x = random_leaf(seed, x_shape, low, high);
  Tensor y = op(x, engine);
  y.backward(random_device(seed + 1, y.shape()));
  return {y.to_vector<float>(), x.grad().to_vector<float>()};
}

inline void expect_bit_identical(const UnaryResult& actual, const UnaryResult& expected) {
  EXPECT_EQ(bit_patterns(actual.y), bit_patterns(expected.y));
  EXPECT_EQ(bit_patterns(actual.dL_dx), bit_patterns(expected.dL_dx));
}

}  // namespace strata::testing
