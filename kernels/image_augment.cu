// Image augmentation: the per-image plan from Philox (one thread per image) and the gather,
// translate, flip, cutout and normalise of uint8 images into f32, f16 or bf16, contiguous or
// channels-last (one thread per output element, grid-stride, in out's memory order; a plan row
// is 24 bytes that every thread of an image reads from cache).
#include "strata/kernels/image_augment.h"

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/check.h"
#include "core/elementwise_map.cuh"
#include "core/nvtx.h"
#include "kernels/common.cuh"
#include "kernels/memory_elements.h"
#include "kernels/plane_indexer.h"
#include "kernels/tensor_checks.h"
#include "strata/core/philox.h"

namespace strata::kernels {

namespace {

constexpr int kAugmentThreads = 256;
constexpr std::int64_t kEpochLimit = std::int64_t{1} << 30;

// Uniform in [0, n) from a 32-bit word: the high word of w * n.
__host__ __device__ __forceinline__ int scaled_word(std::uint32_t word, std::int64_t n) {
  return static_cast<int>((static_cast<std::uint64_t>(word) * static_cast<std::uint64_t>(n)) >> 32);
}

// The Philox group of word set k (0 or 1) of an image in an epoch.
__host__ __device__ __forceinline__ std::uint64_t plan_group(std::int64_t epoch, std::int32_t image_id, int k) {
  const auto id = static_cast<std::uint64_t>(static_cast<std::uint32_t>(image_id));
  return (static_cast<std::uint64_t>(epoch) << 33) + (id << 1) + static_cast<std::uint64_t>(k);
}

// torch.nn.functional.pad(mode="reflect") for one axis: index p of the padded axis (p in
// [0, size + 2 pad)) to the source index, the edge itself not repeated.
__device__ __forceinline__ std::int64_t reflect_index(std::int64_t p, int pad, std::int64_t size) {
  std::int64_t s = p - pad;
  if (s < 0) s = -s;
  if (s >= size) s = 2 * (size - 1) - s;
  return s;
}

__global__ void image_augment_plan_kernel(const std::int32_t* image_ids /* (B) */,
                                          std::int32_t* plan /* (B, kImagePlanColumns) */, std::int64_t batch,
                                          std::int64_t height, std::int64_t width, ImageAugmentParams params) {
  for (std::int64_t b = global_thread_index(); b < batch; b += global_thread_count()) {
    const std::int32_t id = image_ids[b];
    const Philox4x32 words = philox_group(params.seed, plan_group(params.epoch, id, 0));
    std::int32_t* row = plan + b * kImagePlanColumns;
    row[kImagePlanSource] = params.staged ? static_cast<std::int32_t>(b) : id;
    row[kImagePlanShiftY] = scaled_word(words.x[0], 2 * params.pad + 1);
    row[kImagePlanShiftX] = scaled_word(words.x[1], 2 * params.pad + 1);
    row[kImagePlanCutoutY] = params.cutout > 0 ? scaled_word(words.x[2], height - params.cutout + 1) : 0;
    row[kImagePlanCutoutX] = params.cutout > 0 ? scaled_word(words.x[3], width - params.cutout + 1) : 0;
    int flip = 0;
    if (params.flip == ImageFlip::random) {
      flip = static_cast<int>(philox_group(params.seed, plan_group(params.epoch, id, 1)).x[0] >> 31);
    } else if (params.flip == ImageFlip::alternating) {
      flip = static_cast<int>(philox_group(params.seed, plan_group(0, id, 1)).x[0] >> 31) ^
             static_cast<int>(params.epoch & 1);
    }
    row[kImagePlanFlip] = flip;
  }
}

// Where element i of out (B, C, H, W), stored contiguous or channels-last, lies.
struct ImageElement {
  std::int64_t b;
  int c;
  std::int64_t y;
  std::int64_t x;
};

__device__ __forceinline__ ImageElement image_element(std::int64_t i, const PlaneIndexer& indexer) {
  const PlanePixel at = indexer.pixel(i);
  const QuotientRemainder b_c = indexer.image_and_channel(at.plane);
  return {b_c.quotient, static_cast<int>(b_c.remainder), at.row, at.column};
}

// The f32 value of element e: the (augmented) source pixel normalised, 0 inside the cutout,
// NaN for a plan row out of range. plan null: unaugmented, image b is images[first + b].
__device__ __forceinline__ float augmented_value(const std::uint8_t* images, const std::int32_t* plan,
                                                 const ImageElement& e, std::int64_t image_count, std::int64_t first,
                                                 int channels, std::int64_t height, std::int64_t width, int pad,
                                                 int cutout, const ImageNormalisation& normalisation) {
  const std::int64_t plane = height * width;
  const auto normalised = [&](std::uint8_t v) {
    return (static_cast<float>(v) / 255.0f - normalisation.mean[e.c]) / normalisation.stddev[e.c];
  };
  if (plan == nullptr) return normalised(images[((first + e.b) * channels + e.c) * plane + e.y * width + e.x]);
  const std::int32_t* row = plan + e.b * kImagePlanColumns;
  const std::int64_t source = row[kImagePlanSource];
  const std::int32_t shift_y = row[kImagePlanShiftY];
  const std::int32_t shift_x = row[kImagePlanShiftX];
  if (source < 0 || source >= image_count || shift_y < 0 || shift_y > 2 * pad || shift_x < 0 || shift_x > 2 * pad) {
    return NAN;
  }
  if (cutout > 0) {
    const std::int64_t corner_y = row[kImagePlanCutoutY];
    const std::int64_t corner_x = row[kImagePlanCutoutX];
    if (e.y >= corner_y && e.y < corner_y + cutout && e.x >= corner_x && e.x < corner_x + cutout) return 0.0f;
  }
  const std::int64_t x_flipped = row[kImagePlanFlip] != 0 ? width - 1 - e.x : e.x;
  const std::int64_t source_y = reflect_index(e.y + shift_y, pad, height);
  const std::int64_t source_x = reflect_index(x_flipped + shift_x, pad, width);
  return normalised(images[(source * channels + e.c) * plane + source_y * width + source_x]);
}

// One thread per element of out, in out's memory order (its stores coalesce whatever the
// layout), each value computed in f32 and rounded once to T.
template <typename T>
__global__ void image_augment_normalise_kernel(const std::uint8_t* images /* (N, C, H, W) */,
                                               const std::int32_t* plan /* (B, kImagePlanColumns) or null */,
                                               T* out /* (B, C, H, W) */, PlaneIndexer out_indexer,
                                               std::int64_t image_count, std::int64_t first, std::int64_t batch,
                                               int channels, std::int64_t height, std::int64_t width, int pad,
                                               int cutout, ImageNormalisation normalisation) {
  const std::int64_t total = batch * channels * height * width;
  for (std::int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const ImageElement e = image_element(i, out_indexer);
    detail::store_from_float(out, i, augmented_value(images, plan, e, image_count, first, channels, height, width, pad,
                                                     cutout, normalisation));
  }
}

void expect_image_set(const Tensor& images, const char* op) {
  expect_device_tensor(images, op, "images", DType::u8);
  expect_rank(images, 4, op, "images");
  STRATA_CHECK(images.size(1) >= 1 && images.size(1) <= kMaxImageChannels, "{}: images {} must have 1 to {} channels",
               op, images.shape().to_string(), kMaxImageChannels);
}

void expect_normalisation(const ImageNormalisation& normalisation, std::int64_t channels, const char* op) {
  for (std::int64_t c = 0; c < channels; ++c) {
    STRATA_CHECK(std::isfinite(normalisation.mean[c]) && std::isfinite(normalisation.stddev[c]) &&
                     normalisation.stddev[c] != 0.0f,
                 "{}: channel {} needs a finite mean and a finite non-zero stddev, got mean {} stddev {}", op, c,
                 normalisation.mean[c], normalisation.stddev[c]);
  }
}

void expect_augment_sizes(const ImageAugmentParams& params, std::int64_t height, std::int64_t width, const char* op) {
  STRATA_CHECK(params.pad >= 0 && params.pad < height && params.pad < width,
               "{}: pad {} must be in [0, min(H, W)) for reflect padding of {}x{} images", op, params.pad, height,
               width);
  STRATA_CHECK(params.cutout >= 0 && params.cutout <= height && params.cutout <= width,
               "{}: cutout {} must be in [0, min(H, W)] for {}x{} images", op, params.cutout, height, width);
}

LaunchConfig element_config(std::int64_t count, cudaStream_t stream, const char* name) {
  return LaunchConfig{
      .grid = grid_stride_blocks(count, kAugmentThreads), .block = kAugmentThreads, .stream = stream, .name = name};
}

// out in its dtype and memory order; plan null: images [first, first + B) unaugmented.
void launch_normalise(const Tensor& images, const std::int32_t* plan, std::int64_t first, Tensor& out, int pad,
                      int cutout, const ImageNormalisation& normalisation, cudaStream_t stream, const char* op) {
  if (out.numel() == 0) return;
  const PlaneIndexer out_indexer(PlaneLayout{.channels = out.size(1), .channels_last = !out.is_contiguous()},
                                 out.size(2), out.size(3));
  detail::dispatch_floating_dtype(out.dtype(), op, [&]<typename T>(std::type_identity<T>) {
    launch(image_augment_normalise_kernel<T>, element_config(out.numel(), stream, op), images.data<std::uint8_t>(),
           plan, memory_elements<T>(out), out_indexer, images.size(0), first, out.size(0),
           static_cast<int>(images.size(1)), images.size(2), images.size(3), pad, cutout, normalisation);
  });
}

}  // namespace

void image_augment_plan(const Tensor& image_ids, Tensor& plan, Size2d image_size, const ImageAugmentParams& params,
                        cudaStream_t stream) {
  NvtxRange range("image_augment_plan");
  constexpr const char* op = "image_augment_plan";
  expect_device_tensor(image_ids, op, "image_ids", DType::i32);
  expect_rank(image_ids, 1, op, "image_ids");
  expect_device_tensor(plan, op, "plan", DType::i32);
  expect_shape(plan, Shape{image_ids.size(0), kImagePlanColumns}, op, "plan");
  expect_distinct(plan, image_ids, op, "plan", "image_ids");
  STRATA_CHECK(image_size.h >= 1 && image_size.w >= 1, "{}: image_size {}x{} must be positive", op, image_size.h,
               image_size.w);
  expect_augment_sizes(params, image_size.h, image_size.w, op);
  STRATA_CHECK(params.epoch >= 0 && params.epoch < kEpochLimit, "{}: epoch {} must be in [0, 2^30)", op, params.epoch);
  const std::int64_t batch = image_ids.size(0);
  if (batch == 0) return;
  launch(image_augment_plan_kernel, element_config(batch, stream, op), image_ids.data<std::int32_t>(),
         plan.data<std::int32_t>(), batch, image_size.h, image_size.w, params);
}

void image_augment_normalise(const Tensor& images, const Tensor& plan, Tensor& out, const ImageAugmentParams& params,
                             const ImageNormalisation& normalisation, cudaStream_t stream) {
  NvtxRange range("image_augment_normalise");
  constexpr const char* op = "image_augment_normalise";
  expect_image_set(images, op);
  expect_device_tensor(plan, op, "plan", DType::i32);
  expect_rank(plan, 2, op, "plan");
  STRATA_CHECK(plan.size(1) == kImagePlanColumns, "{}: plan must have shape (B, {}), got {}", op, kImagePlanColumns,
               plan.shape().to_string());
  const std::int64_t batch = plan.size(0);
  const std::int64_t channels = images.size(1);
  const std::int64_t height = images.size(2);
  const std::int64_t width = images.size(3);
  expect_floating_device_tensor(out, op, "out");
  expect_shape(out, Shape{batch, channels, height, width}, op, "out");
  expect_distinct(out, images, op, "out", "images");
  expect_distinct(out, plan, op, "out", "plan");
  expect_augment_sizes(params, height, width, op);
  expect_normalisation(normalisation, channels, op);
  if (out.numel() == 0) return;
  launch_normalise(images, plan.data<std::int32_t>(), 0, out, params.pad, params.cutout, normalisation, stream, op);
}

void image_normalise(const Tensor& images, std::int64_t first, Tensor& out, const ImageNormalisation& normalisation,
                     cudaStream_t stream) {
  NvtxRange range("image_normalise");
  constexpr const char* op = "image_normalise";
  expect_image_set(images, op);
  expect_floating_device_tensor(out, op, "out");
  expect_rank(out, 4, op, "out");
  const std::int64_t batch = out.size(0);
  const std::int64_t channels = images.size(1);
  expect_shape(out, Shape{batch, channels, images.size(2), images.size(3)}, op, "out");
  STRATA_CHECK(first >= 0 && first + batch <= images.size(0), "{}: images [{}, {}) are not all in images {}", op, first,
               first + batch, images.shape().to_string());
  expect_distinct(out, images, op, "out", "images");
  expect_normalisation(normalisation, channels, op);
  if (out.numel() == 0) return;
  launch_normalise(images, nullptr, first, out, 0, 0, normalisation, stream, op);
}

}  // namespace strata::kernels
