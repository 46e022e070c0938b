// The writer's number formats and the reader's problem list for optimizer states.
#include "layers/optimizer_state_io.h"

#include <charconv>
#include <cmath>
#include <system_error>

#include <fmt/format.h>

#include "core/format.h"
#include "strata/core/errors.h"

namespace strata::optim::detail {

std::string group_key(int group, std::string_view option) { return fmt::format("group.{}.{}", group, option); }

std::string state_key(int group, int index, std::string_view entry) {
  return fmt::format("state.{}.{}.{}", group, index, entry);
}

std::string number_text(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
  return std::string(buffer, result.ptr);
}

std::string flag_text(bool value) { return value ? "true" : "false"; }

StateReader::StateReader(const OptimizerState& state) : state_(state) {
  for (const auto& [name, tensor] : state.tensors) {
    if (!tensors_.emplace(name, &tensor).second) problem(fmt::format("two tensors are named '{}'", name));
  }
}

std::optional<std::string> StateReader::text(const std::string& key) {
  const auto entry = state_.metadata.find(key);
  if (entry == state_.metadata.end()) {
    problem(fmt::format("missing metadata '{}'", key));
    return std::nullopt;
  }
  read_metadata_.insert(key);
  return entry->second;
}

std::optional<double> StateReader::number(const std::string& key) {
  const std::optional<std::string> value = text(key);
  if (!value) return std::nullopt;
  double number = 0.0;
  const char* end = value->data() + value->size();
  const auto result = std::from_chars(value->data(), end, number);
  if (result.ec != std::errc{} || result.ptr != end) {
    problem(fmt::format("metadata '{}' is '{}', not a number", key, *value));
    return std::nullopt;
  }
  return number;
}

std::optional<std::int64_t> StateReader::integer(const std::string& key, std::int64_t minimum) {
  const std::optional<std::string> value = text(key);
  if (!value) return std::nullopt;
  std::int64_t number = 0;
  const char* end = value->data() + value->size();
  const auto result = std::from_chars(value->data(), end, number);
  if (result.ec != std::errc{} || result.ptr != end || number < minimum) {
    problem(fmt::format("metadata '{}' is '{}', not an integer >= {}", key, *value, minimum));
    return std::nullopt;
  }
  return number;
}

std::optional<bool> StateReader::flag(const std::string& key) {
  const std::optional<std::string> value = text(key);
  if (!value) return std::nullopt;
  if (*value == flag_text(true)) return true;
  if (*value == flag_text(false)) return false;
  problem(fmt::format("metadata '{}' is '{}', not true or false", key, *value));
  return std::nullopt;
}

const Tensor* StateReader::tensor(const std::string& key, const Shape& shape, std::string_view owner) {
  const auto entry = tensors_.find(key);
  if (entry == tensors_.end()) {
    problem(fmt::format("missing tensor '{}' (f32 {}, for {})", key, shape, owner));
    return nullptr;
  }
  read_tensors_.insert(key);
  const Tensor& tensor = *entry->second;
  if (!tensor.defined()) {
    problem(fmt::format("tensor '{}' is undefined", key));
    return nullptr;
  }
  if (tensor.dtype() != DType::f32 || tensor.shape() != shape) {
    problem(fmt::format("tensor '{}' is {} {} but {} needs f32 {}", key, tensor.dtype(), tensor.shape(), owner, shape));
    return nullptr;
  }
  return &tensor;
}

void StateReader::skip_prefix(std::string_view prefix) {
  for (const auto& [key, value] : state_.metadata) {
    if (key.starts_with(prefix)) read_metadata_.insert(key);
  }
  for (const auto& [key, tensor] : tensors_) {
    if (key.starts_with(prefix)) read_tensors_.insert(key);
  }
}

void StateReader::finish(std::string_view context) {
  for (const auto& [key, value] : state_.metadata) {
    if (!read_metadata_.contains(key)) problem(fmt::format("unexpected metadata '{}' = '{}'", key, value));
  }
  for (const auto& [key, tensor] : tensors_) {
    if (!read_tensors_.contains(key)) {
      problem(tensor->defined() ? fmt::format("unexpected tensor '{}' ({} {})", key, tensor->dtype(), tensor->shape())
                                : fmt::format("unexpected tensor '{}' (undefined)", key));
    }
  }
  if (problems_.empty()) return;
  std::string message(context);
  for (const std::string& line : problems_) message += "\n  " + line;
  throw InvalidArgument(message);
}

}  // namespace strata::optim::detail
