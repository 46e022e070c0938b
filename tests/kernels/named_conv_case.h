// A convolution shape with a name, for the parameterised conv2d tests that run every pass on
// a list of shapes (the name is the test's suffix and what a failure prints).
#pragma once

#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "strata/core/shape.h"
#include "strata/kernels/conv2d.h"

namespace strata::testing {

struct NamedConvCase {
  const char* name;
  Shape input;   // (N, C, H, W)
  Shape weight;  // (K, C/groups, R, S)
  kernels::Conv2dParams params;
};

inline std::ostream& operator<<(std::ostream& out, const NamedConvCase& conv_case) { return out << conv_case.name; }

// INSTANTIATE_TEST_SUITE_P's name generator: the case's name.
inline std::string conv_case_name(const ::testing::TestParamInfo<NamedConvCase>& param_info) {
  return param_info.param.name;
}

}  // namespace strata::testing
