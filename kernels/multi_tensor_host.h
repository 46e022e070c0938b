// Host side of the multi-tensor kernels (optimizers, gradient norm, EMA): how a list of
// tensors is cut into fixed chunks and split over as few launches as the kernel parameter
// space allows, and the argument checks that every multi-tensor launcher shares. Plain
// host code, tested on its own (tests/kernels/multi_tensor_plan_test.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "strata/core/tensor.h"

namespace strata::kernels {

// Elements of one tensor that one block handles; a tensor has ceil(numel / chunk) chunks.
// A multiple of 4 keeps float4 alignment from one chunk to the next.
inline constexpr std::int64_t kMultiTensorChunk = 4096;
inline constexpr unsigned kMultiTensorThreads = 256;

// Bytes of CUDA's 4 KB kernel parameter space given to the tensor list; the rest is left
// for the operation's own parameters (learning rate, betas, ...).
inline constexpr std::size_t kMultiTensorListBytes = 3584;

// Tensors per launch for an op reading or writing depth parallel lists: each tensor costs
// depth pointers plus its size and first block (8 bytes each); 16 bytes of bookkeeping.
constexpr int multi_tensor_max_tensors(int depth) {
  return static_cast<int>((kMultiTensorListBytes - 16) / (8 * (static_cast<std::size_t>(depth) + 2)));
}

// Grouped launches (one launch for the tensors of several groups, each with its own
// hyperparameters, e.g. an optimizer's parameter groups) carry a table of the groups' op
// parameters by value beside the lists, and the group of each tensor in one byte. The table
// gets this many bytes; the lists keep enough room that ResNet-18's 62 parameters still take
// one launch at depth 5 (AdamW with amsgrad), because a grouped batch stores each tensor's
// first block in 4 bytes instead of 8.
inline constexpr std::size_t kMultiTensorGroupTableBytes = 768;
inline constexpr std::size_t kKernelParameterBytes = 4096;

// Groups per grouped launch for an op whose per-group parameters take group_bytes (at most
// 255, one byte per tensor names its group).
constexpr int multi_tensor_max_groups(std::size_t group_bytes) {
  const std::size_t fitting = kMultiTensorGroupTableBytes / group_bytes;
  return static_cast<int>(fitting < 255 ? fitting : 255);
}

// Tensors per grouped launch at depth: depth pointers, size (8 bytes each), first block (4)
// and group (1) per tensor; 16 bytes of bookkeeping and 8 of alignment slack.
constexpr int multi_tensor_max_grouped_tensors(int depth) {
  return static_cast<int>((kKernelParameterBytes - kMultiTensorGroupTableBytes - 24) /
                          (8 * (static_cast<std::size_t>(depth) + 1) + 5));
}

// One launch: whole tensors (never split between launches), one block per chunk.
struct MultiTensorLaunch {
  std::vector<std::size_t> tensors;  // indices into the lists; empty tensors are left out
  std::int64_t blocks = 0;           // chunks of these tensors together
  std::int64_t first_chunk = 0;      // chunks of all earlier launches (the index of block 0)
  // Grouped plans only: the groups of these tensors, in order, each once (tensors of one
  // group are contiguous); a group whose tensors are all empty is in no launch.
  std::vector<std::size_t> groups;
};

// Chunks of a tensor of numel elements.
constexpr std::int64_t multi_tensor_chunks(std::int64_t numel) {
  return (numel + kMultiTensorChunk - 1) / kMultiTensorChunk;
}

// The launches for tensors of these sizes, in order, at most max_tensors each. No launch
// for an empty list or one of empty tensors only.
std::vector<MultiTensorLaunch> plan_multi_tensor_launches(std::span<const std::int64_t> numels, int max_tensors);

// As plan_multi_tensor_launches for tensors of several groups (group_of[i]: the group of
// tensor i, non-decreasing), where a launch also holds at most max_groups groups. A group
// may span two launches; its op parameters then travel in both.
std::vector<MultiTensorLaunch> plan_grouped_multi_tensor_launches(std::span<const std::int64_t> numels,
                                                                  std::span<const std::size_t> group_of,
                                                                  int max_tensors, int max_groups);

// One list of a multi-tensor op's arguments, named for messages ("gradients").
struct NamedTensorList {
  std::string_view name;
  std::span<const Tensor> tensors;
  bool written = false;  // the op writes these tensors
};

// The checks of every multi-tensor op: each list has as many tensors as the first; every
// tensor is a defined f32 device tensor; tensor i of each list has the shape of tensor i of
// the first list; and no tensor that the op writes shares memory with any other tensor of
// the call (tensors the op only reads may overlap each other). Throws InvalidArgument naming
// op, the list, the index and the shapes, e.g. "sgd_step: gradients[2] has shape (3) but
// parameters[2] has shape (4)".
void expect_parallel_lists(std::string_view op, std::span<const NamedTensorList> lists);

}  // namespace strata::kernels
