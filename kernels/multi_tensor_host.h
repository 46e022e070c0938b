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

// One launch: whole tensors (never split between launches), one block per chunk.
struct MultiTensorLaunch {
  std::vector<std::size_t> tensors;  // indices into the lists; empty tensors are left out
  std::int64_t blocks = 0;           // chunks of these tensors together
  std::int64_t first_chunk = 0;      // chunks of all earlier launches (the index of block 0)
};

// Chunks of a tensor of numel elements.
constexpr std::int64_t multi_tensor_chunks(std::int64_t numel) {
  return (numel + kMultiTensorChunk - 1) / kMultiTensorChunk;
}

// The launches for tensors of these sizes, in order, at most max_tensors each. No launch
// for an empty list or one of empty tensors only.
std::vector<MultiTensorLaunch> plan_multi_tensor_launches(std::span<const std::int64_t> numels, int max_tensors);

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
