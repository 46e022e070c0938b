// DeviceImages: the uint8 images on the device (or in pinned host memory when the device is
// too small), their labels, and the unaugmented normalised views used for evaluation.
#include "device_images.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include <strata/core/allocator.h>
#include <strata/core/device.h>
#include <strata/kernels/image_augment.h>

namespace cifar10 {

namespace {

Placement resolve_placement(Placement placement, std::size_t image_bytes) {
  if (placement != Placement::automatic) return placement;
  const std::size_t total = strata::device_properties().total_memory_bytes;
  const std::size_t reserved = strata::device_memory_stats(strata::current_device()).reserved_bytes;
  return automatic_placement(image_bytes, total > reserved ? total - reserved : 0);
}

}  // namespace

strata::kernels::ImageNormalisation kernel_normalisation(const Normalisation& normalisation) {
  strata::kernels::ImageNormalisation result;
  for (int c = 0; c < kChannels; ++c) {
    result.mean[c] = normalisation.mean[c];
    result.stddev[c] = normalisation.std[c];
  }
  return result;
}

Placement automatic_placement(std::size_t image_bytes, std::size_t free_bytes) {
  return image_bytes <= free_bytes / 2 ? Placement::device : Placement::pinned_host;
}

DeviceImages::DeviceImages(const HostImages& images, Placement placement, cudaStream_t stream)
    : count_(images.count()) {
  if (images.pixels.size() != static_cast<std::size_t>(count_) * kImageBytes) {
    throw std::invalid_argument("DeviceImages: " + std::to_string(images.pixels.size()) + " pixel bytes for " +
                                std::to_string(count_) + " labels; expected " +
                                std::to_string(static_cast<std::size_t>(count_) * kImageBytes));
  }
  const strata::Shape shape{count_, kChannels, kImageSize, kImageSize};
  placement_ = resolve_placement(placement, images.pixels.size());
  if (placement_ == Placement::device) {
    device_pixels_ = strata::Tensor::empty(shape, strata::DType::u8, stream);
    device_pixels_.copy_from_host_async(std::span<const std::uint8_t>(images.pixels), stream);
  } else {
    pinned_pixels_ = strata::Tensor::empty_pinned(shape, strata::DType::u8);
    if (!images.pixels.empty()) std::memcpy(pinned_pixels_.data_ptr(), images.pixels.data(), images.pixels.size());
  }
  host_labels_.assign(images.labels.begin(), images.labels.end());
  labels_ = strata::Tensor::empty({count_}, strata::DType::i64, stream);
  labels_.copy_from_host_async(std::span<const std::int64_t>(host_labels_), stream);
}

strata::Tensor DeviceImages::normalised(std::int64_t begin, std::int64_t count, const Normalisation& normalisation,
                                        cudaStream_t stream, const BatchStorage& storage) const {
  if (begin < 0 || count < 0 || begin + count > count_) {
    throw std::out_of_range("DeviceImages::normalised: images [" + std::to_string(begin) + ", " +
                            std::to_string(begin + count) + ") of a set of " + std::to_string(count_));
  }
  strata::Tensor out = strata::Tensor::empty({count, kChannels, kImageSize, kImageSize}, storage.dtype, stream,
                                             storage.memory_format);
  if (placement_ == Placement::device) {
    strata::kernels::image_normalise(device_pixels_, begin, out, kernel_normalisation(normalisation), stream);
  } else {
    // A contiguous range needs no gather: one asynchronous copy out of the pinned set.
    strata::Tensor staged =
        strata::Tensor::empty({count, kChannels, kImageSize, kImageSize}, strata::DType::u8, stream);
    staged.copy_from(pinned_pixels_.narrow(0, begin, count), stream);
    strata::kernels::image_normalise(staged, 0, out, kernel_normalisation(normalisation), stream);
  }
  return out;
}

strata::Tensor DeviceImages::stage(std::span<const std::int32_t> ids, cudaStream_t stream) const {
  if (placement_ != Placement::pinned_host) {
    throw std::logic_error("DeviceImages::stage: the images are on the device already (placement device)");
  }
  const auto batch = static_cast<std::int64_t>(ids.size());
  const strata::Shape shape{batch, kChannels, kImageSize, kImageSize};
  // A fresh pinned block each batch: the pinned cache reuses it only once the copy is done.
  strata::Tensor gathered = strata::Tensor::empty_pinned(shape, strata::DType::u8);
  const std::uint8_t* set = pinned_pixels_.data<std::uint8_t>();
  std::uint8_t* into = gathered.data<std::uint8_t>();
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int32_t id = ids[static_cast<std::size_t>(b)];
    if (id < 0 || id >= count_) {
      throw std::out_of_range("DeviceImages::stage: image " + std::to_string(id) + " of a set of " +
                              std::to_string(count_));
    }
    std::memcpy(into + static_cast<std::size_t>(b) * kImageBytes, set + static_cast<std::size_t>(id) * kImageBytes,
                kImageBytes);
  }
  strata::Tensor staged = strata::Tensor::empty(shape, strata::DType::u8, stream);
  staged.copy_from(gathered, stream);
  return staged;
}

}  // namespace cifar10
