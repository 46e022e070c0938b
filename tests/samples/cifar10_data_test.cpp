// The CIFAR-10 sample's data: the batch-file reader and its messages (on small files written
// here), balanced subsets, finding the data folder, the epoch permutation, and the loader:
// determinism per seed, the alternating flip, drop_last, and pinned_host placement giving
// the same batches as device placement. When ../shared/data is present, the real set
// converted into the build tree: 50,000 and 10,000 images, 5,000 and 1,000 of each class.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "cifar10_files.h"
#include "device_images.h"
#include "strata/core/philox.h"
#include "strata/core/stream.h"

namespace cifar10 {
namespace {

namespace fs = std::filesystem;

// A fresh folder under the temporary directory, removed with the object.
class TempFolder {
 public:
  explicit TempFolder(const std::string& name)
      : path_(fs::temp_directory_path() / ("strata-cifar10-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempFolder() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempFolder(const TempFolder&) = delete;
  TempFolder& operator=(const TempFolder&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// count images with labels label_of(i) and seeded pixels.
HostImages make_images(std::int64_t count, std::uint64_t seed, const std::function<int(std::int64_t)>& label_of) {
  HostImages images;
  for (std::int64_t i = 0; i < count; ++i) images.labels.push_back(static_cast<std::uint8_t>(label_of(i)));
  images.pixels.resize(static_cast<std::size_t>(count) * kImageBytes);
  for (std::size_t i = 0; i < images.pixels.size(); ++i) {
    images.pixels[i] = static_cast<std::uint8_t>(strata::philox_group(seed, i / 4).x[i % 4] >> 24);
  }
  return images;
}

HostImages cyclic_images(std::int64_t count, std::uint64_t seed) {
  return make_images(count, seed, [](std::int64_t i) { return static_cast<int>(i % kClasses); });
}

// The records of images in the official layout.
std::vector<std::uint8_t> records_of(const HostImages& images) {
  std::vector<std::uint8_t> bytes;
  for (std::int64_t i = 0; i < images.count(); ++i) {
    bytes.push_back(images.labels[static_cast<std::size_t>(i)]);
    const auto first = images.pixels.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(i) * kImageBytes);
    bytes.insert(bytes.end(), first, first + static_cast<std::ptrdiff_t>(kImageBytes));
  }
  return bytes;
}

void write_file(const fs::path& file, const std::vector<std::uint8_t>& bytes) {
  std::ofstream stream(file, std::ios::binary);
  stream.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// data_batch_1..5.bin of 3 images each and test_batch.bin of 4 into folder.
void write_batch_folder(const fs::path& folder) {
  fs::create_directories(folder);
  for (int b = 1; b <= 5; ++b) {
    write_file(folder / ("data_batch_" + std::to_string(b) + ".bin"),
               records_of(cyclic_images(3, static_cast<std::uint64_t>(b))));
  }
  write_file(folder / "test_batch.bin", records_of(cyclic_images(4, 9)));
}

std::string message_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const std::exception& error) {
    return error.what();
  }
  return "(no exception)";
}

// Sets or clears an environment variable for a scope.
class ScopedEnvironment {
 public:
  ScopedEnvironment(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnvironment() {
    if (old_.empty()) {
      ::unsetenv(name_);
    } else {
      ::setenv(name_, old_.c_str(), 1);
    }
  }
  ScopedEnvironment(const ScopedEnvironment&) = delete;
  ScopedEnvironment& operator=(const ScopedEnvironment&) = delete;

 private:
  const char* name_;
  std::string old_;
};

std::vector<std::uint32_t> bits_of(const strata::Tensor& tensor, cudaStream_t stream) {
  std::vector<std::uint32_t> bits;
  for (const float value : tensor.to_vector<float>(stream)) bits.push_back(std::bit_cast<std::uint32_t>(value));
  return bits;
}

TEST(Cifar10Files, ReadsWhatWasWritten) {
  const TempFolder folder("round-trip");
  const HostImages written = make_images(7, 11, [](std::int64_t i) { return static_cast<int>((3 * i + 1) % 10); });
  write_file(folder.path() / "batch.bin", records_of(written));
  const HostImages read = read_batch_file(folder.path() / "batch.bin");
  EXPECT_EQ(read.count(), 7);
  EXPECT_EQ(read.labels, written.labels);
  EXPECT_EQ(read.pixels, written.pixels);

  write_batch_folder(folder.path() / "cifar-10-batches-bin");
  const HostImages training = read_training_set(folder.path() / "cifar-10-batches-bin");
  ASSERT_EQ(training.count(), 15);
  // The five files in order: images 3 (b - 1) .. 3 b - 1 are file b's.
  for (int b = 1; b <= 5; ++b) {
    const HostImages part = cyclic_images(3, static_cast<std::uint64_t>(b));
    EXPECT_TRUE(std::equal(part.pixels.begin(), part.pixels.end(),
                           training.pixels.begin() + static_cast<std::ptrdiff_t>(3 * (b - 1) * kImageBytes)))
        << "file " << b;
  }
  EXPECT_EQ(read_test_set(folder.path() / "cifar-10-batches-bin").pixels, cyclic_images(4, 9).pixels);
}

TEST(Cifar10Files, TruncatedFileSaysByHowMuch) {
  const TempFolder folder("truncated");
  std::vector<std::uint8_t> bytes = records_of(cyclic_images(2, 1));
  bytes.resize(bytes.size() + 100, 5);
  write_file(folder.path() / "data_batch_1.bin", bytes);
  const std::string message = message_of([&] { read_batch_file(folder.path() / "data_batch_1.bin"); });
  EXPECT_NE(message.find((folder.path() / "data_batch_1.bin").string()), std::string::npos) << message;
  EXPECT_NE(message.find("holds 6246 bytes, not a multiple of the 3073-byte record: 2 whole records and 100 bytes"),
            std::string::npos)
      << message;

  write_file(folder.path() / "empty.bin", {});
  EXPECT_NE(message_of([&] { read_batch_file(folder.path() / "empty.bin"); }).find("empty.bin: is empty"),
            std::string::npos);
}

TEST(Cifar10Files, BadLabelNamesTheRecordAndItsOffset) {
  const TempFolder folder("bad-label");
  std::vector<std::uint8_t> bytes = records_of(cyclic_images(5, 2));
  bytes[3 * kRecordBytes] = 10;
  write_file(folder.path() / "test_batch.bin", bytes);
  const std::string message = message_of([&] { read_batch_file(folder.path() / "test_batch.bin"); });
  EXPECT_NE(message.find((folder.path() / "test_batch.bin").string()), std::string::npos) << message;
  EXPECT_NE(message.find("record 3 (byte offset 9219) has label 10, outside [0, 10)"), std::string::npos) << message;
}

TEST(Cifar10Files, MissingFileSaysHowToGetTheData) {
  const TempFolder folder("missing");
  const std::string message = message_of([&] { read_training_set(folder.path()); });
  EXPECT_NE(message.find((folder.path() / "data_batch_1.bin").string() + ": not found"), std::string::npos) << message;
  EXPECT_NE(message.find("download_cifar10.sh"), std::string::npos) << message;
  EXPECT_NE(message.find("make_cifar10_bin.py"), std::string::npos) << message;
}

TEST(Cifar10Files, BalancedSubsetTakesEachClassInFileOrder) {
  // Class 0 for images 0..29, then classes 1..9 three times each: 57 images.
  const HostImages set =
      make_images(57, 3, [](std::int64_t i) { return i < 30 ? 0 : static_cast<int>(1 + (i - 30) % 9); });
  const HostImages subset = balanced_subset(set, 23);  // 2 of each class, then 3 more in file order
  ASSERT_EQ(subset.count(), 23);
  std::array<int, kClasses> histogram{};
  for (const std::uint8_t label : subset.labels) ++histogram[label];
  // Classes 1..9 have 3 images each, so the 3 extra come from the first unchosen: class 0's.
  EXPECT_EQ(histogram[0], 5);
  for (int c = 1; c < kClasses; ++c) EXPECT_EQ(histogram[static_cast<std::size_t>(c)], 2) << "class " << c;
  // Kept in file order: images 0..4 (class 0), then 30, 31, ... (two of each other class).
  EXPECT_TRUE(std::equal(subset.pixels.begin(), subset.pixels.begin() + 5 * kImageBytes, set.pixels.begin()));
  EXPECT_TRUE(std::equal(subset.pixels.begin() + 5 * kImageBytes, subset.pixels.begin() + 7 * kImageBytes,
                         set.pixels.begin() + 30 * kImageBytes));

  EXPECT_EQ(balanced_subset(set, 57).pixels, set.pixels);
  EXPECT_EQ(balanced_subset(set, 0).count(), 0);
  EXPECT_NE(message_of([&] { balanced_subset(set, 58); }).find("58 images of a set of 57"), std::string::npos);
}

TEST(Cifar10Files, LocatesTheBatchesFolder) {
  const TempFolder folder("locate");
  const fs::path inner = folder.path() / "cifar-10-batches-bin";
  write_batch_folder(inner);
  const ScopedEnvironment no_environment("STRATA_CIFAR10_DIR", nullptr);
  EXPECT_EQ(locate_batches_dir(folder.path().string()), inner);  // the parent
  EXPECT_EQ(locate_batches_dir(inner.string()), inner);          // the folder itself
  {
    const ScopedEnvironment environment("STRATA_CIFAR10_DIR", folder.path().c_str());
    EXPECT_EQ(locate_batches_dir(""), inner);
  }

  const std::string unset = message_of([] { locate_batches_dir(""); });
  EXPECT_NE(unset.find("neither --data nor STRATA_CIFAR10_DIR is set"), std::string::npos) << unset;
  EXPECT_NE(unset.find("download_cifar10.sh"), std::string::npos) << unset;

  const std::string not_folder = message_of([&] { locate_batches_dir((folder.path() / "nowhere").string()); });
  EXPECT_NE(not_folder.find("which is not a folder"), std::string::npos) << not_folder;

  fs::remove(inner / "data_batch_4.bin");
  fs::remove(inner / "test_batch.bin");
  const ScopedEnvironment environment("STRATA_CIFAR10_DIR", folder.path().c_str());
  const std::string incomplete = message_of([] { locate_batches_dir(""); });
  EXPECT_NE(incomplete.find("STRATA_CIFAR10_DIR names " + folder.path().string()), std::string::npos) << incomplete;
  EXPECT_NE(incomplete.find("lacks data_batch_4.bin, test_batch.bin"), std::string::npos) << incomplete;
}

TEST(Cifar10Loader, EpochPermutationIsAFunctionOfSeedAndEpoch) {
  const std::vector<std::int32_t> order = epoch_permutation(1000, 5, 3);
  std::vector<std::int32_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  for (std::int32_t i = 0; i < 1000; ++i) ASSERT_EQ(sorted[static_cast<std::size_t>(i)], i);
  EXPECT_EQ(epoch_permutation(1000, 5, 3), order);
  EXPECT_NE(epoch_permutation(1000, 5, 4), order);
  EXPECT_NE(epoch_permutation(1000, 6, 3), order);
  int fixed = 0;
  for (std::int32_t i = 0; i < 1000; ++i) fixed += order[static_cast<std::size_t>(i)] == i ? 1 : 0;
  EXPECT_LT(fixed, 10);  // a shuffle leaves about one image in place
  EXPECT_TRUE(epoch_permutation(0, 1, 0).empty());
  EXPECT_EQ(epoch_permutation(1, 1, 0), std::vector<std::int32_t>{0});
}

TEST(Cifar10Loader, BatchCountsAndLabelsFollowTheOrder) {
  const cudaStream_t stream = strata::current_stream();
  const HostImages host = cyclic_images(10, 4);
  const DeviceImages images(host, Placement::device, stream);
  EXPECT_EQ(images.count(), 10);
  EXPECT_EQ(images.labels().to_vector<std::int64_t>(stream),
            std::vector<std::int64_t>(host.labels.begin(), host.labels.end()));
  EpochLoader dropping(images, 4, /*drop_last=*/true, {}, 1);
  EpochLoader keeping(images, 4, /*drop_last=*/false, {}, 1);
  EXPECT_EQ(dropping.batches_per_epoch(), 2);
  EXPECT_EQ(keeping.batches_per_epoch(), 3);
  EXPECT_EQ(EpochLoader(images, 11, true, {}, 1).batches_per_epoch(), 0);
  EXPECT_EQ(EpochLoader(images, 11, false, {}, 1).batches_per_epoch(), 1);

  keeping.start_epoch(2);
  const Batch last = keeping.batch(2, stream);
  EXPECT_EQ(last.images.shape(), (strata::Shape{2, 3, 32, 32}));
  std::vector<std::int64_t> expected_labels;
  for (std::size_t i = 8; i < 10; ++i)
    expected_labels.push_back(host.labels[static_cast<std::size_t>(keeping.order()[i])]);
  EXPECT_EQ(last.labels.to_vector<std::int64_t>(stream), expected_labels);
  EXPECT_EQ(keeping.order(), epoch_permutation(10, 1, 2));
  EXPECT_NE(message_of([&] { dropping.batch(2, stream); }).find("batch 2 of an epoch of 2"), std::string::npos);
  EXPECT_NE(message_of([&] { EpochLoader(images, 0, true, {}, 1); }).find("batch size 0"), std::string::npos);
  EXPECT_NE(message_of([&] { EpochLoader(images, 4, true, {.translate = 32}, 1); }).find("translate 32"),
            std::string::npos);
}

// Without translation or cutout, every batch image is the normalised image its order names,
// or its mirror: mirrored in odd epochs exactly where it was not in epoch 0, and as in epoch
// 0 in even ones.
TEST(Cifar10Loader, AlternatingFlipMirrorsEpochZeroInOddEpochs) {
  const cudaStream_t stream = strata::current_stream();
  const std::int64_t count = 24;
  const DeviceImages images(cyclic_images(count, 6), Placement::device, stream);
  const std::vector<float> plain = images.normalised(0, count, {}, stream).to_vector<float>(stream);
  const std::size_t image_floats = kImageBytes;
  auto is_mirror = [&](const std::vector<float>& batch, std::size_t b, std::int32_t id) {
    for (std::size_t row = 0; row < 3 * 32; ++row) {
      for (std::size_t x = 0; x < 32; ++x) {
        if (batch[b * image_floats + row * 32 + x] !=
            plain[static_cast<std::size_t>(id) * image_floats + row * 32 + 31 - x]) {
          return false;
        }
      }
    }
    return true;
  };
  auto is_plain = [&](const std::vector<float>& batch, std::size_t b, std::int32_t id) {
    return std::equal(batch.begin() + static_cast<std::ptrdiff_t>(b * image_floats),
                      batch.begin() + static_cast<std::ptrdiff_t>((b + 1) * image_floats),
                      plain.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(id) * image_floats));
  };
  EpochLoader loader(images, 8, true, {.translate = 0, .alternating_flip = true, .cutout = 0}, 21);
  std::vector<int> flipped_in_epoch0(static_cast<std::size_t>(count), -1);
  for (const int epoch : {0, 1, 2, 3}) {
    loader.start_epoch(epoch);
    for (std::int64_t index = 0; index < loader.batches_per_epoch(); ++index) {
      const std::vector<float> batch = loader.batch(index, stream).images.to_vector<float>(stream);
      for (std::size_t b = 0; b < 8; ++b) {
        const std::int32_t id = loader.order()[static_cast<std::size_t>(index * 8) + b];
        const bool mirrored = is_mirror(batch, b, id);
        ASSERT_TRUE(mirrored || is_plain(batch, b, id)) << "epoch " << epoch << ", image " << id;
        int& first = flipped_in_epoch0[static_cast<std::size_t>(id)];
        if (epoch == 0) {
          first = mirrored ? 1 : 0;
        } else {
          EXPECT_EQ(mirrored ? 1 : 0, first ^ (epoch & 1)) << "epoch " << epoch << ", image " << id;
        }
      }
    }
  }
  const auto flips = std::count(flipped_in_epoch0.begin(), flipped_in_epoch0.end(), 1);
  EXPECT_GT(flips, 3);  // random in epoch 0: about half of 24
  EXPECT_LT(flips, 21);
}

TEST(Cifar10Loader, SameSeedSameBatchesAndPinnedHostMatchesDevice) {
  const cudaStream_t stream = strata::current_stream();
  const HostImages host = cyclic_images(37, 8);
  const DeviceImages on_device(host, Placement::device, stream);
  const DeviceImages pinned(host, Placement::pinned_host, stream);
  EXPECT_EQ(pinned.placement(), Placement::pinned_host);
  const AugmentOptions options{.translate = 2, .alternating_flip = true, .cutout = 8};
  EpochLoader first(on_device, 16, false, options, 99);
  EpochLoader again(on_device, 16, false, options, 99);
  EpochLoader from_pinned(pinned, 16, false, options, 99);
  EpochLoader other_seed(on_device, 16, false, options, 100);
  for (const int epoch : {0, 5}) {
    for (EpochLoader* loader : {&first, &again, &from_pinned, &other_seed}) loader->start_epoch(epoch);
    for (std::int64_t index = 0; index < first.batches_per_epoch(); ++index) {
      SCOPED_TRACE("epoch " + std::to_string(epoch) + ", batch " + std::to_string(index));
      const Batch expected = first.batch(index, stream);
      const std::vector<std::uint32_t> expected_bits = bits_of(expected.images, stream);
      EXPECT_EQ(bits_of(again.batch(index, stream).images, stream), expected_bits);
      const Batch staged = from_pinned.batch(index, stream);
      EXPECT_EQ(bits_of(staged.images, stream), expected_bits);
      EXPECT_EQ(staged.labels.to_vector<std::int64_t>(stream), expected.labels.to_vector<std::int64_t>(stream));
      EXPECT_NE(bits_of(other_seed.batch(index, stream).images, stream), expected_bits);
    }
  }
  // A resumed run: a fresh loader started at epoch 5 gives epoch 5's batches.
  EpochLoader resumed(on_device, 16, false, options, 99);
  resumed.start_epoch(5);
  EXPECT_EQ(bits_of(resumed.batch(1, stream).images, stream), bits_of(first.batch(1, stream).images, stream));

  EXPECT_EQ(bits_of(pinned.normalised(5, 20, {}, stream), stream),
            bits_of(on_device.normalised(5, 20, {}, stream), stream));
  EXPECT_NE(message_of([&] { on_device.normalised(30, 8, {}, stream); }).find("images [30, 38) of a set of 37"),
            std::string::npos);
}

// Batches stored as BatchStorage says (the network's dtype and memory format) are the f32
// contiguous batches cast and converted, bit for bit, from either placement; and so are the
// unaugmented normalised images.
TEST(Cifar10Loader, BatchesStoredInAnyDtypeAndFormatAreTheF32OnesConverted) {
  const cudaStream_t stream = strata::current_stream();
  const HostImages host = cyclic_images(20, 8);
  const DeviceImages on_device(host, Placement::device, stream);
  const DeviceImages pinned(host, Placement::pinned_host, stream);
  const AugmentOptions options{.translate = 2, .alternating_flip = true, .cutout = 8};
  EpochLoader f32_loader(on_device, 8, true, options, 17);
  // The elements in (N, C, H, W) order, widened exactly to f32.
  const auto stored_bits = [&](const strata::Tensor& images) {
    return bits_of(images.contiguous(stream).to_dtype(strata::DType::f32, stream), stream);
  };
  const auto as_stored = [&](const strata::Tensor& f32, const BatchStorage& storage) {
    return stored_bits(f32.to_dtype(storage.dtype, stream).to_memory_format(storage.memory_format, stream));
  };
  for (const BatchStorage storage : {BatchStorage{strata::DType::bf16, strata::MemoryFormat::channels_last},
                                     BatchStorage{strata::DType::f16, strata::MemoryFormat::contiguous},
                                     BatchStorage{strata::DType::f32, strata::MemoryFormat::channels_last}}) {
    SCOPED_TRACE(std::string(strata::dtype_name(storage.dtype)) + ", " +
                 std::string(strata::memory_format_name(storage.memory_format)));
    for (const DeviceImages* images : {&on_device, &pinned}) {
      EpochLoader loader(*images, 8, true, options, 17, storage);
      loader.start_epoch(1);
      f32_loader.start_epoch(1);
      const Batch batch = loader.batch(1, stream);
      EXPECT_EQ(batch.images.dtype(), storage.dtype);
      EXPECT_EQ(batch.images.memory_format(), storage.memory_format);
      EXPECT_EQ(stored_bits(batch.images), as_stored(f32_loader.batch(1, stream).images, storage));
      EXPECT_EQ(stored_bits(images->normalised(3, 5, {}, stream, storage)),
                as_stored(on_device.normalised(3, 5, {}, stream), storage));
    }
  }
}

TEST(Cifar10Loader, AutomaticPlacementNeedsHalfTheFreeMemory) {
  EXPECT_EQ(automatic_placement(100, 200), Placement::device);
  EXPECT_EQ(automatic_placement(101, 200), Placement::pinned_host);
  EXPECT_EQ(automatic_placement(1, 0), Placement::pinned_host);
  const cudaStream_t stream = strata::current_stream();
  EXPECT_EQ(DeviceImages(cyclic_images(2, 1), Placement::automatic, stream).placement(), Placement::device);
}

// The real set, from ../shared/data as the CTest fixture cifar10_real_data converted it into
// the build tree (tests/samples/convert_cifar10_data.cmake; CTest runs it first).
TEST(Cifar10Files, RealDataHasTheOfficialCountsAndClassBalance) {
  const fs::path converted = STRATA_CIFAR10_CONVERTED_DIR;
  if (!fs::exists(converted / "cifar-10-batches-bin" / "test_batch.bin")) {
    GTEST_SKIP() << "no converted CIFAR-10 copy at " << converted.string()
                 << ": ctest's sample.cifar10.convert_data makes it from ../shared/data when that is present";
  }
  const fs::path batches = locate_batches_dir(converted.string());
  const HostImages training = read_training_set(batches);
  const HostImages test = read_test_set(batches);
  ASSERT_EQ(training.count(), 50000);
  ASSERT_EQ(test.count(), 10000);
  std::array<int, kClasses> training_histogram{}, test_histogram{};
  for (const std::uint8_t label : training.labels) ++training_histogram[label];
  for (const std::uint8_t label : test.labels) ++test_histogram[label];
  for (int c = 0; c < kClasses; ++c) {
    EXPECT_EQ(training_histogram[static_cast<std::size_t>(c)], 5000) << "class " << c;
    EXPECT_EQ(test_histogram[static_cast<std::size_t>(c)], 1000) << "class " << c;
  }
}

}  // namespace
}  // namespace cifar10
