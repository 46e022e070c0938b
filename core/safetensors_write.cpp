// save_safetensors: checks the names, lays the tensors out as the reference writer does,
// builds the JSON header, stages every tensor's bytes in one host buffer (one pass over the
// stream for device tensors) and writes the file atomically.
#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/format.h"
#include "core/safetensors_format.h"
#include "strata/core/safetensors.h"
#include "strata/core/stream.h"

namespace strata {
namespace {

// Tensor bytes go to the file as they are in memory; the format is little-endian.
static_assert(std::endian::native == std::endian::little, "safetensors files are little-endian");

struct PlacedTensor {
  const std::string* name;
  const Tensor* tensor;
  std::uint64_t begin;  // byte offsets in the data section, end exclusive
  std::uint64_t end;
};

// JSON strings must be valid UTF-8 (nlohmann's dump refuses anything else).
bool is_valid_utf8(const std::string& text) {
  try {
    (void)nlohmann::json(text).dump();
    return true;
  } catch (const nlohmann::json::type_error&) {
    return false;
  }
}

void check_inputs(const NamedTensors& tensors, const SafetensorsMetadata& metadata, cudaStream_t stream) {
  std::set<std::string_view> names;
  for (const auto& [name, tensor] : tensors) {
    STRATA_CHECK(tensor.defined(), "save_safetensors: tensor '{}' is undefined", name);
    STRATA_CHECK(name != detail::kSafetensorsMetadataKey,
                 "save_safetensors: '{}' is reserved by the format for metadata and cannot name a tensor", name);
    STRATA_CHECK(names.insert(name).second, "save_safetensors: the name '{}' is given to two tensors", name);
    STRATA_CHECK(is_valid_utf8(name), "save_safetensors: the tensor name '{}' is not valid UTF-8, which JSON requires",
                 name);
    STRATA_CHECK(stream != nullptr || !tensor.is_device(),
                 "save_safetensors: tensor '{}' is in device memory but no stream was given to copy it on", name);
  }
  for (const auto& [key, value] : metadata) {
    STRATA_CHECK(is_valid_utf8(key) && is_valid_utf8(value),
                 "save_safetensors: the metadata entry '{}' is not valid UTF-8, which JSON requires", key);
  }
}

// By descending dtype alignment, then by name: each tensor's data starts at a multiple of
// its element size, and the layout (hence the file) is the one Python's save_file writes.
std::vector<PlacedTensor> place_tensors(const NamedTensors& tensors) {
  std::vector<PlacedTensor> placed;
  placed.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) placed.push_back({&name, &tensor, 0, 0});
  std::ranges::sort(placed, [](const PlacedTensor& a, const PlacedTensor& b) {
    const int rank_a = detail::safetensors_layout_rank(a.tensor->dtype());
    const int rank_b = detail::safetensors_layout_rank(b.tensor->dtype());
    return rank_a != rank_b ? rank_a > rank_b : *a.name < *b.name;
  });
  std::uint64_t offset = 0;
  for (PlacedTensor& entry : placed) {
    entry.begin = offset;
    offset += entry.tensor->nbytes();
    entry.end = offset;
  }
  return placed;
}

// The header, compact as the reference writer prints it: "__metadata__" first (when there
// is any), then the tensors in data order, each {"dtype", "shape", "data_offsets"}; padded
// with spaces to a multiple of 8 bytes.
std::string header_json(const std::vector<PlacedTensor>& placed, const SafetensorsMetadata& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json& fields = header[std::string(detail::kSafetensorsMetadataKey)];
    fields = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) fields[key] = value;
  }
  for (const PlacedTensor& entry : placed) {
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (std::int64_t size : entry.tensor->shape()) shape.push_back(static_cast<std::uint64_t>(size));
    nlohmann::ordered_json fields = nlohmann::ordered_json::object();
    fields["dtype"] = detail::safetensors_dtype_name(entry.tensor->dtype());
    fields["shape"] = std::move(shape);
    fields["data_offsets"] = nlohmann::ordered_json::array({entry.begin, entry.end});
    header[*entry.name] = std::move(fields);
  }
  std::string text = header.dump();
  const std::size_t alignment = detail::kSafetensorsHeaderAlignment;
  text.append((alignment - text.size() % alignment) % alignment, ' ');
  STRATA_CHECK(text.size() <= detail::kSafetensorsMaxHeaderBytes,
               "save_safetensors: the header of {} tensors would be {} bytes, above the format's limit of {} bytes "
               "that readers enforce",
               placed.size(), text.size(), detail::kSafetensorsMaxHeaderBytes);
  return text;
}

detail::StagingBuffer stage_data(const std::vector<PlacedTensor>& placed, cudaStream_t stream) {
  const std::uint64_t total = placed.empty() ? 0 : placed.back().end;
  const bool copies_from_device = std::ranges::any_of(
      placed, [](const PlacedTensor& entry) { return entry.tensor->is_device() && entry.tensor->nbytes() > 0; });
  detail::StagingBuffer staging(static_cast<std::size_t>(total), copies_from_device);
  if (copies_from_device) {
    staging.record_stream(stream);
    for (const PlacedTensor& entry : placed) {
      if (entry.tensor->is_device()) {
        entry.tensor->copy_to_host_async(staging.data() + entry.begin, entry.tensor->nbytes(), stream);
      }
    }
    stream_synchronize(stream);
  }
  // Host and pinned tensors: copied once stream's queued work (which may write them) is done.
  for (const PlacedTensor& entry : placed) {
    if (!entry.tensor->is_device()) {
      entry.tensor->copy_to_host_async(staging.data() + entry.begin, entry.tensor->nbytes(), stream);
    }
  }
  return staging;
}

std::span<const std::byte> as_bytes(std::string_view text) { return std::as_bytes(std::span(text)); }

}  // namespace

void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const SafetensorsMetadata& metadata, cudaStream_t stream) {
  check_inputs(tensors, metadata, stream);
  const std::vector<PlacedTensor> placed = place_tensors(tensors);
  const std::string header = header_json(placed, metadata);
  const detail::StagingBuffer staging = stage_data(placed, stream);

  std::uint64_t header_length = header.size();
  std::byte length_field[sizeof header_length];
  std::memcpy(length_field, &header_length, sizeof header_length);  // little-endian, as asserted

  detail::AtomicFileWriter file(path);
  file.write(length_field);
  file.write(as_bytes(header));
  file.write(staging.all());
  file.commit();
}

}  // namespace strata
