// EpochLoader: each epoch's shuffled order on the host (a Philox permutation), each batch's
// ids and labels gathered on the host into pinned memory and copied, then the augmentation
// kernels of <strata/kernels/image_augment.h> on the device.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <strata/core/philox.h>

#include "device_images.h"

namespace cifar10 {

namespace {

constexpr std::uint64_t kShuffleGroups = std::uint64_t{1} << 63;
constexpr int kEpochLimit = 1 << 30;

void check_epoch(int epoch, const char* where) {
  if (epoch < 0 || epoch >= kEpochLimit) {
    throw std::invalid_argument(std::string(where) + ": epoch " + std::to_string(epoch) + " is outside [0, 2^30)");
  }
}

// A pinned host tensor of values, to be copied to the device on a stream.
template <typename T>
strata::Tensor pinned_copy(const std::vector<T>& values) {
  strata::Tensor tensor = strata::Tensor::empty_pinned({static_cast<std::int64_t>(values.size())}, strata::dtype_of<T>);
  std::copy(values.begin(), values.end(), tensor.data<T>());
  return tensor;
}

strata::Tensor to_device(const strata::Tensor& pinned, cudaStream_t stream) {
  strata::Tensor device = strata::Tensor::empty(pinned.shape(), pinned.dtype(), stream);
  device.copy_from(pinned, stream);
  return device;
}

}  // namespace

std::vector<std::int32_t> epoch_permutation(std::int64_t count, std::uint64_t seed, int epoch) {
  check_epoch(epoch, "epoch_permutation");
  if (count < 0 || count > std::int64_t{1} << 31) {
    throw std::invalid_argument("epoch_permutation: " + std::to_string(count) + " images; at most 2^31");
  }
  std::vector<std::int32_t> order(static_cast<std::size_t>(count));
  for (std::int64_t i = 0; i < count; ++i) order[static_cast<std::size_t>(i)] = static_cast<std::int32_t>(i);
  const std::uint64_t epoch_groups = kShuffleGroups + (static_cast<std::uint64_t>(epoch) << 32);
  for (std::int64_t i = count - 1; i > 0; --i) {
    const std::uint32_t word = strata::philox_group(seed, epoch_groups + static_cast<std::uint64_t>(i)).x[0];
    const auto j =
        static_cast<std::int64_t>((static_cast<std::uint64_t>(word) * static_cast<std::uint64_t>(i + 1)) >> 32);
    std::swap(order[static_cast<std::size_t>(i)], order[static_cast<std::size_t>(j)]);
  }
  return order;
}

EpochLoader::EpochLoader(const DeviceImages& images, int batch_size, bool drop_last, const AugmentOptions& options,
                         std::uint64_t seed, const BatchStorage& storage)
    : images_(&images),
      batch_size_(batch_size),
      drop_last_(drop_last),
      options_(options),
      seed_(seed),
      storage_(storage) {
  if (batch_size < 1) {
    throw std::invalid_argument("EpochLoader: batch size " + std::to_string(batch_size) + " must be at least 1");
  }
  if (options.translate < 0 || options.translate >= kImageSize) {
    throw std::invalid_argument("EpochLoader: translate " + std::to_string(options.translate) + " must be in [0, " +
                                std::to_string(kImageSize) + ")");
  }
  if (options.cutout < 0 || options.cutout > kImageSize) {
    throw std::invalid_argument("EpochLoader: cutout " + std::to_string(options.cutout) + " must be in [0, " +
                                std::to_string(kImageSize) + "]");
  }
  start_epoch(0);
}

std::int64_t EpochLoader::batches_per_epoch() const noexcept {
  const std::int64_t count = images_->count();
  return drop_last_ ? count / batch_size_ : (count + batch_size_ - 1) / batch_size_;
}

void EpochLoader::start_epoch(int epoch) {
  check_epoch(epoch, "EpochLoader::start_epoch");
  epoch_ = epoch;
  order_ = epoch_permutation(images_->count(), seed_, epoch);
}

Batch EpochLoader::batch(std::int64_t index, cudaStream_t stream) {
  if (index < 0 || index >= batches_per_epoch()) {
    throw std::out_of_range("EpochLoader::batch: batch " + std::to_string(index) + " of an epoch of " +
                            std::to_string(batches_per_epoch()));
  }
  const std::int64_t first = index * batch_size_;
  const std::int64_t count = std::min<std::int64_t>(batch_size_, images_->count() - first);
  const std::vector<std::int32_t> ids(order_.begin() + first, order_.begin() + first + count);
  std::vector<std::int64_t> labels(ids.size());
  for (std::size_t b = 0; b < ids.size(); ++b) labels[b] = images_->host_labels()[static_cast<std::size_t>(ids[b])];

  const strata::kernels::ImageAugmentParams params{
      .pad = options_.translate,
      .cutout = options_.cutout,
      .flip = options_.alternating_flip ? strata::kernels::ImageFlip::alternating : strata::kernels::ImageFlip::none,
      .seed = seed_,
      .epoch = epoch_,
      .staged = images_->placement() == Placement::pinned_host};
  const strata::Tensor device_ids = to_device(pinned_copy(ids), stream);  // (B)
  strata::Tensor plan = strata::Tensor::empty({count, strata::kernels::kImagePlanColumns}, strata::DType::i32, stream);
  strata::kernels::image_augment_plan(device_ids, plan, {kImageSize, kImageSize}, params, stream);

  Batch batch;
  batch.images = strata::Tensor::empty({count, kChannels, kImageSize, kImageSize}, storage_.dtype, stream,
                                       storage_.memory_format);
  batch.labels = to_device(pinned_copy(labels), stream);
  const strata::Tensor source = params.staged ? images_->stage(ids, stream) : images_->device_pixels();
  strata::kernels::image_augment_normalise(source, plan, batch.images, params,
                                           kernel_normalisation(options_.normalisation), stream);
  return batch;
}

}  // namespace cifar10
