// Multi-tensor launches, as NVIDIA apex's multi_tensor_apply: the pointers and sizes of up
// to multi_tensor_max_tensors(depth) tensors travel by value in the kernel's parameters
// (a TensorListBatch, under the 4 KB limit), and each block handles one chunk of
// kMultiTensorChunk elements of one tensor. An optimizer step over a whole model is then a
// few launches, not one per parameter. The chunks depend only on the tensors' sizes
// (kernels/multi_tensor_host.h), so reductions over them are deterministic.
//
// Element-wise ops are functors over the depth values of one element:
//   struct ScaleOp {
//     static constexpr int kDepth = 1;
//     static constexpr unsigned kWrittenLists = 0b1;  // bit d: list d is stored back
//     float factor;
//     __device__ ScaleOp resolve() const { return *this; }   // read device scalars, once per thread
//     __device__ bool is_identity() const { return false; }  // true: the block has nothing to do
//     __device__ void operator()(float (&v)[1]) const { v[0] *= factor; }
//   };
//   launch_multi_tensor_map(std::array{std::span<const Tensor>(grads)}, ScaleOp{0.5f}, stream, "scale");
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "kernels/common.cuh"
#include "kernels/multi_tensor_host.h"
#include "strata/core/tensor.h"

namespace strata::kernels {

// The tensors of one launch. Block b works on the tensor s with first_block[s] <= b <
// first_block[s + 1] (first_block[tensors] reads as the grid size), chunk b - first_block[s].
template <int Depth>
struct TensorListBatch {
  static constexpr int kMaxTensors = multi_tensor_max_tensors(Depth);
  float* data[Depth][kMaxTensors];  // list d, tensor s: (numel[s])
  std::int64_t numel[kMaxTensors];
  std::int64_t first_block[kMaxTensors];
  std::int64_t first_chunk;  // index of block 0 among the chunks of all launches
  int tensors;
};
static_assert(sizeof(TensorListBatch<1>) <= kMultiTensorListBytes);
static_assert(sizeof(TensorListBatch<5>) <= kMultiTensorListBytes);

// A scalar given on the host, or read from device memory when the kernel runs, so that a
// captured CUDA graph picks up a new value (a learning rate schedule) without re-capture.
struct DeviceScalar {
  float value = 0.0f;
  const float* device = nullptr;  // () on the device; wins over value when set

  __device__ float get() const { return device != nullptr ? *device : value; }
};

// The part of one tensor that the calling block handles: elements [begin, begin + count).
struct TensorChunk {
  int slot;  // the tensor's index within the batch
  std::int64_t begin;
  std::int64_t count;
};

template <int Depth>
__device__ TensorChunk locate_chunk(const TensorListBatch<Depth>& batch) {
  const auto block = static_cast<std::int64_t>(blockIdx.x);
  int low = 0;  // binary search for the last tensor that starts at or before block
  int high = batch.tensors - 1;
  while (low < high) {
    const int middle = (low + high + 1) / 2;
    if (batch.first_block[middle] <= block) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  const std::int64_t begin = (block - batch.first_block[low]) * kMultiTensorChunk;
  const std::int64_t remaining = batch.numel[low] - begin;
  return TensorChunk{low, begin, remaining < kMultiTensorChunk ? remaining : std::int64_t{kMultiTensorChunk}};
}

// Applies op to every element of one chunk per block: four elements at a time through
// float4 when every list's chunk is 16-byte aligned, then the rest one by one.
template <typename Op>
__global__ void multi_tensor_map_kernel(TensorListBatch<Op::kDepth> batch, Op op_with_device_scalars) {
  constexpr int kDepth = Op::kDepth;
  const Op op = op_with_device_scalars.resolve();
  if (op.is_identity()) return;
  const TensorChunk chunk = locate_chunk(batch);
  float* lists[kDepth];  // (chunk.count) each
  bool aligned = true;
  for (int d = 0; d < kDepth; ++d) {
    lists[d] = batch.data[d][chunk.slot] + chunk.begin;
    aligned = aligned && reinterpret_cast<std::uintptr_t>(lists[d]) % 16 == 0;
  }
  const std::int64_t vectors = aligned ? chunk.count / 4 : 0;
  for (std::int64_t v = threadIdx.x; v < vectors; v += blockDim.x) {
    float lanes[4][kDepth];
    for (int d = 0; d < kDepth; ++d) {
      const float4 loaded = reinterpret_cast<const float4*>(lists[d])[v];
      lanes[0][d] = loaded.x;
      lanes[1][d] = loaded.y;
      lanes[2][d] = loaded.z;
      lanes[3][d] = loaded.w;
    }
    for (int lane = 0; lane < 4; ++lane) op(lanes[lane]);
    for (int d = 0; d < kDepth; ++d) {
      if ((Op::kWrittenLists >> d) & 1u) {
        reinterpret_cast<float4*>(lists[d])[v] = make_float4(lanes[0][d], lanes[1][d], lanes[2][d], lanes[3][d]);
      }
    }
  }
  for (std::int64_t i = vectors * 4 + threadIdx.x; i < chunk.count; i += blockDim.x) {
    float values[kDepth];
    for (int d = 0; d < kDepth; ++d) values[d] = lists[d][i];
    op(values);
    for (int d = 0; d < kDepth; ++d) {
      if ((Op::kWrittenLists >> d) & 1u) lists[d][i] = values[d];
    }
  }
}

// The device pointer of an f32 tensor that has passed expect_parallel_lists. Lists an op
// only reads arrive as const Tensors; the kernel never stores to them (kWrittenLists).
inline float* list_element_pointer(const Tensor& tensor) {
  return static_cast<float*>(const_cast<void*>(tensor.data_ptr()));
}

// Calls launch_one(batch, planned) for every launch of the plan for these lists (parallel,
// checked by expect_parallel_lists).
template <int Depth, typename LaunchOne>
void for_each_tensor_batch(const std::array<std::span<const Tensor>, Depth>& lists, LaunchOne&& launch_one) {
  std::vector<std::int64_t> numels;
  for (const Tensor& tensor : lists[0]) numels.push_back(tensor.numel());
  for (const MultiTensorLaunch& planned : plan_multi_tensor_launches(numels, TensorListBatch<Depth>::kMaxTensors)) {
    TensorListBatch<Depth> batch{};
    std::int64_t block = 0;
    for (const std::size_t i : planned.tensors) {
      const int slot = batch.tensors++;
      for (int d = 0; d < Depth; ++d) batch.data[d][slot] = list_element_pointer(lists[d][i]);
      batch.numel[slot] = numels[i];
      batch.first_block[slot] = block;
      block += multi_tensor_chunks(numels[i]);
    }
    batch.first_chunk = planned.first_chunk;
    launch_one(batch, planned);
  }
}

inline LaunchConfig multi_tensor_launch_config(const MultiTensorLaunch& planned, cudaStream_t stream,
                                               const char* name) {
  return LaunchConfig{.grid = dim3(static_cast<unsigned>(planned.blocks)),
                      .block = kMultiTensorThreads,
                      .stream = stream,
                      .name = name};
}

// Runs op over every element of the parallel lists (list d is the op's value d).
template <typename Op>
void launch_multi_tensor_map(const std::array<std::span<const Tensor>, Op::kDepth>& lists, const Op& op,
                             cudaStream_t stream, const char* name) {
  static_assert(sizeof(TensorListBatch<Op::kDepth>) + sizeof(Op) <= 4096, "kernel parameters exceed 4 KB");
  for_each_tensor_batch<Op::kDepth>(
      lists, [&](const TensorListBatch<Op::kDepth>& batch, const MultiTensorLaunch& planned) {
        launch(multi_tensor_map_kernel<Op>, multi_tensor_launch_config(planned, stream, name), batch, op);
      });
}

}  // namespace strata::kernels
