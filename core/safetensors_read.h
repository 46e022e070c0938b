// A safetensors file opened for reading, its header validated in full before any tensor is
// read: what load_safetensors and load_safetensors_into share. Private.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

#include "strata/core/safetensors.h"

namespace strata::detail {

class SafetensorsInput {
 public:
  // Opens path, reads and validates the header against the file's size. Throws IoError
  // naming the file and the first problem found.
  explicit SafetensorsInput(const std::filesystem::path& path);
  ~SafetensorsInput();

  SafetensorsInput(const SafetensorsInput&) = delete;
  SafetensorsInput& operator=(const SafetensorsInput&) = delete;

  const std::filesystem::path& path() const noexcept { return path_; }
  const SafetensorsHeader& header() const noexcept { return header_; }

  // Reads entry's data; destination must hold entry.data_end - entry.data_begin bytes.
  // Throws IoError if the file cannot be read (or shrank since it was opened).
  void read(const SafetensorsEntry& entry, std::span<std::byte> destination) const;

 private:
  void read_at(std::uint64_t offset, std::span<std::byte> destination) const;
  SafetensorsHeader read_header() const;

  std::filesystem::path path_;
  int fd_ = -1;
  std::uint64_t file_size_ = 0;
  SafetensorsHeader header_;
};

}  // namespace strata::detail
