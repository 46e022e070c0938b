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
//
// A grouped map runs one op per group of tensors in the same launch (an optimizer's parameter
// groups, each with its learning rate and weight decay): the ops travel as a small table by
// value beside the lists, each tensor slot names its group in one byte, and each block
// resolves the op of its tensor's group. Device scalars in the ops (a learning rate a
// schedule rewrites) are read as the kernel runs, so a captured CUDA graph follows them.
//   launch_multi_tensor_grouped_map(std::span<const MultiTensorGroup<ScaleOp>>(groups), stream, "scale");
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

// Batch: a TensorListBatch or a GroupedTensorListBatch.
template <typename Batch>
__device__ TensorChunk locate_chunk(const Batch& batch) {
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
  const std::int64_t begin = (block - static_cast<std::int64_t>(batch.first_block[low])) * kMultiTensorChunk;
  const std::int64_t remaining = batch.numel[low] - begin;
  return TensorChunk{low, begin, remaining < kMultiTensorChunk ? remaining : std::int64_t{kMultiTensorChunk}};
}

// The chunk's elements of each list: lists[d] = list d of the chunk's tensor, from chunk.begin.
template <int Depth, typename Batch>
__device__ void chunk_lists(const Batch& batch, const TensorChunk& chunk, float* (&lists)[Depth]) {
  for (int d = 0; d < Depth; ++d) lists[d] = batch.data[d][chunk.slot] + chunk.begin;
}

// Applies op to the count elements of lists: four elements at a time through float4 when
// every list is 16-byte aligned, then the rest one by one.
template <typename Op>
__device__ void map_chunk(const Op& op, float* (&lists)[Op::kDepth], std::int64_t count) {
  constexpr int kDepth = Op::kDepth;
  bool aligned = true;
  for (int d = 0; d < kDepth; ++d) aligned = aligned && reinterpret_cast<std::uintptr_t>(lists[d]) % 16 == 0;
  const std::int64_t vectors = aligned ? count / 4 : 0;
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
  for (std::int64_t i = vectors * 4 + threadIdx.x; i < count; i += blockDim.x) {
    float values[kDepth];
    for (int d = 0; d < kDepth; ++d) values[d] = lists[d][i];
    op(values);
    for (int d = 0; d < kDepth; ++d) {
      if ((Op::kWrittenLists >> d) & 1u) lists[d][i] = values[d];
    }
  }
}

// Applies op to every element of one chunk per block.
template <typename Op>
__global__ void multi_tensor_map_kernel(TensorListBatch<Op::kDepth> batch, Op op_with_device_scalars) {
  const Op op = op_with_device_scalars.resolve();
  if (op.is_identity()) return;
  const TensorChunk chunk = locate_chunk(batch);
  float* lists[Op::kDepth];  // (chunk.count) each
  chunk_lists(batch, chunk, lists);
  map_chunk(op, lists, chunk.count);
}

// The kernel parameters of a grouped map: the lists as TensorListBatch's (first blocks in 4
// bytes: a launch has fewer than 2^31 blocks), the group of each tensor slot, and the ops of
// the launch's groups.
template <typename Op>
struct GroupedTensorListBatch {
  static constexpr int kMaxTensors = multi_tensor_max_grouped_tensors(Op::kDepth);
  static constexpr int kMaxGroups = multi_tensor_max_groups(sizeof(Op));
  float* data[Op::kDepth][kMaxTensors];  // list d, tensor s: (numel[s])
  std::int64_t numel[kMaxTensors];
  std::int32_t first_block[kMaxTensors];
  std::uint8_t group[kMaxTensors];  // tensor s belongs to ops[group[s]]
  int tensors;
  Op ops[kMaxGroups];
};

// As multi_tensor_map_kernel, with the op of the block's tensor's group.
template <typename Op>
__global__ void multi_tensor_grouped_map_kernel(GroupedTensorListBatch<Op> batch) {
  const TensorChunk chunk = locate_chunk(batch);
  const Op op = batch.ops[batch.group[chunk.slot]].resolve();
  if (op.is_identity()) return;
  float* lists[Op::kDepth];  // (chunk.count) each
  chunk_lists(batch, chunk, lists);
  map_chunk(op, lists, chunk.count);
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

// One group of a grouped map: its parallel lists (list d is the op's value d) and its op.
template <typename Op>
struct MultiTensorGroup {
  std::array<std::span<const Tensor>, Op::kDepth> lists;
  Op op;
};

// Runs each group's op over every element of its lists, all groups in as few launches as
// the tensor and group capacities of GroupedTensorListBatch allow (one for a model's
// optimizer groups). Groups without tensors, or with empty ones only, take no launch.
template <typename Op>
void launch_multi_tensor_grouped_map(std::span<const MultiTensorGroup<Op>> groups, cudaStream_t stream,
                                     const char* name) {
  using Batch = GroupedTensorListBatch<Op>;
  static_assert(sizeof(Batch) <= kKernelParameterBytes, "kernel parameters exceed 4 KB");
  static_assert(Batch::kMaxGroups >= 4, "the op's parameters leave room for too few groups per launch");
  struct TensorRef {
    std::size_t group;
    std::size_t index;
  };
  std::vector<std::int64_t> numels;
  std::vector<std::size_t> group_of;
  std::vector<TensorRef> refs;
  for (std::size_t g = 0; g < groups.size(); ++g) {
    for (std::size_t i = 0; i < groups[g].lists[0].size(); ++i) {
      numels.push_back(groups[g].lists[0][i].numel());
      group_of.push_back(g);
      refs.push_back(TensorRef{g, i});
    }
  }
  for (const MultiTensorLaunch& planned :
       plan_grouped_multi_tensor_launches(numels, group_of, Batch::kMaxTensors, Batch::kMaxGroups)) {
    Batch batch{};
    for (std::size_t k = 0; k < planned.groups.size(); ++k) batch.ops[k] = groups[planned.groups[k]].op;
    std::int64_t block = 0;
    std::size_t local_group = 0;
    for (const std::size_t t : planned.tensors) {
      const TensorRef ref = refs[t];
      while (planned.groups[local_group] != ref.group) ++local_group;
      const int slot = batch.tensors++;
      for (int d = 0; d < Op::kDepth; ++d) batch.data[d][slot] = list_element_pointer(groups[ref.group].lists[d][ref.index]);
      batch.numel[slot] = numels[t];
      batch.first_block[slot] = static_cast<std::int32_t>(block);
      batch.group[slot] = static_cast<std::uint8_t>(local_group);
      block += multi_tensor_chunks(numels[t]);
    }
    launch(multi_tensor_grouped_map_kernel<Op>, multi_tensor_launch_config(planned, stream, name), batch);
  }
}

}  // namespace strata::kernels
