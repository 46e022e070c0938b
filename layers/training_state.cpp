// The training-state file of strata/layers/training_state.h: the pieces of state under
// their prefixes in one safetensors file, and a load that reads and checks every piece
// against the live objects before it installs any.
#include "strata/layers/training_state.h"

#include <algorithm>
#include <charconv>
#include <optional>
#include <set>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "strata/core/errors.h"

namespace strata::optim {

namespace {

constexpr std::string_view kFormat = "strata.training_state.v1";
constexpr std::string_view kOptimizerPrefix = "optimizer.";
constexpr std::string_view kSchedulerPrefix = "scheduler.";
constexpr std::string_view kGeneratorPrefix = "generator.";
constexpr std::string_view kDataPrefix = "data.";
constexpr std::string_view kTensorsPrefix = "tensors.";

std::string prefixed(std::string_view prefix, std::string_view key) { return std::string(prefix).append(key); }

// The entries of map whose key starts with prefix, with the prefix removed.
std::map<std::string, std::string> take_prefixed(const std::map<std::string, std::string>& map,
                                                 std::string_view prefix) {
  std::map<std::string, std::string> taken;
  for (const auto& [key, value] : map) {
    if (key.starts_with(prefix)) taken.emplace(key.substr(prefix.size()), value);
  }
  return taken;
}

template <typename Integer>
std::optional<Integer> parse_integer(const std::string& text) {
  Integer value{};
  const char* end = text.data() + text.size();
  const auto result = std::from_chars(text.data(), end, value);
  if (result.ec != std::errc{} || result.ptr != end) return std::nullopt;
  return value;
}

// Indents a nested multi-line message by one more level.
std::string nested(std::string_view message) {
  std::string indented;
  for (const char c : message) indented += c == '\n' ? std::string("\n  ") : std::string(1, c);
  return indented;
}

// Everything of the file that the load will install, checked.
struct LoadPlan {
  OptimizerState optimizer;
  std::optional<lr::Scheduler> scheduler;
  std::optional<GeneratorState> generator;
  std::vector<std::pair<Tensor, const Tensor*>> tensors;  // target, the file's host tensor
  TrainingProgress progress;
  std::vector<std::string> problems;
};

void plan_scheduler(const SafetensorsMetadata& metadata, const TrainingState& state, LoadPlan& plan) {
  const std::map<std::string, std::string> saved = take_prefixed(metadata, kSchedulerPrefix);
  if (state.scheduler == nullptr) {
    if (!saved.empty())
      plan.problems.push_back("the file holds a scheduler state but no scheduler was given to load it");
    return;
  }
  if (saved.empty()) {
    plan.problems.push_back("a scheduler was given but the file holds no scheduler state");
    return;
  }
  lr::Scheduler probe = *state.scheduler;
  try {
    probe.load_state_dict(saved);
    plan.scheduler = std::move(probe);
  } catch (const InvalidArgument& error) {
    plan.problems.push_back(nested(fmt::format("scheduler: {}", error.what())));
  }
}

void plan_generator(const SafetensorsMetadata& metadata, const TrainingState& state, LoadPlan& plan) {
  const std::map<std::string, std::string> saved = take_prefixed(metadata, kGeneratorPrefix);
  if (state.generator == nullptr) {
    if (!saved.empty())
      plan.problems.push_back("the file holds a generator state but no generator was given to load it");
    return;
  }
  if (saved.empty()) {
    plan.problems.push_back("a generator was given but the file holds no generator state");
    return;
  }
  GeneratorState generator;
  bool complete = true;
  for (auto [name, field] : {std::pair{"seed", &generator.seed}, std::pair{"offset", &generator.offset}}) {
    const auto entry = saved.find(name);
    const std::optional<std::uint64_t> value =
        entry == saved.end() ? std::nullopt : parse_integer<std::uint64_t>(entry->second);
    if (value) {
      *field = *value;
      continue;
    }
    complete = false;
    plan.problems.push_back(entry == saved.end() ? fmt::format("missing metadata '{}{}'", kGeneratorPrefix, name)
                                                 : fmt::format("metadata '{}{}' is '{}', not an unsigned integer",
                                                               kGeneratorPrefix, name, entry->second));
  }
  for (const auto& [key, value] : saved) {
    if (key != "seed" && key != "offset")
      plan.problems.push_back(fmt::format("unexpected metadata '{}{}'", kGeneratorPrefix, key));
  }
  if (complete) plan.generator = generator;
}

// state.tensors against the file's "tensors." entries: names, dtypes and shapes.
void plan_tensors(const SafetensorsFile& file, const TrainingState& state, LoadPlan& plan) {
  std::set<std::string> wanted;
  for (const auto& [name, target] : state.tensors) {
    STRATA_CHECK(target.defined(), "load_training_state: state.tensors entry '{}' is undefined", name);
    STRATA_CHECK(wanted.insert(name).second, "load_training_state: two state.tensors entries are named '{}'", name);
    const std::string key = prefixed(kTensorsPrefix, name);
    const auto saved = std::ranges::find(file.tensors, key, [](const auto& entry) { return entry.first; });
    if (saved == file.tensors.end()) {
      plan.problems.push_back(fmt::format("missing tensor '{}' (target {} {})", key, target.dtype(), target.shape()));
    } else if (saved->second.dtype() != target.dtype() || saved->second.shape() != target.shape()) {
      plan.problems.push_back(fmt::format("tensor '{}' is {} {} in the file but the target is {} {}", key,
                                          saved->second.dtype(), saved->second.shape(), target.dtype(),
                                          target.shape()));
    } else {
      plan.tensors.emplace_back(target, &saved->second);
    }
  }
  for (const auto& [key, tensor] : file.tensors) {
    if (key.starts_with(kOptimizerPrefix)) continue;
    if (!key.starts_with(kTensorsPrefix) || !wanted.contains(key.substr(kTensorsPrefix.size()))) {
      plan.problems.push_back(fmt::format("unexpected tensor '{}' ({} {})", key, tensor.dtype(), tensor.shape()));
    }
  }
}

void plan_progress(const SafetensorsMetadata& metadata, LoadPlan& plan) {
  const auto global_step = metadata.find("global_step");
  if (global_step == metadata.end()) {
    plan.problems.emplace_back("missing metadata 'global_step'");
  } else if (const std::optional<std::int64_t> value = parse_integer<std::int64_t>(global_step->second);
             value && *value >= 0) {
    plan.progress.global_step = *value;
  } else {
    plan.problems.push_back(fmt::format("metadata 'global_step' is '{}', not an integer >= 0", global_step->second));
  }
  plan.progress.data_position = take_prefixed(metadata, kDataPrefix);
  for (const auto& [key, value] : metadata) {
    const bool known = key == "format" || key == "global_step" || key.starts_with(kOptimizerPrefix) ||
                       key.starts_with(kSchedulerPrefix) || key.starts_with(kGeneratorPrefix) ||
                       key.starts_with(kDataPrefix);
    if (!known) plan.problems.push_back(fmt::format("unexpected metadata '{}' = '{}'", key, value));
  }
}

}  // namespace

void save_training_state(const std::filesystem::path& path, const TrainingState& state,
                         const TrainingProgress& progress, cudaStream_t stream) {
  STRATA_CHECK(progress.global_step >= 0, "save_training_state({}): global_step must be >= 0, got {}", path.string(),
               progress.global_step);
  const OptimizerState optimizer = state.optimizer.state_dict();
  NamedTensors tensors;
  SafetensorsMetadata metadata{{"format", std::string(kFormat)}, {"global_step", std::to_string(progress.global_step)}};
  for (const auto& [name, tensor] : optimizer.tensors) tensors.emplace_back(prefixed(kOptimizerPrefix, name), tensor);
  for (const auto& [key, value] : optimizer.metadata) metadata.emplace(prefixed(kOptimizerPrefix, key), value);
  if (state.scheduler != nullptr) {
    for (const auto& [key, value] : state.scheduler->state_dict())
      metadata.emplace(prefixed(kSchedulerPrefix, key), value);
  }
  if (state.generator != nullptr) {
    const GeneratorState generator = state.generator->state();
    metadata.emplace(prefixed(kGeneratorPrefix, "seed"), std::to_string(generator.seed));
    metadata.emplace(prefixed(kGeneratorPrefix, "offset"), std::to_string(generator.offset));
  }
  for (const auto& [key, value] : progress.data_position) metadata.emplace(prefixed(kDataPrefix, key), value);
  for (const auto& [name, tensor] : state.tensors) tensors.emplace_back(prefixed(kTensorsPrefix, name), tensor);
  save_safetensors(path, tensors, metadata, stream);
}

TrainingProgress load_training_state(const std::filesystem::path& path, const TrainingState& state,
                                     cudaStream_t stream) {
  const SafetensorsFile file = load_safetensors(path);  // IoError when truncated or corrupt
  const auto format = file.metadata.find("format");
  if (format == file.metadata.end() || format->second != kFormat) {
    throw IoError(
        fmt::format("load_training_state: {} is not a training-state file: its metadata 'format' is {}, "
                    "expected '{}'",
                    path.string(), format == file.metadata.end() ? "missing" : "'" + format->second + "'", kFormat));
  }

  LoadPlan plan;
  plan.optimizer.metadata = take_prefixed(file.metadata, kOptimizerPrefix);
  for (const auto& [name, tensor] : file.tensors) {
    if (name.starts_with(kOptimizerPrefix))
      plan.optimizer.tensors.emplace_back(name.substr(kOptimizerPrefix.size()), tensor);
  }
  try {
    state.optimizer.check_state_dict(plan.optimizer);
  } catch (const InvalidArgument& error) {
    plan.problems.push_back(nested(fmt::format("optimizer: {}", error.what())));
  }
  plan_scheduler(file.metadata, state, plan);
  plan_generator(file.metadata, state, plan);
  plan_tensors(file, state, plan);
  plan_progress(file.metadata, plan);
  if (!plan.problems.empty()) {
    std::string message = fmt::format(
        "load_training_state: {} does not match the optimizer, scheduler, generator and tensors given; nothing was "
        "changed:",
        path.string());
    for (const std::string& problem : plan.problems) message += "\n  " + problem;
    throw IoError(message);
  }

  // Checked: install. The optimizer copies its state first (the only step that allocates).
  state.optimizer.load_state_dict(plan.optimizer, stream);
  if (plan.scheduler) *state.scheduler = std::move(*plan.scheduler);
  if (plan.generator) state.generator->set_state(*plan.generator);
  for (auto& [target, saved] : plan.tensors) target.copy_from(*saved, stream);
  return plan.progress;
}

}  // namespace strata::optim
