// Reading CIFAR-10's binary batch files: every byte count and label is checked, and any
// problem is reported with the file, the record and what to do about it.
#include "cifar10_files.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace cifar10 {

namespace {

constexpr std::array<const char*, 5> kTrainingFiles = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                                       "data_batch_4.bin", "data_batch_5.bin"};
constexpr const char* kTestFile = "test_batch.bin";
constexpr const char* kBatchesFolder = "cifar-10-batches-bin";

// The sentence every "no data" message ends with.
std::string how_to_get_the_data() {
  return "Get CIFAR-10 with samples/cifar10/download_cifar10.sh DIR (the official binary version, "
         "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz) and pass --data DIR or set "
         "STRATA_CIFAR10_DIR=DIR; in development, /usr/bin/python3 ../shared/data/make_cifar10_bin.py DIR "
         "writes the same layout from the shared JPEG copy";
}

[[noreturn]] void fail(const std::filesystem::path& file, const std::string& problem) {
  throw std::runtime_error("CIFAR-10 file " + file.string() + ": " + problem);
}

void append(HostImages& into, HostImages&& part) {
  into.pixels.insert(into.pixels.end(), part.pixels.begin(), part.pixels.end());
  into.labels.insert(into.labels.end(), part.labels.begin(), part.labels.end());
}

bool has_every_batch_file(const std::filesystem::path& folder) {
  std::error_code error;
  for (const char* name : kTrainingFiles) {
    if (!std::filesystem::is_regular_file(folder / name, error)) return false;
  }
  return std::filesystem::is_regular_file(folder / kTestFile, error);
}

std::string missing_batch_files(const std::filesystem::path& folder) {
  std::string missing;
  std::error_code error;
  auto note = [&](const char* name) {
    if (std::filesystem::is_regular_file(folder / name, error)) return;
    if (!missing.empty()) missing += ", ";
    missing += name;
  };
  for (const char* name : kTrainingFiles) note(name);
  note(kTestFile);
  return missing;
}

}  // namespace

HostImages read_batch_file(const std::filesystem::path& file) {
  std::error_code error;
  if (!std::filesystem::exists(file, error)) fail(file, "not found. " + how_to_get_the_data());
  if (!std::filesystem::is_regular_file(file, error)) fail(file, "is not a regular file");
  const std::uintmax_t bytes = std::filesystem::file_size(file, error);
  if (error) fail(file, "cannot read its size: " + error.message());
  if (bytes == 0) fail(file, "is empty; expected records of " + std::to_string(kRecordBytes) + " bytes");
  if (bytes % kRecordBytes != 0) {
    fail(file, "holds " + std::to_string(bytes) + " bytes, not a multiple of the " + std::to_string(kRecordBytes) +
                   "-byte record: " + std::to_string(bytes / kRecordBytes) + " whole records and " +
                   std::to_string(bytes % kRecordBytes) +
                   " bytes over (a truncated download, or not a CIFAR-10 binary batch file)");
  }
  std::ifstream stream(file, std::ios::binary);
  if (!stream) fail(file, "cannot be opened for reading");
  const auto count = static_cast<std::size_t>(bytes / kRecordBytes);
  std::vector<std::uint8_t> records(static_cast<std::size_t>(bytes));
  stream.read(reinterpret_cast<char*>(records.data()), static_cast<std::streamsize>(bytes));
  if (static_cast<std::uintmax_t>(stream.gcount()) != bytes) {
    fail(file, "read " + std::to_string(stream.gcount()) + " of its " + std::to_string(bytes) + " bytes");
  }

  HostImages images;
  images.labels.resize(count);
  images.pixels.resize(count * kImageBytes);
  for (std::size_t record = 0; record < count; ++record) {
    const std::uint8_t* source = records.data() + record * kRecordBytes;
    if (source[0] >= kClasses) {
      fail(file, "record " + std::to_string(record) + " (byte offset " + std::to_string(record * kRecordBytes) +
                     ") has label " + std::to_string(source[0]) + ", outside [0, " + std::to_string(kClasses) + ")");
    }
    images.labels[record] = source[0];
    std::copy(source + 1, source + kRecordBytes, images.pixels.data() + record * kImageBytes);
  }
  return images;
}

HostImages read_training_set(const std::filesystem::path& batches_dir) {
  HostImages set;
  for (const char* name : kTrainingFiles) append(set, read_batch_file(batches_dir / name));
  return set;
}

HostImages read_test_set(const std::filesystem::path& batches_dir) { return read_batch_file(batches_dir / kTestFile); }

HostImages balanced_subset(const HostImages& set, std::int64_t count) {
  if (count < 0 || count > set.count()) {
    throw std::invalid_argument("balanced_subset: asked for " + std::to_string(count) + " images of a set of " +
                                std::to_string(set.count()));
  }
  const std::int64_t per_class = count / kClasses;
  std::vector<bool> chosen(static_cast<std::size_t>(set.count()), false);
  std::array<std::int64_t, kClasses> taken{};
  std::int64_t total = 0;
  for (std::int64_t i = 0; i < set.count(); ++i) {
    const std::uint8_t label = set.labels[static_cast<std::size_t>(i)];
    if (taken[label] < per_class) {
      ++taken[label];
      chosen[static_cast<std::size_t>(i)] = true;
      ++total;
    }
  }
  // The remainder of count / 10, and any class's shortfall, from the first unchosen images.
  for (std::int64_t i = 0; i < set.count() && total < count; ++i) {
    if (chosen[static_cast<std::size_t>(i)]) continue;
    chosen[static_cast<std::size_t>(i)] = true;
    ++total;
  }

  HostImages subset;
  subset.labels.reserve(static_cast<std::size_t>(count));
  subset.pixels.reserve(static_cast<std::size_t>(count) * kImageBytes);
  for (std::int64_t i = 0; i < set.count(); ++i) {
    if (!chosen[static_cast<std::size_t>(i)]) continue;
    subset.labels.push_back(set.labels[static_cast<std::size_t>(i)]);
    const auto first = set.pixels.begin() + static_cast<std::ptrdiff_t>(static_cast<std::size_t>(i) * kImageBytes);
    subset.pixels.insert(subset.pixels.end(), first, first + static_cast<std::ptrdiff_t>(kImageBytes));
  }
  return subset;
}

std::filesystem::path locate_batches_dir(const std::string& data_flag) {
  std::string source;
  std::string given;
  if (!data_flag.empty()) {
    source = "--data";
    given = data_flag;
  } else if (const char* environment = std::getenv("STRATA_CIFAR10_DIR"); environment != nullptr && *environment) {
    source = "STRATA_CIFAR10_DIR";
    given = environment;
  } else {
    throw std::runtime_error("CIFAR-10: no data folder given (neither --data nor STRATA_CIFAR10_DIR is set). " +
                             how_to_get_the_data());
  }
  const std::filesystem::path folder(given);
  std::error_code error;
  if (!std::filesystem::is_directory(folder, error)) {
    throw std::runtime_error("CIFAR-10: " + source + " names " + folder.string() + ", which is not a folder. " +
                             how_to_get_the_data());
  }
  if (has_every_batch_file(folder / kBatchesFolder)) return folder / kBatchesFolder;
  if (has_every_batch_file(folder)) return folder;
  // Report the closer of the two candidates: the inner folder when it exists.
  const std::filesystem::path nearest =
      std::filesystem::is_directory(folder / kBatchesFolder, error) ? folder / kBatchesFolder : folder;
  throw std::runtime_error("CIFAR-10: " + source + " names " + folder.string() + ", but neither it nor " +
                           (folder / kBatchesFolder).string() + " holds the batch files (" + nearest.string() +
                           " lacks " + missing_batch_files(nearest) + "). " + how_to_get_the_data());
}

}  // namespace cifar10
