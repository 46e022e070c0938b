// Shape: the sizes of a tensor's dimensions, at most five (N, C, D, H, W), printed as
// (8, 3, 32, 32). A small value type; all shape arithmetic of Tensor lives here, on the host.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <span>
#include <string>

namespace strata {

class Shape {
 public:
  static constexpr int kMaxDims = 5;

  // Rank 0: a scalar with one element.
  Shape() = default;
  // Throws InvalidArgument for more than kMaxDims dimensions or a negative size.
  Shape(std::initializer_list<std::int64_t> dims);
  explicit Shape(std::span<const std::int64_t> dims);

  int rank() const noexcept { return rank_; }
  // Size of dimension dim, 0 <= dim < rank(); throws InvalidArgument otherwise.
  std::int64_t operator[](int dim) const;
  std::span<const std::int64_t> dims() const noexcept { return {dims_.data(), static_cast<std::size_t>(rank_)}; }
  const std::int64_t* begin() const noexcept { return dims_.data(); }
  const std::int64_t* end() const noexcept { return dims_.data() + rank_; }

  // Product of all sizes (1 for rank 0).
  std::int64_t numel() const noexcept;
  // Elements between consecutive indices of dimension dim in a contiguous row-major layout.
  std::int64_t stride(int dim) const;

  // Dimensions start_dim.. merged into one: (8, 3, 32, 32).flatten(1) == (8, 3072).
  Shape flatten(int start_dim) const;
  // The same shape with dimension dim set to size.
  Shape with_dim(int dim, std::int64_t size) const;

  // "(8, 3, 32, 32)"; "()" for rank 0.
  std::string to_string() const;

  friend bool operator==(const Shape&, const Shape&) = default;

 private:
  void check_dim(int dim, const char* what) const;

  std::array<std::int64_t, kMaxDims> dims_{};  // unused entries stay 0 so == compares ranks too
  int rank_ = 0;
};

std::ostream& operator<<(std::ostream& os, const Shape& shape);

}  // namespace strata
