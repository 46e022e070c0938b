// The functional API, as torch.nn.functional: every op of the kernels as a function of
// tensors that allocates its output on current_stream(), runs the kernel there, and, when
// an input requires gradients (and no NoGradGuard is alive), records the autograd node
// that runs the op's backward kernels. Modules (strata/layers/modules.h) are built on these.
//
//   Tensor y = F::relu(F::conv2d(x, weight, bias, {.padding = {1, 1}}));   // (N, K, H, W)
//   y = F::max_pool2d(y, {.kernel = {2, 2}});                             // (N, K, H/2, W/2)
//   Tensor loss = F::cross_entropy(F::linear(F::flatten(y), w, b), targets);
//   loss.backward();
//
// Shapes are checked before anything runs; errors are InvalidArgument naming the op and the
// shapes (and, inside a module, the module: see Module). Tensors are device tensors of one
// floating dtype, f32, f16 or bf16 (computed in f32, each output rounded once to the dtype),
// unless stated; an op given two dtypes says which and how to cast. Under a
// strata::AutocastGuard (strata/core/autocast.h) conv2d and linear cast their f32 inputs to
// the autocast dtype, softmax and log_softmax cast reduced inputs to f32, the rest run in
// their input's dtype.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "strata/core/engine.h"
#include "strata/core/tensor.h"
#include "strata/kernels/activations.h"
#include "strata/kernels/adaptive_pool2d.h"
#include "strata/kernels/batch_norm2d.h"
#include "strata/kernels/batch_norm2d_activation.h"
#include "strata/kernels/conv2d.h"
#include "strata/kernels/pool2d.h"
#include "strata/kernels/size2d.h"
#include "strata/kernels/softmax_cross_entropy.h"
#include "strata/layers/functional_conv_pool.h"

namespace strata::F {

using kernels::AdaptivePool2dParams;
using kernels::AvgPool2dParams;
using kernels::BatchNormActivationParams;
using kernels::BatchNormParams;
using kernels::BatchNormRunningStats;
using kernels::ChannelStatistics;
using kernels::Conv2dEpilogue;
using kernels::Conv2dParams;
using kernels::CrossEntropyParams;
using kernels::FusedActivation;
using kernels::GeluApproximation;
using kernels::Pool2dParams;
using kernels::Reduction;
using kernels::Size2d;
using kernels::TargetCheck;

// ---- convolution and linear (layers/functional_conv2d.cpp, functional_linear.cpp) ------
// y (N, K, P, Q) = conv2d(x (N, C, H, W), weight (K, C/groups, R, S)) + bias (K); bias may
// be undefined. Gradients: dL/dx, dL/dweight, dL/dbias for those that require them. Runs on
// engine, or on default_engine() when none is given (strata/core/engine.h); the backward
// passes run on the engine the forward ran on. Under autocast: in the autocast dtype.
// statistics (optional): the per-channel statistics of y for a training batch norm on y
// (F::batch_norm2d_activation, F::batch_norm2d; strata/kernels/channel_stats.h), written by
// the forward as it stores y. Its partials are replaced by new ones, which the op writes;
// on cuDNN, which computes none, they are left undefined, and the batch norm computes its own.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params = {},
              std::optional<Engine> engine = std::nullopt, ChannelStatistics* statistics = nullptr);
// y = activation(scale[k] * (conv2d(x, weight) + bias[k]) + shift[k]): conv2d with its
// epilogue (kernels::Conv2dEpilogue: per-channel f32 (K) scale and shift, undefined ones
// skipped, and a FusedActivation) applied in the forward kernel, as kernels/conv2d.h
// defines it; an eval-mode batch norm and the activation after a conv, without writing and
// reading the intermediate tensors. scale and shift are constants: ones that require
// gradients are refused (fold a trained batch norm with nn::fuse_conv_batch_norm_eval, or
// keep it unfused to train it). Gradients of x, weight and bias as F::conv2d's, through the
// activation (ReLU's from y; GELU's from the pre-activation, which the forward then also
// stores, in the op's dtype) and the scale. On Engine::cudnn, cuDNN's conv then Strata's
// element-wise epilogue kernel. Autocast, engine and statistics (of y as stored) as F::conv2d.
// The identity epilogue is F::conv2d itself.
//   Tensor y = F::fused_conv2d(x, w, b, {.padding = {1, 1}}, {.activation = FusedActivation::relu});
Tensor fused_conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& params,
                    const Conv2dEpilogue& epilogue, std::optional<Engine> engine = std::nullopt,
                    ChannelStatistics* statistics = nullptr);
// y (..., out) = x (..., in) weight (out, in)^T + bias (out); bias may be undefined. Under
// autocast: in the autocast dtype.
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias);

// ---- pooling (layers/functional_pool.cpp) ----------------------------------------------
// Each runs on engine, or on default_engine() when none is given; the backward runs on the
// engine the forward ran on. cuDNN refuses what it cannot compute exactly as PyTorch does
// (dilation, divisor_override, a ceil_mode that grows the output, adaptive bins of unequal
// sizes): see docs/engines.md.
// statistics (optional): y's per-channel statistics, as F::conv2d's (undefined on cuDNN).
Tensor max_pool2d(const Tensor& x, const Pool2dParams& params, std::optional<Engine> engine = std::nullopt,
                  ChannelStatistics* statistics = nullptr);
Tensor avg_pool2d(const Tensor& x, const AvgPool2dParams& params, std::optional<Engine> engine = std::nullopt);
// (N, C, H, W) -> (N, C, Ho, Wo) whatever H and W are.
Tensor adaptive_avg_pool2d(const Tensor& x, Size2d output_size, std::optional<Engine> engine = std::nullopt);
Tensor adaptive_max_pool2d(const Tensor& x, Size2d output_size, std::optional<Engine> engine = std::nullopt);

// ---- classification (layers/functional_reduce.cpp) -------------------------------------
// No gradients: the results are integers, whatever their inputs require.
// The index of the largest of each row of x (..., C) over the last dimension: (...) i64,
// the first on a tie and the first NaN if any, as torch.argmax(x, dim=-1).
Tensor argmax(const Tensor& x);
// How many entries of a and b (i64, one shape) are equal: () i64, as (a == b).sum().
//   Tensor correct = F::count_equal(F::argmax(logits), labels);   // the right predictions
Tensor count_equal(const Tensor& a, const Tensor& b);

// ---- activations, dropout, element-wise, shape (layers/functional_elementwise.cpp) -----
// relu and gelu run on engine, or on default_engine() when none is given; the backward runs
// on the engine the forward ran on.
Tensor relu(const Tensor& x, std::optional<Engine> engine = std::nullopt);
Tensor gelu(const Tensor& x, GeluApproximation approximation = GeluApproximation::none,
            std::optional<Engine> engine = std::nullopt);
// Training: zeroes each element with probability p and scales the rest by 1 / (1 - p),
// with a mask drawn from default_generator() (strata/core/generator.h); otherwise x itself.
Tensor dropout(const Tensor& x, float p, bool training);
// a + alpha * b, same shapes (the residual add). Two floating dtypes promote as PyTorch's
// type promotion: the result is f32 when they differ.
Tensor add(const Tensor& a, const Tensor& b, float alpha = 1.0f);
// factor * x.
Tensor mul(const Tensor& x, float factor);
// Concatenation along dim (channels by default), as torch.cat.
Tensor cat(std::span<const Tensor> xs, int dim = 1);
// (N, C, H, W).flatten(1) = (N, C*H*W): a view, recorded when x requires gradients.
Tensor flatten(const Tensor& x, int start_dim = 1);

// ---- casts (layers/functional_cast.cpp) ------------------------------------------------
// x converted to dtype, between f32, f16 and bf16, as torch.Tensor.to(dtype): rounded to
// nearest, ties to even; overflow gives infinity, NaN stays NaN (strata/kernels/cast.h). x
// itself when it has that dtype already. Gradient: dL/dy cast back to x's dtype, so an f32
// master weight cast to f16 for an op receives an f32 gradient.
Tensor to_dtype(const Tensor& x, DType dtype);
// x converted to dtype and laid out in format, as torch.Tensor.to(dtype, memory_format=...), in
// one pass when both change (format channels_last needs a 4-D x). x itself when it has both
// already. Gradient: dL/dy cast back to x's dtype, and converted to x's format where the
// forward changed it, in one pass too.
//   Tensor w = F::to_dtype(weight, DType::bf16, MemoryFormat::channels_last);   // (K, C, R, S)
Tensor to_dtype(const Tensor& x, DType dtype, MemoryFormat format);

// ---- batch norm, softmax and loss (layers/functional_batch_norm.cpp, functional_softmax_loss.cpp) ---
// Training: normalises with the batch statistics and updates running (when defined) in
// place, adding 1 to running.num_batches_tracked when that is defined; otherwise normalises
// with running. x and y in any floating dtype; weight, bias, running's mean and variance and
// the statistics are f32. weight/bias as params.affine says (undefined
// where absent). Gradients for x, weight and bias. Runs on engine, or on default_engine()
// when none is given; the backward runs on the forward's engine, except eval mode's
// backward, which cuDNN lacks: the custom kernel's under any engine.
// statistics (optional): x's per-channel statistics from its producer (F::conv2d,
// F::max_pool2d), of x as it is now. A training forward on the custom kernels whose statistics
// have partials combines those instead of its own pass over x (the same statistics up to the
// summation order: within a float rounding or two, not bit for bit); otherwise (eval, cuDNN,
// partials undefined) they are ignored. The backward is the same either way.
Tensor batch_norm2d(const Tensor& x, const Tensor& weight, const Tensor& bias, BatchNormRunningStats& running,
                    bool training, const BatchNormParams& params = {}, std::optional<Engine> engine = std::nullopt,
                    const ChannelStatistics* statistics = nullptr);
// Over the last dimension of x (..., C). Runs on engine, or on default_engine() when none is
// given; the backward runs on the forward's engine. Under autocast: in f32.
Tensor softmax(const Tensor& x, std::optional<Engine> engine = std::nullopt);
Tensor log_softmax(const Tensor& x, std::optional<Engine> engine = std::nullopt);
// The fused softmax cross-entropy of logits (N, classes) and targets (N, i64 or i32): ()
// for mean and sum, (N) for none. A target outside [0, classes) (not ignore_index) is
// recorded in target_check when given, whose check() throws naming it (see
// strata/kernels/softmax_cross_entropy.h); without one, such rows give NaN losses. Logits of
// any floating dtype, computed in f32; the loss is f32. Strata's
// fused kernel under any engine: cuDNN has no cross-entropy (compare engines on log_softmax).
Tensor cross_entropy(const Tensor& logits, const Tensor& targets, const CrossEntropyParams& params = {},
                     TargetCheck* target_check = nullptr);

// ---- batch norm fused with its activation (layers/functional_norm_act.cpp) -------------
// act(batch_norm2d(x, ...)) in one pass (strata/kernels/batch_norm2d_activation.h): the same
// values and gradients as F::batch_norm2d then F::relu / F::gelu on the custom kernels, bit
// for bit in f32 (in f16/bf16 the activation applies before the one rounding), without the
// pre-activation tensor: the backward recomputes it from x. training, running, weight and
// bias as F::batch_norm2d; params.activation: none, relu, gelu (exact) or gelu_tanh. Strata's kernels under any engine, Engine::cudnn included: cuDNN's legacy
// API has no fused batch norm + activation (compare engines on F::batch_norm2d and F::gelu).
// statistics (optional): x's producer statistics, used in training when their partials are
// defined, as F::batch_norm2d's.
Tensor batch_norm2d_activation(const Tensor& x, const Tensor& weight, const Tensor& bias,
                               BatchNormRunningStats& running, bool training,
                               const BatchNormActivationParams& params = {},
                               const ChannelStatistics* statistics = nullptr);

// ---- memory formats (layers/functional_memory_format.cpp) --------------------------------
// A 4-D activation may be channels-last ((N, H, W, C) in memory, shape still (N, C, H, W):
// strata/core/memory_format.h). Ops keep their main input's format: an op's output and the
// gradient of its input come in that input's format. The element-wise ops (relu, gelu,
// dropout, add, mul, to_dtype) take either format; add with operands of two formats converts
// b to a's (the result is in a's format, b's gradient in b's). Ops that read NCHW order
// (cat, flatten and linear of a 4-D tensor, argmax, softmax over the last dimension, ...)
// convert a channels-last input with F::contiguous first, as PyTorch's ops accept any format.
// x in format, as torch.Tensor.to(memory_format=...): x itself when it is in format already,
// otherwise a new tensor (format channels_last needs a 4-D x). Gradient: dL/dy converted
// back to x's format.
//   Tensor images = F::to_memory_format(batch, MemoryFormat::channels_last);   // (N, C, H, W)
Tensor to_memory_format(const Tensor& x, MemoryFormat format);
// x in an order that code reading NCHW order can read (x.is_contiguous(): the contiguous
// format, or channels-last where both layouts coincide): x itself when it is, otherwise
// to_memory_format(x, MemoryFormat::contiguous). An undefined x is returned as it is.
Tensor contiguous(const Tensor& x);

}  // namespace strata::F
