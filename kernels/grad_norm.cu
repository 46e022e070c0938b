// The global gradient norm in two passes with no floating-point atomics: the multi-tensor
// launches (kernels/multi_tensor.cuh) write one partial per chunk, in double, to a
// workspace; one block reduces the partials in a fixed order. Clipping is a multi-tensor
// map that reads the norm from device memory.
#include "strata/kernels/grad_norm.h"

#include <cmath>
#include <string>

#include "core/check.h"
#include "core/nvtx.h"
#include "kernels/multi_tensor.cuh"
#include "kernels/tensor_checks.h"
#include "strata/core/allocator.h"

namespace strata::kernels {

namespace {

constexpr unsigned kFinishThreads = 256;

// For |x| (sign bit clear), the order of the bit patterns is the order of the values, and
// every NaN lies above infinity: an unsigned max is a max that NaN wins.
__device__ __forceinline__ unsigned magnitude_bits(float x) { return __float_as_uint(fabsf(x)); }

// One partial per chunk: the sum of squares (l2) or the largest magnitude (infinity).
__global__ void grad_norm_partials_kernel(TensorListBatch<1> batch, GradNormType norm_type,
                                          double* partials /* (chunks of all launches) */) {
  __shared__ double sum_scratch[kWarpSize];
  __shared__ unsigned max_scratch[kWarpSize];
  const TensorChunk chunk = locate_chunk(batch);
  const float* x = batch.data[0][chunk.slot] + chunk.begin;  // (chunk.count)
  double partial;
  if (norm_type == GradNormType::l2) {
    double sum = 0.0;
    for (std::int64_t i = threadIdx.x; i < chunk.count; i += blockDim.x) {
      const double value = x[i];
      sum += value * value;  // exact: a float's square fits a double
    }
    partial = block_sum(sum, sum_scratch);
  } else {
    unsigned largest = 0;
    for (std::int64_t i = threadIdx.x; i < chunk.count; i += blockDim.x) {
      const unsigned bits = magnitude_bits(x[i]);
      largest = bits > largest ? bits : largest;
    }
    partial = __uint_as_float(block_max(largest, max_scratch, 0u));
  }
  if (threadIdx.x == 0) partials[batch.first_chunk + blockIdx.x] = partial;
}

// One block: thread t reduces partials t, t + blockDim.x, ..., then the block's fixed tree.
__global__ void grad_norm_finish_kernel(const double* partials /* (count) */, std::int64_t count,
                                        GradNormType norm_type, float* total_norm /* () */) {
  __shared__ double sum_scratch[kWarpSize];
  __shared__ unsigned max_scratch[kWarpSize];
  if (norm_type == GradNormType::l2) {
    double sum = 0.0;
    for (std::int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
    sum = block_sum(sum, sum_scratch);
    if (threadIdx.x == 0) *total_norm = static_cast<float>(sqrt(sum));
  } else {
    unsigned largest = 0;
    for (std::int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      const unsigned bits = magnitude_bits(static_cast<float>(partials[i]));  // exact: partials are floats
      largest = bits > largest ? bits : largest;
    }
    largest = block_max(largest, max_scratch, 0u);
    if (threadIdx.x == 0) *total_norm = __uint_as_float(largest);
  }
}

// Value: gradient (written), times PyTorch's clamped clip coefficient.
struct ClipOp {
  static constexpr int kDepth = 1;
  static constexpr unsigned kWrittenLists = 0b1;
  const float* total_norm;  // ()
  float max_norm;
  float coefficient = 1.0f;  // set by resolve()

  __device__ ClipOp resolve() const {
    // PyTorch evaluates max_norm / (total + 1e-6) as a float tensor's __rtruediv__, which
    // is reciprocal() * max_norm: the same two roundings here.
    const float coefficient_unclamped = max_norm * (1.0f / (*total_norm + 1e-6f));
    // torch.clamp(max=1): NaN stays NaN.
    const bool keep = coefficient_unclamped < 1.0f || coefficient_unclamped != coefficient_unclamped;
    return ClipOp{total_norm, max_norm, keep ? coefficient_unclamped : 1.0f};
  }
  // Multiplying by exactly 1 changes nothing: skip the block's reads and writes.
  __device__ bool is_identity() const { return coefficient == 1.0f; }
  __device__ void operator()(float (&v)[kDepth]) const { v[0] *= coefficient; }
};

std::string element_name(const char* list, std::size_t index) {
  return std::string(list) + "[" + std::to_string(index) + "]";
}

void check_total_norm(const Tensor& total_norm, const char* op) {
  expect_device_tensor(total_norm, op, "total_norm");
  expect_shape(total_norm, Shape{}, op, "total_norm");
}

}  // namespace

void grad_norm(std::span<const Tensor> tensors, Tensor& total_norm, const GradNormParams& params, cudaStream_t stream) {
  NvtxRange range("grad_norm");
  const NamedTensorList lists[] = {{"tensors", tensors, false}};
  expect_parallel_lists("grad_norm", lists);
  check_total_norm(total_norm, "grad_norm");
  std::int64_t chunks = 0;
  for (const Tensor& tensor : tensors) chunks += multi_tensor_chunks(tensor.numel());
  const DeviceBuffer partials = allocate_device(static_cast<std::size_t>(chunks) * sizeof(double), stream);
  for_each_tensor_batch<1>({tensors}, [&](const TensorListBatch<1>& batch, const MultiTensorLaunch& planned) {
    launch(grad_norm_partials_kernel, multi_tensor_launch_config(planned, stream, "grad_norm_partials"), batch,
           params.norm_type, partials.as<double>());
  });
  launch(grad_norm_finish_kernel,
         LaunchConfig{.grid = 1, .block = kFinishThreads, .stream = stream, .name = "grad_norm_finish"},
         static_cast<const double*>(partials.as<double>()), chunks, params.norm_type, total_norm.data<float>());
}

Tensor grad_norm(std::span<const Tensor> tensors, const GradNormParams& params, cudaStream_t stream) {
  Tensor total_norm = Tensor::empty(Shape{}, DType::f32, stream);
  grad_norm(tensors, total_norm, params, stream);
  return total_norm;
}

void clip_grad_norm(std::span<Tensor> gradients, Tensor& total_norm, const ClipGradNormParams& params,
                    cudaStream_t stream) {
  NvtxRange range("clip_grad_norm");
  STRATA_CHECK(params.max_norm >= 0.0, "clip_grad_norm: max_norm must be >= 0, got {}", params.max_norm);
  const std::span<const Tensor> read_only = gradients;
  const NamedTensorList lists[] = {{"gradients", read_only, true}};
  expect_parallel_lists("clip_grad_norm", lists);
  check_total_norm(total_norm, "clip_grad_norm");
  for (std::size_t i = 0; i < gradients.size(); ++i) {
    expect_distinct(total_norm, gradients[i], "clip_grad_norm", "total_norm", element_name("gradients", i));
  }
  grad_norm(read_only, total_norm, GradNormParams{.norm_type = params.norm_type}, stream);
  const ClipOp op{.total_norm = total_norm.data<float>(), .max_norm = static_cast<float>(params.max_norm)};
  launch_multi_tensor_map(std::array{read_only}, op, stream, "clip_grad_norm");
}

Tensor clip_grad_norm(std::span<Tensor> gradients, const ClipGradNormParams& params, cudaStream_t stream) {
  Tensor total_norm = Tensor::empty(Shape{}, DType::f32, stream);
  clip_grad_norm(gradients, total_norm, params, stream);
  return total_norm;
}

}  // namespace strata::kernels
