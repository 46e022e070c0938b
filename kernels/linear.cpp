// linear: argument checks, then the GEMMs (through strata::gemm) and the bias kernels of
// linear_bias.cu. x is viewed as a matrix (rows, in_features) whatever its leading
// dimensions. Every tensor of a call shares one floating dtype, that of the GEMM.
#include "strata/kernels/linear.h"

#include <cstdint>
#include <limits>
#include <string_view>

#include "core/check.h"
#include "core/format.h"
#include "core/nvtx.h"
#include "kernels/linear_bias.h"
#include "kernels/tensor_checks.h"
#include "strata/core/gemm.h"

namespace strata::kernels {

namespace {

constexpr const char* kOp = "linear";

bool fits_int(std::int64_t value) { return value <= std::numeric_limits<int>::max(); }

// The last dimension of a (..., features) tensor, and the product of the others.
struct Matrix {
  int rows;
  int columns;
};

Matrix as_matrix(const Tensor& tensor) {
  const std::int64_t columns = tensor.size(tensor.dim() - 1);
  return Matrix{.rows = static_cast<int>(tensor.numel() / columns), .columns = static_cast<int>(columns)};
}

// The operand named name must be a device tensor of reference's dtype.
void expect_operand(const Tensor& tensor, const Tensor& reference, std::string_view name,
                    std::string_view reference_name) {
  expect_floating_device_tensor(tensor, kOp, name);
  expect_same_dtype(tensor, reference, kOp, name, reference_name);
}

// dL_dy (..., out) for weight (out, in): checks it (a floating device tensor) and returns its
// matrix view.
Matrix check_output_gradient(const Tensor& dL_dy, const Shape& weight) {
  expect_floating_device_tensor(dL_dy, kOp, "dL_dy");
  STRATA_CHECK(weight.rank() == 2, "{}: weight must be (out_features, in_features), got {}", kOp, weight);
  STRATA_CHECK(dL_dy.dim() >= 1 && dL_dy.size(dL_dy.dim() - 1) == weight[0],
               "{}: dL_dy must be (..., {}) for weight {}, got {}", kOp, weight[0], weight, dL_dy.shape());
  // The forward's input shape has the same leading dimensions: this checks them.
  linear_output_shape(dL_dy.shape().with_dim(dL_dy.dim() - 1, weight[1]), weight);
  return as_matrix(dL_dy);
}

float gemm_beta(const LinearBackwardParams& params) { return params.accumulate ? 1.0f : 0.0f; }

}  // namespace

Shape linear_output_shape(const Shape& x, const Shape& weight) {
  STRATA_CHECK(weight.rank() == 2 && x.rank() >= 1 && x[x.rank() - 1] == weight[1],
               "{}: needs x (..., in_features) and weight (out_features, in_features), got x {} and weight {}", kOp,
               x, weight);
  STRATA_CHECK(x.numel() >= 1 && weight[0] >= 1 && weight[1] >= 1,
               "{}: sizes must be at least 1, got x {} and weight {}", kOp, x, weight);
  const std::int64_t rows = x.numel() / weight[1];
  STRATA_CHECK(fits_int(rows) && fits_int(weight[0]) && fits_int(weight[1]) && fits_int(rows * weight[0]) &&
                   fits_int(rows * weight[1]),
               "{}: x {} and weight {} exceed the GEMM's 32-bit sizes", kOp, x, weight);
  return x.with_dim(x.rank() - 1, weight[0]);
}

void linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, Tensor& y, cudaStream_t stream) {
  NvtxRange range("linear_forward");
  expect_floating_device_tensor(x, kOp, "x");
  expect_operand(weight, x, "weight", "x");
  const Shape y_shape = linear_output_shape(x.shape(), weight.shape());
  expect_operand(y, x, "y", "x");
  expect_shape(y, y_shape, kOp, "y");
  expect_distinct(y, x, kOp, "y", "x");
  expect_distinct(y, weight, kOp, "y", "weight");
  const Matrix x_matrix = as_matrix(x);                     // (rows, in)
  const int out_features = static_cast<int>(weight.size(0));  // weight (out, in)
  float beta = 0.0f;
  if (bias.defined()) {
    expect_operand(bias, x, "bias", "x");
    expect_shape(bias, Shape{weight.size(0)}, kOp, "bias");
    expect_distinct(y, bias, kOp, "y", "bias");
    // The GEMM then adds x W^T to the bias in y, as PyTorch's addmm does (in f32, rounded
    // once to the dtype).
    detail::launch_broadcast_bias(bias, y, x_matrix.rows, out_features, stream);
    beta = 1.0f;
  }
  gemm_ex(GemmExArgs{.dtype = x.dtype(), .trans_b = true, .m = x_matrix.rows, .n = out_features,
                     .k = x_matrix.columns,
                     .a = x.data_ptr(), .lda = x_matrix.columns,       // x (rows, in)
                     .b = weight.data_ptr(), .ldb = x_matrix.columns,  // weight (out, in)
                     .beta = beta, .c = y.data_ptr(), .ldc = out_features},  // y (rows, out)
          stream);
}

Tensor linear_forward(const Tensor& x, const Tensor& weight, const Tensor& bias, cudaStream_t stream) {
  expect_floating_device_tensor(x, kOp, "x");
  expect_operand(weight, x, "weight", "x");
  Tensor y = Tensor::empty(linear_output_shape(x.shape(), weight.shape()), x.dtype(), stream);
  linear_forward(x, weight, bias, y, stream);
  return y;
}

void linear_backward_data(const Tensor& dL_dy, const Tensor& weight, Tensor& dL_dx,
                          const LinearBackwardParams& params, cudaStream_t stream) {
  NvtxRange range("linear_backward_data");
  const Matrix dy = check_output_gradient(dL_dy, weight.shape());  // (rows, out)
  expect_operand(weight, dL_dy, "weight", "dL_dy");
  const int in_features = static_cast<int>(weight.size(1));
  expect_operand(dL_dx, dL_dy, "dL_dx", "dL_dy");
  expect_shape(dL_dx, dL_dy.shape().with_dim(dL_dy.dim() - 1, in_features), kOp, "dL_dx");
  expect_distinct(dL_dx, dL_dy, kOp, "dL_dx", "dL_dy");
  expect_distinct(dL_dx, weight, kOp, "dL_dx", "weight");
  gemm_ex(GemmExArgs{.dtype = dL_dy.dtype(), .m = dy.rows, .n = in_features, .k = dy.columns,
                     .a = dL_dy.data_ptr(), .lda = dy.columns,      // dL_dy (rows, out)
                     .b = weight.data_ptr(), .ldb = in_features,    // weight (out, in)
                     .beta = gemm_beta(params), .c = dL_dx.data_ptr(), .ldc = in_features},  // dL_dx (rows, in)
          stream);
}

void linear_backward_weight(const Tensor& dL_dy, const Tensor& x, Tensor& dL_dweight,
                            const LinearBackwardParams& params, cudaStream_t stream) {
  NvtxRange range("linear_backward_weight");
  expect_floating_device_tensor(dL_dweight, kOp, "dL_dweight");
  STRATA_CHECK(dL_dweight.dim() == 2, "{}: dL_dweight must be (out_features, in_features), got {}", kOp,
               dL_dweight.shape());
  const Matrix dy = check_output_gradient(dL_dy, dL_dweight.shape());  // (rows, out)
  expect_operand(x, dL_dy, "x", "dL_dy");
  expect_same_dtype(dL_dweight, dL_dy, kOp, "dL_dweight", "dL_dy");
  expect_shape(x, dL_dy.shape().with_dim(dL_dy.dim() - 1, dL_dweight.size(1)), kOp, "x");
  expect_distinct(dL_dweight, dL_dy, kOp, "dL_dweight", "dL_dy");
  expect_distinct(dL_dweight, x, kOp, "dL_dweight", "x");
  const int in_features = static_cast<int>(dL_dweight.size(1));
  gemm_ex(GemmExArgs{.dtype = dL_dy.dtype(), .trans_a = true, .m = dy.columns, .n = in_features, .k = dy.rows,
                     .a = dL_dy.data_ptr(), .lda = dy.columns,  // dL_dy (rows, out), read as (out, rows)
                     .b = x.data_ptr(), .ldb = in_features,     // x (rows, in)
                     .beta = gemm_beta(params), .c = dL_dweight.data_ptr(), .ldc = in_features},  // (out, in)
          stream);
}

void linear_backward_bias(const Tensor& dL_dy, Tensor& dL_dbias, const LinearBackwardParams& params,
                          cudaStream_t stream) {
  NvtxRange range("linear_backward_bias");
  expect_floating_device_tensor(dL_dy, kOp, "dL_dy");
  STRATA_CHECK(dL_dy.dim() >= 1 && dL_dy.numel() >= 1, "{}: dL_dy must be (..., out_features), got {}", kOp,
               dL_dy.shape());
  const std::int64_t out_features = dL_dy.size(dL_dy.dim() - 1);
  const std::int64_t rows = dL_dy.numel() / out_features;  // dL_dy viewed as (rows, out)
  expect_operand(dL_dbias, dL_dy, "dL_dbias", "dL_dy");
  expect_shape(dL_dbias, Shape{out_features}, kOp, "dL_dbias");
  expect_distinct(dL_dbias, dL_dy, kOp, "dL_dbias", "dL_dy");
  detail::launch_bias_gradient(dL_dy, dL_dbias, rows, out_features, params.accumulate, stream);
}

}  // namespace strata::kernels
