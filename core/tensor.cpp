// Tensor storage, views and copies. Elements live in a shared TensorStorage; a Tensor is a
// typed, shaped window onto it.
#include "strata/core/tensor.h"

#include <cmath>
#include <cstring>
#include <limits>

#include "core/autograd_meta.h"
#include "core/autograd_views.h"
#include "core/check.h"
#include "core/dtype_dispatch.h"
#include "core/format.h"
#include "core/op_recording.h"
#include "core/tensor_ops.h"
#include "strata/core/allocator.h"
#include "strata/core/op.h"
#include "strata/core/pinned.h"

namespace strata {

namespace detail {

// One allocation shared by a tensor and its views; exactly one of the buffers is set.
class TensorStorage {
 public:
  MemoryKind kind = MemoryKind::host;
  int device = 0;
  DeviceBuffer device_buffer;
  PinnedBuffer pinned_buffer;
  std::unique_ptr<std::byte[]> host_bytes;

  // Set when the host graph's memory plan moved this storage into its arena.
  std::shared_ptr<DeviceBuffer> arena;
  std::size_t arena_offset = 0;

  void* data() const noexcept {
    if (arena != nullptr) return static_cast<std::byte*>(arena->data()) + arena_offset;
    switch (kind) {
      case MemoryKind::device: return device_buffer.data();
      case MemoryKind::pinned: return pinned_buffer.data();
      case MemoryKind::host: return host_bytes.get();
    }
    return nullptr;
  }

  void record_stream(cudaStream_t stream) const {
    if (arena != nullptr) arena->record_stream(stream);
    if (kind == MemoryKind::device && device_buffer) device_buffer.record_stream(stream);
    if (kind == MemoryKind::pinned && pinned_buffer) pinned_buffer.record_stream(stream);
  }
};

void throw_dtype_mismatch(const char* operation, DType requested, DType actual, const Shape& shape) {
  throw InvalidArgument(fmt::format("{}: requested element type {} from a tensor of dtype {} and shape {}", operation,
                                    requested, actual, shape));
}

}  // namespace detail

namespace {

std::size_t checked_bytes(const Shape& shape, DType dtype) {
  const auto count = static_cast<std::size_t>(shape.numel());
  STRATA_CHECK(count <= std::numeric_limits<std::size_t>::max() / element_size(dtype),
               "Tensor: shape {} of dtype {} needs more bytes than a 64-bit size can hold", shape, dtype);
  return count * element_size(dtype);
}

std::string describe(const Tensor& tensor) {
  return fmt::format("shape {}, dtype {}, {} memory{}", tensor.shape(), tensor.dtype(),
                     memory_kind_name(tensor.memory_kind()),
                     tensor.memory_format() == MemoryFormat::channels_last ? ", channels-last" : "");
}

void check_format_fits(const Shape& shape, MemoryFormat format, const char* operation) {
  STRATA_CHECK(format == MemoryFormat::contiguous || shape.rank() == 4,
               "{}: the channels-last format needs a 4-D (N, C, H, W) shape, got {}", operation, shape);
}

void check_stream(cudaStream_t stream, const char* operation, const Tensor& tensor) {
  STRATA_CHECK(stream != nullptr, "{} on a tensor of {}: no stream given; Strata never uses the default stream",
               operation, describe(tensor));
}

// Host copies honour stream order too: they wait for the work already queued on stream.
void wait_for(cudaStream_t stream) {
  if (stream != nullptr) stream_synchronize(stream);
}

}  // namespace

Tensor::Tensor(std::shared_ptr<detail::TensorStorage> storage, const Shape& shape, DType dtype)
    : storage_(std::move(storage)), shape_(shape), dtype_(dtype) {
  offset_ = 0;
  memory_kind_ = storage_->kind;
  device_ = storage_->device;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, cudaStream_t stream) {
  STRATA_CHECK(stream != nullptr, "Tensor::empty({}, {}): no stream given; Strata never uses the default stream",
               shape, dtype);
  auto storage = std::make_shared<detail::TensorStorage>();
  storage->kind = MemoryKind::device;
  storage->device = current_device();
  storage->device_buffer = allocate_device(checked_bytes(shape, dtype), stream);
  return Tensor(std::move(storage), shape, dtype);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, cudaStream_t stream, MemoryFormat format) {
  check_format_fits(shape, format, "Tensor::empty");
  Tensor tensor = empty(shape, dtype, stream);
  tensor.memory_format_ = format;
  return tensor;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, cudaStream_t stream) {
  Tensor tensor = empty(shape, dtype, stream);
  tensor.fill(0.0, stream);
  return tensor;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, cudaStream_t stream, MemoryFormat format) {
  Tensor tensor = empty(shape, dtype, stream, format);
  tensor.fill(0.0, stream);
  return tensor;
}

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype) {
  auto storage = std::make_shared<detail::TensorStorage>();
  storage->kind = MemoryKind::pinned;
  storage->pinned_buffer = allocate_pinned(checked_bytes(shape, dtype));
  return Tensor(std::move(storage), shape, dtype);
}

Tensor Tensor::empty_host(const Shape& shape, DType dtype) {
  auto storage = std::make_shared<detail::TensorStorage>();
  storage->kind = MemoryKind::host;
  storage->host_bytes = std::make_unique_for_overwrite<std::byte[]>(checked_bytes(shape, dtype));
  return Tensor(std::move(storage), shape, dtype);
}

Tensor Tensor::empty_host(const Shape& shape, DType dtype, MemoryFormat format) {
  check_format_fits(shape, format, "Tensor::empty_host");
  Tensor tensor = empty_host(shape, dtype);
  tensor.memory_format_ = format;
  return tensor;
}

cudaStream_t Tensor::allocation_stream() const noexcept {
  if (storage_ == nullptr || memory_kind_ != MemoryKind::device) return nullptr;
  return storage_->arena != nullptr ? storage_->arena->stream() : storage_->device_buffer.stream();
}

void* Tensor::element_address() const noexcept {
  return storage_ == nullptr ? nullptr : static_cast<std::byte*>(storage_->data()) + offset_;
}

void* Tensor::contiguous_element_address(const char* operation) const {
  if (memory_format_ != MemoryFormat::contiguous && !layouts_coincide(shape_)) {
    throw InvalidArgument(fmt::format(
        "{}: the tensor of {} is channels-last, and the code asking for its elements reads them in (N, C, H, W) "
        "order: that operation does not support the channels-last format; convert the tensor with "
        "to_memory_format(MemoryFormat::contiguous) (F::to_memory_format under autograd) first",
        operation, describe(*this)));
  }
  return element_address();
}

void detail::TensorAccess::move_to_arena(const Tensor& tensor, std::shared_ptr<DeviceBuffer> arena,
                                         std::size_t offset) {
  TensorStorage& storage = *tensor.storage_;
  storage.device_buffer.reset();  // back to the cache, in stream order
  storage.arena = std::move(arena);
  storage.arena_offset = offset;
}

void Tensor::check_defined(const char* operation) const {
  STRATA_CHECK(defined(), "{}: the tensor is undefined (default-constructed or moved from)", operation);
}

Tensor Tensor::view_at(std::size_t byte_offset, const Shape& shape) const {
  Tensor view = *this;
  view.autograd_ = nullptr;  // a view has its own history (see record_view_history)
  view.offset_ = offset_ + byte_offset;
  view.shape_ = shape;
  return view;
}

Tensor Tensor::reshape(const Shape& shape) const {
  check_defined("Tensor::reshape");
  STRATA_CHECK(shape.numel() == numel(), "Tensor::reshape: cannot view shape {} ({} elements) as {} ({} elements)",
               shape_, numel(), shape, shape.numel());
  STRATA_CHECK(is_contiguous() || shape == shape_,
               "Tensor::reshape: the channels-last tensor of {} cannot be viewed as {} without a copy; convert it "
               "with to_memory_format(MemoryFormat::contiguous) first",
               describe(*this), shape);
  Tensor view = view_at(0, shape);
  // A new shape is read in row-major order: the view is contiguous (the layouts coincide).
  if (shape != shape_) view.memory_format_ = MemoryFormat::contiguous;
  detail::record_reshape_history(*this, view);
  return view;
}

Tensor Tensor::flatten(int start_dim) const {
  check_defined("Tensor::flatten");
  return reshape(shape_.flatten(start_dim));
}

Tensor Tensor::narrow(int dim, std::int64_t start, std::int64_t length) const {
  check_defined("Tensor::narrow");
  STRATA_CHECK(dim >= 0 && dim < shape_.rank(), "Tensor::narrow: dimension {} out of range for shape {}", dim, shape_);
  const std::int64_t size = shape_[dim];
  STRATA_CHECK(start >= 0 && length >= 0 && start + length <= size,
               "Tensor::narrow: range [{}, {}) out of bounds for dimension {} of size {} (shape {})", start,
               start + length, dim, size, shape_);
  STRATA_CHECK(dim == 0 || is_contiguous(),
               "Tensor::narrow: dimension {} of the channels-last tensor of {}: only dimension 0 (the batch) of a "
               "channels-last tensor has a view; convert it with to_memory_format(MemoryFormat::contiguous) first",
               dim, describe(*this));
  for (int d = 0; d < dim; ++d) {
    STRATA_CHECK(shape_[d] == 1,
                 "Tensor::narrow: dimension {} of shape {} is preceded by dimension {} of size {}; the view would "
                 "not be contiguous",
                 dim, shape_, d, shape_[d]);
  }
  const auto offset = static_cast<std::size_t>(start * shape_.stride(dim)) * element_size(dtype_);
  Tensor view = view_at(offset, shape_.with_dim(dim, length));
  detail::record_narrow_history(*this, view, dim, start);
  return view;
}

void Tensor::copy_from_host_async(const void* source, std::size_t bytes, cudaStream_t stream) {
  check_defined("Tensor::copy_from_host_async");
  contiguous_element_address("Tensor::copy_from_host_async");  // refuses a channels-last tensor
  STRATA_CHECK(bytes == nbytes(), "Tensor::copy_from_host_async: {} bytes given for a tensor of {} ({} bytes)", bytes,
               describe(*this), nbytes());
  if (bytes == 0) return;
  STRATA_CHECK(source != nullptr, "Tensor::copy_from_host_async: source is null ({} bytes, tensor of {})", bytes,
               describe(*this));
  if (!is_device()) {
    wait_for(stream);
    std::memcpy(data_ptr(), source, bytes);
    return;
  }
  check_stream(stream, "Tensor::copy_from_host_async", *this);
  // A replay reads source again (see strata/core/op.h).
  graph::run_op_on(stream, "copy_from_host", {}, {*this}, [target = detach(), source, bytes](cudaStream_t s) mutable {
    graph::detail::check_inside_op("a device copy", "Tensor::copy_from_host_async");
    STRATA_CUDA_CHECK(cudaMemcpyAsync(target.data_ptr(), source, bytes, cudaMemcpyHostToDevice, s),
                      "{} bytes into a tensor of {}", bytes, describe(target));
    target.record_stream(s);
  });
}

void Tensor::copy_to_host_async(void* destination, std::size_t bytes, cudaStream_t stream) const {
  check_defined("Tensor::copy_to_host_async");
  contiguous_element_address("Tensor::copy_to_host_async");  // refuses a channels-last tensor
  STRATA_CHECK(bytes == nbytes(), "Tensor::copy_to_host_async: {} bytes of room for a tensor of {} ({} bytes)", bytes,
               describe(*this), nbytes());
  if (bytes == 0) return;
  STRATA_CHECK(destination != nullptr, "Tensor::copy_to_host_async: destination is null ({} bytes, tensor of {})",
               bytes, describe(*this));
  if (!is_device()) {
    wait_for(stream);
    std::memcpy(destination, data_ptr(), bytes);
    return;
  }
  check_stream(stream, "Tensor::copy_to_host_async", *this);
  // A replay writes destination again (see strata/core/op.h).
  graph::run_op_on(stream, "copy_to_host", {*this}, {}, [from = detach(), destination, bytes](cudaStream_t s) {
    graph::detail::check_inside_op("a device copy", "Tensor::copy_to_host_async");
    STRATA_CUDA_CHECK(cudaMemcpyAsync(destination, from.data_ptr(), bytes, cudaMemcpyDeviceToHost, s),
                      "{} bytes from a tensor of {}", bytes, describe(from));
    from.record_stream(s);
  });
}

void Tensor::copy_from(const Tensor& source, cudaStream_t stream) {
  check_defined("Tensor::copy_from");
  source.check_defined("Tensor::copy_from (source)");
  STRATA_CHECK(source.shape_ == shape_ && source.dtype_ == dtype_,
               "Tensor::copy_from: source has shape {} and dtype {}, destination shape {} and dtype {}", source.shape_,
               source.dtype_, shape_, dtype_);
  if (nbytes() == 0) return;
  if (source.memory_format_ != memory_format_ && !layouts_coincide(shape_)) {
    STRATA_CHECK(is_device() && source.is_device(),
                 "Tensor::copy_from: between memory formats (source {}, destination {}) only device tensors are "
                 "converted; convert on the device, or with to_memory_format, first",
                 describe(source), describe(*this));
    check_stream(stream, "Tensor::copy_from", *this);
    graph::run_op_on(stream, "copy_memory_format", {source}, {*this},
                     [to = detach(), from = source.detach()](cudaStream_t s) mutable {
                       detail::launch_convert_memory_format(from.memory_ptr(), from.dtype(), to.memory_ptr(),
                                                            to.dtype(), to.shape(), to.memory_format(), s);
                       to.record_stream(s);
                       from.record_stream(s);
                     });
    return;
  }
  if (!is_device() && !source.is_device()) {
    wait_for(stream);
    std::memmove(memory_ptr(), source.memory_ptr(), nbytes());
    return;
  }
  check_stream(stream, "Tensor::copy_from", *this);
  // The body holds both tensors, host memory included, so a replay copies the same elements.
  graph::run_op_on(stream, "copy", {source}, {*this}, [to = detach(), from = source.detach()](cudaStream_t s) mutable {
    graph::detail::check_inside_op("a device copy", "Tensor::copy_from");
    const cudaMemcpyKind kind = !from.is_device() ? cudaMemcpyHostToDevice
                                : !to.is_device() ? cudaMemcpyDeviceToHost
                                                  : cudaMemcpyDeviceToDevice;
    STRATA_CUDA_CHECK(cudaMemcpyAsync(to.memory_ptr(), from.memory_ptr(), to.nbytes(), kind, s),
                      "{} bytes from a tensor of {} to one of {}", to.nbytes(), describe(from), describe(to));
    to.record_stream(s);
    from.record_stream(s);
  });
}

Tensor Tensor::to_memory_format(MemoryFormat format, cudaStream_t stream) const {
  check_defined("Tensor::to_memory_format");
  check_format_fits(shape_, format, "Tensor::to_memory_format");
  if (format == memory_format_) return *this;
  if (is_device()) {
    Tensor converted = empty(shape_, dtype_, stream, format);
    converted.copy_from(*this, stream);
    return converted;
  }
  wait_for(stream);
  Tensor converted = empty_host(shape_, dtype_, format);
  detail::convert_memory_format_on_host(memory_ptr(), converted.memory_ptr(), dtype_, shape_, format);
  return converted;
}

Tensor Tensor::to_host(cudaStream_t stream) const {
  check_defined("Tensor::to_host");
  Tensor host = empty_host(shape_, dtype_, memory_format_);
  host.copy_from(*this, stream);
  if (is_device()) stream_synchronize(stream);
  return host;
}

Tensor Tensor::to_device(cudaStream_t stream) const {
  check_defined("Tensor::to_device");
  Tensor device = empty(shape_, dtype_, stream, memory_format_);
  device.copy_from(*this, stream);
  return device;
}

Tensor Tensor::to_dtype(DType dtype, cudaStream_t stream) const {
  check_defined("Tensor::to_dtype");
  STRATA_CHECK(is_device(), "Tensor::to_dtype({}): the tensor of {} must be in device memory (use to_device first)",
               dtype, describe(*this));
  Tensor converted = empty(shape_, dtype, stream, memory_format_);  // element-wise: any format
  graph::run_op_on(stream, "to_dtype", {*this}, {converted},
                   [from = detach(), converted](cudaStream_t s) mutable {
                     detail::launch_convert(from.memory_ptr(), from.dtype(), converted.memory_ptr(), converted.dtype(),
                                            from.numel(), s);
                     from.record_stream(s);
                   });
  return converted;
}

void Tensor::fill(double value, cudaStream_t stream) {
  check_defined("Tensor::fill");
  detail::dispatch_dtype(dtype_, [&]<typename T>(std::type_identity<T>) {
    if constexpr (std::is_integral_v<T>) {
      // kHigh + 1 is exact for i32 and u8 and rounds to 2^63 for i64: the first value out of range.
      STRATA_CHECK(std::isfinite(value) && std::trunc(value) == value && value >= detail::IntegerBounds<T>::kLow &&
                       value < detail::IntegerBounds<T>::kHigh + 1.0,
                   "Tensor::fill: {} is not a value of dtype {} (tensor of shape {})", value, dtype_, shape_);
    }
  });
  if (is_device()) {
    check_stream(stream, "Tensor::fill", *this);
    graph::run_op_on(stream, "fill", {}, {*this}, [target = detach(), value](cudaStream_t s) mutable {
      detail::launch_fill(target.memory_ptr(), target.dtype(), target.numel(), value, s);
      target.record_stream(s);
    });
    return;
  }
  wait_for(stream);
  detail::dispatch_dtype(dtype_, [&]<typename T>(std::type_identity<T>) {
    const T converted = detail::convert_element<T>(value);
    T* elements = static_cast<T*>(memory_ptr());  // every element, in any format
    for (std::int64_t i = 0; i < numel(); ++i) elements[i] = converted;
  });
}

void Tensor::record_stream(cudaStream_t stream) const {
  if (storage_ != nullptr) storage_->record_stream(stream);
}

}  // namespace strata
