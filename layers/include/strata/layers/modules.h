// The layers, as torch.nn's: constructor arguments as PyTorch's, options as structs with
// designated initialisers, each forward one call of the functional API (strata::F).
//
//   nn::Sequential features(nn::Conv2d(3, 64, 3, {.padding = 1, .bias = false}), nn::BatchNorm2d(64),
//                           nn::GELU(), nn::MaxPool2d(2));
//   nn::Linear head(64, 10, {.bias = false});
//   nn::CrossEntropyLoss loss_fn({.label_smoothing = 0.2f});
//   Tensor loss = loss_fn(nn::Scale(1.0f / 9)(head(x)), targets);
//
// Parameters start as PyTorch's defaults (init::default_conv2d_init and friends), seeded
// from default_generator().next_seed(): after strata::manual_seed(s) the same code builds
// the same model. Tensors are created on current_stream().
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/tensor.h"
#include "strata/kernels/activations.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/batch_norm2d_activation.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/pool2d.h"
#include "strata/kernels/size2d.h"
#include "strata/kernels/softmax_cross_entropy.h"
#include "strata/layers/module.h"

namespace strata::nn {

using kernels::BatchNormAffine;
using kernels::FusedActivation;
using kernels::GeluApproximation;
using kernels::Reduction;

// A 2-D size given as PyTorch takes it: one int for both dimensions (`.padding = 1`) or
// {h, w} (`.stride = {2, 1}`). Remembers which, so that printing matches PyTorch's
// ("kernel_size=2" against "kernel_size=(2, 2)").
struct Pair {
  std::int64_t h = 0;
  std::int64_t w = 0;
  bool is_scalar = false;

  constexpr Pair() = default;
  constexpr Pair(std::int64_t size) : h(size), w(size), is_scalar(true) {}  // NOLINT: implicit by design
  constexpr Pair(std::int64_t height, std::int64_t width) : h(height), w(width) {}
  constexpr operator kernels::Size2d() const { return {h, w}; }  // NOLINT: implicit by design
};

// ---- convolution and linear -----------------------------------------------------------

struct Conv2dOptions {
  Pair stride = 1;
  Pair padding = 0;
  Pair dilation = 1;
  std::int64_t groups = 1;
  bool bias = true;
  // Which implementation runs this layer (strata/core/engine.h); none: the process default
  // at the time it runs. Module::set_engine sets it.
  std::optional<Engine> engine = std::nullopt;
  // The arithmetic of the forward and the data and filter gradients: fp32, or tf32/bf16 on
  // the tensor cores (kernels::ConvMath, strata/kernels/conv2d.h; as PyTorch's allow_tf32).
  kernels::ConvMath math = kernels::ConvMath::fp32;
  // An activation applied in the conv's own epilogue (F::fused_conv2d): Conv2d(..., {.activation
  // = FusedActivation::relu}) computes what Conv2d then ReLU() do, in one kernel, without
  // storing the conv's output (GELU's backward stores it). Not a parameter: state dicts are
  // those of the plain Conv2d.
  FusedActivation activation = FusedActivation::none;
};

class BatchNorm2dBase;  // below; fuse_conv_batch_norm_eval (strata/layers/fusion.h) folds one into a Conv2d

// y (N, out, P, Q) = activation(conv2d(x (N, in, H, W), weight (out, in/groups, kh, kw)) + bias
// (out)), the activation none unless Conv2dOptions::activation says otherwise.
class Conv2d : public UnaryModule {
 public:
  // Throws InvalidArgument for sizes < 1, padding < 0, or groups not dividing in and out.
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, Pair kernel_size, const Conv2dOptions& options = {});

  const Tensor& weight() const noexcept { return weight_; }  // (out, in/groups, kh, kw)
  const Tensor& bias() const noexcept { return bias_; }      // (out), undefined without bias
  std::int64_t in_channels() const noexcept { return in_channels_; }
  std::int64_t out_channels() const noexcept { return out_channels_; }
  kernels::Conv2dParams params() const;
  std::optional<Engine> engine() const noexcept { return options_.engine; }
  // The math of the custom kernels (strata/kernels/conv2d.h): fp32, or tf32/bf16 on tensor cores.
  kernels::ConvMath math() const noexcept { return options_.math; }
  void set_math(kernels::ConvMath math) noexcept { options_.math = math; }
  FusedActivation activation() const noexcept { return options_.activation; }
  const Conv2dOptions& options() const noexcept { return options_; }

  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override;
  std::string summary() const override;  // "Conv2d 64->128, 3x3"

 protected:
  void check_input(const Tensor& x) const override;
  Tensor forward_impl(const Tensor& x) override;
  bool take_engine(Engine engine) override;

 private:
  // A Conv2d with these parameters' values (f32, of the layer's shapes) instead of a random
  // initialisation, which would draw from the default generator: for fuse_conv_batch_norm_eval.
  struct WithValues {
    std::vector<float> weight;  // (out, in/groups, kh, kw)
    std::vector<float> bias;    // (out), or empty without bias
  };
  Conv2d(std::int64_t in_channels, std::int64_t out_channels, Pair kernel_size, const Conv2dOptions& options,
         const WithValues& values);
  friend Conv2d fuse_conv_batch_norm_eval(const Conv2d& conv, const BatchNorm2dBase& batch_norm,
                                          FusedActivation activation);

  std::int64_t in_channels_;
  std::int64_t out_channels_;
  Pair kernel_size_;
  Conv2dOptions options_;
  Tensor weight_;
  Tensor bias_;
};

struct LinearOptions {
  bool bias = true;
};

// y (..., out) = x (..., in) weight (out, in)^T + bias (out).
class Linear : public UnaryModule {
 public:
  Linear(std::int64_t in_features, std::int64_t out_features, const LinearOptions& options = {});

  const Tensor& weight() const noexcept { return weight_; }  // (out, in)
  const Tensor& bias() const noexcept { return bias_; }      // (out), undefined without bias
  std::int64_t in_features() const noexcept { return in_features_; }
  std::int64_t out_features() const noexcept { return out_features_; }

  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;
  std::string summary() const override;  // "Linear 512->10"

 protected:
  void check_input(const Tensor& x) const override;
  Tensor forward_impl(const Tensor& x) override;

 private:
  std::int64_t in_features_;
  std::int64_t out_features_;
  Tensor weight_;
  Tensor bias_;
};

// ---- pooling --------------------------------------------------------------------------

struct MaxPool2dOptions {
  Pair stride{};  // (0, 0), the default: the kernel size (PyTorch's stride=None)
  Pair padding = 0;
  Pair dilation = 1;
  bool ceil_mode = false;
  // Which implementation runs this layer (strata/core/engine.h); none: the process default
  // at the time it runs. Module::set_engine sets it.
  std::optional<Engine> engine = std::nullopt;
};

class MaxPool2d : public UnaryModule {
 public:
  explicit MaxPool2d(Pair kernel_size, const MaxPool2dOptions& options = {});
  const kernels::Pool2dParams& params() const noexcept { return params_; }
  std::optional<Engine> engine() const noexcept { return options_.engine; }

  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override;
  std::string summary() const override;  // "MaxPool2d 3x3, stride 2"

 protected:
  void check_input(const Tensor& x) const override;
  Tensor forward_impl(const Tensor& x) override;
  bool take_engine(Engine engine) override;

 private:
  Pair kernel_size_;
  Pair stride_;
  MaxPool2dOptions options_;
  kernels::Pool2dParams params_;
};

struct AvgPool2dOptions {
  Pair stride{};  // (0, 0), the default: the kernel size
  Pair padding = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
  std::optional<std::int64_t> divisor_override{};
  // Which implementation runs this layer (strata/core/engine.h); none: the process default
  // at the time it runs. Module::set_engine sets it.
  std::optional<Engine> engine = std::nullopt;
};

class AvgPool2d : public UnaryModule {
 public:
  explicit AvgPool2d(Pair kernel_size, const AvgPool2dOptions& options = {});
  const kernels::AvgPool2dParams& params() const noexcept { return params_; }
  std::optional<Engine> engine() const noexcept { return options_.engine; }

  std::string type_name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override;
  std::string summary() const override;  // "AvgPool2d 2x2"

 protected:
  void check_input(const Tensor& x) const override;
  Tensor forward_impl(const Tensor& x) override;
  bool take_engine(Engine engine) override;

 private:
  Pair kernel_size_;
  Pair stride_;
  AvgPool2dOptions options_;
  kernels::AvgPool2dParams params_;
};

struct AdaptivePool2dOptions {
  // Which implementation runs this layer (strata/core/engine.h); none: the process default
  // at the time it runs. Module::set_engine sets it.
  std::optional<Engine> engine = std::nullopt;
};

// (N, C, H, W) -> (N, C, output_size) whatever H and W are. cuDNN runs it only where the
// input size is a multiple of output_size (docs/engines.md).
class AdaptiveAvgPool2d : public UnaryModule {
 public:
  explicit AdaptiveAvgPool2d(Pair output_size, const AdaptivePool2dOptions& options = {});
  std::optional<Engine> engine() const noexcept { return options_.engine; }
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override;
  std::string summary() const override;  // "AdaptiveAvgPool2d 7x7"

 protected:
  void check_input(const Tensor& x) const override;
  Tensor forward_impl(const Tensor& x) override;
  bool take_engine(Engine engine) override;

 private:
  Pair output_size_;
  AdaptivePool2dOptions options_;
};

class AdaptiveMaxPool2d : public UnaryModule {
 public:
  explicit AdaptiveMaxPool2d(Pair output_size, const AdaptivePool2dOptions& options = {});
  std::optional<Engine> engine() const noexcept { return options_.engine; }
  std::string type_name() const override { return "AdaptiveMaxPool2d"; }
  std::string extra_repr() const override;
  std::string summary() const override;

 protected:
  void check_input(const Tensor& x) const override;
  Tensor forward_impl(const Tensor& x) override;
  bool take_engine(Engine engine) override;

 private:
  Pair output_size_;
  AdaptivePool2dOptions options_;
};

// ---- activations, dropout, shape ------------------------------------------------------

struct ReluOptions {
  // Which implementation runs this layer (strata/core/engine.h); none: the process default
  // at the time it runs. Module::set_engine sets it.
  std::optional<Engine> engine = std::nullopt;
};

class ReLU : public UnaryModule {
 public:
  explicit ReLU(const ReluOptions& options = {}) : options_(options) {}
  std::optional<Engine> engine() const noexcept { return options_.engine; }
  std::string type_name() const override { return "ReLU"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;
  bool take_engine(Engine engine) override;

 private:
  ReluOptions options_;
};

struct GeluOptions {
  GeluApproximation approximate = GeluApproximation::none;
  // Which implementation runs this layer (strata/core/engine.h); none: the process default
  // at the time it runs. Module::set_engine sets it.
  std::optional<Engine> engine = std::nullopt;
};

class GELU : public UnaryModule {
 public:
  explicit GELU(const GeluOptions& options = {}) : options_(options) {}
  std::optional<Engine> engine() const noexcept { return options_.engine; }
  GeluApproximation approximation() const noexcept { return options_.approximate; }
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;
  bool take_engine(Engine engine) override;

 private:
  GeluOptions options_;
};

// In training, zeroes each element with probability p and scales the rest by 1 / (1 - p);
// in eval, the identity.
class Dropout : public UnaryModule {
 public:
  // Throws InvalidArgument unless 0 <= p <= 1.
  explicit Dropout(float p = 0.5f);
  float p() const noexcept { return p_; }
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override;
  std::string summary() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  float p_;
};

// Dimensions start_dim.. merged into one (a view): (N, C, H, W) -> (N, C*H*W).
class Flatten : public UnaryModule {
 public:
  explicit Flatten(int start_dim = 1) : start_dim_(start_dim) {}
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override;

 protected:
  void check_input(const Tensor& x) const override;
  Tensor forward_impl(const Tensor& x) override;

 private:
  int start_dim_;
};

// y = factor * x (airbench scales its logits by 1/9).
class Scale : public UnaryModule {
 public:
  explicit Scale(float factor) : factor_(factor) {}
  float factor() const noexcept { return factor_; }
  std::string type_name() const override { return "Scale"; }
  std::string extra_repr() const override;
  std::string summary() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  float factor_;
};

// ---- batch norm -----------------------------------------------------------------------

struct BatchNorm2dOptions {
  float eps = 1e-5f;
  float momentum = 0.1f;
  BatchNormAffine affine = BatchNormAffine::weight_and_bias;
  bool track_running_stats = true;
  // Which implementation runs this layer (strata/core/engine.h); none: the process default
  // at the time it runs. Module::set_engine sets it.
  std::optional<Engine> engine = std::nullopt;
};

// Parameters weight (C) = 1 (weight_and_bias only) and bias (C) = 0 (unless affine is
// none); buffers running_mean (C) = 0, running_var (C) = 1 and num_batches_tracked (), i64,
// when tracking running statistics. Training normalises with the batch statistics,
// updates the running ones and adds 1 to num_batches_tracked (on the device, in the kernel
// that finalises the statistics, so that the count stays right in a captured CUDA graph and
// needs no host mirror); eval normalises with the running statistics, or with the batch's
// when they are not tracked (as PyTorch).
// What BatchNorm2d and BatchNorm2dActivation share: their state under PyTorch's names and
// in PyTorch's order (so that their state dicts are the same), the input check, the choice
// of batch or running statistics.
class BatchNorm2dBase : public UnaryModule {
 public:
  const Tensor& weight() const noexcept { return weight_; }
  const Tensor& bias() const noexcept { return bias_; }
  const Tensor& running_mean() const noexcept { return running_.mean; }
  const Tensor& running_var() const noexcept { return running_.var; }
  const Tensor& num_batches_tracked() const noexcept { return running_.num_batches_tracked; }
  std::int64_t num_features() const noexcept { return num_features_; }
  // eps, momentum and affine, as constructed.
  const kernels::BatchNormParams& norm_params() const noexcept { return params_; }

 protected:
  // Checks the arguments (errors name type_name) and registers the state as listed above.
  BatchNorm2dBase(std::string_view type_name, std::int64_t num_features, const kernels::BatchNormParams& params,
                  bool track_running_stats);

  void check_input(const Tensor& x) const override;
  // "64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True", as PyTorch.
  std::string norm_repr() const;
  // Without running statistics even eval normalises with the batch's, as PyTorch.
  bool uses_batch_statistics() const noexcept { return is_training() || !track_running_stats_; }
  kernels::BatchNormRunningStats& running() noexcept { return running_; }

 private:
  std::int64_t num_features_;
  kernels::BatchNormParams params_;
  bool track_running_stats_;
  Tensor weight_;
  Tensor bias_;
  kernels::BatchNormRunningStats running_;  // num_batches_tracked included
};

class BatchNorm2d : public BatchNorm2dBase {
 public:
  explicit BatchNorm2d(std::int64_t num_features, const BatchNorm2dOptions& options = {});

  std::optional<Engine> engine() const noexcept { return engine_; }

  std::string type_name() const override { return "BatchNorm2d"; }
  std::string extra_repr() const override { return norm_repr(); }
  std::string summary() const override;  // "BatchNorm2d 64"

 protected:
  Tensor forward_impl(const Tensor& x) override;
  bool take_engine(Engine engine) override;

 private:
  std::optional<Engine> engine_;
};

// ---- batch norm fused with its activation ----------------------------------------------

struct BatchNorm2dActivationOptions {
  float eps = 1e-5f;
  float momentum = 0.1f;
  BatchNormAffine affine = BatchNormAffine::weight_and_bias;
  bool track_running_stats = true;
  FusedActivation activation = FusedActivation::gelu;  // none, relu, gelu (exact) or gelu_tanh
};

// BatchNorm2d followed by its activation, as one fused op (F::batch_norm2d_activation): the
// outputs and gradients of `BatchNorm2d(c), GELU()` (or ReLU()) bit for bit, without storing
// the pre-activation. Parameters and buffers are BatchNorm2d's, with the same names, shapes,
// initial values, training and eval behaviour and num_batches_tracked count, so a model that
// swaps the pair for this module loads the same checkpoints (the activation has no state).
// Custom kernels only: cuDNN has no fused batch norm + activation, so the module takes no
// engine, and Module::set_engine lists it among the layers that keep the custom kernels.
class BatchNorm2dActivation : public BatchNorm2dBase {
 public:
  explicit BatchNorm2dActivation(std::int64_t num_features, const BatchNorm2dActivationOptions& options = {});

  FusedActivation activation() const noexcept { return activation_; }

  std::string type_name() const override { return "BatchNorm2dActivation"; }
  std::string extra_repr() const override;
  std::string summary() const override;  // "BatchNorm2dActivation 64, gelu"

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  FusedActivation activation_;
};

// ---- containers -----------------------------------------------------------------------

// y = body(x) + shortcut(x), the shortcut being the identity unless given. Children "body"
// and "shortcut" (when given).
class Residual : public UnaryModule {
 public:
  explicit Residual(AnyModule body);
  Residual(AnyModule body, AnyModule shortcut);

  UnaryModule& body() const noexcept { return *body_; }
  std::string type_name() const override { return "Residual"; }

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  std::shared_ptr<UnaryModule> body_;
  std::shared_ptr<UnaryModule> shortcut_;  // null: the identity
};

// y = cat([branch(x) for branch in branches], dim), as an Inception block; children "0", "1", ...
class Concat : public UnaryModule {
 public:
  // Throws InvalidArgument for no branches.
  explicit Concat(std::vector<AnyModule> branches, int dim = 1);

  std::size_t size() const noexcept { return branches_.size(); }
  std::string type_name() const override { return "Concat"; }
  std::string extra_repr() const override;

 protected:
  Tensor forward_impl(const Tensor& x) override;

 private:
  std::vector<std::shared_ptr<UnaryModule>> branches_;
  int dim_;
};

// ---- loss -----------------------------------------------------------------------------

struct CrossEntropyLossOptions {
  float label_smoothing = 0.0f;
  Reduction reduction = Reduction::mean;
  std::int64_t ignore_index = -100;
};

// The softmax cross-entropy of logits (N, classes) and targets (N, i64 or i32): () for the
// mean and sum reductions, (N) for none. Targets outside [0, classes) (not ignore_index)
// are recorded on the device, not checked on the host (that would synchronise every step):
// call check_targets() where you synchronise anyway, e.g. after reading the loss.
class CrossEntropyLoss : public Module {
 public:
  explicit CrossEntropyLoss(const CrossEntropyLossOptions& options = {});

  Tensor forward(const Tensor& logits, const Tensor& targets);
  Tensor operator()(const Tensor& logits, const Tensor& targets) { return forward(logits, targets); }
  // Waits for current_stream(); throws InvalidArgument naming the first bad target (row
  // and value) recorded since the last check, then forgets it.
  void check_targets();

  std::string type_name() const override { return "CrossEntropyLoss"; }

 private:
  kernels::CrossEntropyParams params_;
  std::optional<kernels::TargetCheck> target_check_;  // allocated by the first forward
};

}  // namespace strata::nn
