// The host side of the multi-tensor launches: chunk counts, how tensors are split over
// launches, the parameter-space budget, and the checks of parallel lists.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "kernels/multi_tensor_host.h"
#include "strata/core/stream.h"
#include "tests/kernels/device_values.h"

namespace strata::kernels {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(MultiTensorPlan, ChunksCoverEveryElement) {
  EXPECT_EQ(multi_tensor_chunks(0), 0);
  EXPECT_EQ(multi_tensor_chunks(1), 1);
  EXPECT_EQ(multi_tensor_chunks(kMultiTensorChunk), 1);
  EXPECT_EQ(multi_tensor_chunks(kMultiTensorChunk + 1), 2);
  EXPECT_EQ(multi_tensor_chunks(3 * kMultiTensorChunk), 3);
  EXPECT_EQ(kMultiTensorChunk % 4, 0);  // float4 alignment carries from chunk to chunk
}

// Each tensor costs depth pointers, its size and its first block: the lists of the deepest
// op (AdamW with amsgrad, 5) and the shallowest still fit the budget, leaving room for the
// op's own parameters under CUDA's 4 KB.
TEST(MultiTensorPlan, ListsFitTheKernelParameterSpace) {
  for (int depth = 1; depth <= 5; ++depth) {
    SCOPED_TRACE("depth " + std::to_string(depth));
    const auto tensors = static_cast<std::size_t>(multi_tensor_max_tensors(depth));
    EXPECT_LE(tensors * 8 * static_cast<std::size_t>(depth + 2) + 16, kMultiTensorListBytes);
    EXPECT_GT((tensors + 1) * 8 * static_cast<std::size_t>(depth + 2) + 16, kMultiTensorListBytes);
  }
  EXPECT_LE(kMultiTensorListBytes + 256, 4096u);
  EXPECT_GE(multi_tensor_max_tensors(5), 62);  // ResNet-18's 62 parameters: one launch, even for amsgrad
}

TEST(MultiTensorPlan, SplitsWholeTensorsOverLaunchesAndSkipsEmptyOnes) {
  const std::vector<std::int64_t> numels = {5, 0, 4097, 1, 8192, 0, 3};
  const std::vector<MultiTensorLaunch> launches = plan_multi_tensor_launches(numels, 2);
  ASSERT_EQ(launches.size(), 3u);
  EXPECT_THAT(launches[0].tensors, ElementsAre(0u, 2u));
  EXPECT_EQ(launches[0].blocks, 1 + 2);
  EXPECT_EQ(launches[0].first_chunk, 0);
  EXPECT_THAT(launches[1].tensors, ElementsAre(3u, 4u));
  EXPECT_EQ(launches[1].blocks, 1 + 2);
  EXPECT_EQ(launches[1].first_chunk, 3);
  EXPECT_THAT(launches[2].tensors, ElementsAre(6u));
  EXPECT_EQ(launches[2].blocks, 1);
  EXPECT_EQ(launches[2].first_chunk, 6);

  EXPECT_TRUE(plan_multi_tensor_launches({}, 4).empty());
  const std::vector<std::int64_t> all_empty = {0, 0};
  EXPECT_TRUE(plan_multi_tensor_launches(all_empty, 4).empty());
  const std::vector<std::int64_t> one_large = {100 * kMultiTensorChunk + 1};
  const std::vector<MultiTensorLaunch> single = plan_multi_tensor_launches(one_large, 4);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_EQ(single[0].blocks, 101);
}

TEST(MultiTensorPlan, ManyTensorsTakeAFewLaunches) {
  const std::vector<std::int64_t> numels(200, 10);
  const int per_launch = multi_tensor_max_tensors(4);
  const std::vector<MultiTensorLaunch> launches = plan_multi_tensor_launches(numels, per_launch);
  EXPECT_EQ(launches.size(), static_cast<std::size_t>((200 + per_launch - 1) / per_launch));
  std::size_t covered = 0;
  for (const MultiTensorLaunch& launch : launches) {
    EXPECT_EQ(launch.first_chunk, static_cast<std::int64_t>(covered));
    covered += launch.tensors.size();
  }
  EXPECT_EQ(covered, 200u);
}

// Grouped plans: a launch ends when its tensors or its groups are full; a group may span two
// launches (named in both); groups with no tensor or only empty ones are in none.
TEST(MultiTensorPlan, GroupedPlansCapTensorsAndGroups) {
  const std::vector<std::int64_t> numels = {5, 3, 0, 4097, 1, 2, 0, 7};
  const std::vector<std::size_t> group_of = {0, 0, 1, 2, 2, 2, 3, 4};
  const std::vector<MultiTensorLaunch> by_groups = plan_grouped_multi_tensor_launches(numels, group_of, 10, 2);
  ASSERT_EQ(by_groups.size(), 2u);
  EXPECT_THAT(by_groups[0].tensors, ElementsAre(0u, 1u, 3u, 4u, 5u));
  EXPECT_THAT(by_groups[0].groups, ElementsAre(0u, 2u));
  EXPECT_EQ(by_groups[0].blocks, 1 + 1 + 2 + 1 + 1);
  EXPECT_THAT(by_groups[1].tensors, ElementsAre(7u));
  EXPECT_THAT(by_groups[1].groups, ElementsAre(4u));
  EXPECT_EQ(by_groups[1].first_chunk, 6);
  const std::vector<MultiTensorLaunch> by_tensors = plan_grouped_multi_tensor_launches(numels, group_of, 3, 8);
  ASSERT_EQ(by_tensors.size(), 2u);
  EXPECT_THAT(by_tensors[0].groups, ElementsAre(0u, 2u));
  EXPECT_THAT(by_tensors[1].tensors, ElementsAre(4u, 5u, 7u));
  EXPECT_THAT(by_tensors[1].groups, ElementsAre(2u, 4u));  // group 2 continues
  EXPECT_TRUE(plan_grouped_multi_tensor_launches({}, {}, 3, 8).empty());
  const std::vector<std::size_t> unsorted = {1, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_THAT(testing::invalid_argument_message([&] { plan_grouped_multi_tensor_launches(numels, unsorted, 3, 8); }),
              HasSubstr("non-decreasing"));
  // The grouped lists keep ResNet-18's 62 parameters in one launch at depth 5.
  EXPECT_GE(multi_tensor_max_grouped_tensors(5), 62);
  EXPECT_GE(multi_tensor_max_groups(128), 6);
}

std::string lists_error(std::span<const NamedTensorList> lists) {
  return testing::invalid_argument_message([&] { expect_parallel_lists("op", lists); });
}

TEST(MultiTensorPlan, ParallelListChecksNameListIndexAndShapes) {
  const cudaStream_t stream = current_stream();
  const Tensor storage = Tensor::zeros(Shape{20}, DType::f32, stream);
  const std::vector<Tensor> written = {storage.narrow(0, 0, 6), storage.narrow(0, 6, 4)};
  const std::vector<Tensor> read = {Tensor::zeros(Shape{6}, DType::f32, stream),
                                    Tensor::zeros(Shape{4}, DType::f32, stream)};
  const NamedTensorList fine[] = {{"w", written, true}, {"r", read, false}};
  EXPECT_EQ(lists_error(fine), "(no exception)");

  const std::vector<Tensor> short_list = {read[0]};
  const NamedTensorList too_short[] = {{"w", written, true}, {"r", short_list, false}};
  EXPECT_THAT(lists_error(too_short), HasSubstr("op: r has 1 tensors but w has 2"));

  // A read-only tensor overlapping a written one, in another list and at another index.
  const std::vector<Tensor> reads_written = {Tensor::zeros(Shape{6}, DType::f32, stream), storage.narrow(0, 3, 4)};
  const NamedTensorList overlap[] = {{"w", written, true}, {"r", reads_written, false}};
  EXPECT_THAT(lists_error(overlap), HasSubstr("op: w[0] (6) and r[1] (4) share memory, but op writes w"));

  // Read-only tensors may overlap each other; empty tensors overlap nothing.
  const std::vector<Tensor> overlapping_reads = {storage.narrow(0, 10, 6), storage.narrow(0, 12, 4)};
  const NamedTensorList reads_only[] = {{"a", overlapping_reads, false}, {"b", overlapping_reads, false}};
  EXPECT_EQ(lists_error(reads_only), "(no exception)");
  const std::vector<Tensor> empties = {storage.narrow(0, 2, 0)};
  const std::vector<Tensor> empties_too = {storage.narrow(0, 2, 0)};
  const NamedTensorList empty_lists[] = {{"w", empties, true}, {"v", empties_too, true}};
  EXPECT_EQ(lists_error(empty_lists), "(no exception)");
}

}  // namespace
}  // namespace strata::kernels
