// Dropout kernels: the mask against a host recomputation from the same Philox stream, its
// statistics and counter-based properties, the scaled outputs and gradients against the
// double reference and finite differences, and argument errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "strata/core/stream.h"
#include "strata/kernels/dropout.h"
#include "tests/kernels/elementwise_test_support.h"
#include "tests/reference/elementwise_reference.h"
#include "tests/support/compare.h"
#include "tests/support/gradcheck.h"

namespace strata::kernels {
namespace {

using testing::all_close;
using testing::device_tensor;
using testing::doubles;
using testing::poisoned_tensor;
using testing::random_uniform;
using testing::Tolerance;

// The mask is exact; the outputs are x * float(1 / (1 - p)), within an ulp of the double.
constexpr Tolerance kScaledTolerance{.abs_tol = 0.0, .rel_tol = 3e-7};

Tensor poisoned_mask(const Shape& shape, cudaStream_t stream) {
  Tensor mask = Tensor::empty(shape, DType::u8, stream);
  mask.fill(77, stream);  // neither 0 nor 1
  return mask;
}

TEST(Dropout, MaskAndOutputsMatchHostRecomputation) {
  const cudaStream_t stream = current_stream();
  struct Case {
    Shape shape;
    DropoutParams params;
  };
  // Offsets that are and are not multiples of 4 (the float4 path needs group-aligned
  // starts), sizes with every tail length, one element, and a large odd count.
  const std::vector<Case> cases = {
      {Shape{1}, {.p = 0.5f, .seed = 1, .offset = 0}},
      {Shape{7}, {.p = 0.3f, .seed = 2, .offset = 3}},
      {Shape{2, 3, 5, 7}, {.p = 0.2f, .seed = 3, .offset = 8}},
      {Shape{2, 3, 5, 7}, {.p = 0.2f, .seed = 3, .offset = 9}},
      {Shape{100003}, {.p = 0.1f, .seed = 0x123456789abcdefULL, .offset = 4000000000ULL}},
      {Shape{1001}, {.p = 0.75f, .seed = 5, .offset = 2}},
  };
  std::uint64_t seed = 500;
  for (const Case& c : cases) {
    SCOPED_TRACE("shape " + c.shape.to_string() + ", p " + std::to_string(c.params.p) + ", offset " +
                 std::to_string(c.params.offset));
    const auto count = static_cast<std::size_t>(c.shape.numel());
    const std::vector<float> x = random_uniform(seed++, count);
    const std::vector<float> dL_dy = random_uniform(seed++, count);
    Tensor y = poisoned_tensor(c.shape, stream);
    Tensor mask = poisoned_mask(c.shape, stream);
    dropout_forward(device_tensor(x, c.shape, stream), y, mask, c.params, stream);

    const std::vector<std::uint8_t> expected_mask =
        reference::dropout_mask(c.params.seed, c.params.offset, count, c.params.p);
    EXPECT_EQ(mask.to_vector<std::uint8_t>(stream), expected_mask);
    EXPECT_TRUE(all_close(y.to_vector<float>(stream), reference::dropout_forward(doubles(x), expected_mask, c.params.p),
                          kScaledTolerance));

    Tensor dL_dx = poisoned_tensor(c.shape, stream);
    dropout_backward(device_tensor(dL_dy, c.shape, stream), mask, dL_dx, c.params, stream);
    EXPECT_TRUE(all_close(dL_dx.to_vector<float>(stream),
                          reference::dropout_backward(doubles(dL_dy), expected_mask, c.params.p), kScaledTolerance));
  }
}

// Tensors at aligned starts and a group-aligned offset take float4 / uchar4 for whole
// groups; the tail must stop at the end, leaving the guard elements after it untouched.
TEST(Dropout, WritesNothingPastTheEnd) {
  const cudaStream_t stream = current_stream();
  const DropoutParams params{.p = 0.5f, .seed = 14, .offset = 16};
  for (const std::int64_t n : testing::kTailSizes) {
    SCOPED_TRACE("size " + std::to_string(n));
    const auto count = static_cast<std::size_t>(n);
    const Shape storage_shape{n + testing::kGuardElements};
    const std::vector<float> x = random_uniform(static_cast<std::uint64_t>(40 + n), count);
    Tensor y_storage = poisoned_tensor(storage_shape, stream);
    Tensor y = y_storage.narrow(0, 0, n);
    Tensor mask_storage = poisoned_mask(storage_shape, stream);
    Tensor mask = mask_storage.narrow(0, 0, n);
    dropout_forward(device_tensor(x, Shape{n}, stream), y, mask, params, stream);
    Tensor dL_dx_storage = poisoned_tensor(storage_shape, stream);
    Tensor dL_dx = dL_dx_storage.narrow(0, 0, n);
    dropout_backward(device_tensor(x, Shape{n}, stream), mask, dL_dx, params, stream);

    const std::vector<std::uint8_t> expected_mask =
        reference::dropout_mask(params.seed, params.offset, count, params.p);
    const std::vector<std::uint8_t> masks = mask_storage.to_vector<std::uint8_t>(stream);
    EXPECT_EQ(std::vector<std::uint8_t>(masks.begin(), masks.begin() + n), expected_mask);
    EXPECT_EQ(std::vector<std::uint8_t>(masks.begin() + n, masks.end()),
              std::vector<std::uint8_t>(static_cast<std::size_t>(testing::kGuardElements), 77));
    const std::vector<double> expected = reference::dropout_forward(doubles(x), expected_mask, params.p);
    for (const Tensor* storage : {&y_storage, &dL_dx_storage}) {
      const std::vector<float> values = storage->to_vector<float>(stream);
      EXPECT_TRUE(all_close(std::span(values).first(count), expected, kScaledTolerance));
      EXPECT_TRUE(testing::all_poison(std::span(values).subspan(count)));
    }
  }
}

TEST(Dropout, KeepFractionIsStatisticallyRight) {
  const cudaStream_t stream = current_stream();
  const Shape shape{100003};
  const Tensor x = device_tensor(random_uniform(600, 100003), shape, stream);
  for (const float p : {0.1f, 0.5f, 0.9f}) {
    SCOPED_TRACE("p " + std::to_string(p));
    const DropoutOutputs outputs = dropout_forward(x, {.p = p, .seed = 61, .offset = 0}, stream);
    double kept = 0;
    for (const std::uint8_t m : outputs.mask.to_vector<std::uint8_t>(stream)) kept += m;
    const double n = 100003;
    const double expected = n * (1.0 - p);
    const double sigma = std::sqrt(n * p * (1.0 - p));
    EXPECT_NEAR(kept, expected, 5 * sigma);
  }
}

// Element i depends on (seed, offset + i) only: a later offset sees the same stream
// shifted, another seed or offset gives another mask, the same ones the same mask.
TEST(Dropout, MaskIsCounterBased) {
  const cudaStream_t stream = current_stream();
  const std::int64_t n = 4099;
  const Tensor x = device_tensor(random_uniform(700, n), Shape{n}, stream);
  const auto mask_of = [&](const DropoutParams& params, std::int64_t count) {
    return dropout_forward(x.narrow(0, 0, count), params, stream).mask.to_vector<std::uint8_t>(stream);
  };
  const std::vector<std::uint8_t> base = mask_of({.p = 0.5f, .seed = 7, .offset = 0}, n);
  EXPECT_EQ(mask_of({.p = 0.5f, .seed = 7, .offset = 0}, n), base) << "same seed and offset, same mask";
  for (const std::int64_t shift : {1, 3, 4, 1000}) {
    SCOPED_TRACE("shift " + std::to_string(shift));
    const std::vector<std::uint8_t> shifted =
        mask_of({.p = 0.5f, .seed = 7, .offset = static_cast<std::uint64_t>(shift)}, n - shift);
    EXPECT_EQ(shifted, std::vector<std::uint8_t>(base.begin() + shift, base.end()));
    EXPECT_NE(shifted, std::vector<std::uint8_t>(base.begin(), base.end() - shift)) << "offset changes the mask";
  }
  EXPECT_NE(mask_of({.p = 0.5f, .seed = 8, .offset = 0}, n), base) << "seed changes the mask";
  EXPECT_NE(mask_of({.p = 0.5f, .seed = 7, .offset = static_cast<std::uint64_t>(n)}, n), base)
      << "the next call's offset gives a fresh mask";
}

// An offset read from the device (as a CUDA graph's replay hook writes it) gives the mask
// and outputs of the same host offset, aligned or not.
TEST(Dropout, DeviceOffsetEqualsHostOffset) {
  const cudaStream_t stream = current_stream();
  const std::int64_t n = 1031;
  const Tensor x = device_tensor(random_uniform(701, n), Shape{n}, stream);
  for (const std::int64_t offset : {std::int64_t{0}, std::int64_t{8}, std::int64_t{13}, std::int64_t{4000000000}}) {
    SCOPED_TRACE("offset " + std::to_string(offset));
    const auto host_offset = static_cast<std::uint64_t>(offset);
    const DropoutOutputs on_host = dropout_forward(x, {.p = 0.3f, .seed = 9, .offset = host_offset}, stream);
    const Tensor offset_device = Tensor::from_vector(std::vector<std::int64_t>{offset}, Shape{}).to_device(stream);
    const DropoutOutputs on_device =
        dropout_forward(x, {.p = 0.3f, .seed = 9, .offset_device = offset_device.data<std::int64_t>()}, stream);
    EXPECT_EQ(on_device.mask.to_vector<std::uint8_t>(stream), on_host.mask.to_vector<std::uint8_t>(stream));
    EXPECT_TRUE(testing::all_equal(on_device.y.to_vector<float>(stream), on_host.y.to_vector<float>(stream)));
  }
}

TEST(Dropout, PZeroIsIdentityAndPOneDropsEverything) {
  const cudaStream_t stream = current_stream();
  const Shape shape{3, 37};
  const std::vector<float> x = random_uniform(800, 111);
  const Tensor x_device = device_tensor(x, shape, stream);
  const Tensor dL_dy = device_tensor(random_uniform(801, 111), shape, stream);

  const DropoutOutputs identity = dropout_forward(x_device, {.p = 0.0f, .seed = 9}, stream);
  EXPECT_TRUE(testing::all_equal(identity.y.to_vector<float>(stream), x));
  EXPECT_EQ(identity.mask.to_vector<std::uint8_t>(stream), std::vector<std::uint8_t>(111, 1));
  EXPECT_TRUE(testing::all_equal(dropout_backward(dL_dy, identity.mask, {.p = 0.0f}, stream).to_vector<float>(stream),
                                 dL_dy.to_vector<float>(stream)));

  const DropoutOutputs zeros = dropout_forward(x_device, {.p = 1.0f, .seed = 9}, stream);
  EXPECT_TRUE(testing::all_equal(zeros.y.to_vector<float>(stream), std::vector<float>(111, 0.0f)));
  EXPECT_EQ(zeros.mask.to_vector<std::uint8_t>(stream), std::vector<std::uint8_t>(111, 0));
  EXPECT_TRUE(testing::all_equal(dropout_backward(dL_dy, zeros.mask, {.p = 1.0f}, stream).to_vector<float>(stream),
                                 std::vector<float>(111, 0.0f)));
}

TEST(Dropout, ExactWithSmallIntegers) {
  const cudaStream_t stream = current_stream();
  // p = 0.5: kept elements are doubled exactly.
  const std::vector<float> x = {1, -2, 3, -4, 5, -6, 7, -8, 9};
  const Shape shape{9};
  const DropoutParams params{.p = 0.5f, .seed = 10, .offset = 1};
  const DropoutOutputs outputs = dropout_forward(device_tensor(x, shape, stream), params, stream);
  const std::vector<std::uint8_t> mask = reference::dropout_mask(params.seed, params.offset, 9, params.p);
  std::vector<float> expected(9);
  for (std::size_t i = 0; i < 9; ++i) expected[i] = mask[i] != 0 ? 2 * x[i] : 0.0f;
  EXPECT_TRUE(testing::all_equal(outputs.y.to_vector<float>(stream), expected));
}

TEST(Dropout, NaNAndInfinityStayVisibleWhenDropped) {
  const cudaStream_t stream = current_stream();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> x(64, inf);
  const DropoutOutputs outputs = dropout_forward(device_tensor(x, Shape{64}, stream), {.p = 0.5f, .seed = 11}, stream);
  const std::vector<std::uint8_t> mask = outputs.mask.to_vector<std::uint8_t>(stream);
  const std::vector<float> y = outputs.y.to_vector<float>(stream);
  for (std::size_t i = 0; i < 64; ++i) {
    if (mask[i] != 0) {
      EXPECT_EQ(y[i], inf) << "at " << i;
    } else {
      EXPECT_TRUE(std::isnan(y[i])) << "inf * 0 is NaN, as in PyTorch, at " << i;
    }
  }
}

TEST(Dropout, BackwardMatchesFiniteDifferences) {
  const cudaStream_t stream = current_stream();
  const Shape shape{2, 3, 5};
  const DropoutParams params{.p = 0.4f, .seed = 12, .offset = 5};
  const std::vector<float> x = random_uniform(900, 30);
  const std::vector<float> dL_dy = random_uniform(901, 30);
  const DropoutOutputs outputs = dropout_forward(device_tensor(x, shape, stream), params, stream);
  const std::vector<std::uint8_t> mask = outputs.mask.to_vector<std::uint8_t>(stream);
  const std::vector<double> weights = doubles(dL_dy);
  const std::vector<double> numerical = testing::numerical_gradient(
      [&](std::span<const double> input) {
        return testing::weighted_sum(reference::dropout_forward(input, mask, params.p), weights);
      },
      doubles(x));
  const Tensor dL_dx = dropout_backward(device_tensor(dL_dy, shape, stream), outputs.mask, params, stream);
  EXPECT_TRUE(all_close(dL_dx.to_vector<float>(stream), numerical, Tolerance{.abs_tol = 1e-6, .rel_tol = 1e-6}));
}

TEST(Dropout, InPlaceAndUnalignedViews) {
  const cudaStream_t stream = current_stream();
  const DropoutParams params{.p = 0.3f, .seed = 13, .offset = 0};
  const std::vector<float> x = random_uniform(1000, 1001);
  // x and y one float past an aligned start: the element-wise path throughout.
  const Tensor x_view = device_tensor(x, Shape{1001}, stream).narrow(0, 1, 1000);
  Tensor y_storage = poisoned_tensor(Shape{1001}, stream);
  Tensor y_view = y_storage.narrow(0, 1, 1000);
  Tensor mask = poisoned_mask(Shape{1000}, stream);
  dropout_forward(x_view, y_view, mask, params, stream);
  const std::vector<std::uint8_t> expected_mask = reference::dropout_mask(params.seed, params.offset, 1000, params.p);
  EXPECT_EQ(mask.to_vector<std::uint8_t>(stream), expected_mask);
  const std::vector<double> expected =
      reference::dropout_forward(std::vector<double>(x.begin() + 1, x.end()), expected_mask, params.p);
  const std::vector<float> y = y_view.to_vector<float>(stream);
  EXPECT_TRUE(all_close(y, expected, kScaledTolerance));

  Tensor data = device_tensor(std::vector<float>(x.begin() + 1, x.end()), Shape{1000}, stream);
  Tensor in_place_mask = poisoned_mask(Shape{1000}, stream);
  dropout_forward(data, data, in_place_mask, params, stream);
  EXPECT_TRUE(all_close(data.to_vector<float>(stream), expected, kScaledTolerance));
  dropout_backward(data, in_place_mask, data, params, stream);
  EXPECT_TRUE(all_close(data.to_vector<float>(stream), reference::dropout_backward(expected, expected_mask, params.p),
                        Tolerance{.abs_tol = 0.0, .rel_tol = 6e-7}));
}

TEST(Dropout, EmptyTensorIsANoOp) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::empty(Shape{0, 4}, DType::f32, stream);
  const DropoutOutputs outputs = dropout_forward(x, {.p = 0.5f}, stream);
  EXPECT_EQ(outputs.y.numel(), 0);
  EXPECT_EQ(dropout_backward(x, outputs.mask, {.p = 0.5f}, stream).numel(), 0);
}

TEST(Dropout, BadArgumentsNameTheOpAndShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(Shape{2, 3}, DType::f32, stream);
  Tensor y = Tensor::empty(Shape{2, 3}, DType::f32, stream);
  Tensor mask = Tensor::empty(Shape{2, 3}, DType::u8, stream);
  for (const float p : {-0.1f, 1.5f, std::numeric_limits<float>::quiet_NaN()}) {
    SCOPED_TRACE("p " + std::to_string(p));
    EXPECT_NE(testing::invalid_argument_message([&] {
                dropout_forward(x, y, mask, {.p = p}, stream);
              }).find("dropout_forward: p must be in [0, 1]"),
              std::string::npos);
    EXPECT_NE(testing::invalid_argument_message([&] {
                dropout_backward(x, mask, y, {.p = p}, stream);
              }).find("dropout_backward: p must be in [0, 1]"),
              std::string::npos);
    EXPECT_THROW(dropout_scale(p), InvalidArgument);
  }
  Tensor wrong_mask = Tensor::empty(Shape{3, 2}, DType::u8, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              dropout_forward(x, y, wrong_mask, {}, stream);
            }).find("dropout_forward: mask must have shape (2, 3), got (3, 2)"),
            std::string::npos);
  Tensor float_mask = Tensor::empty(Shape{2, 3}, DType::f32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              dropout_backward(x, float_mask, y, {}, stream);
            }).find("dropout_backward: mask must have dtype u8"),
            std::string::npos);
  Tensor wrong_y = Tensor::empty(Shape{6}, DType::f32, stream);
  EXPECT_NE(testing::invalid_argument_message([&] {
              dropout_forward(x, wrong_y, mask, {}, stream);
            }).find("dropout_forward: y must have shape (2, 3), got (6)"),
            std::string::npos);
}

// ---- f16 and bf16 ------------------------------------------------------------------------

class ReducedDropout : public ::testing::TestWithParam<DType> {};

// The mask depends only on (seed, offset, i), so it is the f32 run's; x * scale is computed
// in f32 from the rounded x and rounded once.
TEST_P(ReducedDropout, SameMaskAsF32AndOneRounding) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const Tolerance tolerance = testing::storage_tolerance(dtype, kScaledTolerance);
  const std::vector<std::pair<Shape, DropoutParams>> cases = {
      {Shape{7}, {.p = 0.3f, .seed = 2, .offset = 3}},
      {Shape{2, 3, 5, 7}, {.p = 0.2f, .seed = 3, .offset = 8}},
      {Shape{1001}, {.p = 0.75f, .seed = 5, .offset = 2}},
  };
  std::uint64_t seed = 900;
  for (const auto& [shape, params] : cases) {
    SCOPED_TRACE("shape " + shape.to_string() + ", offset " + std::to_string(params.offset));
    const auto count = static_cast<std::size_t>(shape.numel());
    const testing::RoundedTensor x = testing::rounded_device(random_uniform(seed++, count), shape, dtype, stream);
    const testing::RoundedTensor dL_dy = testing::rounded_device(random_uniform(seed++, count), shape, dtype, stream);
    Tensor y = testing::poisoned_storage(shape, dtype, stream);
    Tensor mask = poisoned_mask(shape, stream);
    dropout_forward(x.tensor, y, mask, params, stream);
    const std::vector<std::uint8_t> expected_mask =
        reference::dropout_mask(params.seed, params.offset, count, params.p);
    EXPECT_EQ(mask.to_vector<std::uint8_t>(stream), expected_mask);
    EXPECT_TRUE(all_close(testing::storage_values(y, stream),
                          reference::dropout_forward(doubles(x.values), expected_mask, params.p), tolerance));
    Tensor dL_dx = testing::poisoned_storage(shape, dtype, stream);
    dropout_backward(dL_dy.tensor, mask, dL_dx, params, stream);
    EXPECT_TRUE(all_close(testing::storage_values(dL_dx, stream),
                          reference::dropout_backward(doubles(dL_dy.values), expected_mask, params.p), tolerance));
    const DropoutOutputs outputs = dropout_forward(x.tensor, params, stream);
    EXPECT_EQ(outputs.y.dtype(), dtype);
    EXPECT_EQ(outputs.mask.to_vector<std::uint8_t>(stream), expected_mask);
  }
}

TEST_P(ReducedDropout, MismatchedDtypesNameBothOperands) {
  const DType dtype = GetParam();
  const cudaStream_t stream = current_stream();
  const Tensor x = Tensor::zeros(Shape{2, 3}, dtype, stream);
  Tensor f32 = Tensor::empty(Shape{2, 3}, DType::f32, stream);
  Tensor mask = Tensor::empty(Shape{2, 3}, DType::u8, stream);
  const std::string message =
      testing::invalid_argument_message([&] { dropout_forward(x, f32, mask, {.p = 0.5f}, stream); });
  EXPECT_NE(message.find("dropout_forward: y has dtype f32 but x has dtype " + std::string(dtype_name(dtype))),
            std::string::npos)
      << message;
  EXPECT_NE(testing::invalid_argument_message([&] {
              dropout_backward(x, mask, f32, {.p = 0.5f}, stream);
            }).find("dropout_backward: dL_dx has dtype f32 but dL_dy has dtype"),
            std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(F16AndBf16, ReducedDropout, ::testing::ValuesIn(testing::kReducedDtypes),
                         testing::dtype_param_name);

}  // namespace
}  // namespace strata::kernels
