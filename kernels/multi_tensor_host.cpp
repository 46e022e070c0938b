#include "kernels/multi_tensor_host.h"

#include <algorithm>
#include <string>

#include "core/check.h"
#include "kernels/tensor_checks.h"

namespace strata::kernels {

namespace {

// gridDim.x allows 2^31 - 1 blocks.
constexpr std::int64_t kMaxBlocksPerLaunch = 2147483647;

std::string element_name(std::string_view list, std::size_t index) {
  return std::string(list) + "[" + std::to_string(index) + "]";
}

// A tensor's bytes, for the overlap sweep.
struct MemoryRange {
  const char* begin;
  const char* end;
  std::size_t list;
  std::size_t index;
};

}  // namespace

namespace {

// Both plans; group_of and max_groups are unused when !grouped.
std::vector<MultiTensorLaunch> plan_launches(std::span<const std::int64_t> numels, bool grouped,
                                             std::span<const std::size_t> group_of, int max_tensors,
                                             int max_groups) {
  STRATA_CHECK(max_tensors >= 1, "plan_multi_tensor_launches: max_tensors must be >= 1, got {}", max_tensors);
  if (grouped) {
    STRATA_CHECK(max_groups >= 1, "plan_grouped_multi_tensor_launches: max_groups must be >= 1, got {}", max_groups);
    STRATA_CHECK(group_of.size() == numels.size(),
                 "plan_grouped_multi_tensor_launches: {} tensors but {} group indices", numels.size(),
                 group_of.size());
    STRATA_CHECK(std::ranges::is_sorted(group_of),
                 "plan_grouped_multi_tensor_launches: the group indices must be non-decreasing");
  }
  std::vector<MultiTensorLaunch> launches;
  std::int64_t chunks_so_far = 0;
  for (std::size_t i = 0; i < numels.size(); ++i) {
    const std::int64_t chunks = multi_tensor_chunks(numels[i]);
    if (chunks == 0) continue;
    STRATA_CHECK(chunks <= kMaxBlocksPerLaunch,
                 "multi-tensor launch: tensor {} has {} elements, more than one launch can cover ({} chunks of {})", i,
                 numels[i], kMaxBlocksPerLaunch, kMultiTensorChunk);
    bool full = !launches.empty() && (launches.back().tensors.size() == static_cast<std::size_t>(max_tensors) ||
                                      launches.back().blocks > kMaxBlocksPerLaunch - chunks);
    const bool new_group = grouped && (launches.empty() || launches.back().groups.back() != group_of[i]);
    if (new_group && !launches.empty() && launches.back().groups.size() == static_cast<std::size_t>(max_groups)) {
      full = true;
    }
    if (launches.empty() || full) {
      launches.push_back(MultiTensorLaunch{.tensors = {}, .blocks = 0, .first_chunk = chunks_so_far, .groups = {}});
    }
    MultiTensorLaunch& current = launches.back();
    if (grouped && (current.groups.empty() || current.groups.back() != group_of[i])) {
      current.groups.push_back(group_of[i]);
    }
    current.tensors.push_back(i);
    current.blocks += chunks;
    chunks_so_far += chunks;
  }
  return launches;
}

}  // namespace

std::vector<MultiTensorLaunch> plan_multi_tensor_launches(std::span<const std::int64_t> numels, int max_tensors) {
  return plan_launches(numels, false, {}, max_tensors, 0);
}

std::vector<MultiTensorLaunch> plan_grouped_multi_tensor_launches(std::span<const std::int64_t> numels,
                                                                  std::span<const std::size_t> group_of,
                                                                  int max_tensors, int max_groups) {
  return plan_launches(numels, true, group_of, max_tensors, max_groups);
}

void expect_parallel_lists(std::string_view op, std::span<const NamedTensorList> lists) {
  if (lists.empty()) return;
  const NamedTensorList& first = lists[0];
  for (const NamedTensorList& list : lists) {
    STRATA_CHECK(list.tensors.size() == first.tensors.size(), "{}: {} has {} tensors but {} has {}", op, list.name,
                 list.tensors.size(), first.name, first.tensors.size());
    for (std::size_t i = 0; i < list.tensors.size(); ++i) {
      const Tensor& tensor = list.tensors[i];
      expect_device_tensor(tensor, op, element_name(list.name, i));
      STRATA_CHECK(tensor.shape() == first.tensors[i].shape(), "{}: {}[{}] has shape {} but {}[{}] has shape {}", op,
                   list.name, i, tensor.shape().to_string(), first.name, i, first.tensors[i].shape().to_string());
    }
  }

  // Sweep the ranges in address order (ties in list order, for stable messages): a range
  // overlaps an earlier one exactly when it starts before the furthest end seen so far. A
  // written range is compared with the furthest end of all ranges, a read-only one with
  // that of the written ranges.
  std::vector<MemoryRange> ranges;
  for (std::size_t l = 0; l < lists.size(); ++l) {
    for (std::size_t i = 0; i < lists[l].tensors.size(); ++i) {
      const Tensor& tensor = lists[l].tensors[i];
      if (tensor.nbytes() == 0) continue;
      const auto* begin = static_cast<const char*>(tensor.data_ptr());
      ranges.push_back(MemoryRange{begin, begin + tensor.nbytes(), l, i});
    }
  }
  std::stable_sort(ranges.begin(), ranges.end(),
                   [](const MemoryRange& a, const MemoryRange& b) { return a.begin < b.begin; });
  const MemoryRange* furthest_any = nullptr;
  const MemoryRange* furthest_written = nullptr;
  for (const MemoryRange& range : ranges) {
    const bool written = lists[range.list].written;
    const MemoryRange* other = nullptr;
    if (written && furthest_any != nullptr && range.begin < furthest_any->end) other = furthest_any;
    if (other == nullptr && furthest_written != nullptr && range.begin < furthest_written->end) other = furthest_written;
    // The message's arguments are evaluated only when the check fails.
    STRATA_CHECK(other == nullptr, "{}: {} {} and {} {} share memory, but {} writes {}", op,
                 element_name(lists[other->list].name, other->index),
                 lists[other->list].tensors[other->index].shape().to_string(),
                 element_name(lists[range.list].name, range.index),
                 lists[range.list].tensors[range.index].shape().to_string(), op,
                 lists[written ? range.list : other->list].name);
    if (furthest_any == nullptr || range.end > furthest_any->end) furthest_any = &range;
    if (written && (furthest_written == nullptr || range.end > furthest_written->end)) furthest_written = &range;
  }
}

}  // namespace strata::kernels
