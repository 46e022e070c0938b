// CudaGraph: kernels captured through Strata's launchers and replayed on static inputs
// (compared bit for bit with eager runs), temporaries allocated inside the capture (from the
// graph's pool, the same memory at every replay), calls forbidden during capture, a
// multi-stream capture with fork and join, and a learning rate read from a device scalar that
// changes between replays without a new capture.
#include <cmath>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/allocator.h"
#include "strata/core/cuda_graph.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/elementwise.h"
#include "strata/kernels/optimizer_sgd.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::all_equal;
using testing::device_tensor;
using testing::poisoned_tensor;
using testing::random_uniform;

const Shape kShape{3, 5, 7};  // odd sizes: partial blocks
constexpr std::size_t kCount = 3 * 5 * 7;

class CudaGraphTest : public testing::DeviceTest {
 protected:
  // Refills a tensor in place, outside any capture, and waits for the copy.
  void refill(Tensor& tensor, const std::vector<float>& values) {
    tensor.copy_from_host_async(std::span<const float>(values), stream_);
    stream_synchronize(stream_);
  }

  Stream stream_;
};

// y = -2 * (a + 0.5 * b), eagerly, into a fresh tensor.
Tensor eager_reference(const Tensor& a, const Tensor& b, cudaStream_t stream) {
  Tensor y = kernels::add_forward(a, b, {.alpha = 0.5f}, stream);
  kernels::scale(y, y, {.factor = -2.0f}, stream);
  return y;
}

TEST_F(CudaGraphTest, ReplaysCapturedKernelsOnStaticInputs) {
  Tensor a = device_tensor(random_uniform(1, kCount), kShape, stream_);
  Tensor b = device_tensor(random_uniform(2, kCount), kShape, stream_);
  Tensor y = poisoned_tensor(kShape, stream_);
  stream_synchronize(stream_);
  CudaGraph graph;
  graph.capture(stream_, [&] {
    kernels::add_forward(a, b, y, {.alpha = 0.5f}, stream_);
    kernels::scale(y, y, {.factor = -2.0f}, stream_);
  });
  ASSERT_TRUE(graph.captured());
  EXPECT_EQ(graph.node_count(), 2u);
  EXPECT_TRUE(std::isnan(y.to_vector<float>(stream_)[0])) << "captured kernels must not run at capture time";

  for (std::uint64_t replay = 0; replay < 3; ++replay) {
    refill(a, random_uniform(10 + replay, kCount));
    refill(b, random_uniform(20 + replay, kCount, -4.0f, 4.0f));
    graph.replay(stream_);
    const std::vector<float> expected = eager_reference(a, b, stream_).to_vector<float>(stream_);
    EXPECT_TRUE(all_equal(y.to_vector<float>(stream_), expected)) << "replay " << replay;
  }
}

TEST_F(CudaGraphTest, TemporariesComeFromTheGraphPoolAndKeepTheirMemory) {
  Tensor a = device_tensor(random_uniform(3, kCount), kShape, stream_);
  Tensor b = device_tensor(random_uniform(4, kCount), kShape, stream_);
  Tensor y = poisoned_tensor(kShape, stream_);
  stream_synchronize(stream_);
  const int device = current_device();
  const void* first_temporary = nullptr;
  const void* second_temporary = nullptr;
  CudaGraph graph;
  graph.capture(stream_, [&] {
    {
      Tensor sum = kernels::add_forward(a, b, {.alpha = 0.5f}, stream_);  // freed within the capture
      first_temporary = sum.data<float>();
      kernels::scale(sum, y, {.factor = -2.0f}, stream_);
    }
    // Stream order makes the block just freed safe to reuse later in the same capture.
    Tensor again = Tensor::empty(kShape, DType::f32, stream_);
    second_temporary = again.data<float>();
    kernels::scale(y, again, {.factor = 1.0f}, stream_);
    kernels::scale(again, y, {.factor = 1.0f}, stream_);
  });
  EXPECT_EQ(second_temporary, first_temporary);
  EXPECT_GE(graph.memory_pool_bytes(), kCount * sizeof(float));
  EXPECT_EQ(device_memory_stats(device).graph_pool_bytes, graph.memory_pool_bytes());

  // The graph's memory is not handed to anyone else while the graph lives.
  Tensor outside = Tensor::empty(kShape, DType::f32, stream_);
  EXPECT_NE(outside.data<float>(), first_temporary);

  const DeviceMemoryStats before_replays = device_memory_stats(device);
  for (std::uint64_t replay = 0; replay < 3; ++replay) {
    refill(a, random_uniform(30 + replay, kCount));
    graph.replay(stream_);
    const std::vector<float> expected = eager_reference(a, b, stream_).to_vector<float>(stream_);
    EXPECT_TRUE(all_equal(y.to_vector<float>(stream_), expected)) << "replay " << replay;
  }
  EXPECT_EQ(device_memory_stats(device).graph_pool_bytes, before_replays.graph_pool_bytes);

  // Without the graph, the pool's blocks are ordinary cached blocks: emptying the cache
  // returns them to CUDA.
  const std::size_t pool_bytes = graph.memory_pool_bytes();
  const std::size_t reserved_with_graph = device_memory_stats(device).reserved_bytes;
  graph = CudaGraph();
  EXPECT_EQ(device_memory_stats(device).graph_pool_bytes, 0u);
  empty_device_cache();
  EXPECT_LE(device_memory_stats(device).reserved_bytes, reserved_with_graph - pool_bytes);
}

TEST_F(CudaGraphTest, ACallForbiddenDuringCaptureThrowsAndLeavesNoGraph) {
  Tensor a = device_tensor(random_uniform(5, kCount), kShape, stream_);
  CudaGraph graph;
  EXPECT_THAT([&] { graph.capture(stream_, [&] {
                  kernels::scale(a, a, {.factor = 2.0f}, stream_);
                  stream_synchronize(stream_);
                }); },
              ::testing::ThrowsMessage<CudaError>(AllOf(HasSubstr("CudaGraph::capture"),
                                                        HasSubstr("no graph was kept"),
                                                        HasSubstr("cudaErrorStreamCaptureUnsupported"))));
  EXPECT_FALSE(graph.captured());
  EXPECT_THAT([&] { graph.capture(stream_, [&] { static_cast<void>(a.to_vector<float>(stream_)); }); },
              ::testing::ThrowsMessage<CudaError>(HasSubstr("cudaErrorStreamCaptureUnsupported")));
  // An error of Strata's own keeps its type.
  Tensor wrong_shape = Tensor::empty(Shape{2, 2}, DType::f32, stream_);
  EXPECT_THAT([&] { graph.capture(stream_, [&] { kernels::scale(a, wrong_shape, {}, stream_); }); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("CudaGraph::capture")));
  EXPECT_THROW(graph.replay(stream_), InvalidArgument);

  // The stream works eagerly again, and a later capture succeeds.
  const std::vector<float> before = a.to_vector<float>(stream_);
  kernels::scale(a, a, {.factor = 2.0f}, stream_);
  const std::vector<float> doubled = a.to_vector<float>(stream_);
  for (std::size_t i = 0; i < kCount; ++i) ASSERT_EQ(doubled[i], 2.0f * before[i]) << "element " << i;
  graph.capture(stream_, [&] { kernels::scale(a, a, {.factor = 0.5f}, stream_); });
  graph.replay(stream_);
  EXPECT_TRUE(all_equal(a.to_vector<float>(stream_), before));
}

// main: sum = a + b; fork: side: left = 3 * (sum + sum); main: right = -sum; join: out = left + right.
TEST_F(CudaGraphTest, AForkJoinCaptureOverTwoStreamsReplaysCorrectly) {
  Stream side;
  Event forked;
  Event joined;
  Tensor a = device_tensor(random_uniform(6, kCount), kShape, stream_);
  Tensor b = device_tensor(random_uniform(7, kCount), kShape, stream_);
  Tensor out = poisoned_tensor(kShape, stream_);
  stream_synchronize(stream_);
  CudaGraph graph;
  graph.capture(stream_, [&] {
    Tensor sum = kernels::add_forward(a, b, {}, stream_);
    forked.record(stream_);
    side.wait(forked);
    Tensor twice = kernels::add_forward(sum, sum, {}, side);  // allocated on the joined stream
    Tensor left = Tensor::empty(kShape, DType::f32, side);
    kernels::scale(twice, left, {.factor = 3.0f}, side);
    Tensor right = Tensor::empty(kShape, DType::f32, stream_);
    kernels::scale(sum, right, {.factor = -1.0f}, stream_);
    joined.record(side);
    stream_wait(stream_, joined);
    kernels::add_forward(left, right, out, {}, stream_);
  });
  EXPECT_EQ(graph.node_count(), 5u);

  for (std::uint64_t replay = 0; replay < 3; ++replay) {
    refill(a, random_uniform(40 + replay, kCount));
    refill(b, random_uniform(50 + replay, kCount));
    graph.replay(stream_);
    const std::vector<float> a_values = a.to_vector<float>(stream_);
    const std::vector<float> b_values = b.to_vector<float>(stream_);
    const std::vector<float> result = out.to_vector<float>(stream_);
    for (std::size_t i = 0; i < kCount; ++i) {
      const float sum = a_values[i] + b_values[i];
      ASSERT_EQ(result[i], 3.0f * (sum + sum) + -sum) << "replay " << replay << ", element " << i;
    }
  }
}

TEST_F(CudaGraphTest, TheLearningRateOfACapturedSgdStepChangesWithoutRecapture) {
  std::vector<Tensor> parameters{device_tensor(random_uniform(8, kCount), kShape, stream_)};
  const std::vector<Tensor> gradients{device_tensor(random_uniform(9, kCount), kShape, stream_)};
  Tensor lr = device_tensor(std::vector<float>{0.0f}, Shape{}, stream_);
  stream_synchronize(stream_);
  CudaGraph step;
  step.capture(stream_, [&] {
    kernels::sgd_step({.parameters = parameters, .gradients = gradients, .momentum_buffers = {}},
                      {.lr_device = lr.data<float>()}, kernels::MomentumBuffers::uninitialized, stream_);
  });
  const std::vector<float> gradient = gradients[0].to_vector<float>(stream_);
  for (const float learning_rate : {0.1f, 0.01f, 0.5f}) {
    refill(lr, {learning_rate});
    const std::vector<float> before = parameters[0].to_vector<float>(stream_);
    step.replay(stream_);
    const std::vector<float> after = parameters[0].to_vector<float>(stream_);
    for (std::size_t i = 0; i < kCount; ++i) {
      ASSERT_EQ(after[i], std::fmaf(-learning_rate, gradient[i], before[i])) << "lr " << learning_rate << ", element " << i;
    }
  }
}

}  // namespace
}  // namespace strata
