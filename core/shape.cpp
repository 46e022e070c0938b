// Shape construction, checks and printing.
#include "strata/core/shape.h"

#include <algorithm>
#include <limits>
#include <ostream>

#include <fmt/ranges.h>

#include "core/check.h"
#include "core/format.h"

namespace strata {

Shape::Shape(std::initializer_list<std::int64_t> dims)
    : Shape(std::span<const std::int64_t>(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const std::int64_t> dims) {
  STRATA_CHECK(dims.size() <= static_cast<std::size_t>(kMaxDims),
               "Shape: at most {} dimensions are supported, got {} ({})", kMaxDims, dims.size(),
               fmt::join(dims, ", "));
  STRATA_CHECK(std::ranges::all_of(dims, [](std::int64_t size) { return size >= 0; }),
               "Shape: sizes must be non-negative, got ({})", fmt::join(dims, ", "));
  // The product of the non-zero sizes must fit, so that numel() and every stride() do.
  std::int64_t count = 1;
  for (std::int64_t size : dims) {
    if (size == 0) continue;
    STRATA_CHECK(count <= std::numeric_limits<std::int64_t>::max() / size,
                 "Shape: ({}) has more elements than a 64-bit count can hold", fmt::join(dims, ", "));
    count *= size;
  }
  std::ranges::copy(dims, dims_.begin());
  rank_ = static_cast<int>(dims.size());
}

void Shape::check_dim(int dim, const char* what) const {
  STRATA_CHECK(dim >= 0 && dim < rank_, "{}: dimension {} out of range for shape {} of rank {}", what, dim,
               to_string(), rank_);
}

std::int64_t Shape::operator[](int dim) const {
  check_dim(dim, "Shape[]");
  return dims_[static_cast<std::size_t>(dim)];
}

std::int64_t Shape::numel() const noexcept {
  std::int64_t count = 1;
  for (std::int64_t size : dims()) count *= size;
  return count;
}

std::int64_t Shape::stride(int dim) const {
  check_dim(dim, "Shape::stride");
  std::int64_t stride = 1;
  for (int d = dim + 1; d < rank_; ++d) stride *= dims_[static_cast<std::size_t>(d)];
  return stride;
}

Shape Shape::flatten(int start_dim) const {
  if (rank_ == 0) {
    STRATA_CHECK(start_dim == 0, "Shape::flatten: start_dim {} out of range for a scalar shape ()", start_dim);
    return Shape{1};
  }
  check_dim(start_dim, "Shape::flatten");
  std::array<std::int64_t, kMaxDims> flat{};
  std::copy_n(dims_.begin(), start_dim, flat.begin());
  std::int64_t& merged = flat[static_cast<std::size_t>(start_dim)];
  merged = 1;
  for (int d = start_dim; d < rank_; ++d) merged *= dims_[static_cast<std::size_t>(d)];
  return Shape(std::span<const std::int64_t>(flat.data(), static_cast<std::size_t>(start_dim + 1)));
}

Shape Shape::with_dim(int dim, std::int64_t size) const {
  check_dim(dim, "Shape::with_dim");
  STRATA_CHECK(size >= 0, "Shape::with_dim: size must be non-negative, got {} for dimension {} of {}", size, dim,
               to_string());
  Shape result = *this;
  result.dims_[static_cast<std::size_t>(dim)] = size;
  return result;
}

std::string Shape::to_string() const { return fmt::format("({})", fmt::join(dims(), ", ")); }

std::ostream& operator<<(std::ostream& os, const Shape& shape) { return os << shape.to_string(); }

}  // namespace strata
