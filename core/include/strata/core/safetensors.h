// Checkpoints in Hugging Face's safetensors format, so that PyTorch users read Strata's
// weights and Strata reads theirs: an 8-byte little-endian header length N, N bytes of JSON
// naming each tensor's dtype, shape and byte range, then the raw little-endian data.
//
//   NamedTensors state = {{"conv1.weight", w}, {"conv1.bias", b}};   // device tensors
//   save_safetensors("model.safetensors", state, {{"epoch", "12"}}, stream);
//   load_safetensors_into("model.safetensors", state, stream);       // all or nothing
//   SafetensorsFile file = load_safetensors("model.safetensors");    // host tensors
//
// Writes are atomic (a temporary file renamed over the target), and reading validates the
// whole file before anything is used: a corrupt or mismatched file is an exception that
// says what is wrong, never a crash and never a half-loaded model.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <cuda_runtime_api.h>

#include "strata/core/dtype.h"
#include "strata/core/shape.h"
#include "strata/core/tensor.h"

namespace strata {

// Named tensors in a chosen order: what a model's state_dict is.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
// The format's optional free-form "__metadata__": strings to strings.
using SafetensorsMetadata = std::map<std::string, std::string>;

// One tensor as the header describes it; data_begin and data_end are byte offsets into the
// data section (after the header), end exclusive.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::f32;
  Shape shape;
  std::uint64_t data_begin = 0;
  std::uint64_t data_end = 0;
};

// A validated header: the entries in data order (by offset), and the metadata.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;
  SafetensorsMetadata metadata;
  std::uint64_t header_bytes = 0;  // N, the JSON's length including its padding
  std::uint64_t data_bytes = 0;    // the data section's length
};

// A whole file read into plain host tensors, in data order.
struct SafetensorsFile {
  NamedTensors tensors;
  SafetensorsMetadata metadata;

  // The tensor called name; throws InvalidArgument listing the names there are.
  const Tensor& at(std::string_view name) const;
};

struct SafetensorsLoadOptions {
  // When true, the file and the targets must hold exactly the same names. When false, names
  // on one side only are skipped and reported; dtypes and shapes must still match.
  bool strict = true;
};

// What a non-strict load skipped, sorted by name (both empty after a strict load).
struct SafetensorsLoadReport {
  std::vector<std::string> missing_keys;     // targets the file has no tensor for
  std::vector<std::string> unexpected_keys;  // tensors in the file that no target names
};

// Writes tensors (any memory kind; names unique, not "__metadata__") and metadata to path,
// atomically: a temporary file in the same folder, flushed, synced and renamed over path,
// so path holds either its old contents or the complete new file. Device tensors are copied
// into one pinned staging buffer on stream, which is then synchronised; stream may be null
// when every tensor is in host memory. Tensors are laid out as the reference writer does
// (by dtype alignment, then name). Throws InvalidArgument for bad names or tensors, IoError
// (naming path and the system's reason) when the file cannot be written.
void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors,
                      const SafetensorsMetadata& metadata, cudaStream_t stream);
inline void save_safetensors(const std::filesystem::path& path, const NamedTensors& tensors, cudaStream_t stream) {
  save_safetensors(path, tensors, {}, stream);
}

// Reads and validates only the header (and the file's size): every entry's dtype, shape and
// offsets, offsets contiguous from 0 to the end of the file. Throws IoError naming the file
// and the first problem found.
SafetensorsHeader read_safetensors_header(const std::filesystem::path& path);

// Reads the whole file into host tensors. Throws IoError as read_safetensors_header does.
SafetensorsFile load_safetensors(const std::filesystem::path& path);

// Loads the file's tensors into targets, matched by name (targets are written in place:
// copies of a Tensor share its storage). First validates the file and compares it with the
// targets; if anything differs (missing or unexpected names when strict, a dtype or a shape)
// it throws IoError listing every difference and no target is touched. Then reads all the
// data, and only then queues the copies on stream (asynchronous for device targets, through
// pinned staging memory; host targets are written after stream's queued work). stream may
// be null when every target is in host memory. Throws InvalidArgument for undefined targets
// or duplicate target names.
SafetensorsLoadReport load_safetensors_into(const std::filesystem::path& path, const NamedTensors& targets,
                                            cudaStream_t stream, const SafetensorsLoadOptions& options = {});

// The same matching for tensors in memory (a state dict built by hand, or read from
// another format): sources are copied into the targets of the same name on stream, after
// everything was compared; a difference throws InvalidArgument listing all of them, and no
// target is touched. Sources may be in any memory kind; the copies are queued on stream.
SafetensorsLoadReport load_tensors_into(const NamedTensors& sources, const NamedTensors& targets,
                                        cudaStream_t stream, const SafetensorsLoadOptions& options = {});

}  // namespace strata
