// Printing of tensors: shape, dtype and where the elements live, plus the values of small
// host tensors, nested by dimension as [[1, 2], [3, 4]].
#include <ostream>
#include <type_traits>

#include "core/dtype_dispatch.h"
#include "core/format.h"
#include "strata/core/tensor.h"

namespace strata {

namespace {

constexpr std::int64_t kMaxPrintedElements = 64;

template <typename T>
void append_element(std::string& out, T value) {
  if constexpr (std::is_same_v<T, float>) {
    fmt::format_to(std::back_inserter(out), "{}", value);
  } else if constexpr (detail::kIsReducedFloat<T>) {
    fmt::format_to(std::back_inserter(out), "{}", static_cast<float>(detail::to_double(value)));
  } else {
    fmt::format_to(std::back_inserter(out), "{}", static_cast<std::int64_t>(value));  // u8 as a number
  }
}

// Appends the elements of dimensions dim.. starting at elements[0], as nested lists.
template <typename T>
void append_values(std::string& out, const T* elements, const Shape& shape, int dim) {
  if (dim == shape.rank()) {
    append_element(out, elements[0]);
    return;
  }
  const std::int64_t stride = shape.stride(dim);
  out += '[';
  for (std::int64_t i = 0; i < shape[dim]; ++i) {
    if (i > 0) out += ", ";
    append_values(out, elements + i * stride, shape, dim + 1);
  }
  out += ']';
}

std::string location(const Tensor& tensor) {
  switch (tensor.memory_kind()) {
    case MemoryKind::device: return fmt::format("cuda:{}", tensor.device());
    case MemoryKind::pinned: return "cpu (pinned)";
    case MemoryKind::host: return "cpu";
  }
  return "invalid";
}

}  // namespace

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::string out =
      fmt::format("Tensor(shape={}, dtype={}, device={}", shape_, dtype_, location(*this));
  if (memory_format_ != MemoryFormat::contiguous) {
    out += fmt::format(", memory_format={}", memory_format_name(memory_format_));
  }
  if (is_host_accessible() && numel() <= kMaxPrintedElements) {
    out += ", values=";
    const Tensor in_order = contiguous(nullptr);  // values in the shape's order
    detail::dispatch_dtype(dtype_, [&]<typename T>(std::type_identity<T>) {
      append_values(out, static_cast<const T*>(in_order.data_ptr()), shape_, 0);
    });
  }
  out += ')';
  return out;
}

std::ostream& operator<<(std::ostream& os, const Tensor& tensor) { return os << tensor.to_string(); }

}  // namespace strata
