// CIFAR-10 in the official binary format (cifar-10-batches-bin/: data_batch_1..5.bin and
// test_batch.bin, 3073-byte records: the label byte, then the R, G and B planes of 32x32
// bytes). Every file is validated as it is read; any problem names the file and the record.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace cifar10 {

inline constexpr int kImageSize = 32;
inline constexpr int kChannels = 3;
inline constexpr int kClasses = 10;
inline constexpr std::size_t kImageBytes = std::size_t{kChannels} * kImageSize * kImageSize;
inline constexpr std::size_t kRecordBytes = 1 + kImageBytes;

// Images and labels in host memory, in the files' order.
struct HostImages {
  std::vector<std::uint8_t> pixels;  // (N, 3, 32, 32)
  std::vector<std::uint8_t> labels;  // (N), each in [0, 10)
  std::int64_t count() const noexcept { return static_cast<std::int64_t>(labels.size()); }
};

// One batch file. Throws std::runtime_error naming the file when it is missing, unreadable,
// empty or not a multiple of 3073 bytes (saying by how much), and naming the record (its
// index and byte offset) when a label is outside [0, 10).
HostImages read_batch_file(const std::filesystem::path& file);
// The 50,000 training images (data_batch_1..5.bin) and the 10,000 test images
// (test_batch.bin) of batches_dir.
HostImages read_training_set(const std::filesystem::path& batches_dir);
HostImages read_test_set(const std::filesystem::path& batches_dir);

// The first count images of set, class-balanced (count / 10 of each class, in file order;
// the rest of count from the remaining images in file order): subsets for short runs.
HostImages balanced_subset(const HostImages& set, std::int64_t count);

// The folder holding the batch files: data_flag (--data) when not empty, else the
// environment variable STRATA_CIFAR10_DIR. Either may name cifar-10-batches-bin itself or
// the folder containing it. Throws std::runtime_error saying what was looked for where, and
// how to get the data (samples/cifar10/download_cifar10.sh, or ../shared/data in
// development), when neither is set or the folder lacks the files.
std::filesystem::path locate_batches_dir(const std::string& data_flag);

}  // namespace cifar10
