// Placing a graph's nodes on streams, and checking a placement for races with vector clocks.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/check.h"
#include "core/format.h"
#include "strata/core/graph.h"

namespace strata::graph {

namespace {

// What a stream has completed, as seen from one point of one stream: for each stream, the
// number of its nodes known to have finished (stream order counts 1, 2, ...).
using VectorClock = std::vector<std::uint64_t>;

void merge(VectorClock& into, const VectorClock& other) {
  for (std::size_t s = 0; s < into.size(); ++s) into[s] = std::max(into[s], other[s]);
}

}  // namespace

Schedule schedule(const Graph& graph, int streams) {
  STRATA_CHECK(streams >= 1, "graph::schedule: needs at least one stream, got {}", streams);
  const auto stream_count = static_cast<std::size_t>(streams);
  Schedule result{.streams = streams, .stream_of = std::vector<int>(graph.size()), .waits = {}};
  result.waits.resize(graph.size());
  std::vector<std::ptrdiff_t> last_on_stream(stream_count, -1);
  std::vector<std::size_t> load(stream_count, 0);
  std::vector<std::uint64_t> position(graph.size());      // per node: its count on its stream
  std::vector<VectorClock> after(graph.size());           // per node: what is done once it is
  std::vector<VectorClock> stream_clock(stream_count, VectorClock(stream_count, 0));

  for (std::size_t i = 0; i < graph.size(); ++i) {
    const std::vector<std::size_t>& predecessors = graph.node(i).predecessors;
    // Continue the chain of the latest predecessor that ends a stream; else the least busy.
    std::ptrdiff_t chosen = -1;
    for (auto p = predecessors.rbegin(); p != predecessors.rend() && chosen < 0; ++p) {
      const auto s = static_cast<std::size_t>(result.stream_of[*p]);
      if (last_on_stream[s] == static_cast<std::ptrdiff_t>(*p)) chosen = static_cast<std::ptrdiff_t>(s);
    }
    if (chosen < 0) chosen = std::ranges::min_element(load) - load.begin();
    const auto s = static_cast<std::size_t>(chosen);
    result.stream_of[i] = static_cast<int>(s);
    // Wait only for predecessors the stream has not already seen finish.
    for (const std::size_t p : predecessors) {
      const auto ps = static_cast<std::size_t>(result.stream_of[p]);
      if (ps == s || stream_clock[s][ps] >= position[p]) continue;
      result.waits[i].push_back(p);
      merge(stream_clock[s], after[p]);
    }
    position[i] = ++stream_clock[s][s];
    after[i] = stream_clock[s];
    last_on_stream[s] = static_cast<std::ptrdiff_t>(i);
    ++load[s];
  }
  return result;
}

namespace {

// For each buffer, the buffers whose memory overlaps its own (itself included): with a
// memory plan, planned buffers that share arena bytes.
std::vector<std::vector<std::size_t>> aliases_of(const Graph& graph, const MemoryPlan* plan) {
  const std::size_t count = graph.buffers().size();
  std::vector<std::vector<std::size_t>> aliases(count);
  for (std::size_t b = 0; b < count; ++b) aliases[b].push_back(b);
  if (plan == nullptr) return aliases;
  STRATA_CHECK(plan->planned.size() == count, "graph::check_stream_safety: the plan has {} buffers, the graph {}",
               plan->planned.size(), count);
  for (std::size_t a = 0; a < count; ++a) {
    for (std::size_t b = a + 1; b < count; ++b) {
      if (!plan->planned[a] || !plan->planned[b]) continue;
      const std::size_t a_end = plan->offset[a] + graph.buffers()[a].bytes;
      const std::size_t b_end = plan->offset[b] + graph.buffers()[b].bytes;
      if (plan->offset[a] < b_end && plan->offset[b] < a_end) {
        aliases[a].push_back(b);
        aliases[b].push_back(a);
      }
    }
  }
  return aliases;
}

}  // namespace

std::vector<Race> check_stream_safety(const Graph& graph, const Schedule& schedule, const MemoryPlan* plan) {
  const std::vector<std::vector<std::size_t>> aliases = aliases_of(graph, plan);
  STRATA_CHECK(schedule.stream_of.size() == graph.size() && schedule.waits.size() == graph.size(),
               "graph::check_stream_safety: the schedule has {} nodes, the graph {}", schedule.stream_of.size(),
               graph.size());
  const auto stream_count = static_cast<std::size_t>(schedule.streams);
  struct Access {
    std::size_t node;
    std::size_t stream;
    std::uint64_t position;
  };
  std::vector<std::vector<Access>> last_write(graph.buffers().size());  // zero or one entry
  std::vector<std::vector<Access>> reads_since(graph.buffers().size());
  std::vector<VectorClock> stream_clock(stream_count, VectorClock(stream_count, 0));
  std::vector<VectorClock> after(graph.size());
  std::vector<Race> races;

  const auto describe_node = [&](std::size_t node, std::size_t stream) {
    return fmt::format("node {} '{}' on stream {}", node, graph.node(node).name(), stream);
  };
  // earlier: an access to buffer (or, with a plan, to a buffer sharing its memory).
  const auto require_ordered = [&](const Access& earlier, std::size_t node, std::size_t stream,
                                   const VectorClock& clock, std::size_t buffer, std::size_t accessed,
                                   const char* what) {
    if (clock[earlier.stream] >= earlier.position) return;
    const BufferInfo& info = graph.buffers()[buffer];
    const std::string shared =
        accessed == buffer ? std::string() : fmt::format(" (it shares arena memory with buffer {})", accessed);
    races.push_back({fmt::format("race on buffer {} ({}, {} bytes): {} {} it, unordered after {} which {} it{}",
                                 buffer, info.label, info.bytes, describe_node(node, stream), what,
                                 describe_node(earlier.node, earlier.stream),
                                 std::string_view(what) == "reads" ? "wrote" : "accessed", shared)});
  };

  for (std::size_t i = 0; i < graph.size(); ++i) {
    const auto s = static_cast<std::size_t>(schedule.stream_of[i]);
    STRATA_CHECK(s < stream_count, "graph::check_stream_safety: node {} is on stream {} of {}", i, s, stream_count);
    for (const std::size_t w : schedule.waits[i]) {
      STRATA_CHECK(w < i, "graph::check_stream_safety: node {} waits for node {}, which comes later", i, w);
      merge(stream_clock[s], after[w]);
    }
    VectorClock& clock = stream_clock[s];
    const std::uint64_t position = ++clock[s];
    const NodeInfo& node = graph.node(i);
    for (const std::size_t buffer : node.reads) {
      for (const Access& write : last_write[buffer]) require_ordered(write, i, s, clock, buffer, buffer, "reads");
    }
    for (const std::size_t buffer : node.writes) {
      // A write also reuses the memory of every buffer that shares it (memory plan).
      for (const std::size_t alias : aliases[buffer]) {
        for (const Access& write : last_write[alias]) require_ordered(write, i, s, clock, buffer, alias, "writes");
        for (const Access& read : reads_since[alias]) {
          if (read.node != i) require_ordered(read, i, s, clock, buffer, alias, "writes");
        }
      }
    }
    for (const std::size_t buffer : node.reads) reads_since[buffer].push_back({i, s, position});
    for (const std::size_t buffer : node.writes) {
      last_write[buffer] = {Access{i, s, position}};
      reads_since[buffer].clear();
    }
    after[i] = clock;
  }
  return races;
}

}  // namespace strata::graph
