// Golden fixtures: small cases computed by PyTorch, committed as text under
// tests/reference/golden/ together with the scripts that wrote them.
//
// Format, one item a line ('#' starts a comment line):
//   case NAME
//   int KEY V1 [V2 ...]          integer parameters (stride 2 2, groups 1, ...)
//   float KEY V                  real parameters (label_smoothing 0.1, ...)
//   tensor KEY D0 [D1 ...] : V1 V2 ...   float32 values, row-major, as %.9g (exact)
//   end
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace strata::testing {

struct GoldenTensor {
  std::vector<std::int64_t> shape;
  std::vector<float> values;
};

struct GoldenCase {
  std::string name;
  std::map<std::string, std::vector<std::int64_t>> ints;
  std::map<std::string, double> floats;
  std::map<std::string, GoldenTensor> tensors;

  // Accessors that fail the test with the case and key named when the key is missing.
  const std::vector<std::int64_t>& ints_of(const std::string& key) const;
  std::int64_t int_of(const std::string& key) const { return ints_of(key).at(0); }
  double float_of(const std::string& key) const;
  const GoldenTensor& tensor_of(const std::string& key) const;
  bool has_tensor(const std::string& key) const { return tensors.count(key) != 0; }
};

// Reads tests/reference/golden/<file_name>; throws std::runtime_error naming the file and
// line on a malformed fixture.
std::vector<GoldenCase> read_golden(const std::string& file_name);

}  // namespace strata::testing
