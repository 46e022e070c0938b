// The argument checks of the softmax launchers (kernels/softmax_checks.h).
#include "kernels/softmax_checks.h"

#include "core/check.h"
#include "core/format.h"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace {

// Rows of a (..., C) tensor, after checking it.
std::int64_t checked_rows(const Tensor& tensor, std::string_view op, std::string_view name) {
  expect_floating_device_tensor(tensor, op, name);
  STRATA_CHECK(tensor.dim() >= 1 && tensor.numel() >= 1,
               "{}: {} needs at least one dimension and one element, got shape {}", op, name, tensor.shape());
  return tensor.numel() / tensor.size(tensor.dim() - 1);
}

}  // namespace

std::int64_t expect_softmax_forward_arguments(const Tensor& x, const Tensor& y, std::string_view op) {
  const std::int64_t rows = checked_rows(x, op, "x");
  expect_floating_device_tensor(y, op, "y");
  expect_same_dtype(y, x, op, "y", "x");
  expect_shape(y, x.shape(), op, "y");
  expect_distinct(y, x, op, "y", "x");
  return rows;
}

std::int64_t expect_softmax_backward_arguments(const Tensor& dL_dy, const Tensor& y, const Tensor& dL_dx,
                                               std::string_view op) {
  const std::int64_t rows = checked_rows(y, op, "y");
  expect_floating_device_tensor(dL_dy, op, "dL_dy");
  expect_same_dtype(dL_dy, y, op, "dL_dy", "y");
  expect_shape(dL_dy, y.shape(), op, "dL_dy");
  expect_floating_device_tensor(dL_dx, op, "dL_dx");
  expect_same_dtype(dL_dx, y, op, "dL_dx", "y");
  expect_shape(dL_dx, y.shape(), op, "dL_dx");
  expect_distinct(dL_dx, y, op, "dL_dx", "y");
  expect_distinct(dL_dx, dL_dy, op, "dL_dx", "dL_dy");
  return rows;
}

}  // namespace strata::kernels
