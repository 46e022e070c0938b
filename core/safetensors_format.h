// What the safetensors writer and reader share: the format's dtype names, its header-size
// limit, the order in which tensors are laid out, the error-message prefix, and the host
// buffer that stages tensor data between files and devices. Private.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <cuda_runtime_api.h>

#include <fmt/format.h>

#include "strata/core/dtype.h"
#include "strata/core/pinned.h"

namespace strata::detail {

// The reference implementation refuses headers above 100 MB (a guard against parsing
// hostile JSON); the writer refuses to produce one.
inline constexpr std::uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;
// Header length is padded with spaces to a multiple of this, so that the data section
// starts 8-byte aligned in the file.
inline constexpr std::uint64_t kSafetensorsHeaderAlignment = 8;
inline constexpr std::string_view kSafetensorsMetadataKey = "__metadata__";

constexpr std::string_view safetensors_dtype_name(DType dtype) noexcept {
  switch (dtype) {
    case DType::f32: return "F32";
    case DType::f16: return "F16";
    case DType::bf16: return "BF16";
    case DType::i32: return "I32";
    case DType::i64: return "I64";
    case DType::u8: return "U8";
  }
  return "invalid";
}

inline std::optional<DType> dtype_from_safetensors_name(std::string_view name) noexcept {
  for (DType dtype : kAllDTypes) {
    if (safetensors_dtype_name(dtype) == name) return dtype;
  }
  return std::nullopt;
}

// Rank of a dtype in the reference implementation's enum (BOOL, U8, I8, F8_E5M2, F8_E4M3,
// I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64), which orders by alignment. Its writer
// lays tensors out by descending rank, then by name, so every tensor's data is aligned to
// its element size; following it makes our files byte-identical to Python's save_file.
constexpr int safetensors_layout_rank(DType dtype) noexcept {
  switch (dtype) {
    case DType::u8: return 1;
    case DType::f16: return 7;
    case DType::bf16: return 8;
    case DType::i32: return 9;
    case DType::f32: return 11;
    case DType::i64: return 13;
  }
  return 0;
}

// "safetensors file 'runs/model.safetensors'": how every message about a file begins.
inline std::string describe_safetensors_file(const std::filesystem::path& path) {
  return fmt::format("safetensors file '{}'", path.string());
}

// Tensor data on its way between a file and tensors, each tensor at its offset. Pinned
// memory when a device tensor is copied (only those copies run asynchronously), plain host
// memory otherwise, so that host-only files need no CUDA call at all.
class StagingBuffer {
 public:
  StagingBuffer(std::size_t bytes, bool pinned) : size_(bytes) {
    if (pinned) {
      pinned_ = allocate_pinned(bytes);
      data_ = pinned_.as<std::byte>();
    } else {
      host_ = std::make_unique_for_overwrite<std::byte[]>(bytes);
      data_ = host_.get();
    }
  }
  std::byte* data() const noexcept { return data_; }
  std::span<std::byte> bytes(std::size_t offset, std::size_t count) const noexcept { return {data_ + offset, count}; }
  std::span<const std::byte> all() const noexcept { return {data_, size_}; }
  // Holds the pinned block back from reuse until the copies queued on stream are done, also
  // when an exception unwinds before the stream was synchronised.
  void record_stream(cudaStream_t stream) const {
    if (pinned_) pinned_.record_stream(stream);
  }

 private:
  PinnedBuffer pinned_;
  std::unique_ptr<std::byte[]> host_;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace strata::detail
