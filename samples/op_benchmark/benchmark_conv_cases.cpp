// conv2d cases: forward and the three backward passes, on Strata's kernels and on cuDNN.
//
// The custom side calls the kernels' launchers (strata/kernels/conv2d.h) directly. Strata's
// cuDNN convolution is reached only through F::conv2d(..., Engine::cudnn) and autograd:
// the forward runs under NoGradGuard; each backward pass is a retained graph whose only
// leaf that requires a gradient is the one that pass computes (x for data, the weight for
// filter, the bias for bias), so autograd queues that one kernel. The overhead over a bare
// launcher is host-side (walking a one-node graph, a cached allocation for the result);
// the GPU time it can add is idle time when that host work outlasts the kernel, which
// matters only for the smallest shapes.
//
// The forward, backward_data and backward_filter passes also run with Conv2dParams::math tf32
// and bf16: "custom-tf32" and "custom-bf16" (the tensor-core kernels) and "cudnn-tf32" (cuDNN
// with TF32 tensor cores allowed, CUDNN_TENSOR_OP_MATH), for each pass that the custom
// launcher puts on the tensor cores for this shape.
//
// "custom-bf16io" and "cudnn-bf16io" run the same passes on bf16 tensors (inputs, weights and
// outputs stored in bf16, as under autocast; tensor cores, f32 accumulation): half the bytes
// moved, the configuration PyTorch's autocast times. "custom-bf16io-cl" and "cudnn-bf16io-cl"
// are the same with channels-last activations (x, y, dL_dy, dL_dx): Strata's cp.async pipeline
// where the channels fill 16-byte vectors, its weight in the layout that path reads (as the
// layers lower it once a step: kernels::conv2d_weight_format), cuDNN's NHWC kernels with the
// weight contiguous (KCRS, as the layers give it cuDNN);
// the custom row divides by cuDNN's channels-last row, and comparing it with custom-bf16io
// shows what the layout gains Strata.
//
// The ratio column of a tensor-core custom row divides by cuDNN's row of the same storage
// on the tensor cores: "cudnn-tf32" for custom-tf32 and custom-bf16 (f32 tensors; cuDNN has no
// bf16 math on f32 tensors), "cudnn-bf16io" for custom-bf16io, "cudnn-bf16io-cl" for
// custom-bf16io-cl; cuDNN's tensor-core rows divide by its fp32 row ("cudnn", FMA math),
// showing what the tensor cores gain it. "custom-bf16io-cl-64x64", "-128x128" and "-128x64"
// (not for the filter gradient, which has the square tiles only) fix the block tile of the
// asynchronous path (kernels::Conv2dTensorCoreTile) that custom-bf16io-cl chooses per shape,
// for passes whose channels fill 16-byte vectors (where there is a choice). Every
// tensor-core row's "% peak" is of the bf16 GEMM rate, so a TF32 row's ceiling is the
// hardware's TF32 rate, half the bf16 one on Hopper.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

std::string conv_text(const ConvSpec& spec) {
  const kernels::Conv2dParams& p = spec.params;
  std::string text = "x " + spec.x.to_string() + ", w " + spec.weight.to_string();
  if (p.stride != kernels::Size2d{1, 1}) text += ", stride " + std::to_string(p.stride.h);
  if (p.padding != kernels::Size2d{0, 0}) text += ", padding " + std::to_string(p.padding.h);
  if (p.dilation != kernels::Size2d{1, 1}) text += ", dilation " + std::to_string(p.dilation.h);
  if (p.groups != 1) text += ", groups " + std::to_string(p.groups);
  if (spec.bias) text += ", bias";
  return text;
}

struct ConvInputs {
  std::vector<Tensor> x;       // (N, C, H, W) each
  std::vector<Tensor> weight;  // (K, C/groups, R, S) each
  std::vector<Tensor> bias;    // (K) each; empty without a bias
  std::vector<Tensor> dL_dy;   // (N, K, P, Q) each
};

// Activations in spec.memory_format, the weight in weight_format, the bias contiguous.
ConvInputs make_inputs(const ConvSpec& spec, const kernels::Conv2dShape& shape, int copies, cudaStream_t stream,
                       strata::MemoryFormat weight_format) {
  const auto in_format = [&](std::vector<Tensor> tensors, strata::MemoryFormat format) {
    for (Tensor& tensor : tensors) tensor = tensor.to_memory_format(format, stream);
    return tensors;
  };
  return {.x = in_format(random_copies(shape.input(), copies, 1, stream, spec.dtype), spec.memory_format),
          .weight = in_format(random_copies(shape.weight(), copies, 2, stream, spec.dtype), weight_format),
          .bias = spec.bias ? random_copies(shape.bias(), copies, 3, stream, spec.dtype) : std::vector<Tensor>{},
          .dL_dy = in_format(random_copies(shape.output(), copies, 4, stream, spec.dtype), spec.memory_format)};
}

Tensor bias_of(const ConvInputs& inputs, std::size_t k) { return inputs.bias.empty() ? Tensor() : inputs.bias[k]; }

// Sets the tensor-core tile for one call, then restores the default.
class TileScope {
 public:
  explicit TileScope(kernels::Conv2dTensorCoreTile tile) { kernels::set_conv2d_tensor_core_tile(tile); }
  ~TileScope() { kernels::set_conv2d_tensor_core_tile(kernels::Conv2dTensorCoreTile::automatic); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

RunFunction custom_run(const std::string& direction, const ConvSpec& spec, const kernels::Conv2dShape& shape,
                       int copies, cudaStream_t stream) {
  // The weight as the layers lower it for the custom kernels (shape carries spec's math here).
  const strata::MemoryFormat weight_format = kernels::conv2d_weight_format(
      kernels::conv2d_shape(spec.x, spec.weight, spec.params), spec.dtype, spec.memory_format);
  const ConvInputs in = make_inputs(spec, shape, copies, stream, weight_format);
  const kernels::Conv2dParams params = spec.params;
  const kernels::Conv2dTensorCoreTile tile = spec.tile;
  if (direction == "forward") {
    Tensor y = Tensor::empty(shape.output(), spec.dtype, stream, spec.memory_format);  // (N, K, P, Q)
    return [in, params, tile, y](int run, cudaStream_t s) mutable {
      const std::size_t k = copy_of(run, in.x.size());
      const TileScope scope(tile);
      kernels::conv2d_forward(in.x[k], in.weight[k], bias_of(in, k), y, params, s);
    };
  }
  if (direction == "backward_data") {
    Tensor dL_dx = Tensor::empty(shape.input(), spec.dtype, stream, spec.memory_format);  // (N, C, H, W)
    return [in, params, tile, dL_dx](int run, cudaStream_t s) mutable {
      const std::size_t k = copy_of(run, in.x.size());
      const TileScope scope(tile);
      kernels::conv2d_backward_data(in.dL_dy[k], in.weight[k], dL_dx, params, s);
    };
  }
  if (direction == "backward_filter") {
    Tensor dL_dweight = Tensor::empty(shape.weight(), spec.dtype, stream);  // (K, C/groups, R, S)
    return [in, params, tile, dL_dweight](int run, cudaStream_t s) mutable {
      const std::size_t k = copy_of(run, in.x.size());
      const TileScope scope(tile);
      kernels::conv2d_backward_filter(in.x[k], in.dL_dy[k], dL_dweight, params, s);
    };
  }
  Tensor dL_dbias = Tensor::empty(shape.bias(), spec.dtype, stream);  // (K)
  return [in, dL_dbias](int run, cudaStream_t s) mutable {
    kernels::conv2d_backward_bias(in.dL_dy[copy_of(run, in.x.size())], dL_dbias, s);
  };
}

RunFunction cudnn_run(const std::string& direction, const ConvSpec& spec, const kernels::Conv2dShape& shape,
                      int copies, cudaStream_t stream) {
  const strata::StreamGuard on_stream(stream, strata::current_device());
  ConvInputs in = make_inputs(spec, shape, copies, stream, strata::MemoryFormat::contiguous);
  const kernels::Conv2dParams params = spec.params;
  if (direction == "forward") {
    const auto forward = [in, params](std::size_t k) {
      const strata::autograd::NoGradGuard no_grad;
      return strata::F::conv2d(in.x[k], in.weight[k], bias_of(in, k), params, strata::Engine::cudnn);
    };
    forward(0);  // throws NotSupported here, not in the timed loop, where cuDNN cannot run it
    return [forward, in](int run, cudaStream_t s) {
      const strata::StreamGuard run_on_stream(s, strata::current_device());
      forward(copy_of(run, in.x.size()));
    };
  }
  // One retained graph per input copy; the leaf is the tensor whose gradient this pass computes.
  std::vector<Tensor>& leaves = direction == "backward_data" ? in.x : direction == "backward_filter" ? in.weight
                                                                                                        : in.bias;
  std::vector<Tensor> outputs;  // (N, K, P, Q) each
  for (std::size_t k = 0; k < in.x.size(); ++k) {
    leaves[k].set_requires_grad();
    outputs.push_back(strata::F::conv2d(in.x[k], in.weight[k], bias_of(in, k), params, strata::Engine::cudnn));
  }
  return [leaves, outputs, dL_dy = in.dL_dy](int run, cudaStream_t s) mutable {
    const std::size_t k = copy_of(run, outputs.size());
    leaves[k].set_grad(Tensor());
    strata::autograd::backward(outputs[k], dL_dy[k], s, {.retain_graph = true});
  };
}

}  // namespace

void add_conv2d_cases(std::vector<BenchmarkCase>& cases, const ConvSpec& spec, int input_copies) {
  const kernels::Conv2dShape shape = kernels::conv2d_shape(spec.x, spec.weight, spec.params);
  const double flops = 2.0 * static_cast<double>(shape.output().numel()) *
                       static_cast<double>(shape.in_channels_per_group() * shape.kernel_height * shape.kernel_width);
  std::vector<std::string> directions = {"forward", "backward_data", "backward_filter"};
  if (spec.bias) directions.emplace_back("backward_bias");
  for (const std::string& direction : directions) {
    const bool is_bias = direction == "backward_bias";
    const WorkKind kind = is_bias ? WorkKind::bytes : WorkKind::flops;
    // The bias gradient reads dL_dy once and writes (K).
    const double work = is_bias ? tensor_bytes(shape.output()) + tensor_bytes(shape.bias()) : flops;
    for (const std::string engine : {"custom", "cudnn"}) {
      cases.push_back({.set = spec.set, .op = "conv2d", .direction = direction, .shape = conv_text(spec),
                       .engine = engine, .work_kind = kind, .work = work, .no_cudnn_reason = {},
                       .prepare = [direction, engine, spec, shape, input_copies](cudaStream_t stream) {
                         return engine == "custom" ? custom_run(direction, spec, shape, input_copies, stream)
                                                   : cudnn_run(direction, spec, shape, input_copies, stream);
                       }});
    }
  }
  // The passes on the tensor cores, where the custom launcher takes them (enough channels
  // produced per group; otherwise it would time an fp32 kernel under a tensor-core label).
  const auto with_math = [&](kernels::ConvMath math, strata::DType dtype = strata::DType::f32) {
    ConvSpec rounded = spec;
    rounded.params.math = math;
    rounded.dtype = dtype;
    return rounded;
  };
  constexpr std::int64_t kMinChannels = kernels::kConv2dTensorCoreMinChannelsPerGroup;
  const std::vector<std::pair<std::string, bool>> tensor_core_directions = {
      {"forward", shape.out_channels_per_group() >= kMinChannels},
      {"backward_data", shape.in_channels_per_group() >= kMinChannels},
      {"backward_filter", shape.out_channels_per_group() >= kMinChannels}};
  // Whether a bf16 channels-last pass copies its slices asynchronously, so that its block tile
  // can be chosen: the channels it reads in vectors fill whole 16-byte vectors (8 bf16).
  const auto whole_vectors = [](std::int64_t channels) { return channels % 8 == 0; };
  const bool in_vectors = whole_vectors(shape.in_channels_per_group());
  const bool both_in_vectors = in_vectors && whole_vectors(shape.out_channels_per_group());
  const std::map<std::string, bool> tile_choice = {
      {"forward", in_vectors}, {"backward_data", both_in_vectors}, {"backward_filter", both_in_vectors}};
  for (const auto& [direction, on_tensor_cores] : tensor_core_directions) {
    if (!on_tensor_cores) continue;
    std::vector<std::string> engines = {"custom-tf32",  "custom-bf16",      "cudnn-tf32",     "custom-bf16io",
                                        "cudnn-bf16io", "custom-bf16io-cl", "cudnn-bf16io-cl"};
    if (tile_choice.at(direction)) {
      engines.insert(engines.end(), {"custom-bf16io-cl-64x64", "custom-bf16io-cl-128x128"});
      // The filter gradient has the square tiles only (128x64 would run it in 64x64).
      if (direction != "backward_filter") engines.emplace_back("custom-bf16io-cl-128x64");
      // Hopper's warpgroup MMA: the 128x128 tile, where this build and GPU have it; the
      // forward also with its weights by TMA (the other passes run that tile as -wgmma).
      if (kernels::conv2d_wgmma_available()) {
        engines.emplace_back("custom-bf16io-cl-128x128-wgmma");
        if (direction == "forward") engines.emplace_back("custom-bf16io-cl-128x128-wgmma-tma");
      }
    }
    for (const std::string& engine : engines) {
      const bool bf16_storage = engine.find("bf16io") != std::string::npos;
      const kernels::ConvMath math = engine == "custom-bf16" || bf16_storage ? kernels::ConvMath::bf16
                                                                             : kernels::ConvMath::tf32;
      ConvSpec rounded = with_math(math, bf16_storage ? strata::DType::bf16 : strata::DType::f32);
      // "-cl": channels-last activations (cuDNN: NHWC descriptors; the weight stays KCRS).
      const bool channels_last = engine.find("-cl") != std::string::npos;
      if (channels_last) rounded.memory_format = strata::MemoryFormat::channels_last;
      if (engine.ends_with("-64x64")) rounded.tile = kernels::Conv2dTensorCoreTile::m64n64;
      if (engine.ends_with("-128x128")) rounded.tile = kernels::Conv2dTensorCoreTile::m128n128;
      if (engine.ends_with("-128x64")) rounded.tile = kernels::Conv2dTensorCoreTile::m128n64;
      if (engine.ends_with("-128x128-wgmma")) rounded.tile = kernels::Conv2dTensorCoreTile::m128n128_wgmma;
      if (engine.ends_with("-128x128-wgmma-tma")) rounded.tile = kernels::Conv2dTensorCoreTile::m128n128_wgmma_tma;
      // Custom rows divide by cuDNN's of the same storage and layout with tensor cores (TF32
      // for f32 tensors); cuDNN's own by its fp32 row, which shows what its tensor cores gain.
      const bool on_cudnn = engine.starts_with("cudnn");
      const std::string twin = on_cudnn         ? "cudnn"
                               : channels_last  ? "cudnn-bf16io-cl"
                               : bf16_storage   ? "cudnn-bf16io"
                                                : "cudnn-tf32";
      cases.push_back({.set = spec.set, .op = "conv2d", .direction = direction, .shape = conv_text(spec),
                       .engine = engine, .work_kind = WorkKind::flops, .work = flops, .tensor_cores = true,
                       .cudnn_twin = twin, .no_cudnn_reason = {},
                       .prepare = [direction, on_cudnn, rounded, shape, input_copies](cudaStream_t stream) {
                         return on_cudnn ? cudnn_run(direction, rounded, shape, input_copies, stream)
                                         : custom_run(direction, rounded, shape, input_copies, stream);
                       }});
    }
  }
}

}  // namespace op_benchmark
