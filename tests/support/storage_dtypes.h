// Helpers of the tests of ops that store f32, f16 or bf16 (kernel, layer and core tests): the
// reduced dtypes and the name of a test parameterised by one, device tensors of a storage dtype
// made from f32 values (rounded to nearest even, as the kernels round their stores), poisoned
// outputs of that dtype, elements read back as float, and the tolerance one rounding adds.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "strata/core/dtype.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "tests/support/compare.h"

namespace strata::testing {

inline constexpr DType kReducedDtypes[] = {DType::bf16, DType::f16};

// The name of a test parameterised by a DType: the dtype's ("bf16", "f16").
inline std::string dtype_param_name(const ::testing::TestParamInfo<DType>& info) {
  return std::string(dtype_name(info.param));
}

// A device tensor of dtype holding values rounded to it (to nearest, ties to even).
inline Tensor storage_tensor(const std::vector<float>& values, const Shape& shape, DType dtype, cudaStream_t stream) {
  const Tensor f32 = Tensor::from_vector(values, shape).to_device(stream);
  return dtype == DType::f32 ? f32 : f32.to_dtype(dtype, stream);
}

// A device tensor of dtype on the current stream, of fresh seeded values uniform in [-1, 1)
// rounded to it; a leaf that requires gradients when asked.
inline Tensor random_storage(std::uint64_t seed, const Shape& shape, DType dtype, bool requires_grad = false) {
  Tensor tensor =
      storage_tensor(random_uniform(seed, static_cast<std::size_t>(shape.numel())), shape, dtype, current_stream());
  if (requires_grad) tensor.set_requires_grad();
  return tensor;
}

// A device tensor of dtype whose every element is the poison (a NaN in f16 and bf16 too), so
// an element a kernel leaves unwritten fails against a finite reference value.
inline Tensor poisoned_storage(const Shape& shape, DType dtype, cudaStream_t stream) {
  return storage_tensor(std::vector<float>(static_cast<std::size_t>(shape.numel()), poison_value()), shape, dtype,
                        stream);
}

// The elements of a floating device tensor as float (exact), and as double for a reference.
inline std::vector<float> storage_values(const Tensor& tensor, cudaStream_t stream) {
  return tensor.dtype() == DType::f32 ? tensor.to_vector<float>(stream)
                                      : tensor.to_dtype(DType::f32, stream).to_vector<float>(stream);
}
inline std::vector<double> storage_doubles(const Tensor& tensor, cudaStream_t stream) {
  const std::vector<float> values = storage_values(tensor, stream);
  return {values.begin(), values.end()};
}
// The elements as an op reads them once the tensor is cast to dtype (as autocast casts), as double.
inline std::vector<double> rounded_doubles(const Tensor& tensor, DType dtype, cudaStream_t stream) {
  return storage_doubles(tensor.to_dtype(dtype, stream), stream);
}

// values rounded to dtype as the kernels round their stores, back as float: the values a
// kernel reads from a tensor of dtype, which the double reference then takes as its inputs.
inline std::vector<float> rounded_to(const std::vector<float>& values, DType dtype, cudaStream_t stream) {
  if (dtype == DType::f32 || values.empty()) return values;
  return storage_values(storage_tensor(values, Shape{static_cast<std::int64_t>(values.size())}, dtype, stream), stream);
}

// A device tensor of dtype holding values rounded to it, and the values it holds as floats:
// exactly what a kernel reads, for its reference.
struct RoundedTensor {
  Tensor tensor;
  std::vector<float> values;
};
inline RoundedTensor rounded_device(const std::vector<float>& values, const Shape& shape, DType dtype,
                                    cudaStream_t stream) {
  Tensor tensor = storage_tensor(values, shape, dtype, stream);
  std::vector<float> rounded = storage_values(tensor, stream);
  return {std::move(tensor), std::move(rounded)};
}

// The relative error bound of one rounding to dtype, generously: 2^-8 for bf16 (8 significant
// bits), 2^-11 for f16 (11), 0 for f32 (whose tests carry their own bound).
inline double storage_rel_tol(DType dtype) {
  switch (dtype) {
    case DType::bf16: return std::ldexp(1.0, -8);
    case DType::f16: return std::ldexp(1.0, -11);
    default: return 0.0;
  }
}

// f32_bound widened by one rounding of the result to dtype: storage_rel_tol(dtype) relative to
// max(|reference|, magnitude_floor), and at least f16's subnormal spacing 2^-24, where its
// relative precision ends (bf16 has f32's exponent range). f32 keeps f32_bound.
inline Tolerance storage_tolerance(DType dtype, Tolerance f32_bound, double magnitude_floor = 0.0) {
  const double rounding = storage_rel_tol(dtype);
  const double f16_subnormal = dtype == DType::f16 ? 0x1p-24 : 0.0;
  return {.abs_tol = f32_bound.abs_tol + std::max(rounding * magnitude_floor, f16_subnormal),
          .rel_tol = f32_bound.rel_tol + rounding};
}

}  // namespace strata::testing
