// softmax and log-softmax on cuDNN (kernels/cudnn/softmax_cudnn.h) against the custom kernels:
// forward and backward of both on a grid of shapes (airbench94's and ResNet-18's logits, one
// class, odd sizes, rows wider than a block, rank 1 and rank 3, logits large enough to
// overflow without the max subtraction). Skipped where cuDNN is not available (the simulator
// build, a mismatched library) or there is no GPU; the simulator's own checks are in
// tests/layers/engine_softmax_batch_norm_test.cpp.
//
// Tolerance: both engines compute in fp32, summing a row's C terms (exponentials; dL/dy * y;
// dL/dy) in different orders, with possibly different exp implementations, so they differ
// by rounding: every element must satisfy |custom - cudnn| <= 1e-5 * sqrt(C) * max |cudnn|,
// as the conv2d parity test with the reduction length C. A wrong row, a missed term or a
// backward of the other function gives differences of order max |cudnn|.
//
// f16 and bf16: both engines compute in fp32 and round each output once, so two results may
// differ by one unit in the last place of the dtype (2 * storage_rel_tol relative) beyond the
// fp32 bound; both backwards then read the same y, so the forward's rounding does not carry.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/cudnn/softmax_cudnn.h"
#include "strata/core/engine.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/softmax.h"
#include "tests/kernels/device_values.h"
#include "tests/support/cudnn_test.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using testing::agree_to_rounding;
using testing::poisoned_tensor;
using testing::random_device;

struct ParityCase {
  Shape x;             // (..., C)
  float scale = 1.0f;  // logits uniform in [-scale, scale)
};

const std::vector<ParityCase>& parity_cases() {
  static const std::vector<ParityCase> cases = {
      {{1024, 10}},        // airbench94's logits
      {{128, 10}},         // ResNet-18 on CIFAR
      {{333, 1001}},       // odd rows, wider than a warp and a block
      {{7, 1}},            // one class: softmax 1, log_softmax 0, gradients 0
      {{3, 5, 17}},        // rank 3: over the last dimension
      {{4097}},            // rank 1: one row
      {{65537, 3}},        // many short rows
      {{64, 10}, 40.0f},   // exp(80) overflows fp32 without the max subtraction
      {{2, 4099}, 20.0f},  // long rows of spread logits
  };
  return cases;
}

using SoftmaxCudnnParityTest = testing::CudnnTest;

using Forward = void (*)(const Tensor&, Tensor&, cudaStream_t);
using Backward = void (*)(const Tensor&, const Tensor&, Tensor&, cudaStream_t);

struct Engines {
  const char* name;
  Forward forward_custom, forward_cudnn;
  Backward backward_custom, backward_cudnn;
};

void check_parity(const Engines& op, const ParityCase& c, std::uint64_t seed) {
  SCOPED_TRACE(std::string(op.name) + " x " + c.x.to_string());
  const cudaStream_t stream = current_stream();
  ASSERT_EQ(softmax_cudnn_refusal(c.x), "");
  const std::int64_t classes = c.x[c.x.rank() - 1];
  const Tensor x = random_device(seed, c.x, -c.scale, c.scale);
  const Tensor dL_dy = random_device(seed + 1, c.x);

  Tensor y_custom = poisoned_tensor(c.x, stream);
  Tensor y_cudnn = poisoned_tensor(c.x, stream);
  op.forward_custom(x, y_custom, stream);
  op.forward_cudnn(x, y_cudnn, stream);
  const std::vector<float> y = y_cudnn.to_vector<float>(stream);
  EXPECT_TRUE(agree_to_rounding(y_custom.to_vector<float>(stream), y, classes)) << "forward";

  // Each backward from its own engine's forward output, as autograd runs them.
  Tensor dL_dx_custom = poisoned_tensor(c.x, stream);
  Tensor dL_dx_cudnn = poisoned_tensor(c.x, stream);
  op.backward_custom(dL_dy, y_custom, dL_dx_custom, stream);
  op.backward_cudnn(dL_dy, y_cudnn, dL_dx_cudnn, stream);
  EXPECT_TRUE(agree_to_rounding(dL_dx_custom.to_vector<float>(stream), dL_dx_cudnn.to_vector<float>(stream), classes))
      << "backward";
}

const Engines kSoftmax{"softmax", softmax_forward, softmax_cudnn_forward, softmax_backward, softmax_cudnn_backward};
const Engines kLogSoftmax{"log_softmax", log_softmax_forward, log_softmax_cudnn_forward, log_softmax_backward,
                          log_softmax_cudnn_backward};

TEST_F(SoftmaxCudnnParityTest, SoftmaxForwardAndBackwardMatchTheCustomKernels) {
  std::uint64_t seed = 100;
  for (const ParityCase& c : parity_cases()) check_parity(kSoftmax, c, seed += 10);
}

TEST_F(SoftmaxCudnnParityTest, LogSoftmaxForwardAndBackwardMatchTheCustomKernels) {
  std::uint64_t seed = 300;
  for (const ParityCase& c : parity_cases()) check_parity(kLogSoftmax, c, seed += 10);
}

// The parity check in dtype: outputs compared within one unit in the last place of dtype.
void check_reduced_parity(const Engines& op, const ParityCase& c, DType dtype, std::uint64_t seed) {
  SCOPED_TRACE(std::string(op.name) + " in " + std::string(dtype_name(dtype)) + " x " + c.x.to_string());
  const cudaStream_t stream = current_stream();
  ASSERT_EQ(softmax_cudnn_refusal(c.x), "");
  const std::int64_t classes = c.x[c.x.rank() - 1];
  const Tensor x = random_device(seed, c.x, -c.scale, c.scale).to_dtype(dtype, stream);
  const Tensor dL_dy = random_device(seed + 1, c.x).to_dtype(dtype, stream);
  const auto agree = [&](const Tensor& custom, const Tensor& cudnn) {
    const std::vector<float> expected = testing::storage_values(cudnn, stream);
    double largest = 1e-30;
    for (const float value : expected) largest = std::max(largest, static_cast<double>(std::fabs(value)));
    const double ulp = 2.0 * testing::storage_rel_tol(dtype);
    return testing::all_close(testing::storage_values(custom, stream),
                              std::vector<double>(expected.begin(), expected.end()),
                              {.abs_tol = (1e-5 * std::sqrt(static_cast<double>(classes)) + ulp) * largest,
                               .rel_tol = ulp});
  };
  Tensor y_custom = testing::poisoned_storage(c.x, dtype, stream);
  Tensor y_cudnn = testing::poisoned_storage(c.x, dtype, stream);
  op.forward_custom(x, y_custom, stream);
  op.forward_cudnn(x, y_cudnn, stream);
  EXPECT_TRUE(agree(y_custom, y_cudnn)) << "forward";
  Tensor dL_dx_custom = testing::poisoned_storage(c.x, dtype, stream);
  Tensor dL_dx_cudnn = testing::poisoned_storage(c.x, dtype, stream);
  op.backward_custom(dL_dy, y_cudnn, dL_dx_custom, stream);
  op.backward_cudnn(dL_dy, y_cudnn, dL_dx_cudnn, stream);
  EXPECT_TRUE(agree(dL_dx_custom, dL_dx_cudnn)) << "backward";
}

TEST_F(SoftmaxCudnnParityTest, ReducedDtypesMatchTheCustomKernels) {
  std::uint64_t seed = 500;
  for (const DType dtype : testing::kReducedDtypes) {
    for (const Engines* op : {&kSoftmax, &kLogSoftmax}) {
      for (const ParityCase& c : parity_cases()) check_reduced_parity(*op, c, dtype, seed += 10);
    }
  }
}

TEST_F(SoftmaxCudnnParityTest, RepeatsBitIdentically) {
  const cudaStream_t stream = current_stream();
  const Shape shape{333, 1001};
  const Tensor x = random_device(7, shape);
  const Tensor dL_dy = random_device(8, shape);
  const auto run = [&] {
    Tensor y = poisoned_tensor(shape, stream);
    Tensor dL_dx = poisoned_tensor(shape, stream);
    log_softmax_cudnn_forward(x, y, stream);
    log_softmax_cudnn_backward(dL_dy, y, dL_dx, stream);
    return testing::bit_patterns(dL_dx.to_vector<float>(stream));
  };
  EXPECT_EQ(run(), run());
}

}  // namespace
}  // namespace strata::kernels
