// graph::run_op as the library uses it: every Tensor op on device memory records one op with
// its reads and writes (host-only work records nothing); device work queued outside a body
// while recording is refused; ops nested in a body are part of it; and replaying the
// recorded bodies after the inputs changed computes what a fresh eager run computes.
#include <cstdint>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/tensor_ops.h"
#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/gemm.h"
#include "strata/core/op.h"
#include "strata/core/random.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/layers/functional.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#include "tests/support/recording_sink.h"

namespace strata {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::ThrowsMessage;
using graph::detail::RecordedOp;
using testing::RecordingSink;
using OpTest = testing::DeviceTest;

// The same window of the same memory: what a recorded read or write must name.
bool same_tensor(const Tensor& a, const Tensor& b) {
  return a.data_ptr() == b.data_ptr() && a.shape() == b.shape() && a.dtype() == b.dtype();
}

::testing::AssertionResult accesses(const std::vector<Tensor>& recorded, const std::vector<Tensor>& expected) {
  if (recorded.size() != expected.size()) {
    return ::testing::AssertionFailure() << recorded.size() << " tensors recorded, expected " << expected.size();
  }
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (!same_tensor(recorded[i], expected[i])) {
      return ::testing::AssertionFailure() << "tensor " << i << " is " << recorded[i] << ", expected "
                                           << expected[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// The one op sink recorded; fails the test unless there is exactly one, named name.
const RecordedOp& only_op(const RecordingSink& sink, const std::string& name) {
  EXPECT_THAT(sink.names(), ElementsAre(name));
  static const RecordedOp none;
  return sink.ops.empty() ? none : sink.ops.front();
}

Tensor random_device_tensor(const Shape& shape, std::uint64_t seed, cudaStream_t stream) {
  Tensor tensor = Tensor::empty(shape, DType::f32, stream);
  fill_uniform(tensor, {.low = -1.0f, .high = 1.0f, .seed = seed}, stream);
  return tensor;
}

TEST_F(OpTest, FillAndZerosRecordAWriteOfTheTensor) {
  Stream stream;
  Tensor tensor = Tensor::empty({3, 5}, DType::f32, stream);
  {
    RecordingSink sink;
    tensor.fill(2.5, stream);
    const RecordedOp& op = only_op(sink, "fill");
    EXPECT_THAT(op.reads, IsEmpty());
    EXPECT_TRUE(accesses(op.writes, {tensor}));
    EXPECT_EQ(op.phase, graph::Phase::forward);
  }
  {
    RecordingSink sink;
    Tensor zeros = Tensor::zeros({7}, DType::i64, stream);
    EXPECT_TRUE(accesses(only_op(sink, "fill").writes, {zeros}));
  }
  {
    RecordingSink sink;
    Tensor rows = tensor.narrow(0, 1, 2);  // a view: the op names the window it writes
    rows.fill(1.0, stream);
    EXPECT_TRUE(accesses(only_op(sink, "fill").writes, {rows}));
  }
}

TEST_F(OpTest, CopiesRecordSourceAndDestination) {
  Stream stream;
  Tensor source = random_device_tensor({4, 3}, 1, stream);
  Tensor destination = Tensor::empty({4, 3}, DType::f32, stream);
  Tensor host = Tensor::empty_host({4, 3}, DType::f32);
  {
    RecordingSink sink;
    destination.copy_from(source, stream);
    const RecordedOp& op = only_op(sink, "copy");
    EXPECT_TRUE(accesses(op.reads, {source}));
    EXPECT_TRUE(accesses(op.writes, {destination}));
  }
  {
    RecordingSink sink;
    host.copy_from(source, stream);  // device to host
    const RecordedOp& op = only_op(sink, "copy");
    EXPECT_TRUE(accesses(op.reads, {source}));
    EXPECT_TRUE(accesses(op.writes, {host}));
  }
  {
    RecordingSink sink;
    destination.copy_from(host, stream);  // host to device
    const RecordedOp& op = only_op(sink, "copy");
    EXPECT_TRUE(accesses(op.reads, {host}));
    EXPECT_TRUE(accesses(op.writes, {destination}));
  }
  {
    RecordingSink sink;
    Tensor on_device = host.to_device(stream);
    const RecordedOp& op = only_op(sink, "copy");
    EXPECT_TRUE(accesses(op.reads, {host}));
    EXPECT_TRUE(accesses(op.writes, {on_device}));
  }
  stream.synchronize();
}

TEST_F(OpTest, CopiesFromAndToRawHostMemoryRecordTheDeviceTensor) {
  Stream stream;
  Tensor tensor = Tensor::empty({5}, DType::f32, stream);
  const std::vector<float> values = testing::random_uniform(2, 5);
  std::vector<float> back(5);
  {
    RecordingSink sink;
    tensor.copy_from_host_async(std::span<const float>(values), stream);
    const RecordedOp& op = only_op(sink, "copy_from_host");
    EXPECT_THAT(op.reads, IsEmpty());
    EXPECT_TRUE(accesses(op.writes, {tensor}));
  }
  {
    RecordingSink sink;
    tensor.copy_to_host_async(std::span<float>(back), stream);
    const RecordedOp& op = only_op(sink, "copy_to_host");
    EXPECT_TRUE(accesses(op.reads, {tensor}));
    EXPECT_THAT(op.writes, IsEmpty());
  }
  stream.synchronize();
  EXPECT_EQ(back, values);
}

TEST_F(OpTest, ConversionsAdditionsAndRandomFillsRecordTheirTensors) {
  Stream stream;
  Tensor a = random_device_tensor({6}, 3, stream);
  Tensor b = random_device_tensor({6}, 4, stream);
  {
    RecordingSink sink;
    Tensor converted = a.to_dtype(DType::bf16, stream);
    const RecordedOp& op = only_op(sink, "to_dtype");
    EXPECT_TRUE(accesses(op.reads, {a}));
    EXPECT_TRUE(accesses(op.writes, {converted}));
  }
  {
    RecordingSink sink;
    a.add_(b, 0.5f, stream);
    const RecordedOp& op = only_op(sink, "add_");
    EXPECT_TRUE(accesses(op.reads, {a, b}));
    EXPECT_TRUE(accesses(op.writes, {a}));
  }
  {
    RecordingSink sink;
    fill_uniform(a, {.seed = 5}, stream);
    fill_normal(b, {.seed = 6}, stream);
    EXPECT_THAT(sink.names(), ElementsAre("fill_uniform", "fill_normal"));
    ASSERT_EQ(sink.ops.size(), 2U);
    EXPECT_TRUE(accesses(sink.ops[0].writes, {a}));
    EXPECT_TRUE(accesses(sink.ops[1].writes, {b}));
  }
}

TEST_F(OpTest, HostTensorsRecordNothing) {
  Stream stream;
  Tensor host = Tensor::empty_host({4}, DType::f32);
  Tensor other = Tensor::empty_host({4}, DType::f32);
  RecordingSink sink;
  host.fill(1.0, stream);
  fill_uniform(host, {.seed = 1}, stream);
  other.copy_from(host, stream);
  const std::vector<float> values{1.0f, 2.0f, 3.0f, 4.0f};
  host.copy_from_host_async(std::span<const float>(values), stream);
  EXPECT_THAT(sink.ops, IsEmpty());
}

TEST_F(OpTest, RecordsTheScopeAndPhaseOfTheCaller) {
  Stream stream;
  Tensor tensor = Tensor::empty({2}, DType::f32, stream);
  RecordingSink sink;
  {
    const autograd::ScopeGuard scope("features.3");
    const graph::PhaseGuard phase(graph::Phase::backward);
    tensor.fill(0.0, stream);
  }
  tensor.fill(1.0, stream);
  ASSERT_EQ(sink.ops.size(), 2U);
  EXPECT_EQ(sink.ops[0].scope, "features.3");
  EXPECT_EQ(sink.ops[0].phase, graph::Phase::backward);
  EXPECT_EQ(sink.ops[1].scope, "");
  EXPECT_EQ(sink.ops[1].phase, graph::Phase::forward);
}

TEST_F(OpTest, BackwardRecordsItsOpsInTheBackwardPhase) {
  Stream stream;
  const StreamGuard on_stream(stream);
  Tensor x = random_device_tensor({2, 3}, 7, stream).set_requires_grad();
  Tensor y = F::relu(x);
  // y feeds two ops, so its gradient is a sum; the scalar root's seed is a fill.
  Tensor loss = F::add(F::mul(y, 2.0f), y).reshape({6});
  RecordingSink sink;
  loss.backward(Tensor::zeros({6}, DType::f32, stream));
  sink.stop();
  const std::vector<std::string> names = sink.names();
  EXPECT_EQ(names.front(), "fill");  // the dL_droot of this test, made before backward
  EXPECT_EQ(sink.ops.front().phase, graph::Phase::forward);
  for (std::size_t i = 1; i < sink.ops.size(); ++i) {
    SCOPED_TRACE(names[i]);
    EXPECT_EQ(sink.ops[i].phase, graph::Phase::backward);
  }
  EXPECT_THAT(names, ::testing::Contains("sum_gradients"));
  EXPECT_THAT(names, ::testing::Contains("relu_backward"));
  EXPECT_EQ(graph::current_phase(), graph::Phase::forward);
}

TEST_F(OpTest, KernelsAndGemmsOutsideAnOpThrowWhileRecording) {
  Stream stream;
  Tensor tensor = Tensor::empty({8}, DType::f32, stream);
  RecordingSink sink;
  EXPECT_THAT([&] { detail::launch_fill(tensor.data_ptr(), DType::f32, 8, 1.0, stream); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("kernel fill was queued outside graph::run_op while a graph is being recorded")));
  Tensor c = Tensor::empty({2, 2}, DType::f32, stream);
  const GemmArgs args{.m = 2, .n = 2, .k = 2, .a = tensor.data<float>(), .lda = 2, .b = tensor.data<float>(),
                      .ldb = 2, .c = c.data<float>(), .ldc = 2};
  EXPECT_THAT([&] { gemm(args, stream); }, ThrowsMessage<InvalidArgument>(HasSubstr("a GEMM")));
  EXPECT_THAT(sink.ops, IsEmpty());

  // The same calls inside a body are fine.
  EXPECT_NO_THROW(graph::run_op_on(stream, "fill_and_multiply", {tensor}, {tensor, c}, [&](cudaStream_t s) {
    detail::launch_fill(tensor.data_ptr(), DType::f32, 8, 1.0, s);
    gemm(args, s);
  }));
  EXPECT_THAT(sink.names(), ElementsAre("fill_and_multiply"));
  sink.stop();
  EXPECT_EQ(c.to_vector<float>(stream), std::vector<float>(4, 2.0f));
}

TEST_F(OpTest, OpsInsideABodyArePartOfIt) {
  Stream stream;
  Tensor tensor = Tensor::empty({3}, DType::f32, stream);
  RecordingSink sink;
  graph::run_op_on(stream, "outer", {}, {tensor}, [tensor](cudaStream_t s) mutable {
    tensor.fill(1.0, s);
    tensor.add_(tensor, 1.0f, s);
  });
  EXPECT_THAT(sink.names(), ElementsAre("outer"));
  sink.stop();
  tensor.fill(0.0, stream);
  sink.replay(stream);  // the nested ops run once each: 1 + 1
  EXPECT_EQ(tensor.to_vector<float>(stream), std::vector<float>(3, 2.0f));
}

TEST_F(OpTest, RunOpOnMakesTheStreamCurrentForTheBody) {
  Stream stream;
  cudaStream_t seen = nullptr;
  graph::run_op_on(stream, "look", {}, {}, [&](cudaStream_t s) {
    EXPECT_EQ(s, stream.get());
    seen = current_stream();
  });
  EXPECT_EQ(seen, stream.get());
  EXPECT_NE(current_stream(), stream.get());
}

// relu(conv2d(x)): record once, change x, replay the bodies: the same bits as computing it
// again eagerly from the new x.
TEST_F(OpTest, ReplayingRecordedBodiesRecomputesFromTheCurrentInputs) {
  Stream stream;
  const StreamGuard on_stream(stream);
  Tensor x = random_device_tensor({2, 3, 7, 5}, 11, stream);  // (N, C, H, W)
  Tensor weight = random_device_tensor({4, 3, 3, 3}, 12, stream);
  Tensor bias = random_device_tensor({4}, 13, stream);
  RecordingSink sink;
  Tensor y = F::relu(F::conv2d(x, weight, bias, {.padding = 1}));  // (N, K, H, W)
  sink.stop();
  EXPECT_THAT(sink.names(), ElementsAre("conv2d_forward", "relu_forward"));
  EXPECT_TRUE(accesses(sink.ops[0].reads, {x, weight, bias}));
  EXPECT_TRUE(accesses(sink.ops[1].writes, {y}));

  fill_uniform(x, {.low = -2.0f, .high = 2.0f, .seed = 99}, stream);
  y.fill(testing::poison_value(), stream);
  sink.replay(stream);
  const Tensor expected = F::relu(F::conv2d(x, weight, bias, {.padding = 1}));
  EXPECT_TRUE(testing::all_equal(y.to_vector<float>(stream), expected.to_vector<float>(stream)));
}

}  // namespace
}  // namespace strata
