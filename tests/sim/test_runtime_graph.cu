// Tests of stream capture and CUDA graphs in the simulated runtime: captured work runs only
// when the graph is launched, with the kernel arguments of capture time; fork and join
// through events become dependency edges; calls CUDA forbids during capture fail with its
// error codes and invalidate the capture; the capture modes decide who may call
// cudaMalloc; launches of one graph are ordered, and random replay orders keep the edges.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "core/launch.cuh"
#include "core/sim/runtime.h"
#include "tests/sim/runtime_test_support.h"

namespace {

using strata::testing::DeviceBuffer;
using strata::testing::Gate;
using strata::testing::OrderLog;
using strata::testing::PinnedBuffer;
using strata::testing::ReplayableHostFunctions;
using strata::testing::ScopedEvent;
using strata::testing::ScopedStream;

// y[i] = a * x[i] + b
__global__ void affine_kernel(const int* x, int* y, int a, int b, int count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) y[i] = a * x[i] + b;
}

// y[i] = a[i] + b[i]
__global__ void add_kernel(const int* a, const int* b, int* y, int count) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < count) y[i] = a[i] + b[i];
}

constexpr int kCount = 37;  // odd: the last block is partial

void affine(const int* x, int* y, int a, int b, cudaStream_t stream) {
  strata::launch(affine_kernel, strata::LaunchConfig{.grid = 2, .block = 32, .stream = stream, .name = "affine"}, x,
                 y, a, b, kCount);
}

void add(const int* a, const int* b, int* y, cudaStream_t stream) {
  strata::launch(add_kernel, strata::LaunchConfig{.grid = 2, .block = 32, .stream = stream, .name = "add"}, a, b, y,
                 kCount);
}

// The captured graph of a capture on stream (begun and ended here), or null when EndCapture
// fails; end_status receives EndCapture's result.
cudaGraph_t capture(cudaStream_t stream, const std::function<void()>& work, cudaError_t* end_status = nullptr,
                    cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal) {
  EXPECT_EQ(cudaStreamBeginCapture(stream, mode), cudaSuccess);
  work();
  cudaGraph_t graph = nullptr;
  const cudaError_t status = cudaStreamEndCapture(stream, &graph);
  if (end_status != nullptr) {
    *end_status = status;
  } else {
    EXPECT_EQ(status, cudaSuccess);
  }
  return graph;
}

// An instantiated graph, destroyed with its graph at the end of the test.
class Executable {
 public:
  explicit Executable(cudaGraph_t graph) : graph_(graph) {
    EXPECT_EQ(cudaGraphInstantiate(&exec_, graph, 0), cudaSuccess);
  }
  ~Executable() {
    EXPECT_EQ(cudaGraphExecDestroy(exec_), cudaSuccess);
    EXPECT_EQ(cudaGraphDestroy(graph_), cudaSuccess);
  }
  Executable(const Executable&) = delete;
  Executable& operator=(const Executable&) = delete;
  cudaError_t launch(cudaStream_t stream) const { return cudaGraphLaunch(exec_, stream); }

 private:
  cudaGraph_t graph_ = nullptr;
  cudaGraphExec_t exec_ = nullptr;
};

std::vector<int> read(const int* device, cudaStream_t stream) {
  std::vector<int> host(kCount);
  EXPECT_EQ(cudaMemcpyAsync(host.data(), device, kCount * sizeof(int), cudaMemcpyDeviceToHost, stream), cudaSuccess);
  return host;
}

void write(int* device, const std::vector<int>& host, cudaStream_t stream) {
  ASSERT_EQ(cudaMemcpyAsync(device, host.data(), kCount * sizeof(int), cudaMemcpyHostToDevice, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
}

std::vector<int> iota(int first) {
  std::vector<int> values(kCount);
  for (int i = 0; i < kCount; ++i) values[i] = first + 3 * i;
  return values;
}

cudaStreamCaptureStatus capture_status(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  EXPECT_EQ(cudaStreamIsCapturing(stream, &status), cudaSuccess);
  return status;
}

class SimRuntimeGraph : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(cudaGetLastError(), cudaSuccess); }
  void TearDown() override {
    static_cast<void>(cudaGetLastError());  // tests of errors leave them behind on purpose
    strata::sim::clear_device_error();
  }
};

TEST_F(SimRuntimeGraph, CapturedWorkRunsOnlyWhenTheGraphIsLaunched) {
  ScopedStream stream(cudaStreamNonBlocking);
  DeviceBuffer<int> x(kCount);
  DeviceBuffer<int> y(kCount);
  PinnedBuffer<int> copied(kCount);
  write(x.get(), iota(1), stream);
  STRATA_ASSERT_CUDA(cudaMemsetAsync(y.get(), 0xff, kCount * sizeof(int), stream));
  auto host_calls = std::make_shared<std::atomic<int>>(0);
  ReplayableHostFunctions host_functions;
  Executable graph(capture(stream, [&] {
    affine(x.get(), y.get(), 2, 1, stream);
    STRATA_EXPECT_CUDA(
        cudaMemcpyAsync(copied.get(), y.get(), kCount * sizeof(int), cudaMemcpyDeviceToHost, stream));
    STRATA_EXPECT_CUDA(cudaMemsetAsync(x.get(), 0, kCount * sizeof(int), stream));
    STRATA_EXPECT_CUDA(host_functions.launch(stream, [host_calls] { ++*host_calls; }));
  }));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
  EXPECT_EQ(*host_calls, 0);
  EXPECT_EQ(read(y.get(), stream), std::vector<int>(kCount, -1)) << "a captured kernel ran at capture time";

  for (int replay = 1; replay <= 3; ++replay) {
    const std::vector<int> input = iota(10 * replay);
    write(x.get(), input, stream);
    STRATA_ASSERT_CUDA(graph.launch(stream));
    STRATA_ASSERT_CUDA(cudaStreamSynchronize(stream));
    EXPECT_EQ(*host_calls, replay);
    EXPECT_EQ(read(x.get(), stream), std::vector<int>(kCount, 0));
    for (int i = 0; i < kCount; ++i) {
      ASSERT_EQ(copied.get()[i], 2 * input[static_cast<size_t>(i)] + 1) << "replay " << replay << ", element " << i;
    }
  }
}

TEST_F(SimRuntimeGraph, KernelArgumentsAreThoseOfCaptureTime) {
  ScopedStream stream(cudaStreamNonBlocking);
  DeviceBuffer<int> x(kCount);
  DeviceBuffer<int> y(kCount);
  write(x.get(), iota(0), stream);
  int factor = 5;
  Executable graph(capture(stream, [&] { affine(x.get(), y.get(), factor, 0, stream); }));
  factor = 7;
  STRATA_ASSERT_CUDA(graph.launch(stream));
  const std::vector<int> result = read(y.get(), stream);
  for (int i = 0; i < kCount; ++i) ASSERT_EQ(result[static_cast<size_t>(i)], 5 * 3 * i) << "element " << i;
}

TEST_F(SimRuntimeGraph, CaptureStatusAndInfoFollowTheCapture) {
  ScopedStream stream(cudaStreamNonBlocking);
  DeviceBuffer<int> x(kCount);
  EXPECT_EQ(capture_status(stream), cudaStreamCaptureStatusNone);
  unsigned long long first_id = 0;
  cudaGraph_t graph = capture(stream, [&] {
    EXPECT_EQ(capture_status(stream), cudaStreamCaptureStatusActive);
    STRATA_EXPECT_CUDA(cudaMemsetAsync(x.get(), 0, sizeof(int), stream));
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    const cudaGraphNode_t* dependencies = nullptr;
    size_t dependency_count = 0;
    STRATA_EXPECT_CUDA(
        cudaStreamGetCaptureInfo(stream, &status, &first_id, nullptr, &dependencies, nullptr, &dependency_count));
    EXPECT_EQ(status, cudaStreamCaptureStatusActive);
    EXPECT_NE(first_id, 0u);
    ASSERT_EQ(dependency_count, 1u);
    cudaGraphNodeType type = cudaGraphNodeTypeEmpty;
    STRATA_EXPECT_CUDA(cudaGraphNodeGetType(dependencies[0], &type));
    EXPECT_EQ(type, cudaGraphNodeTypeMemset);
  });
  EXPECT_EQ(capture_status(stream), cudaStreamCaptureStatusNone);
  STRATA_EXPECT_CUDA(cudaGraphDestroy(graph));

  unsigned long long second_id = 0;
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  graph = capture(stream, [&] { STRATA_EXPECT_CUDA(cudaStreamGetCaptureInfo(stream, &status, &second_id)); });
  EXPECT_NE(second_id, first_id) << "capture ids are unique over the process";
  STRATA_EXPECT_CUDA(cudaGraphDestroy(graph));
}

// s0: a = 2x + 1; fork to s1: b = 3a; s0: c = a - 4; join; s0: d = b + c.
TEST_F(SimRuntimeGraph, ForkAndJoinThroughEventsBecomeDependencyEdges) {
  ScopedStream origin(cudaStreamNonBlocking);
  ScopedStream side(cudaStreamNonBlocking);
  ScopedEvent forked(cudaEventDisableTiming);
  ScopedEvent joined(cudaEventDisableTiming);
  DeviceBuffer<int> x(kCount), a(kCount), b(kCount), c(kCount), d(kCount);
  unsigned long long origin_id = 0;
  unsigned long long side_id = 0;
  cudaGraph_t captured = capture(origin, [&] {
    affine(x.get(), a.get(), 2, 1, origin);
    STRATA_EXPECT_CUDA(cudaEventRecord(forked, origin));
    STRATA_EXPECT_CUDA(cudaStreamWaitEvent(side, forked, 0));
    EXPECT_EQ(capture_status(side), cudaStreamCaptureStatusActive) << "waiting for a captured event joins the capture";
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    STRATA_EXPECT_CUDA(cudaStreamGetCaptureInfo(origin, &status, &origin_id));
    STRATA_EXPECT_CUDA(cudaStreamGetCaptureInfo(side, &status, &side_id));
    affine(a.get(), b.get(), 3, 0, side);
    affine(a.get(), c.get(), 1, -4, origin);
    STRATA_EXPECT_CUDA(cudaEventRecord(joined, side));
    STRATA_EXPECT_CUDA(cudaStreamWaitEvent(origin, joined, 0));
    add(b.get(), c.get(), d.get(), origin);
  });
  ASSERT_NE(captured, nullptr);
  EXPECT_EQ(origin_id, side_id);
  EXPECT_EQ(capture_status(side), cudaStreamCaptureStatusNone) << "EndCapture releases the joined streams too";

  size_t node_count = 0;
  STRATA_ASSERT_CUDA(cudaGraphGetNodes(captured, nullptr, &node_count));
  ASSERT_EQ(node_count, 4u);
  std::vector<cudaGraphNode_t> nodes(node_count);
  STRATA_ASSERT_CUDA(cudaGraphGetNodes(captured, nodes.data(), &node_count));
  size_t edge_count = 0;
  STRATA_ASSERT_CUDA(cudaGraphGetEdges(captured, nullptr, nullptr, nullptr, &edge_count));
  std::vector<cudaGraphNode_t> from(edge_count), to(edge_count);
  STRATA_ASSERT_CUDA(cudaGraphGetEdges(captured, from.data(), to.data(), nullptr, &edge_count));
  std::set<std::pair<size_t, size_t>> edges;  // by capture order: a=0, b=1, c=2, d=3
  auto index_of = [&](cudaGraphNode_t node) {
    return static_cast<size_t>(std::find(nodes.begin(), nodes.end(), node) - nodes.begin());
  };
  for (size_t i = 0; i < edge_count; ++i) edges.emplace(index_of(from[i]), index_of(to[i]));
  EXPECT_EQ(edges, (std::set<std::pair<size_t, size_t>>{{0, 1}, {0, 2}, {1, 3}, {2, 3}}));

  Executable graph(captured);
  for (int replay = 0; replay < 3; ++replay) {
    const std::vector<int> input = iota(replay - 5);
    write(x.get(), input, origin);
    STRATA_ASSERT_CUDA(graph.launch(origin));
    const std::vector<int> result = read(d.get(), origin);
    for (int i = 0; i < kCount; ++i) {
      const int a_i = 2 * input[static_cast<size_t>(i)] + 1;
      ASSERT_EQ(result[static_cast<size_t>(i)], 3 * a_i + (a_i - 4)) << "replay " << replay << ", element " << i;
    }
  }
}

TEST_F(SimRuntimeGraph, AForkThatIsNotJoinedFailsEndCapture) {
  ScopedStream origin(cudaStreamNonBlocking);
  ScopedStream side(cudaStreamNonBlocking);
  ScopedEvent forked(cudaEventDisableTiming);
  DeviceBuffer<int> x(kCount);
  cudaError_t end_status = cudaSuccess;
  const cudaGraph_t graph = capture(
      origin,
      [&] {
        STRATA_EXPECT_CUDA(cudaEventRecord(forked, origin));
        STRATA_EXPECT_CUDA(cudaStreamWaitEvent(side, forked, 0));
        STRATA_EXPECT_CUDA(cudaMemsetAsync(x.get(), 0, sizeof(int), side));
        cudaGraph_t wrong_end = nullptr;
        EXPECT_EQ(cudaStreamEndCapture(side, &wrong_end), cudaErrorStreamCaptureUnmatched);
      },
      &end_status);
  // Ending on the joined stream invalidated the capture, which takes precedence.
  EXPECT_EQ(end_status, cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(graph, nullptr);

  const cudaGraph_t unjoined = capture(
      origin,
      [&] {
        STRATA_EXPECT_CUDA(cudaEventRecord(forked, origin));
        STRATA_EXPECT_CUDA(cudaStreamWaitEvent(side, forked, 0));
        STRATA_EXPECT_CUDA(cudaMemsetAsync(x.get(), 0, sizeof(int), side));
      },
      &end_status);
  EXPECT_EQ(end_status, cudaErrorStreamCaptureUnjoined);
  EXPECT_EQ(unjoined, nullptr);
  EXPECT_EQ(capture_status(side), cudaStreamCaptureStatusNone);
  STRATA_EXPECT_CUDA(cudaMemsetAsync(x.get(), 0, sizeof(int), side));  // usable again
  STRATA_EXPECT_CUDA(cudaStreamSynchronize(side));
}

// Each call CUDA forbids during a global-mode capture fails with its error, invalidates the
// capture (later work on the stream fails too), and EndCapture returns no graph.
TEST_F(SimRuntimeGraph, ForbiddenCallsFailAndInvalidateTheCapture) {
  ScopedStream stream(cudaStreamNonBlocking);
  ScopedStream other(cudaStreamNonBlocking);
  ScopedEvent uncaptured(cudaEventDisableTiming);
  ScopedEvent captured(cudaEventDisableTiming);
  DeviceBuffer<int> x(kCount);
  std::vector<int> pageable(kCount);
  STRATA_ASSERT_CUDA(cudaEventRecord(uncaptured, other));
  struct Case {
    const char* name;
    std::function<cudaError_t()> call;
    cudaError_t expected;
  };
  const Case cases[] = {
      {"cudaStreamSynchronize", [&] { return cudaStreamSynchronize(stream); }, cudaErrorStreamCaptureUnsupported},
      {"cudaStreamQuery", [&] { return cudaStreamQuery(stream); }, cudaErrorStreamCaptureUnsupported},
      {"cudaDeviceSynchronize", [] { return cudaDeviceSynchronize(); }, cudaErrorStreamCaptureUnsupported},
      {"cudaMemcpy", [&] { return cudaMemcpy(x.get(), pageable.data(), sizeof(int), cudaMemcpyHostToDevice); },
       cudaErrorStreamCaptureUnsupported},
      {"cudaMemset", [&] { return cudaMemset(x.get(), 0, sizeof(int)); }, cudaErrorStreamCaptureUnsupported},
      {"cudaMalloc",
       [] {
         void* memory = nullptr;
         return cudaMalloc(&memory, 256);
       },
       cudaErrorStreamCaptureUnsupported},
      {"cudaFree", [&] { return cudaFree(x.get()); }, cudaErrorStreamCaptureUnsupported},
      {"cudaMemcpyAsync from pageable memory",
       [&] { return cudaMemcpyAsync(x.get(), pageable.data(), sizeof(int), cudaMemcpyHostToDevice, stream); },
       cudaErrorStreamCaptureUnsupported},
      {"cudaMemcpyAsync to pageable memory",
       [&] { return cudaMemcpyAsync(pageable.data(), x.get(), sizeof(int), cudaMemcpyDeviceToHost, stream); },
       cudaErrorStreamCaptureUnsupported},
      {"cudaEventQuery of a captured event",
       [&] {
         EXPECT_EQ(cudaEventRecord(captured, stream), cudaSuccess);
         return cudaEventQuery(captured);
       },
       cudaErrorCapturedEvent},
      {"cudaEventSynchronize of a captured event",
       [&] {
         EXPECT_EQ(cudaEventRecord(captured, stream), cudaSuccess);
         return cudaEventSynchronize(captured);
       },
       cudaErrorCapturedEvent},
      {"cudaStreamWaitEvent on uncaptured work", [&] { return cudaStreamWaitEvent(stream, uncaptured, 0); },
       cudaErrorStreamCaptureIsolation},
      {"cudaMallocAsync",
       [&] {
         void* memory = nullptr;
         return cudaMallocAsync(&memory, 256, stream);
       },
       cudaErrorStreamCaptureUnsupported},
  };
  for (const Case& test : cases) {
    SCOPED_TRACE(test.name);
    STRATA_ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    STRATA_EXPECT_CUDA(cudaMemsetAsync(x.get(), 0, sizeof(int), stream));
    EXPECT_EQ(test.call(), test.expected);
    EXPECT_EQ(cudaGetLastError(), test.expected);
    EXPECT_EQ(capture_status(stream), cudaStreamCaptureStatusInvalidated);
    EXPECT_EQ(cudaMemsetAsync(x.get(), 0, sizeof(int), stream), cudaErrorStreamCaptureInvalidated);
    cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(&stream);  // must be overwritten
    EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorStreamCaptureInvalidated);
    EXPECT_EQ(graph, nullptr);
    static_cast<void>(cudaGetLastError());
    STRATA_EXPECT_CUDA(cudaStreamSynchronize(stream));  // an ordinary stream again
  }
}

TEST_F(SimRuntimeGraph, MisusedCaptureCallsReturnCudasErrors) {
  ScopedStream stream(cudaStreamNonBlocking);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(stream, &graph), cudaErrorIllegalState);
  EXPECT_EQ(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamBeginCapture(stream, static_cast<cudaStreamCaptureMode>(7)), cudaErrorInvalidValue);
  STRATA_ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  EXPECT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), cudaErrorIllegalState);
  std::thread([&] {
    cudaGraph_t from_other_thread = nullptr;
    EXPECT_EQ(cudaStreamEndCapture(stream, &from_other_thread), cudaErrorStreamCaptureWrongThread);
  }).join();
  STRATA_ASSERT_CUDA(cudaStreamEndCapture(stream, &graph));
  ASSERT_NE(graph, nullptr);
  size_t nodes = 1;
  STRATA_EXPECT_CUDA(cudaGraphGetNodes(graph, nullptr, &nodes));
  EXPECT_EQ(nodes, 0u);
  STRATA_EXPECT_CUDA(cudaGraphDestroy(graph));
  EXPECT_EQ(cudaGraphDestroy(graph), cudaErrorInvalidValue);
  EXPECT_STREQ(cudaGetErrorName(cudaErrorStreamCaptureUnjoined), "cudaErrorStreamCaptureUnjoined");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorCapturedEvent),
               "operation not permitted on an event last recorded in a capturing stream");
}

// cudaMalloc is "potentially unsafe": a global or thread-local capture forbids it to the
// capturing thread, a global one also to other threads in global mode; a relaxed capture,
// or a thread whose own mode is relaxed (PyTorch's allocator does this), may call it.
TEST_F(SimRuntimeGraph, CaptureModesDecideWhoMayCallCudaMalloc) {
  ScopedStream stream(cudaStreamNonBlocking);
  auto try_malloc = [] {
    void* memory = nullptr;
    const cudaError_t status = cudaMalloc(&memory, 512);
    if (status == cudaSuccess) {
      EXPECT_EQ(cudaFree(memory), cudaSuccess);
    }
    static_cast<void>(cudaGetLastError());
    return status;
  };
  auto malloc_on_other_thread = [&] {
    cudaError_t status = cudaSuccess;
    std::thread([&] { status = try_malloc(); }).join();
    return status;
  };
  struct Expectation {
    cudaStreamCaptureMode mode;
    cudaError_t own_thread;
    cudaError_t other_thread;
  };
  for (const Expectation& expected :
       {Expectation{cudaStreamCaptureModeGlobal, cudaErrorStreamCaptureUnsupported, cudaErrorStreamCaptureUnsupported},
        Expectation{cudaStreamCaptureModeThreadLocal, cudaErrorStreamCaptureUnsupported, cudaSuccess},
        Expectation{cudaStreamCaptureModeRelaxed, cudaSuccess, cudaSuccess}}) {
    SCOPED_TRACE(static_cast<int>(expected.mode));
    for (const bool own : {false, true}) {
      STRATA_ASSERT_CUDA(cudaStreamBeginCapture(stream, expected.mode));
      cudaError_t end_status = cudaSuccess;
      EXPECT_EQ(own ? try_malloc() : malloc_on_other_thread(), own ? expected.own_thread : expected.other_thread);
      cudaGraph_t graph = nullptr;
      end_status = cudaStreamEndCapture(stream, &graph);
      EXPECT_EQ(end_status, (own ? expected.own_thread : expected.other_thread) == cudaSuccess
                                ? cudaSuccess
                                : cudaErrorStreamCaptureInvalidated);
      if (graph != nullptr) {
        STRATA_EXPECT_CUDA(cudaGraphDestroy(graph));
      }
      static_cast<void>(cudaGetLastError());
    }
  }

  STRATA_ASSERT_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  STRATA_EXPECT_CUDA(cudaThreadExchangeStreamCaptureMode(&mode));
  EXPECT_EQ(mode, cudaStreamCaptureModeGlobal);
  EXPECT_EQ(try_malloc(), cudaSuccess);
  STRATA_EXPECT_CUDA(cudaThreadExchangeStreamCaptureMode(&mode));
  EXPECT_EQ(mode, cudaStreamCaptureModeRelaxed);
  cudaGraph_t graph = nullptr;
  STRATA_EXPECT_CUDA(cudaStreamEndCapture(stream, &graph));
  STRATA_EXPECT_CUDA(cudaGraphDestroy(graph));
}

// The legacy stream would depend on a capturing blocking stream.
TEST_F(SimRuntimeGraph, TheLegacyStreamCannotBeUsedWhileABlockingStreamCaptures) {
  ScopedStream blocking(cudaStreamDefault);
  DeviceBuffer<int> x(kCount);
  STRATA_ASSERT_CUDA(cudaStreamBeginCapture(blocking, cudaStreamCaptureModeRelaxed));
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  EXPECT_EQ(cudaStreamIsCapturing(nullptr, &status), cudaErrorStreamCaptureImplicit);
  EXPECT_EQ(capture_status(blocking), cudaStreamCaptureStatusActive) << "a status query does not invalidate";
  EXPECT_EQ(cudaMemsetAsync(x.get(), 0, sizeof(int), nullptr), cudaErrorStreamCaptureImplicit);
  EXPECT_EQ(capture_status(blocking), cudaStreamCaptureStatusInvalidated);
  cudaGraph_t graph = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(blocking, &graph), cudaErrorStreamCaptureInvalidated);
  STRATA_EXPECT_CUDA(cudaMemsetAsync(x.get(), 0, sizeof(int), nullptr));
  STRATA_EXPECT_CUDA(cudaDeviceSynchronize());
}

TEST_F(SimRuntimeGraph, LaunchesOfOneGraphAreOrderedEvenOnDifferentStreams) {
  ScopedStream capturing(cudaStreamNonBlocking);
  ScopedStream first(cudaStreamNonBlocking);
  ScopedStream second(cudaStreamNonBlocking);
  auto runs = std::make_shared<std::atomic<int>>(0);
  ReplayableHostFunctions host_functions;
  Executable graph(capture(capturing, [&] {
    STRATA_EXPECT_CUDA(host_functions.launch(capturing, [runs] { ++*runs; }));
  }));
  Gate gate;
  STRATA_ASSERT_CUDA(gate.hold(first));
  STRATA_ASSERT_CUDA(graph.launch(first));
  STRATA_ASSERT_CUDA(graph.launch(second));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(cudaStreamQuery(second), cudaErrorNotReady) << "the second launch ran before the first";
  EXPECT_EQ(*runs, 0);
  gate.open();
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(second));
  EXPECT_EQ(*runs, 2);
  EXPECT_FALSE(gate.timed_out());
}

// With a schedule seed, independent branches run in either order from launch to launch,
// while a node after the join always runs last.
TEST_F(SimRuntimeGraph, RandomReplayOrdersKeepTheRecordedDependencies) {
  ScopedStream origin(cudaStreamNonBlocking);
  ScopedStream side(cudaStreamNonBlocking);
  ScopedEvent forked(cudaEventDisableTiming);
  ScopedEvent joined(cudaEventDisableTiming);
  OrderLog log;
  ReplayableHostFunctions host_functions;
  auto log_on = [&](cudaStream_t stream, int label) {
    STRATA_EXPECT_CUDA(host_functions.launch(stream, [&log, label] { log.add(label); }));
  };
  Executable graph(capture(origin, [&] {
    log_on(origin, 0);
    STRATA_EXPECT_CUDA(cudaEventRecord(forked, origin));
    STRATA_EXPECT_CUDA(cudaStreamWaitEvent(side, forked, 0));
    log_on(side, 2);
    log_on(origin, 1);
    STRATA_EXPECT_CUDA(cudaEventRecord(joined, side));
    STRATA_EXPECT_CUDA(cudaStreamWaitEvent(origin, joined, 0));
    log_on(origin, 3);
  }));
  const std::optional<uint64_t> previous_seed = strata::sim::schedule_seed();
  strata::sim::set_schedule_seed(12345);
  constexpr int kLaunches = 24;
  for (int launch = 0; launch < kLaunches; ++launch) STRATA_ASSERT_CUDA(graph.launch(origin));
  STRATA_ASSERT_CUDA(cudaStreamSynchronize(origin));
  strata::sim::set_schedule_seed(previous_seed);
  const std::vector<int> labels = log.labels();
  ASSERT_EQ(labels.size(), 4u * kLaunches);
  std::set<std::vector<int>> orders;
  for (size_t launch = 0; launch < kLaunches; ++launch) {
    orders.insert(std::vector<int>(labels.begin() + static_cast<std::ptrdiff_t>(4 * launch),
                                   labels.begin() + static_cast<std::ptrdiff_t>(4 * launch + 4)));
  }
  EXPECT_EQ(orders, (std::set<std::vector<int>>{{0, 1, 2, 3}, {0, 2, 1, 3}}));
}

}  // namespace
