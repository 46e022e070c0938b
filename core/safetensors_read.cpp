// Reading safetensors files as hostile input: every number in the header is checked before
// it is used (the header length against the file, each shape against its byte range, the
// ranges against each other and the file), so a corrupt file is an IoError that says what
// is wrong, never an out-of-bounds read or a huge allocation. Then load_safetensors.
#include "core/safetensors_read.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/format.h"
#include "core/safetensors_format.h"
#include "strata/core/errors.h"

namespace strata {
namespace detail {
namespace {

using Json = nlohmann::json;

std::string error_text(int error) { return std::system_category().message(error); }

// A value as the file spells it, for messages: one level deep and shortened. A hostile
// header may hold huge or deeply nested values, and dumping those whole would recurse as
// deep as they go.
std::string excerpt(const Json& value) {
  constexpr std::size_t kMaxChars = 64;
  const auto shallow = [](const Json& item) -> std::string {
    if (item.is_array()) return item.empty() ? "[]" : "[...]";
    if (item.is_object()) return item.empty() ? "{}" : "{...}";
    return item.dump(-1, ' ', false, Json::error_handler_t::replace);
  };
  std::string text;
  if (value.is_array()) {
    text = "[";
    for (std::size_t i = 0; i < value.size() && text.size() <= kMaxChars; ++i) {
      text += (i > 0 ? "," : "") + shallow(value[i]);
    }
    text += "]";
  } else {
    text = shallow(value);
  }
  if (text.size() > kMaxChars) text = text.substr(0, kMaxChars - 3) + "...";
  return text;
}

// Parses the header. Duplicate keys are refused: JSON parsers silently keep one of them, so
// such a file could show one tensor to Strata and another to a different reader.
Json parse_json(const std::string& text, const std::string& file) {
  std::vector<std::set<std::string>> open_objects;  // keys seen in each enclosing object
  std::string top_level_key;
  std::string duplicate;
  const auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == Json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (depth == 1) top_level_key = key;
      if (!open_objects.back().insert(key).second && duplicate.empty()) {
        duplicate = depth == 1 ? fmt::format("the name '{}' appears twice", key)
                               : fmt::format("the field '{}' appears twice within '{}'", key, top_level_key);
      }
    }
    return true;
  };
  Json header;
  try {
    header = Json::parse(text, callback);
  } catch (const Json::exception& error) {
    throw IoError(fmt::format("{}: the header is not valid JSON: {}", file, error.what()));
  }
  if (!duplicate.empty()) {
    throw IoError(fmt::format("{}: the header is ambiguous: {} (the format forbids duplicate keys)", file, duplicate));
  }
  return header;
}

SafetensorsMetadata parse_metadata(const Json& fields, const std::string& file) {
  if (!fields.is_object()) {
    throw IoError(fmt::format("{}: '__metadata__' must be an object of strings, found {}", file, excerpt(fields)));
  }
  SafetensorsMetadata metadata;
  for (const auto& [key, value] : fields.items()) {
    if (!value.is_string()) {
      throw IoError(fmt::format("{}: '__metadata__' must map strings to strings, but '{}' is {}", file, key,
                                excerpt(value)));
    }
    metadata.emplace(key, value.get<std::string>());
  }
  return metadata;
}

// {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, checked field by field.
SafetensorsEntry parse_entry(const std::string& name, const Json& fields, const std::string& file) {
  const auto corrupt = [&](const std::string& what) {
    return IoError(fmt::format("{}: tensor '{}': {}", file, name, what));
  };
  if (!fields.is_object()) {
    throw corrupt(fmt::format("expected an object with dtype, shape and data_offsets, found {}", excerpt(fields)));
  }
  for (const auto& item : fields.items()) {
    if (item.key() != "dtype" && item.key() != "shape" && item.key() != "data_offsets") {
      throw corrupt(fmt::format("unknown field '{}' (a tensor has dtype, shape and data_offsets)", item.key()));
    }
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!fields.contains(field)) throw corrupt(fmt::format("the field '{}' is missing", field));
  }

  SafetensorsEntry entry;
  entry.name = name;
  const Json& dtype = fields.at("dtype");
  const auto parsed_dtype = dtype.is_string() ? dtype_from_safetensors_name(dtype.get_ref<const std::string&>())
                                              : std::nullopt;
  if (!parsed_dtype) {
    throw corrupt(fmt::format("dtype {} is not one Strata reads (F32, F16, BF16, I32, I64, U8)", excerpt(dtype)));
  }
  entry.dtype = *parsed_dtype;

  const Json& shape = fields.at("shape");
  if (!shape.is_array() || !std::ranges::all_of(shape, [](const Json& size) { return size.is_number_unsigned(); })) {
    throw corrupt(fmt::format("shape {} is not a list of non-negative integers", excerpt(shape)));
  }
  if (shape.size() > static_cast<std::size_t>(Shape::kMaxDims)) {
    throw corrupt(fmt::format("shape {} has {} dimensions; Strata tensors have at most {}", excerpt(shape),
                              shape.size(), Shape::kMaxDims));
  }
  // The element count, refusing overflow: the byte count is compared with the range below.
  std::vector<std::int64_t> sizes;
  std::uint64_t bytes = element_size(entry.dtype);
  bool overflow = false;
  for (const Json& size : shape) {
    const auto value = size.get<std::uint64_t>();
    overflow = overflow || value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
               __builtin_mul_overflow(bytes, value, &bytes);
    sizes.push_back(static_cast<std::int64_t>(value));
  }
  if (overflow) throw corrupt(fmt::format("shape {} is too large to address", excerpt(shape)));
  entry.shape = Shape(std::span<const std::int64_t>(sizes));

  const Json& offsets = fields.at("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    throw corrupt(fmt::format("data_offsets {} is not a pair [begin, end] of non-negative integers", excerpt(offsets)));
  }
  entry.data_begin = offsets[0].get<std::uint64_t>();
  entry.data_end = offsets[1].get<std::uint64_t>();
  if (entry.data_end < entry.data_begin) {
    throw corrupt(fmt::format("data_offsets {} end before they begin", excerpt(offsets)));
  }
  if (entry.data_end - entry.data_begin != bytes) {
    throw corrupt(fmt::format("shape {} of dtype {} needs {} bytes, but data_offsets {} span {}", excerpt(shape),
                              dtype.get_ref<const std::string&>(), bytes, excerpt(offsets),
                              entry.data_end - entry.data_begin));
  }
  return entry;
}

// The ranges must tile the data section exactly, as the reference reader demands: in
// offset order, each begins where the previous one ends, the first at 0, the last at the
// end of the file. No overlap (two names for one set of bytes), no gap, nothing trailing.
void check_layout(std::vector<SafetensorsEntry>& entries, std::uint64_t data_bytes, const std::string& file) {
  for (const SafetensorsEntry& entry : entries) {
    if (entry.data_end > data_bytes) {
      throw IoError(fmt::format("{}: tensor '{}': data_offsets [{}, {}] reach past the end of the data section, "
                                "which has {} bytes (truncated file?)",
                                file, entry.name, entry.data_begin, entry.data_end, data_bytes));
    }
  }
  std::ranges::sort(entries, [](const SafetensorsEntry& a, const SafetensorsEntry& b) {
    return std::tie(a.data_begin, a.data_end, a.name) < std::tie(b.data_begin, b.data_end, b.name);
  });
  std::uint64_t expected_begin = 0;
  const SafetensorsEntry* previous = nullptr;
  for (const SafetensorsEntry& entry : entries) {
    if (entry.data_begin < expected_begin) {
      throw IoError(fmt::format("{}: tensors '{}' (bytes [{}, {}]) and '{}' (bytes [{}, {}]) overlap", file,
                                previous->name, previous->data_begin, previous->data_end, entry.name, entry.data_begin,
                                entry.data_end));
    }
    if (entry.data_begin > expected_begin) {
      throw IoError(fmt::format("{}: bytes [{}, {}] of the data section belong to no tensor (a gap before '{}')", file,
                                expected_begin, entry.data_begin, entry.name));
    }
    expected_begin = entry.data_end;
    previous = &entry;
  }
  if (expected_begin != data_bytes) {
    throw IoError(fmt::format("{}: {} bytes of trailing data after the last tensor, which ends at byte {} of a {}-byte "
                              "data section",
                              file, data_bytes - expected_begin, expected_begin, data_bytes));
  }
}

}  // namespace

SafetensorsInput::SafetensorsInput(const std::filesystem::path& path) : path_(path) {
  fd_ = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    const int error = errno;
    throw IoError(fmt::format("cannot open {}: {}", describe_safetensors_file(path_), error_text(error)));
  }
  try {
    struct stat info {};
    if (::fstat(fd_, &info) != 0) {
      const int error = errno;
      throw IoError(fmt::format("cannot read the size of {}: {}", describe_safetensors_file(path_), error_text(error)));
    }
    if (!S_ISREG(info.st_mode)) {
      throw IoError(fmt::format("{} is not a regular file", describe_safetensors_file(path_)));
    }
    file_size_ = static_cast<std::uint64_t>(info.st_size);
    header_ = read_header();
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafetensorsInput::~SafetensorsInput() { ::close(fd_); }

void SafetensorsInput::read(const SafetensorsEntry& entry, std::span<std::byte> destination) const {
  STRATA_CHECK(destination.size() == entry.data_end - entry.data_begin,
               "SafetensorsInput::read: {} bytes of room for tensor '{}' of {} bytes", destination.size(), entry.name,
               entry.data_end - entry.data_begin);
  read_at(sizeof(std::uint64_t) + header_.header_bytes + entry.data_begin, destination);
}

void SafetensorsInput::read_at(std::uint64_t offset, std::span<std::byte> destination) const {
  while (!destination.empty()) {
    const ssize_t count = ::pread(fd_, destination.data(), destination.size(), static_cast<off_t>(offset));
    if (count < 0 && errno == EINTR) continue;
    if (count < 0) {
      const int error = errno;
      throw IoError(fmt::format("cannot read {} at byte {}: {}", describe_safetensors_file(path_), offset,
                                error_text(error)));
    }
    if (count == 0) {
      throw IoError(fmt::format("{}: unexpected end of file at byte {} ({} bytes when opened): the file changed while "
                                "it was read",
                                describe_safetensors_file(path_), offset, file_size_));
    }
    destination = destination.subspan(static_cast<std::size_t>(count));
    offset += static_cast<std::uint64_t>(count);
  }
}

SafetensorsHeader SafetensorsInput::read_header() const {
  const std::string file = describe_safetensors_file(path_);
  constexpr std::uint64_t kLengthBytes = sizeof(std::uint64_t);
  if (file_size_ < kLengthBytes) {
    throw IoError(fmt::format("{}: the file has {} bytes, too few for the 8-byte header length that begins the format "
                              "(truncated, or not a safetensors file)",
                              file, file_size_));
  }
  std::array<std::byte, kLengthBytes> length_field{};
  read_at(0, length_field);
  std::uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, length_field.data(), kLengthBytes);  // little-endian hosts only
  if (header_bytes > kSafetensorsMaxHeaderBytes) {
    throw IoError(fmt::format("{}: the header length field says {} bytes, above the format's limit of {} (corrupt, or "
                              "not a safetensors file)",
                              file, header_bytes, kSafetensorsMaxHeaderBytes));
  }
  if (header_bytes > file_size_ - kLengthBytes) {
    throw IoError(fmt::format("{}: the header length field says {} bytes, but only {} bytes follow it (truncated, or "
                              "not a safetensors file)",
                              file, header_bytes, file_size_ - kLengthBytes));
  }
  std::string text(static_cast<std::size_t>(header_bytes), '\0');
  read_at(kLengthBytes, std::as_writable_bytes(std::span(text)));
  if (text.empty() || text.front() != '{') {
    throw IoError(fmt::format("{}: the header does not begin with '{{' (corrupt, or not a safetensors file)", file));
  }
  // nlohmann's parser takes a NUL byte for the end of its input and would ignore the rest.
  if (const std::size_t nul = text.find('\0'); nul != std::string::npos) {
    throw IoError(fmt::format("{}: the header has a NUL byte at file offset {}", file, kLengthBytes + nul));
  }
  const Json json = parse_json(text, file);
  if (!json.is_object()) throw IoError(fmt::format("{}: the header is not a JSON object", file));

  SafetensorsHeader header;
  header.header_bytes = header_bytes;
  header.data_bytes = file_size_ - kLengthBytes - header_bytes;
  for (const auto& [key, value] : json.items()) {
    if (key == kSafetensorsMetadataKey) {
      header.metadata = parse_metadata(value, file);
    } else {
      header.entries.push_back(parse_entry(key, value, file));
    }
  }
  check_layout(header.entries, header.data_bytes, file);
  return header;
}

}  // namespace detail

const Tensor& SafetensorsFile::at(std::string_view name) const {
  const auto found = std::ranges::find(tensors, name, [](const auto& named) { return std::string_view(named.first); });
  if (found != tensors.end()) return found->second;
  std::vector<std::string_view> names;
  for (const auto& named : tensors) names.push_back(named.first);
  throw InvalidArgument(fmt::format("SafetensorsFile::at: no tensor '{}'; the file has {} tensors: {}", name,
                                    tensors.size(), fmt::join(names, ", ")));
}

SafetensorsHeader read_safetensors_header(const std::filesystem::path& path) {
  return detail::SafetensorsInput(path).header();
}

SafetensorsFile load_safetensors(const std::filesystem::path& path) {
  const detail::SafetensorsInput input(path);
  SafetensorsFile file;
  file.metadata = input.header().metadata;
  file.tensors.reserve(input.header().entries.size());
  for (const SafetensorsEntry& entry : input.header().entries) {
    Tensor tensor = Tensor::empty_host(entry.shape, entry.dtype);
    input.read(entry, {static_cast<std::byte*>(tensor.data_ptr()), tensor.nbytes()});
    file.tensors.emplace_back(entry.name, std::move(tensor));
  }
  return file;
}

}  // namespace strata
