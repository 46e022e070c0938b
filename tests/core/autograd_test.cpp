// The autograd engine on small hand-made ops (kernels::scale and kernels::add recorded with
// autograd::record): gradients of chains, diamonds and views, accumulation into leaves,
// each node run once and its saved state freed, retain_graph, grad mode, and the errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "strata/core/autograd.h"
#include "strata/core/errors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/elementwise.h"
#include "strata/layers/functional.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"

namespace strata::autograd {
namespace {

using ::testing::HasSubstr;
using ::testing::ThrowsMessage;
using AutogradTest = testing::DeviceTest;

Tensor device_values(const std::vector<float>& values, const Shape& shape) {
  return Tensor::from_vector(values, shape).to_device(current_stream());
}

// y = factor * x in x's dtype, recording a node that counts its runs and holds a sentinel as
// "saved" state.
Tensor scaled(const Tensor& x, float factor, int* runs = nullptr, std::shared_ptr<int> sentinel = nullptr) {
  Tensor y = Tensor::empty(x.shape(), x.dtype(), current_stream());
  kernels::scale(x, y, {.factor = factor}, current_stream());
  if (needs_grad({x})) {
    record("ScaleBackward", {x}, y, [factor, runs, sentinel](Gradients dL_dy, cudaStream_t stream) {
      if (runs != nullptr) ++*runs;
      Tensor dL_dx = Tensor::empty(dL_dy[0].shape(), dL_dy[0].dtype(), stream);
      kernels::scale(dL_dy[0], dL_dx, {.factor = factor}, stream);
      return Gradients{dL_dx};
    });
  }
  return y;
}

// y = a + b; the backward hands dL_dy itself to both inputs.
Tensor added(const Tensor& a, const Tensor& b) {
  Tensor y = kernels::add_forward(a, b, {}, current_stream());
  if (needs_grad({a, b})) {
    record("AddBackward", {a, b}, y, [](Gradients dL_dy, cudaStream_t) { return Gradients{dL_dy[0], dL_dy[0]}; });
  }
  return y;
}

TEST_F(AutogradTest, LeavesAndFlags) {
  Tensor x = device_values({1, 2, 3}, {3});
  EXPECT_FALSE(x.requires_grad());
  EXPECT_TRUE(x.is_leaf());
  x.set_requires_grad();
  EXPECT_TRUE(x.requires_grad());
  Tensor copy = x;  // handles share autograd state
  EXPECT_TRUE(copy.requires_grad());
  EXPECT_FALSE(x.detach().requires_grad());
  EXPECT_TRUE(x.detach().shares_storage_with(x));
  EXPECT_FALSE(x.grad().defined());

  Tensor y = scaled(x, 2.0f);
  EXPECT_TRUE(y.requires_grad());
  EXPECT_FALSE(y.is_leaf());
  ASSERT_NE(y.grad_fn(), nullptr);
  EXPECT_EQ(y.grad_fn()->name(), "ScaleBackward");
  EXPECT_THAT([&] { y.set_requires_grad(false); },
              ThrowsMessage<InvalidArgument>(HasSubstr("produced by ScaleBackward; only leaves can be marked")));
  Tensor labels = Tensor::zeros({3}, DType::i64, current_stream());
  EXPECT_THAT([&] { labels.set_requires_grad(); },
              ThrowsMessage<InvalidArgument>(
                  HasSubstr("only floating-point tensors (f32, f16, bf16) can require gradients, not i64")));
  for (const DType reduced : {DType::f16, DType::bf16}) {
    Tensor leaf = Tensor::zeros({3}, reduced, current_stream()).set_requires_grad();
    EXPECT_TRUE(leaf.requires_grad()) << reduced;
  }
}

TEST_F(AutogradTest, ChainGivesTheProductOfFactorsAndAccumulatesAcrossCalls) {
  Tensor x = device_values({1, -2, 3, 0.5f}, {2, 2}).set_requires_grad();
  Tensor y = scaled(scaled(x, 3.0f), -0.5f);  // dy/dx = -1.5
  y.backward(device_values({1, 2, 3, 4}, {2, 2}));
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(-1.5f, -3.0f, -4.5f, -6.0f));

  Tensor again = scaled(x, 2.0f);
  again.backward(device_values({1, 1, 1, 1}, {2, 2}));
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(0.5f, -1.0f, -2.5f, -4.0f));
}

TEST_F(AutogradTest, DiamondSumsBothPathsAndRunsEveryNodeOnce) {
  Tensor x = device_values({1, 2}, {2}).set_requires_grad();
  int shared_runs = 0;
  int left_runs = 0;
  int right_runs = 0;
  Tensor shared = scaled(x, 2.0f, &shared_runs);
  Tensor y = added(scaled(shared, 3.0f, &left_runs), scaled(shared, 5.0f, &right_runs));  // y = 16 x
  y.backward(device_values({1, 0.25f}, {2}));
  EXPECT_EQ(shared_runs, 1);
  EXPECT_EQ(left_runs, 1);
  EXPECT_EQ(right_runs, 1);
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(16.0f, 4.0f));
}

TEST_F(AutogradTest, TensorUsedTwiceGetsTheSumAndTheGradientDoesNotAliasTheSeed) {
  Tensor x = device_values({1, 2}, {2}).set_requires_grad();
  Tensor dL_dy = device_values({1, 3}, {2});
  added(x, x).backward(dL_dy);
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(2.0f, 6.0f));

  Tensor z = device_values({5}, {1}).set_requires_grad();
  Tensor seed = device_values({7}, {1});
  scaled(z, 1.0f).backward(seed);
  seed.fill(0.0, current_stream());  // the caller's tensor is theirs to change
  EXPECT_THAT(z.grad().to_vector<float>(), ::testing::ElementsAre(7.0f));
}

TEST_F(AutogradTest, ViewsRouteGradientsBack) {
  Tensor x = device_values({1, 2, 3, 4, 5, 6}, {1, 6}).set_requires_grad();
  Tensor middle = x.reshape({6}).narrow(0, 2, 3).reshape({1, 3});  // elements 2, 3, 4
  EXPECT_FALSE(middle.is_leaf());
  scaled(middle, 2.0f).backward(device_values({1, 10, 100}, {1, 3}));
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(0.0f, 0.0f, 2.0f, 20.0f, 200.0f, 0.0f));
  EXPECT_EQ(x.grad().shape(), (Shape{1, 6}));
}

TEST_F(AutogradTest, ScalarRootNeedsNoGradientButOthersDo) {
  Tensor x = device_values({1, 2, 3}, {3}).set_requires_grad();
  Tensor y = scaled(x, 4.0f);
  EXPECT_THAT([&] { y.backward(); },
              ThrowsMessage<InvalidArgument>(HasSubstr("a gradient can be implied only for a tensor of one element "
                                                       "(a scalar loss); this one has shape (3)")));
  EXPECT_THAT([&] { y.backward(device_values({1, 2}, {2})); },
              ThrowsMessage<InvalidArgument>(HasSubstr("must be a device tensor of the root's shape (3)")));
  Tensor one = scaled(x.narrow(0, 1, 1).reshape({}), 4.0f);
  one.backward();
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(0.0f, 4.0f, 0.0f));
}

TEST_F(AutogradTest, RootWithoutHistoryIsAnError) {
  Tensor x = device_values({1}, {1});
  EXPECT_THAT([&] { scaled(x, 2.0f).backward(); },
              ThrowsMessage<InvalidArgument>(HasSubstr("does not require gradients and has no grad_fn")));
}

TEST_F(AutogradTest, SavedStateIsFreedUnlessTheGraphIsRetained) {
  Tensor x = device_values({1}, {1}).set_requires_grad();
  auto sentinel = std::make_shared<int>(0);
  Tensor y = scaled(x, 2.0f, nullptr, sentinel);
  EXPECT_EQ(sentinel.use_count(), 2);
  y.backward(Tensor(), current_stream(), {.retain_graph = true});
  EXPECT_EQ(sentinel.use_count(), 2);
  y.backward();
  EXPECT_EQ(sentinel.use_count(), 1);
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(4.0f));
  EXPECT_THAT([&] { y.backward(); },
              ThrowsMessage<InvalidArgument>(HasSubstr("trying to run ScaleBackward a second time, but its saved "
                                                       "tensors were freed")));
}

TEST_F(AutogradTest, AKeptNodeRunsInEveryBackwardThatReachesIt) {
  Tensor x = device_values({1}, {1}).set_requires_grad();
  int runs = 0;
  const Tensor shared = scaled(x, 2.0f, &runs);  // as autocast's cached cast of a parameter
  keep_after_backward(shared.grad_fn());
  scaled(shared, 3.0f).backward();  // two graphs through the kept node, no retain_graph
  scaled(shared, 5.0f).backward();
  EXPECT_EQ(runs, 2);
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(16.0f));
  EXPECT_THAT([&] { keep_after_backward(gradient_edge(x).node); },
              ThrowsMessage<InvalidArgument>(HasSubstr("is not a node made by autograd::record")));
}

TEST_F(AutogradTest, NoGradGuardRecordsNothingAndRestoresTheMode) {
  Tensor x = device_values({1}, {1}).set_requires_grad();
  {
    NoGradGuard no_grad;
    EXPECT_FALSE(is_grad_enabled());
    EXPECT_FALSE(scaled(x, 2.0f).requires_grad());
    EXPECT_FALSE(x.reshape({1, 1}).requires_grad());
    {
      GradModeGuard enabled(true);
      EXPECT_TRUE(scaled(x, 2.0f).requires_grad());
    }
    EXPECT_FALSE(is_grad_enabled());
  }
  EXPECT_TRUE(is_grad_enabled());
}

TEST_F(AutogradTest, NodesCarryTheScopeTheyWereMadeIn) {
  Tensor x = device_values({1}, {1}).set_requires_grad();
  Tensor y;
  {
    ScopeGuard scope("features.3");
    y = scaled(x, 2.0f);
  }
  EXPECT_EQ(y.grad_fn()->scope(), "features.3");
  EXPECT_EQ(current_scope(), "");
}

TEST_F(AutogradTest, SetGradChecksTheShape) {
  Tensor x = device_values({1, 2}, {2}).set_requires_grad();
  EXPECT_THAT([&] { x.set_grad(device_values({1}, {1})); },
              ThrowsMessage<InvalidArgument>(HasSubstr("a gradient of shape (1), dtype f32, device memory for a "
                                                       "tensor of shape (2)")));
  x.set_grad(device_values({3, 4}, {2}));
  EXPECT_THAT(x.grad().to_vector<float>(), ::testing::ElementsAre(3.0f, 4.0f));
  x.set_grad(Tensor());
  EXPECT_FALSE(x.grad().defined());
}

TEST_F(AutogradTest, AddInPlaceChecksItsArguments) {
  Tensor a = device_values({1, 2}, {2});
  a.add_(device_values({10, 20}, {2}), 0.5f, current_stream());
  EXPECT_THAT(a.to_vector<float>(), ::testing::ElementsAre(6.0f, 12.0f));
  a.add_(a, 1.0f, current_stream());
  EXPECT_THAT(a.to_vector<float>(), ::testing::ElementsAre(12.0f, 24.0f));
  EXPECT_THAT([&] { a.add_(device_values({1}, {1}), 1.0f, current_stream()); },
              ThrowsMessage<InvalidArgument>(HasSubstr("Tensor::add_: shapes (2) and (1) differ")));
  Tensor whole = device_values({1, 2, 3}, {3});
  Tensor first = whole.narrow(0, 0, 2);
  Tensor last = whole.narrow(0, 1, 2);
  EXPECT_THAT([&] { first.add_(last, 1.0f, current_stream()); },
              ThrowsMessage<InvalidArgument>(HasSubstr("overlap partially")));
}

// Gradients of reduced-precision activations stay in their dtype. h, a bf16 cast of an f32
// leaf, is used twice: its gradients 1 and 2^-9 meet in bf16, where 1 + 2^-9 (a tie) rounds
// to 1; summed in f32 they would give 1.001953125. The cast's backward then hands the f32
// leaf an f32 gradient.
TEST_F(AutogradTest, Bf16IntermediateUsedTwiceSumsInBf16AndTheF32LeafGetsF32) {
  Tensor w = device_values({1, -2, 3, 0.5f}, {4}).set_requires_grad();
  const Tensor h = F::to_dtype(w, DType::bf16);
  ASSERT_EQ(h.dtype(), DType::bf16);
  const Tensor y = added(scaled(h, 1.0f), scaled(h, 0x1p-9f));
  ASSERT_EQ(y.dtype(), DType::bf16);
  Tensor ones = Tensor::empty({4}, DType::bf16, current_stream());
  ones.fill(1.0, current_stream());
  y.backward(ones);
  ASSERT_EQ(w.grad().dtype(), DType::f32);
  EXPECT_THAT(w.grad().to_vector<float>(), ::testing::Each(1.0f));
}

TEST_F(AutogradTest, AddInPlaceTakesReducedDtypesButNotMixedOnes) {
  const cudaStream_t stream = current_stream();
  for (const DType dtype : {DType::f16, DType::bf16}) {
    Tensor a = device_values({1, 2, -3}, {3}).to_dtype(dtype, stream);
    a.add_(device_values({10, 20, 30}, {3}).to_dtype(dtype, stream), 0.5f, stream);
    EXPECT_THAT(a.to_dtype(DType::f32, stream).to_vector<float>(), ::testing::ElementsAre(6.0f, 12.0f, 12.0f));
    EXPECT_THAT([&] { a.add_(device_values({1, 2, 3}, {3}), 1.0f, stream); },
                ThrowsMessage<InvalidArgument>(HasSubstr("cast one with to_dtype first")));
  }
  Tensor ints = Tensor::zeros({3}, DType::i32, stream);
  EXPECT_THAT([&] { ints.add_(ints, 1.0f, stream); },
              ThrowsMessage<InvalidArgument>(HasSubstr("one floating dtype (f32, f16 or bf16)")));
}

}  // namespace
}  // namespace strata::autograd
