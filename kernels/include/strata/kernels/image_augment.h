// Data augmentation of uint8 image sets on the device, as airbench and most CIFAR-10 recipes
// use it: for each output image, gather one source image, translate it (reflect padding, then
// a crop), mirror it left-right, cut out a square, and normalise it to f32. Two kernels:
//
//   image_augment_plan: the per-image choices as a small i32 table (B, kImagePlanColumns),
//     drawn from Philox as a function of (seed, epoch, image id) only: a batch's choices do
//     not depend on its size, its order, the launch shape or how often the epoch runs, so
//     that training is reproducible and resumable at any epoch.
//   image_augment_normalise: applies a plan (from that kernel, or written by the caller).
//
// and image_normalise, the same gather without augmentation, for evaluation.
//
// Output image b, channel c, pixel (y, x) of (B, C, H, W), with r = plan row b:
//   1. flip: x1 = flip ? W - 1 - x : x                          (mirror left-right)
//   2. crop: (y2, x2) = (y + shift_y - pad, x1 + shift_x - pad)  (shift in [0, 2 pad])
//   3. reflect padding as torch.nn.functional.pad(mode="reflect"), the edge not repeated:
//      -1 -> 1, -2 -> 2, H -> H - 2, H + 1 -> H - 3 (so pad < H and pad < W)
//   4. value: (images[source, c, y2, x2] / 255 - mean[c]) / stddev[c] in float
//   5. cutout (when cutout > 0): 0 where cutout_y <= y < cutout_y + cutout and
//      cutout_x <= x < cutout_x + cutout, in output coordinates.
// Cutout follows airbench (make_random_square_masks + masked_fill(0) after normalisation):
// the square lies wholly inside the image (its top-left corner uniform in [0, H - cutout] x
// [0, W - cutout]) and its pixels are 0 in the normalised output, the channel mean. DeVries'
// original Cutout (a centre anywhere, the square clipped, zero before normalisation) differs.
// Steps 1-2 are airbench's batch_crop then batch_flip_lr: the crop at (shift_y, shift_x) of
// the padded image, then that crop mirrored.
//
//   Tensor plan = Tensor::empty({B, kImagePlanColumns}, DType::i32, stream);
//   image_augment_plan(image_ids, plan, {.pad = 2, .flip = ImageFlip::alternating, .seed = 1, .epoch = e}, {32, 32},
//                      stream);
//   image_augment_normalise(images, plan, batch, {.pad = 2}, normalisation, stream);
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "strata/core/tensor.h"
#include "strata/kernels/size2d.h"

namespace strata::kernels {

// Columns of a plan row, one row per output image.
enum ImagePlanColumn : int {
  kImagePlanSource = 0,  // image of the set to read, in [0, N)
  kImagePlanShiftY = 1,  // crop offset into the padded image, in [0, 2 pad]; pad: no translation
  kImagePlanShiftX = 2,
  kImagePlanFlip = 3,     // 1: mirror left-right; 0: not
  kImagePlanCutoutY = 4,  // top-left corner of the cutout square; ignored when cutout is 0
  kImagePlanCutoutX = 5,
  kImagePlanColumns = 6,
};

// How image_augment_plan chooses the flip.
//   none: never. random: each image at random, afresh every epoch.
//   alternating: airbench's alternating flip: each image at random in epoch 0 (the same
//     choice as random's), then mirrored relative to that choice in odd epochs and as in
//     epoch 0 in even ones: flip(image, epoch) = flip(image, 0) XOR (epoch odd). Every image
//     is seen both ways in every pair of epochs.
enum class ImageFlip : std::uint8_t { none, random, alternating };

struct ImageAugmentParams {
  int pad = 0;     // translation: reflect-pad by pad pixels (pad < H, W), then crop H x W
  int cutout = 0;  // side of the square set to 0 after normalisation (cutout <= H, W); 0: none
  // The fields below are image_augment_plan's only.
  ImageFlip flip = ImageFlip::none;
  std::uint64_t seed = 0;  // Philox key
  std::int64_t epoch = 0;  // in [0, 2^30)
  // false: a plan's source column is the image id (images is the whole set). true: it is the
  // row index b (the caller staged the batch's images, in order, into a (B, C, H, W) tensor);
  // the ids still key the random choices, so both give the same batch.
  bool staged = false;
};

// Per-channel normalisation (v / 255 - mean[c]) / stddev[c] of up to kMaxImageChannels channels.
inline constexpr int kMaxImageChannels = 4;
struct ImageNormalisation {
  float mean[kMaxImageChannels] = {0.0f, 0.0f, 0.0f, 0.0f};
  float stddev[kMaxImageChannels] = {1.0f, 1.0f, 1.0f, 1.0f};
};

// The plan of image_ids ((B) i32, device, each >= 0) into plan ((B, kImagePlanColumns)
// i32, device). image_size is (H, W) of the images the plan is for. Row b from the Philox
// stream of key seed (strata/core/philox.h), group g(k) = epoch * 2^33 + id * 2 + k:
//   shift_y = mul_hi(g(0).x[0], 2 pad + 1), shift_x = mul_hi(g(0).x[1], 2 pad + 1)
//   cutout_y = mul_hi(g(0).x[2], H - cutout + 1), cutout_x = mul_hi(g(0).x[3], W - cutout + 1)
//   flip: random: g(1).x[0] >> 31; alternating: (that bit of epoch 0) ^ (epoch & 1)
// where mul_hi(w, n) = (w * n) >> 32 in 64 bits, uniform in [0, n) to within n / 2^32. With
// pad 0 the shifts are 0, without cutout its corner is 0, with flip none the flag is 0.
// Throws InvalidArgument naming the argument and shapes for bad shapes, dtypes or params.
void image_augment_plan(const Tensor& image_ids, Tensor& plan, Size2d image_size, const ImageAugmentParams& params,
                        cudaStream_t stream);

// out ((B, C, H, W) f32, f16 or bf16, contiguous or channels-last, device) from images ((N, C,
// H, W) u8, device) by plan ((B, kImagePlanColumns) i32, device), using params.pad and
// params.cutout (the other fields are the plan's). Each value is computed in f32 and rounded
// once to out's dtype: the bits of the f32 contiguous result cast and converted afterwards,
// without the two extra passes (a training batch written as its first layer reads it). C <= kMaxImageChannels. The plan's values are not checked on the host: an
// image whose row is out of range (source outside [0, N), a shift outside [0, 2 pad]) is
// written as NaN, so the mistake shows rather than reading outside the set.
void image_augment_normalise(const Tensor& images, const Tensor& plan, Tensor& out, const ImageAugmentParams& params,
                             const ImageNormalisation& normalisation, cudaStream_t stream);

// out ((B, C, H, W), dtypes and layouts as above) = images [first, first + B) of images ((N,
// C, H, W) u8, device), normalised, unaugmented: for evaluation.
void image_normalise(const Tensor& images, std::int64_t first, Tensor& out, const ImageNormalisation& normalisation,
                     cudaStream_t stream);

}  // namespace strata::kernels
