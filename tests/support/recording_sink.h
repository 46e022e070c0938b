// A test-only recorder of graph::run_op: installed on the calling thread for its lifetime,
// it keeps every recorded op (name, scope, phase, reads, writes, body), so tests can check
// what library calls record and replay the bodies.
//
//   testing::RecordingSink sink;
//   F::relu(x);
//   EXPECT_EQ(sink.names(), std::vector<std::string>{"relu_forward"});
//   sink.stop();
//   sink.replay(stream);            // runs every recorded body again, in order
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "core/op_recording.h"
#include "strata/core/stream.h"

namespace strata::testing {

class RecordingSink final : public graph::detail::OpSink {
 public:
  RecordingSink() : previous_(graph::detail::op_sink()) { graph::detail::set_op_sink(this); }
  ~RecordingSink() override { stop(); }
  RecordingSink(const RecordingSink&) = delete;
  RecordingSink& operator=(const RecordingSink&) = delete;

  void record(graph::detail::RecordedOp op) override { ops.push_back(std::move(op)); }

  // Uninstalls the sink (ops recorded so far stay); idempotent.
  void stop() {
    if (!installed_) return;
    graph::detail::set_op_sink(previous_);
    installed_ = false;
  }

  std::vector<std::string> names() const {
    std::vector<std::string> result;
    for (const graph::detail::RecordedOp& op : ops) result.push_back(op.name);
    return result;
  }

  // Runs every recorded body, in recording order, on stream (current while they run), as
  // the graph executor does on a single stream. After stop(): while recording, the bodies'
  // kernels would count as launched outside run_op.
  void replay(cudaStream_t stream) const {
    if (installed_) throw std::logic_error("RecordingSink::replay: call stop() first");
    const StreamGuard on_stream(stream, current_device());
    for (const graph::detail::RecordedOp& op : ops) op.body(stream);
  }

  std::vector<graph::detail::RecordedOp> ops;

 private:
  graph::detail::OpSink* previous_;
  bool installed_ = true;
};

}  // namespace strata::testing
