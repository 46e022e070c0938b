// How layers print their arguments in repr(), as Python prints them in PyTorch's
// extra_repr: floats by their shortest round-trip form ("1e-05", "0.1", "1.0"), booleans
// as True/False, sizes as ints or tuples.
#pragma once

#include <string>

#include <fmt/format.h>

#include "strata/layers/modules.h"

namespace strata::nn::detail {

inline std::string python_bool(bool value) { return value ? "True" : "False"; }

// Python's repr of the float: fmt's shortest form, with ".0" where that is an integer.
inline std::string python_float(float value) {
  std::string text = fmt::format("{}", value);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";  // not 1e-05, inf or nan
  return text;
}

// "(3, 3)": PyTorch's _pair, for Conv2d.
inline std::string python_tuple(const Pair& pair) { return fmt::format("({}, {})", pair.h, pair.w); }

// As the user gave it: "2" or "(2, 1)", for pooling layers, which keep their arguments.
inline std::string python_int_or_tuple(const Pair& pair) {
  return pair.is_scalar ? fmt::format("{}", pair.h) : python_tuple(pair);
}

// "3x3", for summaries.
inline std::string size_text(const Pair& pair) { return fmt::format("{}x{}", pair.h, pair.w); }

}  // namespace strata::nn::detail
