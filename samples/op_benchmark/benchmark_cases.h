// The operator benchmark's cases: one op, one direction, one shape and one engine each,
// with the work it does (for the achieved rate) and how to set it up and run it.
//
// The shape sets: "airbench94" (that net's layers at batch 1024), "resnet18" (ResNet-18 on
// CIFAR at batch 128) and "odd" (sizes no tile divides). With CaseOptions::quick every
// size is cut down (batch <= 2, channels <= 8, height and width <= 9) to prove the program
// works, as the simulator build and the test do.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <strata/strata.h>

#include "benchmark_timer.h"

namespace op_benchmark {

// The names every case builder uses.
using strata::DType;
using strata::Shape;
using strata::Tensor;
namespace kernels = strata::kernels;

enum class WorkKind : std::uint8_t {
  flops,  // 2 * multiply-adds: convolutions and linear layers
  bytes,  // compulsory traffic, each large tensor read or written once: the other ops
};

struct BenchmarkCase {
  std::string set;        // "airbench94", "resnet18", "odd"
  std::string op;         // "conv2d", "max_pool2d", ...
  std::string direction;  // "forward", "backward", "backward_data", "backward_filter", ...
  std::string shape;      // "x (1024, 24, 31, 31), w (64, 24, 3, 3), padding 1"
  // "custom", "cudnn", "cublas" (Strata's linear), or "custom unfused" (fusion cases), with the
  // configuration after a dash where it is not fp32 storage and math: "-tf32" and "-bf16"
  // (tensor-core math on f32 tensors), "-bf16io" (bf16 tensors, as autocast stores them).
  std::string engine;
  WorkKind work_kind = WorkKind::flops;
  double work = 0.0;
  // A flops case on the tensor cores: "% peak" is of the bf16 GEMM rate, not the fp32 one.
  bool tensor_cores = false;
  // The engine of the cuDNN case of the same op, direction and shape whose time the ratio
  // divides by: that of the same configuration ("cudnn-bf16io" for "custom-bf16io").
  std::string cudnn_twin = "cudnn";
  // Why there is no cuDNN case to compare this one with; empty when there is one.
  std::string no_cudnn_reason;
  // Allocates the inputs (input_copies of each, rotated by the run index) and returns one
  // run of the op. Throws strata::NotSupported where the engine cannot run the case.
  std::function<RunFunction(cudaStream_t stream)> prepare;

  // "airbench94 conv2d backward_data x (...) cudnn": what --filter matches.
  std::string description() const;
};

// The storage dtypes of the cases besides conv2d (whose builder adds its own): f32, and bf16
// as autocast stores activations (weights, losses and batch-norm statistics stay f32 where
// autocast keeps them so).
inline constexpr strata::DType kStorageDtypes[] = {strata::DType::f32, strata::DType::bf16};

// engine as it is named for storage: unchanged for f32, "custom" -> "custom-bf16io" for bf16.
std::string storage_engine(const std::string& engine, strata::DType storage);

struct CaseOptions {
  bool quick = false;
  int input_copies = 4;
};

// Every case, in the order the table lists them.
std::vector<BenchmarkCase> benchmark_cases(const CaseOptions& options);

// The builders benchmark_cases() uses, one per kind of op (benchmark_conv_cases.cpp,
// benchmark_pool_cases.cpp, benchmark_elementwise_cases.cpp, benchmark_layer_cases.cpp,
// benchmark_norm_cases.cpp, benchmark_fusion_cases.cpp and benchmark_conv_fusion_cases.cpp). Each appends a case per direction,
// engine and storage dtype (kStorageDtypes; conv2d: its fp32 and tensor-core configurations).

struct ConvSpec {
  std::string set;
  strata::Shape x;       // (N, C, H, W)
  strata::Shape weight;  // (K, C/groups, R, S)
  strata::kernels::Conv2dParams params;
  bool bias = false;
  strata::DType dtype = strata::DType::f32;  // of every tensor of the pass (bf16: autocast's storage)
  // Of the activations (x, y, dL_dy, dL_dx); the weight stays contiguous.
  strata::MemoryFormat memory_format = strata::MemoryFormat::contiguous;
  // The block tile of the tensor-core passes that copy asynchronously, set around each call.
  strata::kernels::Conv2dTensorCoreTile tile = strata::kernels::Conv2dTensorCoreTile::automatic;
};
void add_conv2d_cases(std::vector<BenchmarkCase>& cases, const ConvSpec& spec, int input_copies);

struct PoolSpec {
  std::string set;
  strata::Shape x;  // (N, C, H, W)
  strata::kernels::Pool2dParams params;
};
// Custom and cuDNN, in each storage dtype (benchmark_pool_cases.cpp).
void add_max_pool2d_cases(std::vector<BenchmarkCase>& cases, const PoolSpec& spec, int input_copies);
// count_include_pad as PyTorch's default.
void add_avg_pool2d_cases(std::vector<BenchmarkCase>& cases, const PoolSpec& spec, int input_copies);
// x (N, C, H, W) -> (N, C, Ho, Wo) in adaptive bins; {1, 1} is ResNet's global average pooling.
void add_adaptive_avg_pool2d_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& x,
                                   strata::kernels::Size2d output_size, int input_copies);

// Training-mode batch norm with a bias only (weight fixed at 1), as airbench94 uses it
// (benchmark_layer_cases.cpp, as linear and cross-entropy).
void add_batch_norm2d_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& x,
                            int input_copies);

// The cuDNN side of add_batch_norm2d_cases, through F::batch_norm2d (benchmark_norm_cases.cpp).
void add_batch_norm2d_cudnn_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& x,
                                  int input_copies);

// Batch norm (bias only) + exact GELU, training forward and backward: the fused op against
// batch_norm2d then gelu, both custom (benchmark_fusion_cases.cpp).
void add_batch_norm2d_gelu_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& x,
                                 int input_copies);

// The convolution fused with a 2x2 max pool, and with an eval batch norm + GELU epilogue,
// forward, each against the separate kernels, on the tensor cores (benchmark_conv_fusion_cases.cpp);
// nothing where the forward would not run on the tensor cores.
void add_conv2d_max_pool2d_cases(std::vector<BenchmarkCase>& cases, const ConvSpec& spec, int input_copies);
void add_conv2d_epilogue_cases(std::vector<BenchmarkCase>& cases, const ConvSpec& spec, int input_copies);

// log_softmax over the last dimension, forward and backward, custom and cuDNN.
void add_log_softmax_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& logits,
                           int input_copies);

// Exact GELU (approximation none) and ReLU, any shape; custom and cuDNN
// (benchmark_elementwise_cases.cpp).
void add_gelu_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& x,
                    int input_copies);
void add_relu_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& x,
                    int input_copies);
// The residual add y = a + b, forward only: its backward passes dL_dy on and runs no kernel.
// Custom only: Strata has no cuDNN add.
void add_add_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& x,
                   int input_copies);

// x (N, in) -> (N, out), no bias.
void add_linear_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const strata::Shape& x,
                      std::int64_t out_features, int input_copies);

// Cross-entropy with label smoothing 0.2 and one loss per row, as airbench94's.
void add_softmax_cross_entropy_cases(std::vector<BenchmarkCase>& cases, const std::string& set,
                                     const strata::Shape& logits, int input_copies);

// The cuDNN side of an op reached through the functional API (Strata's cuDNN paths are not
// public launchers): the forward runs run_on_cudnn under NoGradGuard; the backward is a
// retained graph per input copy, from an upstream gradient of the output's shape.
struct CudnnUnaryCase {
  std::string set, op, shape;
  strata::Shape x;
  strata::DType dtype = strata::DType::f32;  // of x, y and the gradients: the row is storage_engine("cudnn", dtype)
  double forward_bytes = 0.0, backward_bytes = 0.0;  // the traffic cuDNN's routines must do
  std::function<strata::Tensor(const strata::Tensor&)> run_on_cudnn;
};
void add_cudnn_unary_cases(std::vector<BenchmarkCase>& cases, const CudnnUnaryCase& spec, int input_copies);

// One timed backward: the gradients of the retained graph outputs[k] into its leaves
// (leaves_per_copy of them per copy, cleared first), k rotating with the run.
RunFunction backward_run(std::vector<strata::Tensor> leaves, std::vector<strata::Tensor> outputs,
                         std::vector<strata::Tensor> dL_dy, std::size_t leaves_per_copy);

// input_copies tensors of shape filled with uniform values in [-1, 1), each with its own seed,
// drawn in f32 and stored in dtype.
std::vector<strata::Tensor> random_copies(const strata::Shape& shape, int input_copies, std::uint64_t seed,
                                          cudaStream_t stream, strata::DType dtype = strata::DType::f32);

// Bytes of a tensor of shape and element size.
double tensor_bytes(const strata::Shape& shape, std::size_t element_size = sizeof(float));

// Which of the input copies run uses: they rotate.
std::size_t copy_of(int run, std::size_t copies);

// A memory-bound case of Strata's kernels in storage ("custom" or "custom-bf16io"), whose cuDNN
// twin (the same configuration) is added next to it, or which has none and says why.
BenchmarkCase bytes_case(const std::string& set, const std::string& op, const std::string& direction,
                         const std::string& shape, strata::DType storage, double bytes,
                         std::function<RunFunction(cudaStream_t)> prepare, std::string no_cudnn_reason = {});

}  // namespace op_benchmark
