// safetensors checkpoints: round trips of every dtype and shape (scalars, empty tensors) from
// host and device memory; the exact bytes of small files against hand-computed ones and the
// reference implementation's own vectors; an independent Python reader of Strata's files and
// a Python-written fixture read by Strata; corrupt files (every truncation, bad lengths, bad
// JSON, overlaps, bad dtypes, shape mismatches) refused cleanly; all-or-nothing loads that
// list every difference; atomic saves.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/safetensors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "tests/core/safetensors_test_support.h"
#include "tests/support/device_test.h"

namespace strata {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::ThrowsMessage;
using testing::TemporaryFolder;
using SafetensorsDeviceTest = testing::DeviceTest;

constexpr std::uint64_t kSeed = 20240917;
constexpr unsigned char kPoisonByte = 0xA5;

// Deterministic pseudo-random bytes: any bit pattern (NaNs included) must survive a round trip.
Tensor random_host_tensor(const Shape& shape, DType dtype, std::uint64_t seed) {
  Tensor tensor = Tensor::empty_host(shape, dtype);
  std::mt19937_64 generator(seed);
  auto* bytes = static_cast<unsigned char*>(tensor.data_ptr());
  for (std::size_t i = 0; i < tensor.nbytes(); ++i) bytes[i] = static_cast<unsigned char>(generator() >> 56);
  return tensor;
}

// A host tensor holding values bit for bit (T may be uint16_t for f16 and bf16).
template <typename T>
Tensor host_tensor(const Shape& shape, DType dtype, const std::vector<T>& values) {
  Tensor tensor = Tensor::empty_host(shape, dtype);
  EXPECT_EQ(tensor.nbytes(), values.size() * sizeof(T));
  std::memcpy(tensor.data_ptr(), values.data(), tensor.nbytes());
  return tensor;
}

Tensor poisoned_like(const Tensor& tensor, cudaStream_t stream) {
  Tensor poison = Tensor::empty_host(tensor.shape(), tensor.dtype());
  std::memset(poison.data_ptr(), kPoisonByte, poison.nbytes());
  return tensor.is_device() ? poison.to_device(stream) : poison;
}

std::string bytes_of(const Tensor& tensor, cudaStream_t stream = nullptr) {
  const Tensor host = tensor.is_device() ? tensor.to_host(stream) : tensor;
  return {static_cast<const char*>(host.data_ptr()), host.nbytes()};
}

template <typename T>
std::vector<T> raw_values(const Tensor& host) {
  std::vector<T> values(host.nbytes() / sizeof(T));
  std::memcpy(values.data(), host.data_ptr(), host.nbytes());
  return values;
}

std::vector<std::string> names_of(const NamedTensors& tensors) {
  std::vector<std::string> names;
  for (const auto& named : tensors) names.push_back(named.first);
  return names;
}

std::string little_endian_u64(std::uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[static_cast<std::size_t>(i)] = static_cast<char>((value >> (8 * i)) & 0xFF);
  return bytes;
}

// A file made by hand: the length, the header padded with spaces to 8 bytes, data_bytes of data.
std::string file_with_header(const std::string& header, std::size_t data_bytes) {
  const std::string padded = header + std::string((8 - header.size() % 8) % 8, ' ');
  return little_endian_u64(padded.size()) + padded + std::string(data_bytes, '\x01');
}

// Every dtype, a scalar, an empty tensor, odd sizes and five dimensions.
NamedTensors sample_state(std::uint64_t seed) {
  return {{"features.0.weight", random_host_tensor({8, 3, 3, 3}, DType::f32, seed)},
          {"features.0.bias", random_host_tensor({8}, DType::f32, seed + 1)},
          {"bn.num_batches_tracked", random_host_tensor({}, DType::i64, seed + 2)},
          {"bn.running_var", random_host_tensor({7}, DType::f16, seed + 3)},
          {"head.weight", random_host_tensor({5, 3}, DType::bf16, seed + 4)},
          {"labels", random_host_tensor({13}, DType::i32, seed + 5)},
          {"mask", random_host_tensor({3, 1, 5}, DType::u8, seed + 6)},
          {"empty", random_host_tensor({0, 4}, DType::f32, seed + 7)},
          {"volume", random_host_tensor({2, 1, 3, 1, 2}, DType::f32, seed + 8)},
          {"scalar", random_host_tensor({}, DType::f32, seed + 9)}};
}

void expect_same_tensors(const NamedTensors& actual, const NamedTensors& expected, cudaStream_t stream = nullptr) {
  ASSERT_EQ(actual.size(), expected.size());
  for (const auto& [name, tensor] : expected) {
    const auto found = std::ranges::find(actual, name, [](const auto& named) { return named.first; });
    ASSERT_NE(found, actual.end()) << name;
    EXPECT_EQ(found->second.dtype(), tensor.dtype()) << name;
    EXPECT_EQ(found->second.shape(), tensor.shape()) << name;
    EXPECT_EQ(bytes_of(found->second, stream), bytes_of(tensor, stream)) << name;
  }
}

// ---------------------------------------------------------------------------------------
// Round trips

TEST(SafetensorsTest, RoundTripsEveryDtypeAndShapeOnTheHost) {
  TemporaryFolder folder;
  const NamedTensors state = sample_state(kSeed);
  const SafetensorsMetadata metadata = {{"format", "pt"}, {"epoch", "12"}, {"note", "quotes \" and \\ and \n"}};
  save_safetensors(folder / "model.safetensors", state, metadata, nullptr);

  const SafetensorsFile file = load_safetensors(folder / "model.safetensors");
  expect_same_tensors(file.tensors, state);
  EXPECT_EQ(file.metadata, metadata);
  for (const auto& [name, tensor] : file.tensors) EXPECT_EQ(tensor.memory_kind(), MemoryKind::host) << name;
  EXPECT_EQ(file.at("scalar").shape(), Shape());
  EXPECT_EQ(file.at("empty").numel(), 0);
  EXPECT_THAT([&] { (void)file.at("nothing"); },
              ThrowsMessage<InvalidArgument>(AllOf(HasSubstr("no tensor 'nothing'"), HasSubstr("10 tensors"),
                                                   HasSubstr("features.0.weight"))));
  EXPECT_THAT(folder.names(), ElementsAre("model.safetensors"));
}

TEST(SafetensorsTest, AFileWithoutTensorsOrMetadataRoundTrips) {
  TemporaryFolder folder;
  save_safetensors(folder / "none.safetensors", {}, nullptr);
  const SafetensorsFile file = load_safetensors(folder / "none.safetensors");
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_TRUE(file.metadata.empty());
}

TEST(SafetensorsTest, LoadsIntoHostTargetsInPlace) {
  TemporaryFolder folder;
  const NamedTensors state = sample_state(kSeed + 10);
  save_safetensors(folder / "model.safetensors", state, nullptr);
  NamedTensors targets;
  for (const auto& [name, tensor] : state) targets.emplace_back(name, poisoned_like(tensor, nullptr));
  const Tensor alias = targets[0].second;  // shares storage with the first target
  const SafetensorsLoadReport report = load_safetensors_into(folder / "model.safetensors", targets, nullptr);
  EXPECT_TRUE(report.missing_keys.empty());
  EXPECT_TRUE(report.unexpected_keys.empty());
  expect_same_tensors(targets, state);
  EXPECT_EQ(bytes_of(alias), bytes_of(state[0].second)) << "targets are written in place, not replaced";
}

TEST_F(SafetensorsDeviceTest, SavesFromAndLoadsIntoDeviceTensors) {
  Stream stream;
  TemporaryFolder folder;
  const NamedTensors host_state = sample_state(kSeed + 20);
  NamedTensors device_state;
  for (const auto& [name, tensor] : host_state) device_state.emplace_back(name, tensor.to_device(stream));
  // A pinned and a host tensor among the device ones.
  Tensor pinned = Tensor::empty_pinned({6}, DType::i32);
  pinned.copy_from(random_host_tensor({6}, DType::i32, kSeed + 21), nullptr);
  device_state.emplace_back("pinned", pinned);
  device_state.emplace_back("host", random_host_tensor({2, 2}, DType::f16, kSeed + 22));
  save_safetensors(folder / "model.safetensors", device_state, {{"epoch", "4"}}, stream);

  const SafetensorsFile file = load_safetensors(folder / "model.safetensors");
  expect_same_tensors(file.tensors, device_state, stream);
  EXPECT_EQ(file.metadata, (SafetensorsMetadata{{"epoch", "4"}}));

  NamedTensors targets;
  for (const auto& [name, tensor] : device_state) targets.emplace_back(name, poisoned_like(tensor, stream));
  load_safetensors_into(folder / "model.safetensors", targets, stream);
  expect_same_tensors(targets, device_state, stream);
  for (std::size_t i = 0; i < host_state.size(); ++i) EXPECT_TRUE(targets[i].second.is_device());
}

// ---------------------------------------------------------------------------------------
// Layout, byte for byte

TEST(SafetensorsTest, WritesTheHandComputedBytesOfATinyFile) {
  TemporaryFolder folder;
  const NamedTensors state = {{"c", host_tensor<std::uint8_t>({3}, DType::u8, {1, 2, 3})},
                              {"b", host_tensor<std::int32_t>({2}, DType::i32, {1, -2})},
                              {"a", host_tensor<float>({}, DType::f32, {1.5f})}};
  save_safetensors(folder / "tiny.safetensors", state, {{"k", "v"}}, nullptr);
  // F32 before I32 before U8 (alignment), "__metadata__" first; 186 bytes of JSON + 6 spaces.
  const std::string json =
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},)"
      R"("b":{"dtype":"I32","shape":[2],"data_offsets":[4,12]},"c":{"dtype":"U8","shape":[3],"data_offsets":[12,15]}})";
  ASSERT_EQ(json.size(), 186u);
  const std::string expected = std::string("\xC0\0\0\0\0\0\0\0", 8) + json + "      " +
                               std::string("\x00\x00\xC0\x3F", 4) +                  // 1.5f
                               std::string("\x01\x00\x00\x00\xFE\xFF\xFF\xFF", 8) +  // 1, -2
                               std::string("\x01\x02\x03", 3);
  EXPECT_EQ(testing::read_file(folder / "tiny.safetensors"), expected);
}

TEST(SafetensorsTest, MatchesTheReferenceImplementationsOwnTestVectors) {
  // The vectors of huggingface/safetensors' serialization tests (tensor.rs).
  TemporaryFolder folder;
  const NamedTensors attention = {
      {"attn.0", host_tensor<float>({1, 2, 3}, DType::f32, {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f})}};
  save_safetensors(folder / "attn.safetensors", attention, nullptr);
  const std::string json = R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})";
  const std::string floats("\0\0\0\0\0\0\x80\x3F\0\0\0\x40\0\0\x40\x40\0\0\x80\x40\0\0\xA0\x40", 24);
  EXPECT_EQ(testing::read_file(folder / "attn.safetensors"), little_endian_u64(64) + json + floats);

  save_safetensors(folder / "empty.safetensors", {}, nullptr);
  EXPECT_EQ(testing::read_file(folder / "empty.safetensors"), little_endian_u64(8) + "{}      ");

  save_safetensors(folder / "metadata.safetensors", {}, {{"framework", "pt"}}, nullptr);
  EXPECT_EQ(testing::read_file(folder / "metadata.safetensors"),
            little_endian_u64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
}

TEST(SafetensorsTest, LaysTensorsOutByAlignmentThenNameWhateverTheirOrder) {
  TemporaryFolder folder;
  NamedTensors state = sample_state(kSeed + 30);
  save_safetensors(folder / "a.safetensors", state, nullptr);
  std::ranges::reverse(state);
  save_safetensors(folder / "b.safetensors", state, nullptr);
  EXPECT_EQ(testing::read_file(folder / "a.safetensors"), testing::read_file(folder / "b.safetensors"));

  const SafetensorsHeader header = read_safetensors_header(folder / "a.safetensors");
  std::vector<std::string> order;
  for (const SafetensorsEntry& entry : header.entries) {
    order.push_back(entry.name);
    EXPECT_EQ(entry.data_begin % element_size(entry.dtype), 0u) << entry.name << " is not aligned";
  }
  EXPECT_THAT(order, ElementsAre("bn.num_batches_tracked", "empty", "features.0.bias", "features.0.weight", "scalar",
                                 "volume", "labels", "head.weight", "bn.running_var", "mask"));
  EXPECT_EQ(header.header_bytes % 8, 0u);
  EXPECT_EQ(header.data_bytes, header.entries.back().data_end);
}

// ---------------------------------------------------------------------------------------
// Python: an independent reader and writer (standard library only)

bool have_python() { return !std::string_view(STRATA_PYTHON3).empty(); }

std::string python_script(const std::string& name) { return std::string(STRATA_CORE_TEST_DIR) + "/" + name; }

TEST(SafetensorsTest, AnIndependentPythonReaderReadsAStrataFile) {
  if (!have_python()) GTEST_SKIP() << "CMake found no python3 interpreter";
  TemporaryFolder folder;
  const NamedTensors state = {
      {"fc.weight", host_tensor<float>({2, 3}, DType::f32, {1, 2, 3, 4, 5, 6})},
      {"fc.bias", host_tensor<float>({3}, DType::f32, {-1.0f, 0.5f, 0.25f})},
      {"bn.num_batches_tracked", host_tensor<std::int64_t>({}, DType::i64, {7})},
      {"emb", host_tensor<std::uint16_t>({2}, DType::f16, {0x3E00, 0xC200})},     // 1.5, -3
      {"bf", host_tensor<std::uint16_t>({2, 1}, DType::bf16, {0x4000, 0x3F00})},  // 2, 0.5
      {"idx", host_tensor<std::int32_t>({4}, DType::i32, {-3, 10, 0, 100})},
      {"pixels", host_tensor<std::uint8_t>({2, 2}, DType::u8, {0, 255, 3, 4})},
      {"none", Tensor::empty_host({0, 3}, DType::f32)}};
  save_safetensors(folder / "model.safetensors", state, {{"epoch", "3"}, {"note", "strata test"}}, nullptr);

  const testing::CommandResult result = testing::run_command(testing::quoted(STRATA_PYTHON3) + " " +
                                                             testing::quoted(python_script("safetensors_reader.py")) +
                                                             " " + testing::quoted(folder / "model.safetensors"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output,
            "bn.num_batches_tracked I64 [] 7\n"
            "fc.bias F32 [3] -0.25\n"
            "fc.weight F32 [2, 3] 21.0\n"
            "none F32 [0, 3] 0.0\n"
            "idx I32 [4] 107\n"
            "bf BF16 [2, 1] 2.5\n"
            "emb F16 [2] -1.5\n"
            "pixels U8 [2, 2] 262\n"
            "metadata epoch=3\n"
            "metadata note=strata test\n");
}

// The values tests/core/safetensors_writer.py writes.
void expect_python_fixture(const std::filesystem::path& path) {
  const SafetensorsFile file = load_safetensors(path);
  EXPECT_THAT(names_of(file.tensors), ElementsAre("counts", "steps", "conv.bias", "conv.weight", "empty",
                                                  "norm.\xCE\xB3", "scale", "labels", "brain", "half", "mask"));
  EXPECT_EQ(file.metadata,
            (SafetensorsMetadata{{"format", "pt"}, {"writer", "tests/core/safetensors_writer.py"}}));
  const auto shape_and_dtype = [&](const char* name) {
    return std::make_pair(file.at(name).shape(), file.at(name).dtype());
  };
  EXPECT_EQ(shape_and_dtype("conv.weight"), std::make_pair(Shape{2, 3}, DType::f32));
  EXPECT_EQ(shape_and_dtype("scale"), std::make_pair(Shape{}, DType::f32));
  EXPECT_EQ(shape_and_dtype("empty"), std::make_pair(Shape{0, 4}, DType::f32));
  EXPECT_EQ(shape_and_dtype("half"), std::make_pair(Shape{2, 2}, DType::f16));
  EXPECT_EQ(shape_and_dtype("brain"), std::make_pair(Shape{3}, DType::bf16));
  EXPECT_EQ(shape_and_dtype("steps"), std::make_pair(Shape{}, DType::i64));

  EXPECT_THAT(file.at("conv.weight").to_vector<float>(), ElementsAre(-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f));
  EXPECT_THAT(file.at("conv.bias").to_vector<float>(), ElementsAre(0.25f, -0.125f));
  EXPECT_THAT(file.at("scale").to_vector<float>(), ElementsAre(3.25f));
  EXPECT_THAT(file.at("norm.\xCE\xB3").to_vector<float>(), ElementsAre(2.0f));
  EXPECT_THAT(raw_values<std::uint16_t>(file.at("half")), ElementsAre(0x3C00, 0xC100, 0x7BFF, 0x0400));
  EXPECT_THAT(raw_values<std::uint16_t>(file.at("brain")), ElementsAre(0x3F80, 0xBF00, 0x4049));
  EXPECT_THAT(file.at("labels").to_vector<std::int32_t>(), ElementsAre(INT32_MIN, -1, 0, INT32_MAX));
  EXPECT_THAT(file.at("steps").to_vector<std::int64_t>(), ElementsAre(12345678901));
  EXPECT_THAT(file.at("counts").to_vector<std::int64_t>(), ElementsAre(INT64_MIN, 0, INT64_MAX));
  EXPECT_THAT(file.at("mask").to_vector<std::uint8_t>(), ElementsAre(0, 1, 127, 128, 255));
}

TEST(SafetensorsTest, ReadsTheCommittedPythonWrittenFixtureExactly) {
  expect_python_fixture(python_script("data/python_written.safetensors"));
}

TEST(SafetensorsTest, ThePythonWriterStillWritesTheCommittedFixture) {
  if (!have_python()) GTEST_SKIP() << "CMake found no python3 interpreter";
  TemporaryFolder folder;
  const testing::CommandResult result = testing::run_command(testing::quoted(STRATA_PYTHON3) + " " +
                                                             testing::quoted(python_script("safetensors_writer.py")) +
                                                             " " + testing::quoted(folder / "fresh.safetensors"));
  ASSERT_EQ(result.exit_code, 0) << result.output;
  expect_python_fixture(folder / "fresh.safetensors");
  EXPECT_EQ(testing::read_file(folder / "fresh.safetensors"),
            testing::read_file(python_script("data/python_written.safetensors")))
      << "regenerate tests/core/data/python_written.safetensors with tests/core/safetensors_writer.py";
}

// ---------------------------------------------------------------------------------------
// Corrupt files

NamedTensors tiny_state() {
  return {{"a", host_tensor<float>({2}, DType::f32, {1.0f, 2.0f})},
          {"b", host_tensor<std::int64_t>({}, DType::i64, {-5})},
          {"c", host_tensor<std::uint8_t>({3}, DType::u8, {7, 8, 9})}};
}

TEST(SafetensorsTest, EveryTruncationFailsCleanlyAndChangesNoTarget) {
  TemporaryFolder folder;
  save_safetensors(folder / "whole.safetensors", tiny_state(), {{"k", "v"}}, nullptr);
  const std::string whole = testing::read_file(folder / "whole.safetensors");
  NamedTensors targets;
  for (const auto& [name, tensor] : tiny_state()) targets.emplace_back(name, poisoned_like(tensor, nullptr));
  const std::string poison(3 * 8, static_cast<char>(kPoisonByte));

  const std::filesystem::path path = folder / "cut.safetensors";
  for (std::size_t length = 0; length < whole.size(); ++length) {
    testing::write_file(path, whole.substr(0, length));
    EXPECT_THAT([&] { (void)load_safetensors(path); }, ThrowsMessage<IoError>(HasSubstr(path.string())))
        << "prefix of " << length << " bytes";
    EXPECT_THROW(load_safetensors_into(path, targets, nullptr), IoError) << "prefix of " << length << " bytes";
    for (const auto& [name, tensor] : targets) {
      ASSERT_EQ(bytes_of(tensor), poison.substr(0, tensor.nbytes())) << name << " changed by a prefix of " << length;
    }
  }
  testing::write_file(path, whole + "!");
  EXPECT_THAT([&] { (void)load_safetensors(path); },
              ThrowsMessage<IoError>(HasSubstr("1 bytes of trailing data after the last tensor")));
}

TEST(SafetensorsTest, TruncationsSayWhatIsMissing) {
  TemporaryFolder folder;
  save_safetensors(folder / "whole.safetensors", tiny_state(), nullptr);
  const std::string whole = testing::read_file(folder / "whole.safetensors");
  const std::filesystem::path path = folder / "cut.safetensors";
  const auto error_for = [&](std::size_t length) {
    testing::write_file(path, whole.substr(0, length));
    try {
      (void)load_safetensors(path);
    } catch (const IoError& error) {
      return std::string(error.what());
    }
    return std::string("no error");
  };
  EXPECT_THAT(error_for(5), HasSubstr("the file has 5 bytes, too few for the 8-byte header length"));
  EXPECT_THAT(error_for(40), HasSubstr("but only 32 bytes follow it (truncated"));
  EXPECT_THAT(error_for(whole.size() - 1), HasSubstr("reach past the end of the data section"));
}

TEST(SafetensorsTest, BadHeaderLengthsAreRefused) {
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "bad.safetensors";
  const auto expect_refused = [&](const std::string& bytes, const std::string& reason) {
    testing::write_file(path, bytes);
    EXPECT_THAT([&] { (void)load_safetensors(path); },
                ThrowsMessage<IoError>(AllOf(HasSubstr(path.string()), HasSubstr(reason))));
  };
  expect_refused("", "the file has 0 bytes");
  expect_refused(little_endian_u64(100'000'001) + "{}", "above the format's limit of 100000000");
  expect_refused(little_endian_u64(~std::uint64_t{0}) + "{}", "above the format's limit");
  expect_refused(little_endian_u64(1000) + "{}        ", "the header length field says 1000 bytes, but only 10");
  expect_refused(little_endian_u64(0), "the header does not begin with '{'");
  expect_refused(little_endian_u64(8) + "[1,2]   ", "the header does not begin with '{'");
  expect_refused(little_endian_u64(8) + std::string("{}\0\0\0\0\0\0", 8), "NUL byte at file offset 10");
}

struct CorruptHeader {
  const char* description;
  std::string header;
  std::size_t data_bytes;
  std::string reason;
};

TEST(SafetensorsTest, CorruptHeadersAreRefusedWithTheReason) {
  const std::vector<CorruptHeader> cases = {
      {"truncated JSON", R"({"a":{"dtype":"F32")", 0, "the header is not valid JSON"},
      {"text after the JSON", R"({} x)", 0, "the header is not valid JSON"},
      {"invalid UTF-8", "{\"\xFF\":1}", 0, "the header is not valid JSON"},
      {"duplicate names",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, "the name 'a' appears twice"},
      {"duplicate fields", R"({"a":{"dtype":"F32","dtype":"I32","shape":[1],"data_offsets":[0,4]}})", 4,
       "the field 'dtype' appears twice within 'a'"},
      {"unknown dtype", R"({"a":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", 8,
       R"(tensor 'a': dtype "F64" is not one Strata reads)"},
      {"dtype not a string", R"({"a":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", 4, "dtype 4 is not one"},
      {"shape and offsets disagree", R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,8]}})", 8,
       "shape [2,2] of dtype F32 needs 16 bytes, but data_offsets [0,8] span 8"},
      {"negative size", R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4,
       "shape [-1] is not a list of non-negative integers"},
      {"fractional size", R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4,
       "is not a list of non-negative integers"},
      {"six dimensions", R"({"a":{"dtype":"F32","shape":[1,1,1,1,1,1],"data_offsets":[0,4]}})", 4,
       "has 6 dimensions; Strata tensors have at most 5"},
      {"overflowing shape", R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})", 0,
       "is too large to address"},
      {"overlapping tensors",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "tensors 'a' (bytes [0, 8]) and 'b' (bytes [4, 12]) overlap"},
      {"two names for the same bytes",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
       4, "tensors 'a' (bytes [0, 4]) and 'b' (bytes [0, 4]) overlap"},
      {"a gap",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
       R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, "bytes [4, 8] of the data section belong to no tensor (a gap before 'b')"},
      {"not starting at 0", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8,
       "bytes [0, 4] of the data section belong to no tensor"},
      {"offsets out of bounds", R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8,
       "tensor 'a': data_offsets [0, 16] reach past the end of the data section, which has 8 bytes"},
      {"trailing data", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 12,
       "8 bytes of trailing data after the last tensor"},
      {"offsets reversed", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8,
       "data_offsets [8,4] end before they begin"},
      {"offsets not a pair", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4,
       "data_offsets [0] is not a pair [begin, end]"},
      {"missing field", R"({"a":{"dtype":"F32","data_offsets":[0,4]}})", 4, "tensor 'a': the field 'shape' is missing"},
      {"unknown field", R"({"a":{"dtype":"F32","shape":[1],"offsets":[0,4]}})", 4, "unknown field 'offsets'"},
      {"entry not an object", R"({"a":5})", 0, "tensor 'a': expected an object"},
      {"metadata not strings", R"({"__metadata__":{"epoch":3}})", 0,
       "'__metadata__' must map strings to strings, but 'epoch' is 3"},
      {"metadata not an object", R"({"__metadata__":[1]})", 0, "'__metadata__' must be an object of strings"},
      // Deep nesting must not recurse in the parser nor in the error message.
      {"deeply nested entry", R"({"a":)" + std::string(100'000, '[') + std::string(100'000, ']') + "}", 0,
       "tensor 'a': expected an object with dtype, shape and data_offsets, found [[...]]"},
      {"deeply nested shape",
       R"({"a":{"dtype":"F32","data_offsets":[0,4],"shape":[1,)" + std::string(100'000, '[') +
           std::string(100'000, ']') + "]}}",
       4, "shape [1,[...]] is not a list of non-negative integers"},
  };
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "corrupt.safetensors";
  for (const CorruptHeader& corrupt : cases) {
    testing::write_file(path, file_with_header(corrupt.header, corrupt.data_bytes));
    EXPECT_THAT([&] { (void)read_safetensors_header(path); },
                ThrowsMessage<IoError>(AllOf(HasSubstr("safetensors file '" + path.string() + "'"),
                                             HasSubstr(corrupt.reason))))
        << corrupt.description;
    EXPECT_THROW((void)load_safetensors(path), IoError) << corrupt.description;
  }
}

TEST(SafetensorsTest, AcceptsOddButValidHeaders) {
  // Header order differs from data order, whitespace, escapes, empty tensors sharing an offset.
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "odd.safetensors";
  testing::write_file(path, file_with_header("{ \"b\" : {\"shape\":[1],\"data_offsets\":[4,8],\"dtype\":\"I32\"},\n"
                                             "\"\\u0061\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                                             "\"e1\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
                                             "\"e2\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
                                             "\"__metadata__\":{}}\t\n",
                                             8));
  const SafetensorsFile file = load_safetensors(path);
  EXPECT_THAT(names_of(file.tensors), ElementsAre("a", "e1", "e2", "b"));
  EXPECT_EQ(file.at("e2").shape(), (Shape{3, 0}));
  EXPECT_THAT(file.at("b").to_vector<std::int32_t>(), ElementsAre(0x01010101));
}

TEST(SafetensorsTest, MissingFilesAndFoldersAreNamed) {
  TemporaryFolder folder;
  EXPECT_THAT([&] { (void)load_safetensors(folder / "absent.safetensors"); },
              ThrowsMessage<IoError>(AllOf(HasSubstr("cannot open safetensors file"), HasSubstr("absent.safetensors"),
                                           HasSubstr("No such file or directory"))));
  EXPECT_THAT([&] { (void)load_safetensors(folder.path()); },
              ThrowsMessage<IoError>(HasSubstr("is not a regular file")));
}

// ---------------------------------------------------------------------------------------
// load_safetensors_into: all or nothing

TEST(SafetensorsTest, AMismatchListsEveryDifferenceAndChangesNoTarget) {
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "model.safetensors";
  save_safetensors(path,
                   {{"conv.weight", random_host_tensor({4, 3, 3, 3}, DType::f32, kSeed + 40)},
                    {"conv.bias", random_host_tensor({4}, DType::f32, kSeed + 41)},
                    {"bn.mean", random_host_tensor({4}, DType::f16, kSeed + 42)},
                    {"fc.weight", random_host_tensor({10, 4}, DType::f32, kSeed + 43)},
                    {"extra.one", random_host_tensor({2}, DType::u8, kSeed + 44)},
                    {"extra.two", random_host_tensor({}, DType::i64, kSeed + 45)}},
                   nullptr);
  const NamedTensors targets = {{"conv.weight", poisoned_like(Tensor::empty_host({4, 3, 5, 5}, DType::f32), nullptr)},
                                {"conv.bias", poisoned_like(Tensor::empty_host({4}, DType::f32), nullptr)},
                                {"bn.mean", poisoned_like(Tensor::empty_host({4}, DType::f32), nullptr)},
                                {"fc.weight", poisoned_like(Tensor::empty_host({10, 4}, DType::f32), nullptr)},
                                {"fc.bias", poisoned_like(Tensor::empty_host({10}, DType::f32), nullptr)}};
  EXPECT_THAT([&] { load_safetensors_into(path, targets, nullptr); },
              ThrowsMessage<IoError>(AllOf(
                  HasSubstr("safetensors file '" + path.string() + "' does not match the 5 targets; no target was "
                            "changed:"),
                  HasSubstr("\n  missing from the file: 'fc.bias' (target f32 (10))"),
                  HasSubstr("\n  not among the targets: 'extra.one' (u8 (2))"),
                  HasSubstr("\n  not among the targets: 'extra.two' (i64 ())"),
                  HasSubstr("\n  dtype or shape differs for 'bn.mean': the file has f16 (4), the target is f32 (4)"),
                  HasSubstr("\n  dtype or shape differs for 'conv.weight': the file has f32 (4, 3, 3, 3), the target "
                            "is f32 (4, 3, 5, 5)"),
                  Not(HasSubstr("conv.bias")), Not(HasSubstr("'fc.weight'")))));
  for (const auto& [name, tensor] : targets) {
    EXPECT_EQ(bytes_of(tensor), std::string(tensor.nbytes(), static_cast<char>(kPoisonByte))) << name;
  }
}

TEST(SafetensorsTest, ANonStrictLoadSkipsAndReportsNamesButNotShapes) {
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "model.safetensors";
  const Tensor weight = random_host_tensor({3, 2}, DType::f32, kSeed + 50);
  save_safetensors(path, {{"weight", weight}, {"old.buffer", random_host_tensor({2}, DType::i32, kSeed + 51)}},
                   nullptr);
  const NamedTensors targets = {{"weight", poisoned_like(weight, nullptr)},
                                {"new.bias", poisoned_like(Tensor::empty_host({3}, DType::f32), nullptr)},
                                {"a.new", poisoned_like(Tensor::empty_host({1}, DType::f32), nullptr)}};
  const SafetensorsLoadReport report = load_safetensors_into(path, targets, nullptr, {.strict = false});
  EXPECT_THAT(report.missing_keys, ElementsAre("a.new", "new.bias"));
  EXPECT_THAT(report.unexpected_keys, ElementsAre("old.buffer"));
  EXPECT_EQ(bytes_of(targets[0].second), bytes_of(weight));
  EXPECT_EQ(bytes_of(targets[1].second), std::string(12, static_cast<char>(kPoisonByte)));

  const NamedTensors misshapen = {{"weight", poisoned_like(Tensor::empty_host({2, 3}, DType::f32), nullptr)}};
  EXPECT_THAT([&] { load_safetensors_into(path, misshapen, nullptr, {.strict = false}); },
              ThrowsMessage<IoError>(
                  AllOf(HasSubstr("dtype or shape differs for 'weight'"), Not(HasSubstr("old.buffer")))));
  EXPECT_EQ(bytes_of(misshapen[0].second), std::string(24, static_cast<char>(kPoisonByte)));
}

TEST_F(SafetensorsDeviceTest, AMismatchChangesNoDeviceTarget) {
  Stream stream;
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "model.safetensors";
  save_safetensors(path, tiny_state(), nullptr);
  NamedTensors targets;
  for (const auto& [name, tensor] : tiny_state()) {
    targets.emplace_back(name, poisoned_like(tensor.to_device(stream), stream));
  }
  targets.emplace_back("d", poisoned_like(Tensor::empty({2}, DType::f32, stream), stream));
  EXPECT_THAT([&] { load_safetensors_into(path, targets, stream); },
              ThrowsMessage<IoError>(HasSubstr("missing from the file: 'd' (target f32 (2))")));
  for (const auto& [name, tensor] : targets) {
    EXPECT_EQ(bytes_of(tensor, stream), std::string(tensor.nbytes(), static_cast<char>(kPoisonByte))) << name;
  }
  EXPECT_THAT([&] { load_safetensors_into(path, targets, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("target 'a' is in device memory but no stream was given")));
}

TEST(SafetensorsTest, BadTargetsAreRefusedBeforeTheFileIsRead) {
  TemporaryFolder folder;
  const std::filesystem::path absent = folder / "absent.safetensors";
  const Tensor tensor = Tensor::empty_host({2}, DType::f32);
  EXPECT_THAT([&] { load_safetensors_into(absent, {{"a", tensor}, {"a", tensor}}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("two targets are named 'a'")));
  EXPECT_THAT([&] { load_safetensors_into(absent, {{"a", Tensor()}}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("target 'a' is undefined")));
}

// ---------------------------------------------------------------------------------------
// Saving: refused inputs, atomic replacement

TEST(SafetensorsTest, BadNamesAreRefusedAndTheOldFileIsKept) {
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "model.safetensors";
  save_safetensors(path, tiny_state(), nullptr);
  const std::string before = testing::read_file(path);
  const Tensor tensor = Tensor::empty_host({2}, DType::f32);
  EXPECT_THAT([&] { save_safetensors(path, {{"w", tensor}, {"w", tensor}}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("the name 'w' is given to two tensors")));
  EXPECT_THAT([&] { save_safetensors(path, {{"__metadata__", tensor}}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("reserved by the format")));
  EXPECT_THAT([&] { save_safetensors(path, {{"w", Tensor()}}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("tensor 'w' is undefined")));
  EXPECT_THAT([&] { save_safetensors(path, {{"bad\xFF", tensor}}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("is not valid UTF-8")));
  EXPECT_THAT([&] { save_safetensors(path, {}, {{"note", "bad\xC3"}}, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("the metadata entry 'note' is not valid UTF-8")));
  EXPECT_EQ(testing::read_file(path), before);
  EXPECT_THAT(folder.names(), ElementsAre("model.safetensors"));
}

TEST_F(SafetensorsDeviceTest, DeviceTensorsNeedAStream) {
  Stream stream;
  TemporaryFolder folder;
  const NamedTensors on_device = {{"w", Tensor::empty({2}, DType::f32, stream)}};
  EXPECT_THAT([&] { save_safetensors(folder / "m.safetensors", on_device, nullptr); },
              ThrowsMessage<InvalidArgument>(HasSubstr("tensor 'w' is in device memory but no stream was given")));
  EXPECT_THAT(folder.names(), ElementsAre());
}

TEST(SafetensorsTest, SavingIntoAMissingFolderNamesThePath) {
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "runs" / "model.safetensors";
  EXPECT_THAT([&] { save_safetensors(path, tiny_state(), nullptr); },
              ThrowsMessage<IoError>(AllOf(HasSubstr(path.string()), HasSubstr("No such file or directory"))));
}

TEST(SafetensorsTest, ASaveThatRunsOutOfRoomKeepsThePreviousCheckpoint) {
  TemporaryFolder folder;
  const std::filesystem::path path = folder / "model.safetensors";
  save_safetensors(path, tiny_state(), nullptr);
  const std::string before = testing::read_file(path);
  const NamedTensors large = {{"big", random_host_tensor({64, 1024}, DType::f32, kSeed + 60)}};
  {
    const testing::FileSizeLimit limit(16 * 1024);
    EXPECT_THAT([&] { save_safetensors(path, large, nullptr); },
                ThrowsMessage<IoError>(AllOf(HasSubstr(path.string()), HasSubstr("File too large"))));
  }
  EXPECT_EQ(testing::read_file(path), before);
  EXPECT_THAT(folder.names(), ElementsAre("model.safetensors"));
  expect_same_tensors(load_safetensors(path).tensors, tiny_state());
}

}  // namespace
}  // namespace strata
