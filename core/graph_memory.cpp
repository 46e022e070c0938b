// The memory plan: transient buffers packed first-fit, largest first, into one arena, two
// sharing memory only when the graph orders the last use of one before the first write of
// the other.
#include <algorithm>
#include <functional>
#include <memory>
#include <numeric>
#include <ranges>
#include <vector>

#include "core/autograd_meta.h"
#include "core/check.h"
#include "core/graph_impl.h"
#include "core/format.h"
#include "strata/core/allocator.h"
#include "strata/core/errors.h"
#include "strata/core/graph.h"

namespace strata::graph {

namespace {

constexpr std::size_t kAlignment = 256;  // as cudaMalloc's

std::size_t aligned(std::size_t bytes) { return (bytes + kAlignment - 1) / kAlignment * kAlignment; }

}  // namespace

namespace {

struct Placement {
  std::vector<std::size_t> offset;  // per transient buffer, in the order given
  std::size_t arena_bytes = 0;
};

// First fit in the given order: each buffer at the lowest offset that overlaps no placed
// buffer it may be live with.
Placement place(const std::vector<std::size_t>& order, const std::vector<BufferInfo>& buffers,
                const std::function<bool(std::size_t, std::size_t)>& live_together) {
  struct Placed {
    std::size_t buffer;
    std::size_t begin;
    std::size_t end;
  };
  std::vector<Placed> placed;
  Placement placement;
  for (const std::size_t b : order) {
    const std::size_t bytes = aligned(buffers[b].bytes);
    std::vector<Placed> conflicts;
    for (const Placed& other : placed) {
      if (live_together(b, other.buffer)) conflicts.push_back(other);
    }
    std::ranges::sort(conflicts, {}, &Placed::begin);
    std::size_t offset = 0;
    for (const Placed& other : conflicts) {
      if (offset + bytes <= other.begin) break;
      offset = std::max(offset, other.end);
    }
    placed.push_back({b, offset, offset + bytes});
    placement.offset.push_back(offset);
    placement.arena_bytes = std::max(placement.arena_bytes, offset + bytes);
  }
  return placement;
}

}  // namespace

MemoryPlan plan_memory(const Graph& graph, int streams) {
  STRATA_CHECK(streams >= 1, "graph::plan_memory: needs at least one stream, got {}", streams);
  const std::vector<BufferInfo>& buffers = graph.buffers();
  MemoryPlan plan;
  std::vector<std::size_t> workspaces;
  for (const NodeInfo& node : graph.nodes()) workspaces.push_back(aligned(node.workspace_bytes));
  const auto concurrent = std::min(workspaces.size(), static_cast<std::size_t>(streams));
  std::ranges::partial_sort(workspaces, workspaces.begin() + static_cast<std::ptrdiff_t>(concurrent), std::greater<>());
  const auto largest_end = workspaces.begin() + static_cast<std::ptrdiff_t>(concurrent);
  plan.workspace_bytes = std::accumulate(workspaces.begin(), largest_end, std::size_t{0});
  plan.offset.assign(buffers.size(), 0);
  plan.planned.assign(buffers.size(), false);
  std::vector<std::size_t> transient;
  for (std::size_t b = 0; b < buffers.size(); ++b) {
    if (buffers[b].kept || buffers[b].first_write < 0) {
      plan.kept_bytes += aligned(buffers[b].bytes);
    } else {
      transient.push_back(b);
      plan.transient_bytes += aligned(buffers[b].bytes);
    }
  }

  // On one stream the nodes run in recording order, which orders every pair; on several,
  // only the graph's edges do. first's memory is free for second once every use of first
  // (several may run concurrently) runs before second's first write, which every later
  // access to second depends on.
  const auto runs_before = [&](std::size_t a, std::size_t b) { return streams == 1 ? a < b : graph.precedes(a, b); };
  const auto ordered = [&](const BufferInfo& first, const BufferInfo& second) {
    const auto start = static_cast<std::size_t>(second.first_write);
    return std::ranges::all_of(first.uses, [&](std::size_t use) { return runs_before(use, start); });
  };
  const auto live_together = [&](std::size_t a, std::size_t b) {
    return !ordered(buffers[a], buffers[b]) && !ordered(buffers[b], buffers[a]);
  };

  // The lower bound: the most bytes live at once in recording order, the running node's
  // workspace included.
  for (const std::size_t node : std::views::iota(std::size_t{0}, graph.size())) {
    std::size_t live = aligned(graph.node(node).workspace_bytes);
    for (const std::size_t b : transient) {
      const BufferInfo& buffer = buffers[b];
      if (static_cast<std::size_t>(buffer.first_write) <= node && node <= buffer.uses.back()) {
        live += aligned(buffer.bytes);
      }
    }
    plan.live_bytes = std::max(plan.live_bytes, live);
  }

  // Two classic orders, largest first and first written first; the smaller arena wins.
  std::vector<std::size_t> by_size = transient;
  std::ranges::stable_sort(by_size, [&](std::size_t a, std::size_t b) { return buffers[a].bytes > buffers[b].bytes; });
  std::vector<std::size_t> by_time = transient;
  std::ranges::stable_sort(by_time, {}, [&](std::size_t b) { return buffers[b].first_write; });
  const Placement sized = place(by_size, buffers, live_together);
  const Placement timed = place(by_time, buffers, live_together);
  const bool size_wins = sized.arena_bytes <= timed.arena_bytes;
  const Placement& best = size_wins ? sized : timed;
  const std::vector<std::size_t>& order = size_wins ? by_size : by_time;
  for (std::size_t i = 0; i < order.size(); ++i) {
    plan.offset[order[i]] = best.offset[i];
    plan.planned[order[i]] = true;
  }
  plan.arena_bytes = best.arena_bytes;
  return plan;
}

void Graph::move_to_arena(const MemoryPlan& plan, cudaStream_t stream) {
  STRATA_CHECK(plan.planned.size() == buffers_.size(), "Graph::move_to_arena: the plan has {} buffers, the graph {}",
               plan.planned.size(), buffers_.size());
  if (plan.arena_bytes == 0) return;
  std::shared_ptr<DeviceBuffer> arena;
  try {
    arena = std::make_shared<DeviceBuffer>(allocate_device(plan.arena_bytes, stream));
  } catch (const OutOfMemoryError& error) {
    throw OutOfMemoryError(fmt::format("the memory plan of a graph of {} nodes needs an arena of {} bytes for its "
                                       "transient buffers (naive sum {} bytes, {} bytes kept besides): {}",
                                       nodes_.size(), plan.arena_bytes, plan.transient_bytes, plan.kept_bytes,
                                       error.what()),
                           error.requested_bytes(), error.in_use_bytes(), error.free_bytes());
  }
  for (std::size_t b = 0; b < buffers_.size(); ++b) {
    if (!plan.planned[b]) continue;
    // The buffer's own memory returns to the cache in the order of its stream, after the
    // recording's work on it.
    strata::detail::TensorAccess::move_to_arena(impl_->buffer_tensors[b], arena, plan.offset[b]);
  }
}

BatchFit largest_batch(std::size_t budget_bytes, const std::function<Graph(std::int64_t batch)>& record_step,
                       std::int64_t max_batch) {
  STRATA_CHECK(max_batch >= 1, "graph::largest_batch: max_batch must be >= 1, got {}", max_batch);
  const auto peak_of = [&](std::int64_t batch) { return plan_memory(record_step(batch)).peak_bytes(); };
  BatchFit best;
  std::int64_t low = 1;
  std::int64_t high = max_batch;
  while (low <= high) {  // invariant: every batch < low fits, every batch > high does not
    const std::int64_t middle = low + (high - low) / 2;
    const std::size_t peak = peak_of(middle);
    if (peak <= budget_bytes) {
      best = {middle, peak};
      low = middle + 1;
    } else {
      high = middle - 1;
    }
  }
  return best;
}

}  // namespace strata::graph
