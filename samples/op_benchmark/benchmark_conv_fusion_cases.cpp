// Convolutions fused with what follows them, against the same work done by the separate
// kernels, both on Strata's tensor-core kernels (docs/fusion.md):
// - conv2d_max_pool2d: the conv with a 2x2 max pool in its epilogue
//   (strata/kernels/conv2d_max_pool2d.h), against conv2d_forward into a temporary then
//   max_pool2d_forward, as airbench94's conv1 -> pool in training;
// - conv2d_epilogue: the conv with an eval-mode batch norm (per-channel scale and shift) and
//   GELU in its epilogue (Conv2dEpilogue, strata/kernels/conv2d.h), against conv2d_forward then
//   conv2d_epilogue_forward on its output, as an inference forward.
//
// The fused rows are "custom-bf16" (f32 tensors, bf16 math), "custom-bf16io" (bf16 tensors) and
// "custom-bf16io-cl" (bf16, channels-last activations: the cp.async path, in the block tile
// chosen per shape), the unfused ones the same with " unfused". Both rows of a pair count the same work, the
// convolution's 2 * multiply-adds over the whole (N, K, P, Q) output, so their rates compare
// as their times do (the fused pool skips a last odd row or column that no window reads). cuDNN
// has neither fusion: its conv and pool rows are elsewhere in the table.
#include <string>
#include <utility>
#include <vector>

#include <strata/kernels/conv2d_max_pool2d.h>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

constexpr const char* kNoCudnn = "cuDNN has none: see 'unfused'";
constexpr const char* kUnfusedNoCudnn = "the unfused pair for the fused row";

// The tensor-core configurations of a fused pair: f32 tensors with bf16 math, bf16 tensors,
// bf16 tensors with channels-last activations (the weight in the layout its kernels read, as
// the layers lower it: kernels::conv2d_weight_format).
struct Configuration {
  const char* engine;
  DType storage;
  strata::MemoryFormat format = strata::MemoryFormat::contiguous;
};
constexpr Configuration kConfigurations[] = {{"custom-bf16", DType::f32},
                                             {"custom-bf16io", DType::bf16},
                                             {"custom-bf16io-cl", DType::bf16, strata::MemoryFormat::channels_last}};

std::string conv_shape_text(const ConvSpec& spec) {
  std::string text = "x " + spec.x.to_string() + ", w " + spec.weight.to_string();
  if (spec.params.padding != kernels::Size2d{0, 0}) text += ", padding " + std::to_string(spec.params.padding.h);
  return text;
}

double conv_flops(const kernels::Conv2dShape& shape) {
  return 2.0 * static_cast<double>(shape.output().numel()) *
         static_cast<double>(shape.in_channels_per_group() * shape.kernel_height * shape.kernel_width);
}

// The inputs of one configuration: input_copies of x and of the weight.
struct ConvInputs {
  std::vector<Tensor> x;       // (N, C, H, W) each
  std::vector<Tensor> weight;  // (K, C/groups, R, S) each
};

ConvInputs conv_inputs(const kernels::Conv2dShape& shape, const Configuration& configuration, int copies,
                       cudaStream_t stream) {
  std::vector<Tensor> x = random_copies(shape.input(), copies, 1, stream, configuration.storage);
  for (Tensor& copy : x) copy = copy.to_memory_format(configuration.format, stream);
  std::vector<Tensor> weight = random_copies(shape.weight(), copies, 2, stream, configuration.storage);
  const strata::MemoryFormat weight_format =
      kernels::conv2d_weight_format(shape, configuration.storage, configuration.format);
  for (Tensor& copy : weight) copy = copy.to_memory_format(weight_format, stream);
  return {.x = std::move(x), .weight = std::move(weight)};
}

BenchmarkCase fusion_row(const ConvSpec& spec, const std::string& op, const kernels::Conv2dShape& shape,
                         const Configuration& configuration, bool fused,
                         std::function<RunFunction(cudaStream_t)> prepare) {
  const std::string shape_text = conv_shape_text(spec) + (op == "conv2d_max_pool2d" ? ", pool 2" : ", BN eval + GELU");
  return {.set = spec.set, .op = op, .direction = "forward", .shape = shape_text,
          .engine = fused ? std::string(configuration.engine) : std::string(configuration.engine) + " unfused",
          .work_kind = WorkKind::flops, .work = conv_flops(shape), .tensor_cores = true,
          .no_cudnn_reason = fused ? kNoCudnn : kUnfusedNoCudnn, .prepare = std::move(prepare)};
}

}  // namespace

void add_conv2d_max_pool2d_cases(std::vector<BenchmarkCase>& cases, const ConvSpec& spec, int input_copies) {
  const kernels::Pool2dParams pool{.kernel = {2, 2}};
  for (const Configuration& configuration : kConfigurations) {
    kernels::Conv2dParams params = spec.params;
    params.math = kernels::ConvMath::bf16;
    const kernels::Conv2dShape shape = kernels::conv2d_shape(spec.x, spec.weight, params);
    if (!kernels::conv2d_forward_uses_tensor_cores(shape)) continue;  // too few channels: no fused kernel
    const Shape pooled = kernels::conv2d_max_pool2d_output_shape(shape, pool);
    for (const bool fused : {true, false}) {
      cases.push_back(fusion_row(
          spec, "conv2d_max_pool2d", shape, configuration, fused,
          [shape, pooled, pool, params, configuration, fused, input_copies](cudaStream_t stream) -> RunFunction {
            const ConvInputs in = conv_inputs(shape, configuration, input_copies, stream);
            const strata::MemoryFormat format = configuration.format;
            Tensor y = Tensor::empty(pooled, configuration.storage, stream, format);  // (N, K, P/2, Q/2)
            Tensor argmax = Tensor::empty(pooled, DType::i64, stream, format);
            Tensor conv = fused ? Tensor() : Tensor::empty(shape.output(), configuration.storage, stream, format);
            return [in, y, argmax, conv, params, pool, fused](int run, cudaStream_t s) mutable {
              const std::size_t k = copy_of(run, in.x.size());
              if (fused) {
                kernels::conv2d_max_pool2d_forward(in.x[k], in.weight[k], Tensor(), y, argmax, params, pool, s);
              } else {
                kernels::conv2d_forward(in.x[k], in.weight[k], Tensor(), conv, params, s);
                kernels::max_pool2d_forward(conv, y, argmax, pool, s);
              }
            };
          }));
    }
  }
}

void add_conv2d_epilogue_cases(std::vector<BenchmarkCase>& cases, const ConvSpec& spec, int input_copies) {
  for (const Configuration& configuration : kConfigurations) {
    kernels::Conv2dParams params = spec.params;
    params.math = kernels::ConvMath::bf16;
    const kernels::Conv2dShape shape = kernels::conv2d_shape(spec.x, spec.weight, params);
    if (!kernels::conv2d_forward_uses_tensor_cores(shape)) continue;
    for (const bool fused : {true, false}) {
      cases.push_back(fusion_row(
          spec, "conv2d_epilogue", shape, configuration, fused,
          [shape, params, configuration, fused, input_copies](cudaStream_t stream) -> RunFunction {
            const ConvInputs in = conv_inputs(shape, configuration, input_copies, stream);
            const strata::MemoryFormat format = configuration.format;
            // An eval-mode batch norm's scale and shift: any values time alike.
            const kernels::Conv2dEpilogue epilogue{.scale = random_copies(shape.bias(), 1, 3, stream)[0],
                                                   .shift = random_copies(shape.bias(), 1, 4, stream)[0],
                                                   .activation = kernels::FusedActivation::gelu};
            Tensor y = Tensor::empty(shape.output(), configuration.storage, stream, format);  // (N, K, P, Q)
            Tensor conv = fused ? Tensor() : Tensor::empty(shape.output(), configuration.storage, stream, format);
            return [in, y, conv, params, epilogue, fused](int run, cudaStream_t s) mutable {
              const std::size_t k = copy_of(run, in.x.size());
              if (fused) {
                kernels::conv2d_forward(in.x[k], in.weight[k], Tensor(), y, params, epilogue, s);
              } else {
                kernels::conv2d_forward(in.x[k], in.weight[k], Tensor(), conv, params, s);
                kernels::conv2d_epilogue_forward(conv, epilogue, y, s);
              }
            };
          }));
    }
  }
}

}  // namespace op_benchmark
