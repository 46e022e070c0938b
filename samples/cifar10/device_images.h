// The CIFAR-10 images on the device as uint8, and the loader that makes augmented,
// normalised training batches from them on the device, per epoch: shuffled, translated,
// flipped (airbench's alternating flip) and optionally cut out, all seeded per sample so
// that a run is reproducible and resumable at any epoch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include <cuda_runtime_api.h>

#include <strata/core/memory_format.h>
#include <strata/core/tensor.h>
#include <strata/kernels/image_augment.h>

#include "cifar10_files.h"

namespace cifar10 {

// CIFAR-10's per-channel mean and standard deviation (of the training set, in [0, 1]).
struct Normalisation {
  float mean[3] = {0.4914f, 0.4822f, 0.4465f};
  float std[3] = {0.2470f, 0.2435f, 0.2616f};
};

// The same numbers in the form the augmentation kernels take.
strata::kernels::ImageNormalisation kernel_normalisation(const Normalisation& normalisation);

// Where the uint8 images live. device: uploaded once (CIFAR-10 is 150 MB). pinned_host:
// kept in pinned host memory, each batch's images gathered on the host into a pinned
// buffer and copied asynchronously, for devices too small for the set. automatic: device
// when the images fit in half the free memory (automatic_placement).
enum class Placement : std::uint8_t { automatic, device, pinned_host };

// device when image_bytes <= free_bytes / 2, else pinned_host. DeviceImages passes the
// current device's total memory less what Strata's allocator has reserved: Strata's public
// API does not expose cudaMemGetInfo, so memory other processes hold is not seen.
Placement automatic_placement(std::size_t image_bytes, std::size_t free_bytes);

// How the normalised images of a batch are stored: the dtype and memory format the network's
// first layer reads (a recipe's precision and --channels-last), so that the normalising kernel
// writes them once as the network takes them, with no conversion or cast pass afterwards (the
// values are those of the f32 contiguous batch cast and converted, bit for bit).
struct BatchStorage {
  strata::DType dtype = strata::DType::f32;  // f32, f16 or bf16
  strata::MemoryFormat memory_format = strata::MemoryFormat::contiguous;
};

// The images and labels of a HostImages copied once, the uploads queued on stream (the
// HostImages may go as soon as the constructor returns). Throws std::invalid_argument when
// images.pixels does not hold count() images.
class DeviceImages {
 public:
  DeviceImages(const HostImages& images, Placement placement, cudaStream_t stream);

  std::int64_t count() const noexcept { return count_; }
  Placement placement() const noexcept { return placement_; }  // device or pinned_host, never automatic
  // The labels as i64 on the device. (N)
  const strata::Tensor& labels() const noexcept { return labels_; }
  // The labels on the host, for gathering each batch's. (N)
  const std::vector<std::int64_t>& host_labels() const noexcept { return host_labels_; }
  // Images [begin, begin + count) normalised on the device, no augmentation: for evaluation
  // and whitening. (count, 3, 32, 32), stored as storage says (f32 contiguous by default).
  // Throws std::out_of_range outside [0, N).
  strata::Tensor normalised(std::int64_t begin, std::int64_t count, const Normalisation& normalisation,
                            cudaStream_t stream, const BatchStorage& storage = {}) const;

  // device placement: all images, u8 on the device. (N, 3, 32, 32); undefined under pinned_host.
  const strata::Tensor& device_pixels() const noexcept { return device_pixels_; }
  // pinned_host placement: images ids, in order, gathered on the host into a pinned buffer
  // and copied to a new device tensor on stream. (ids.size(), 3, 32, 32) u8. Throws
  // std::logic_error under device placement, std::out_of_range for an id outside [0, N).
  strata::Tensor stage(std::span<const std::int32_t> ids, cudaStream_t stream) const;

 private:
  std::int64_t count_ = 0;
  Placement placement_ = Placement::device;
  strata::Tensor device_pixels_;  // (N, 3, 32, 32) u8, device placement
  strata::Tensor pinned_pixels_;  // (N, 3, 32, 32) u8, pinned_host placement
  strata::Tensor labels_;         // (N) i64, device
  std::vector<std::int64_t> host_labels_;
};

// The augmentation is strata::kernels::image_augment_plan and image_augment_normalise
// (<strata/kernels/image_augment.h>, which documents the exact conventions: torch's reflect
// padding, airbench's crop-then-flip and its cutout, zero after normalisation).
struct AugmentOptions {
  int translate = 2;             // reflect-pad by this many pixels (< 32), then a random 32x32 crop; 0: none
  bool alternating_flip = true;  // airbench's flip: random per image in epoch 0, mirrored in odd epochs
  int cutout = 0;                // side (<= 32) of a square zeroed after normalisation, at random; 0: none
  Normalisation normalisation{};
};

struct Batch {
  strata::Tensor images;  // (B, 3, 32, 32), normalised and augmented, on the device, as BatchStorage says
  strata::Tensor labels;  // (B) i64, on the device
};

// The order of the images in an epoch: a Fisher-Yates shuffle of 0..count-1 driven by
// Philox (key seed; the swap partner of position i, from count - 1 down to 1, is
// mul_hi(word, i + 1) of word 0 of group 2^63 + epoch * 2^32 + i, a range the
// augmentation's groups never reach). A function of (count, seed, epoch) only.
std::vector<std::int32_t> epoch_permutation(std::int64_t count, std::uint64_t seed, int epoch);

class EpochLoader {
 public:
  // Batches of batch_size, reshuffled every epoch; drop_last leaves out the last partial one.
  // Every random choice (order, translation, flip, cutout) is a function of seed, the epoch
  // and the image, so an epoch is the same however often, and after whichever resume, it runs.
  // images must outlive the loader. Starts in epoch 0. Batches are stored as storage says.
  // Throws std::invalid_argument for a batch_size below 1 or options outside their ranges.
  EpochLoader(const DeviceImages& images, int batch_size, bool drop_last, const AugmentOptions& options,
              std::uint64_t seed, const BatchStorage& storage = {});
  std::int64_t batches_per_epoch() const noexcept;
  // Shuffles for epoch (in [0, 2^30)); batches may then be asked for in any order.
  void start_epoch(int epoch);
  int epoch() const noexcept { return epoch_; }
  // This epoch's order of the images: batch i holds order()[i * batch_size ...].
  const std::vector<std::int32_t>& order() const noexcept { return order_; }
  // Batch index (in [0, batches_per_epoch())) of the current epoch, queued on stream: its
  // ids and labels gathered on the host and copied, then the augmentation kernels. The last
  // batch without drop_last may be smaller. Throws std::out_of_range for a bad index.
  Batch batch(std::int64_t index, cudaStream_t stream);

 private:
  const DeviceImages* images_;
  int batch_size_;
  bool drop_last_;
  AugmentOptions options_;
  std::uint64_t seed_;
  BatchStorage storage_;
  int epoch_ = 0;
  std::vector<std::int32_t> order_;
};

}  // namespace cifar10
