// Writing and reading an OptimizerState (strata/layers/optimizer.h): numbers as their
// shortest exact text, and a reader that records every problem instead of stopping at the
// first, so that one error lists all the differences between a state and an optimizer.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/tensor.h"
#include "strata/layers/optimizer.h"

namespace strata::optim::detail {

// "group.<g>.<option>", "state.<g>.<i>.<entry>".
std::string group_key(int group, std::string_view option);
std::string state_key(int group, int index, std::string_view entry);

// The shortest text that reads back as the same double; integers and flags as text.
std::string number_text(double value);
std::string flag_text(bool value);

class StateWriter {
 public:
  explicit StateWriter(OptimizerState& state) : state_(state) {}

  void text(const std::string& key, std::string value) { state_.metadata[key] = std::move(value); }
  void number(const std::string& key, double value) { text(key, number_text(value)); }
  void integer(const std::string& key, std::int64_t value) { text(key, std::to_string(value)); }
  void flag(const std::string& key, bool value) { text(key, flag_text(value)); }
  void tensor(const std::string& key, const Tensor& tensor) { state_.tensors.emplace_back(key, tensor); }

 private:
  OptimizerState& state_;
};

class StateReader {
 public:
  explicit StateReader(const OptimizerState& state);

  // The metadata entry key, or nothing (and a problem) when missing.
  std::optional<std::string> text(const std::string& key);
  // Parsed entries; a missing or malformed one records a problem and gives nothing.
  std::optional<double> number(const std::string& key);
  std::optional<std::int64_t> integer(const std::string& key, std::int64_t minimum);
  std::optional<bool> flag(const std::string& key);
  // The tensor key, which must be f32 of shape (that of owner, named in the problem).
  const Tensor* tensor(const std::string& key, const Shape& shape, std::string_view owner);
  // Marks every entry whose key starts with prefix as read, so it is not reported as
  // unexpected (after a count mismatch has been reported for what it belongs to).
  void skip_prefix(std::string_view prefix);

  void problem(std::string description) { problems_.push_back(std::move(description)); }
  std::size_t problem_count() const noexcept { return problems_.size(); }

  // Records every entry nothing read as unexpected, then throws InvalidArgument starting
  // with context and listing every problem, one a line, if there is any.
  void finish(std::string_view context);

 private:
  const OptimizerState& state_;
  std::map<std::string, const Tensor*, std::less<>> tensors_;
  std::set<std::string, std::less<>> read_metadata_;
  std::set<std::string, std::less<>> read_tensors_;
  std::vector<std::string> problems_;
};

}  // namespace strata::optim::detail
