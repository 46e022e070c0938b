// Tensor: a row-major array of up to five dimensions (NCHW, or for 4-D tensors channels-last:
// strata/core/memory_format.h), on the device
// (memory from the caching allocator, allocated on a stream), in pinned host memory (for
// staging) or in plain host memory (for tests and to_host()).
//
// Copying a Tensor shares its storage, as in PyTorch; reshape/view/flatten/narrow return
// views of the same storage and never copy. Copies of the elements are explicit calls that
// take a stream. Device tensors belong to the device that was current at creation.
//
//   Tensor x = Tensor::empty({8, 3, 32, 32}, DType::f32, stream);  // (N, C, H, W)
//   x.copy_from_host_async(std::span<const float>(batch), stream);
//   Tensor rows = x.flatten(1);                                     // (N, C*H*W), same memory
//   std::vector<float> back = x.to_vector<float>(stream);           // waits for stream
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <cuda_runtime_api.h>

#include "strata/core/dtype.h"
#include "strata/core/memory_format.h"
#include "strata/core/shape.h"
#include "strata/core/stream.h"

namespace strata {

enum class MemoryKind : std::uint8_t { device, pinned, host };

constexpr std::string_view memory_kind_name(MemoryKind kind) noexcept {
  switch (kind) {
    case MemoryKind::device: return "device";
    case MemoryKind::pinned: return "pinned";
    case MemoryKind::host: return "host";
  }
  return "invalid";
}

namespace autograd {
class Node;
struct BackwardOptions;
}  // namespace autograd

namespace detail {
class TensorStorage;
struct AutogradMeta;
struct TensorAccess;
// Throws InvalidArgument naming the operation, the tensor and both dtypes.
void throw_dtype_mismatch(const char* operation, DType requested, DType actual, const Shape& shape);
}  // namespace detail

class Tensor {
 public:
  // An undefined tensor: no storage, defined() is false.
  Tensor() = default;

  // Device memory of the current device, allocated on stream; contents undefined.
  static Tensor empty(const Shape& shape, DType dtype, cudaStream_t stream);
  // The same in format: channels_last needs a 4-D shape (InvalidArgument otherwise).
  static Tensor empty(const Shape& shape, DType dtype, cudaStream_t stream, MemoryFormat format);
  // As empty, then filled with zeros on stream.
  static Tensor zeros(const Shape& shape, DType dtype, cudaStream_t stream);
  static Tensor zeros(const Shape& shape, DType dtype, cudaStream_t stream, MemoryFormat format);
  static Tensor empty_pinned(const Shape& shape, DType dtype);
  static Tensor empty_host(const Shape& shape, DType dtype);
  static Tensor empty_host(const Shape& shape, DType dtype, MemoryFormat format);
  // A host tensor holding a copy of values; values.size() must equal shape.numel().
  template <typename T>
  static Tensor from_vector(std::span<const T> values, const Shape& shape);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
    return from_vector(std::span<const T>(values), shape);
  }

  bool defined() const noexcept { return storage_ != nullptr; }
  const Shape& shape() const noexcept { return shape_; }
  int dim() const noexcept { return shape_.rank(); }
  std::int64_t size(int dim) const { return shape_[dim]; }
  std::int64_t numel() const noexcept { return shape_.numel(); }
  std::size_t nbytes() const noexcept { return static_cast<std::size_t>(numel()) * element_size(dtype_); }
  DType dtype() const noexcept { return dtype_; }
  MemoryFormat memory_format() const noexcept { return memory_format_; }
  // Whether the elements lie in the shape's row-major order (NCHW): contiguous format, or
  // channels-last where the two layouts coincide (layouts_coincide).
  bool is_contiguous() const { return memory_format_ == MemoryFormat::contiguous || layouts_coincide(shape_); }
  MemoryKind memory_kind() const noexcept { return memory_kind_; }
  bool is_device() const noexcept { return memory_kind_ == MemoryKind::device; }
  bool is_host_accessible() const noexcept { return memory_kind_ != MemoryKind::device; }
  int device() const noexcept { return device_; }  // for device tensors
  // For device tensors: the stream their memory was allocated on.
  cudaStream_t allocation_stream() const noexcept;

  // The first element, untyped, for code that reads the elements in the shape's row-major
  // order: throws InvalidArgument for a channels-last tensor unless is_contiguous(), so that
  // an op without channels-last support refuses it instead of reading it wrongly.
  void* data_ptr() { return contiguous_element_address("Tensor::data_ptr"); }
  const void* data_ptr() const { return contiguous_element_address("Tensor::data_ptr"); }
  // The first element in memory whatever the format: for code that handles the format
  // itself (channels-last kernels, element-wise maps, copies of a whole tensor).
  void* memory_ptr() noexcept { return element_address(); }
  const void* memory_ptr() const noexcept { return element_address(); }
  // The first element as T*; throws InvalidArgument unless dtype_of<T> == dtype(), and as
  // data_ptr for channels-last tensors. A device pointer for device tensors.
  template <typename T>
  T* data() {
    check_dtype<T>("Tensor::data");
    return static_cast<T*>(contiguous_element_address("Tensor::data"));
  }
  template <typename T>
  const T* data() const {
    check_dtype<T>("Tensor::data");
    return static_cast<const T*>(contiguous_element_address("Tensor::data"));
  }

  // The elements as a vector, in the shape's row-major order whatever the format. Device
  // tensors are copied on stream, which is then synchronised; host tensors are read after
  // stream's queued work (a null stream: now).
  template <typename T>
  std::vector<T> to_vector(cudaStream_t stream) const;
  // Without a stream: device tensors on current_stream(), host tensors as they are now.
  template <typename T>
  std::vector<T> to_vector() const {
    return to_vector<T>(is_device() ? current_stream() : nullptr);
  }

  // Views: same storage, no copy. Throw InvalidArgument (naming both shapes) when the
  // element counts differ or the result would not be contiguous. A channels-last tensor
  // that is not is_contiguous() keeps its shape (convert with to_memory_format first).
  Tensor reshape(const Shape& shape) const;
  // The same as reshape: a view never copies.
  Tensor view(const Shape& shape) const { return reshape(shape); }
  // Dimensions start_dim.. merged: (N, C, H, W).flatten(1) is (N, C*H*W).
  Tensor flatten(int start_dim = 0) const;
  // Indices [start, start + length) of dimension dim; dim must be 0 or preceded only by
  // dimensions of size 1, so that the view stays contiguous (channels-last: dimension 0 only,
  // the view channels-last too).
  Tensor narrow(int dim, std::int64_t start, std::int64_t length) const;
  bool shares_storage_with(const Tensor& other) const noexcept {
    return storage_ != nullptr && storage_ == other.storage_;
  }

  // Copies between this tensor and host memory, queued on stream. Asynchronous for pinned
  // host memory; pageable memory is staged by CUDA. bytes must equal nbytes(). For host
  // and pinned tensors the copy is a memcpy on the calling thread once stream (if not
  // null) has finished its queued work. The host side is in the shape's row-major order:
  // channels-last tensors are refused unless is_contiguous().
  void copy_from_host_async(const void* source, std::size_t bytes, cudaStream_t stream);
  void copy_to_host_async(void* destination, std::size_t bytes, cudaStream_t stream) const;
  template <typename T>
  void copy_from_host_async(std::span<const T> source, cudaStream_t stream) {
    check_dtype<T>("Tensor::copy_from_host_async");
    copy_from_host_async(source.data(), source.size_bytes(), stream);
  }
  template <typename T>
  void copy_to_host_async(std::span<T> destination, cudaStream_t stream) const {
    check_dtype<T>("Tensor::copy_to_host_async");
    copy_to_host_async(destination.data(), destination.size_bytes(), stream);
  }
  // Copies source's elements into this tensor (same shape and dtype, any memory kinds),
  // queued on stream. Between memory formats it converts (device tensors only).
  void copy_from(const Tensor& source, cudaStream_t stream);

  // This tensor's elements in format, queued on stream: itself when already so (no copy),
  // else a new tensor of the same memory kind. Not recorded by autograd (F::to_memory_format
  // is). Device tensors are converted by a kernel, host tensors on the calling thread after
  // stream's queued work.
  Tensor to_memory_format(MemoryFormat format, cudaStream_t stream) const;
  // to_memory_format(MemoryFormat::contiguous, stream).
  Tensor contiguous(cudaStream_t stream) const { return to_memory_format(MemoryFormat::contiguous, stream); }

  // Copies keep the memory format.
  // A plain host copy, made after stream's queued work (waits for it).
  Tensor to_host(cudaStream_t stream) const;
  Tensor to_host() const { return to_host(is_device() ? current_stream() : nullptr); }
  // A new device tensor (current device) with a copy of the elements, queued on stream.
  Tensor to_device(cudaStream_t stream) const;
  // A new device tensor with the elements converted to dtype (rounding to nearest;
  // float to integer truncates toward zero), queued on stream. Device tensors only.
  Tensor to_dtype(DType dtype, cudaStream_t stream) const;

  // Sets every element to value converted to dtype(): by a kernel on stream for device
  // tensors; for host tensors on the calling thread after stream has finished its work.
  // Integer dtypes need an integral value in range.
  void fill(double value, cudaStream_t stream);

  // Declares that work queued on stream uses this tensor's memory, so it is not reused
  // before that work completes (see DeviceBuffer::record_stream). No-op for host memory.
  void record_stream(cudaStream_t stream) const;

  // Autograd (strata/core/autograd.h). Copies of a Tensor share these, as copies of a
  // PyTorch tensor handle do; views made while recording get their own, with a grad_fn.
  bool requires_grad() const noexcept;
  // For leaves (tensors no recorded op produced) of a floating-point dtype: whether
  // backward() computes a gradient for this tensor. Returns *this.
  Tensor& set_requires_grad(bool requires_grad = true);
  // True for tensors no recorded op produced.
  bool is_leaf() const noexcept;
  // The op that produced this tensor, and which of its outputs this is (null for leaves).
  const std::shared_ptr<autograd::Node>& grad_fn() const noexcept;
  int output_nr() const noexcept;
  // The accumulated gradient of a leaf: undefined until a backward reaches it.
  const Tensor& grad() const noexcept;
  // Replaces the gradient (undefined clears it); a defined one must match shape and dtype.
  void set_grad(Tensor grad);
  // The same elements without autograd history: never requires gradients.
  Tensor detach() const;
  // autograd::backward(*this, dL_dself, stream): see there. Without a stream: on
  // current_stream().
  void backward(const Tensor& dL_dself, cudaStream_t stream, const autograd::BackwardOptions& options) const;
  void backward(const Tensor& dL_dself) const;
  void backward() const;

  // this += alpha * other, element-wise, queued on stream: f32 device tensors of one shape
  // (other converted to this tensor's memory format first when they differ). Not recorded by
  // autograd (for gradients and optimizers).
  Tensor& add_(const Tensor& other, float alpha, cudaStream_t stream);

  // "Tensor(shape=(2, 3), dtype=f32, device=cuda:0)"; host tensors of at most 64 elements
  // also show their values: "Tensor(shape=(2, 2), dtype=i32, device=cpu, values=[[1, 2], [3, 4]])".
  std::string to_string() const;

 private:
  Tensor(std::shared_ptr<detail::TensorStorage> storage, const Shape& shape, DType dtype);
  Tensor view_at(std::size_t byte_offset, const Shape& shape) const;
  void check_defined(const char* operation) const;
  void* element_address() const noexcept;
  void* contiguous_element_address(const char* operation) const;
  template <typename T>
  void check_dtype(const char* operation) const {
    if (dtype_of<T> != dtype_) detail::throw_dtype_mismatch(operation, dtype_of<T>, dtype_, shape_);
  }

  friend struct detail::TensorAccess;

  std::shared_ptr<detail::TensorStorage> storage_;
  std::shared_ptr<detail::AutogradMeta> autograd_;  // null: does not require gradients
  // Bytes from the storage's base to the first element. The base is looked up on each
  // access: the host graph's memory plan may move a storage into its arena.
  std::size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::f32;
  MemoryKind memory_kind_ = MemoryKind::host;
  MemoryFormat memory_format_ = MemoryFormat::contiguous;
  int device_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Tensor& tensor);

template <typename T>
Tensor Tensor::from_vector(std::span<const T> values, const Shape& shape) {
  Tensor tensor = empty_host(shape, dtype_of<T>);
  tensor.copy_from_host_async(values.data(), values.size_bytes(), nullptr);
  return tensor;
}

template <typename T>
std::vector<T> Tensor::to_vector(cudaStream_t stream) const {
  check_dtype<T>("Tensor::to_vector");
  if (!is_contiguous()) return contiguous(stream).to_vector<T>(stream);
  std::vector<T> values(static_cast<std::size_t>(numel()));
  copy_to_host_async(values.data(), values.size() * sizeof(T), stream);
  if (is_device()) stream_synchronize(stream);
  return values;
}

}  // namespace strata
