// load_safetensors_into, all or nothing: the file is validated and compared with the
// targets first, every difference is reported at once, and all the data is read into
// staging memory before the first target is written.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "core/check.h"
#include "core/format.h"
#include "core/safetensors_format.h"
#include "core/safetensors_read.h"
#include "strata/core/errors.h"
#include "strata/core/safetensors.h"

namespace strata {
namespace {

using TargetsByName = std::map<std::string_view, const Tensor*>;

TargetsByName index_targets(const NamedTensors& targets, cudaStream_t stream) {
  TargetsByName by_name;
  for (const auto& [name, tensor] : targets) {
    STRATA_CHECK(tensor.defined(), "load_safetensors_into: target '{}' is undefined", name);
    STRATA_CHECK(by_name.emplace(name, &tensor).second, "load_safetensors_into: two targets are named '{}'", name);
    STRATA_CHECK(stream != nullptr || !tensor.is_device(),
                 "load_safetensors_into: target '{}' is in device memory but no stream was given to copy it on", name);
  }
  return by_name;
}

struct Match {
  const SafetensorsEntry* entry;
  const Tensor* target;
};

struct Comparison {
  std::vector<Match> matches;           // same name, dtype and shape; in data order
  std::vector<std::string> missing;     // "'name' (target f32 (10))", by name
  std::vector<std::string> unexpected;  // "'name' (f32 (3, 4))", by name
  std::vector<std::string> mismatched;  // "'name': the file has ..., the target is ...", by name
  SafetensorsLoadReport report;
};

Comparison compare(const SafetensorsHeader& header, const TargetsByName& targets) {
  Comparison result;
  std::set<std::string_view> in_file;
  for (const SafetensorsEntry& entry : header.entries) {
    in_file.insert(entry.name);
    const auto target = targets.find(entry.name);
    if (target == targets.end()) {
      result.unexpected.push_back(fmt::format("'{}' ({} {})", entry.name, entry.dtype, entry.shape));
      result.report.unexpected_keys.push_back(entry.name);
      continue;
    }
    const Tensor& tensor = *target->second;
    if (tensor.dtype() == entry.dtype && tensor.shape() == entry.shape) {
      result.matches.push_back({&entry, &tensor});
    } else {
      result.mismatched.push_back(fmt::format("'{}': the file has {} {}, the target is {} {}", entry.name, entry.dtype,
                                              entry.shape, tensor.dtype(), tensor.shape()));
    }
  }
  for (const auto& [name, tensor] : targets) {
    if (in_file.contains(name)) continue;
    result.missing.push_back(fmt::format("'{}' (target {} {})", name, tensor->dtype(), tensor->shape()));
    result.report.missing_keys.emplace_back(name);
  }
  std::ranges::sort(result.unexpected);
  std::ranges::sort(result.mismatched);
  std::ranges::sort(result.report.unexpected_keys);
  return result;
}

// Every difference that stops the load, one a line, after "<source> does not match ...";
// empty when the load can go ahead.
std::string load_problems(const Comparison& comparison, const SafetensorsLoadOptions& options,
                          std::string_view source, std::string_view source_in_short, std::size_t target_count) {
  const bool names_differ = options.strict && (!comparison.missing.empty() || !comparison.unexpected.empty());
  if (!names_differ && comparison.mismatched.empty()) return {};
  std::string message = fmt::format("{} does not match the {} targets; no target was changed:", source, target_count);
  if (options.strict) {
    for (const std::string& line : comparison.missing) {
      message += fmt::format("\n  missing from {}: {}", source_in_short, line);
    }
    for (const std::string& line : comparison.unexpected) message += "\n  not among the targets: " + line;
  }
  for (const std::string& line : comparison.mismatched) message += "\n  dtype or shape differs for " + line;
  return message;
}

}  // namespace

SafetensorsLoadReport load_safetensors_into(const std::filesystem::path& path, const NamedTensors& targets,
                                            cudaStream_t stream, const SafetensorsLoadOptions& options) {
  const TargetsByName targets_by_name = index_targets(targets, stream);
  const detail::SafetensorsInput input(path);
  const Comparison comparison = compare(input.header(), targets_by_name);
  const std::string problems =
      load_problems(comparison, options, detail::describe_safetensors_file(path), "the file", targets.size());
  if (!problems.empty()) throw IoError(problems);

  // Everything is read before anything is written: a read error leaves every target as it was.
  std::vector<std::size_t> staging_offsets;
  std::size_t total = 0;
  bool copies_to_device = false;
  for (const Match& match : comparison.matches) {
    staging_offsets.push_back(total);
    total += match.target->nbytes();
    copies_to_device = copies_to_device || (match.target->is_device() && match.target->nbytes() > 0);
  }
  const detail::StagingBuffer staging(total, copies_to_device);
  for (std::size_t i = 0; i < comparison.matches.size(); ++i) {
    const Match& match = comparison.matches[i];
    input.read(*match.entry, staging.bytes(staging_offsets[i], match.target->nbytes()));
  }

  staging.record_stream(stream);
  for (std::size_t i = 0; i < comparison.matches.size(); ++i) {
    Tensor target = *comparison.matches[i].target;  // shares the target's storage
    target.copy_from_host_async(staging.data() + staging_offsets[i], target.nbytes(), stream);
  }
  return options.strict ? SafetensorsLoadReport{} : comparison.report;
}

SafetensorsLoadReport load_tensors_into(const NamedTensors& sources, const NamedTensors& targets,
                                        cudaStream_t stream, const SafetensorsLoadOptions& options) {
  const TargetsByName targets_by_name = index_targets(targets, stream);
  // The sources as header entries (no offsets), so both loads match names the same way.
  SafetensorsHeader header;
  std::set<std::string_view> source_names;
  for (const auto& [name, tensor] : sources) {
    STRATA_CHECK(tensor.defined(), "load_tensors_into: source '{}' is undefined", name);
    STRATA_CHECK(source_names.insert(name).second, "load_tensors_into: two sources are named '{}'", name);
    header.entries.push_back({.name = name, .dtype = tensor.dtype(), .shape = tensor.shape()});
  }
  const Comparison comparison = compare(header, targets_by_name);
  const std::string problems =
      load_problems(comparison, options, fmt::format("the given state ({} tensors)", sources.size()), "them",
                    targets.size());
  if (!problems.empty()) throw InvalidArgument(problems);
  for (const Match& match : comparison.matches) {
    const auto index = static_cast<std::size_t>(match.entry - header.entries.data());
    Tensor target = *match.target;  // shares the target's storage
    target.copy_from(sources[index].second, stream);
  }
  return options.strict ? SafetensorsLoadReport{} : comparison.report;
}

}  // namespace strata
