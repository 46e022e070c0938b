// What run_op hands to an active recorder (the graph being built), and how one is installed
// on a thread. Private to core: users record through graph::Recorder.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/op.h"

namespace strata::graph::detail {

struct RecordedOp {
  std::string name;   // the op's own name: "conv2d_backward_filter"
  std::string scope;  // the module path it ran under: "features.3" (may be empty)
  Phase phase = Phase::forward;
  std::vector<Tensor> reads;   // defined tensors only
  std::vector<Tensor> writes;  // defined tensors only
  OpBody body;
  std::size_t workspace_bytes = 0;  // the most the body had allocated at once, freed by its end
};

class OpSink {
 public:
  virtual ~OpSink() = default;
  virtual void record(RecordedOp op) = 0;
};

// Throws InvalidArgument naming the kind of work and its name when a recorder is active on this thread but no
// run_op body is running: device work queued outside run_op would be missing from the graph.
// Called by every kernel launch, GEMM and device copy.
void check_inside_op(std::string_view kind, std::string_view name);

// The sink of this thread (null: ops are not recorded).
OpSink* op_sink() noexcept;
void set_op_sink(OpSink* sink) noexcept;

}  // namespace strata::graph::detail
