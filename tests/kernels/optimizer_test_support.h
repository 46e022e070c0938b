// Helpers of the optimizer, gradient-norm and EMA tests: lists of device tensors that are
// views inside poisoned storage (guard elements on both sides, at aligned and unaligned
// starts), random host values for them, and the conversions the references need.
#pragma once

#include <bit>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "strata/core/cuda_graph.h"
#include "strata/core/tensor.h"
#include "tests/support/compare.h"

namespace strata::testing {

using HostLists = std::vector<std::vector<float>>;
using ReferenceLists = std::vector<std::vector<double>>;

inline HostLists random_lists(std::uint64_t seed, const std::vector<Shape>& shapes, float low = -1.0f,
                              float high = 1.0f) {
  HostLists lists;
  for (const Shape& shape : shapes)
    lists.push_back(random_uniform(seed++, static_cast<std::size_t>(shape.numel()), low, high));
  return lists;
}

inline ReferenceLists to_reference(const HostLists& lists) {
  ReferenceLists result;
  for (const std::vector<float>& list : lists) result.emplace_back(list.begin(), list.end());
  return result;
}

// Tensors of the given shapes, each a view into its own poisoned 1-D storage with guard
// elements before and after it. The front guard is 4, 5 or 6 elements by index and shift,
// so some views start 16-byte aligned (the kernels' float4 path) and some do not.
class GuardedTensors {
 public:
  static constexpr std::int64_t kBackGuard = 5;

  GuardedTensors(const HostLists& values, const std::vector<Shape>& shapes, cudaStream_t stream, int shift = 0) {
    for (std::size_t i = 0; i < shapes.size(); ++i) {
      const std::int64_t numel = shapes[i].numel();
      const std::int64_t front = 4 + static_cast<std::int64_t>((i + static_cast<std::size_t>(shift)) % 3);
      Tensor storage = Tensor::empty(Shape{front + numel + kBackGuard}, DType::f32, stream);
      const std::vector<float> poison(static_cast<std::size_t>(storage.numel()), poison_value());
      storage.copy_from_host_async(std::span<const float>(poison), stream);
      Tensor view = storage.narrow(0, front, numel).reshape(shapes[i]);
      view.copy_from_host_async(std::span<const float>(values[i]), stream);
      storages_.push_back(storage);
      fronts_.push_back(front);
      views_.push_back(view);
    }
  }
  // Poisoned tensors of the given shapes (outputs, or buffers whose contents must not matter).
  static GuardedTensors poisoned(const std::vector<Shape>& shapes, cudaStream_t stream, int shift = 0) {
    HostLists values;
    for (const Shape& shape : shapes) values.emplace_back(static_cast<std::size_t>(shape.numel()), poison_value());
    return GuardedTensors(values, shapes, stream, shift);
  }

  std::vector<Tensor>& tensors() { return views_; }
  const std::vector<Tensor>& tensors() const { return views_; }

  HostLists values(cudaStream_t stream) const {
    HostLists result;
    for (const Tensor& view : views_) result.push_back(view.to_vector<float>(stream));
    return result;
  }

  // Every guard element still holds the poison bits.
  ::testing::AssertionResult guards_intact(cudaStream_t stream) const {
    for (std::size_t i = 0; i < storages_.size(); ++i) {
      const std::vector<float> all = storages_[i].to_vector<float>(stream);
      const auto front = static_cast<std::size_t>(fronts_[i]);
      const std::size_t back = front + static_cast<std::size_t>(views_[i].numel());
      for (std::size_t j = 0; j < all.size(); ++j) {
        if ((j < front || j >= back) && std::bit_cast<std::uint32_t>(all[j]) != kPoisonBits) {
          return ::testing::AssertionFailure()
                 << "tensor " << i << " " << views_[i].shape().to_string() << ": guard element at offset "
                 << static_cast<std::int64_t>(j) - fronts_[i] << " was written: " << all[j];
        }
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  std::vector<Tensor> storages_;
  std::vector<std::int64_t> fronts_;
  std::vector<Tensor> views_;
};

// Each device list against its reference, naming the list and tensor of a mismatch.
inline ::testing::AssertionResult lists_close(const std::string& name, const HostLists& actual,
                                              const ReferenceLists& expected, Tolerance tolerance) {
  for (std::size_t i = 0; i < actual.size(); ++i) {
    ::testing::AssertionResult result = all_close(actual[i], expected[i], tolerance);
    if (!result) return ::testing::AssertionFailure() << name << "[" << i << "]: " << result.message();
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult lists_equal(const std::string& name, const HostLists& actual,
                                              const HostLists& expected) {
  for (std::size_t i = 0; i < actual.size(); ++i) {
    for (std::size_t j = 0; j < actual[i].size(); ++j) {
      if (std::bit_cast<std::uint32_t>(actual[i][j]) != std::bit_cast<std::uint32_t>(expected[i][j])) {
        return ::testing::AssertionFailure() << name << "[" << i << "][" << j << "]: " << actual[i][j] << " vs "
                                             << expected[i][j] << " (bits differ)";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// Odd sizes: a single element, 3 (no float4), 4 (one float4), one past a chunk, two chunks
// and a bit, and small 2-D and 4-D shapes.
inline const std::vector<Shape> kOddOptimizerShapes = {Shape{1},      Shape{3},          Shape{4},       Shape{4097},
                                                       Shape{17, 33}, Shape{2, 3, 5, 7}, Shape{8193 + 6}};

// The kernel launches (and copies) fn queues on stream (a Stream, not the legacy default
// one), counted as the nodes of a CUDA graph captured from it. The graph is replayed once,
// so fn's work is done exactly once; fn must not allocate.
inline std::size_t launches_of(cudaStream_t stream, const std::function<void()>& fn) {
  CudaGraph graph;
  graph.capture(stream, fn);
  graph.replay(stream);
  return graph.node_count();
}

}  // namespace strata::testing
