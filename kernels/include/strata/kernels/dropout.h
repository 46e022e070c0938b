// Dropout, forward and backward, with PyTorch's semantics (p is the probability that an
// element is zeroed; kept elements are scaled by 1 / (1 - p)) and a counter-based mask:
// element i of x is kept iff
//     uniform_from_bits(word offset + i of the Philox4x32-10 stream for seed) < 1 - p
// (strata/core/philox.h: word j is philox_group(seed, j / 4).x[j % 4]; uniform_from_bits
// gives k / 2^24 in [0, 1); 1 - p is computed in float). The mask therefore depends only on
// (seed, offset, i): the same in both builds and for any launch shape, and reproducible on
// the host. A caller draws fresh masks by advancing offset by x.numel() per call, as with
// fill_uniform. Dropout in eval mode is the identity and needs no kernel.
//
// Memory formats: i counts elements in memory order, so x, y and the mask (dL_dy, mask and
// dL_dx) share one memory format (InvalidArgument otherwise; the allocating forms give y,
// the mask and dL_dx the format of x and dL_dy), and a channels-last x of the same logical
// values gets a different mask from a contiguous one: element (n, c, h, w) draws word
// offset + ((n * H + h) * W + w) * C + c. Deterministic all the same, and the mask of a
// channels-last x is that of the contiguous (N, H, W, C) tensor with its memory.
//
// The forward saves the mask as u8 (1 kept, 0 dropped), a quarter of x's bytes, so the
// backward needs neither the seed nor a second round of Philox.
//
// dtypes: x and y (dL_dy and dL_dx) share one of f32, f16 and bf16; the mask is the same for
// each, and x * scale is computed in f32 and rounded once to the dtype.
//
//   Tensor mask = Tensor::empty(x.shape(), DType::u8, stream);
//   dropout_forward(x, y, mask, {.p = 0.1f, .seed = seed, .offset = step * x.numel()}, stream);
//   dropout_backward(dL_dy, mask, dL_dx, {.p = 0.1f}, stream);
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"

namespace strata::kernels {

struct DropoutParams {
  float p = 0.5f;            // probability of zeroing an element, in [0, 1]
  std::uint64_t seed = 0;    // Philox key
  std::uint64_t offset = 0;  // first word of the Philox stream to use
  // When set: a () i64 device scalar holding the offset instead, read as the kernel runs, so
  // that a CUDA graph draws fresh masks at each replay (the host writes the next offset into
  // it before the launch). Not checked; a multiple of 4 keeps the vectorised path.
  const std::int64_t* offset_device = nullptr;
};

// The factor kept elements are multiplied by: 1 / (1 - p) in float, and 0 for p = 1 (every
// element dropped). Throws InvalidArgument for p outside [0, 1].
float dropout_scale(float p);

// y = x * (mask ? scale : 0), so NaN and infinity in dropped elements give NaN as in
// PyTorch (x * 0). y (shape and dtype of x) may be x itself; mask (shape of x, u8) must not
// overlap either.
void dropout_forward(const Tensor& x, Tensor& y, Tensor& mask, const DropoutParams& params, cudaStream_t stream);

struct DropoutOutputs {
  Tensor y;     // shape and dtype of x
  Tensor mask;  // shape of x, u8
};
DropoutOutputs dropout_forward(const Tensor& x, const DropoutParams& params, cudaStream_t stream);

// dL_dx = dL_dy * (mask ? scale : 0), with p (the only field used) as in the forward.
// dL_dx may be dL_dy itself.
void dropout_backward(const Tensor& dL_dy, const Tensor& mask, Tensor& dL_dx, const DropoutParams& params,
                      cudaStream_t stream);
Tensor dropout_backward(const Tensor& dL_dy, const Tensor& mask, const DropoutParams& params, cudaStream_t stream);

}  // namespace strata::kernels
