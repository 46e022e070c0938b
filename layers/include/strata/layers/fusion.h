// Inference-time fusion of modules, as PyTorch's torch.nn.utils.fusion: an eval-mode
// BatchNorm2d after a Conv2d is an affine map per channel, so it folds into the conv's
// weight and bias, and the network then runs one conv (and, with an activation, one fused
// conv + activation kernel) where it ran a conv, a batch norm and an activation.
//
//   model.eval();
//   nn::Conv2d fused = nn::fuse_conv_batch_norm_eval(conv, bn, FusedActivation::relu);
//   Tensor y = fused(x);   // relu(bn(conv(x))) up to float rounding
//
// Only for inference: the folded conv has no batch statistics, so training it is not training
// the original pair. fuse_for_inference does it for every such run of a Sequential.
#pragma once

#include "strata/kernels/batch_norm2d_activation.h"
#include "strata/layers/modules.h"

namespace strata::nn {

// A new Conv2d computing activation(batch_norm(conv(x))) with batch_norm (a BatchNorm2d, or a
// BatchNorm2dActivation whose own activation is then not applied: pass it here) in eval mode, as
// torch.nn.utils.fusion.fuse_conv_bn_eval (which has no activation): with
// s = gamma / sqrt(running_var + eps) per output channel,
//   weight' = weight * s,   bias' = (bias - running_mean) * s + beta
// (bias 0 when the conv has none, gamma 1 and beta 0 when the batch norm has no affine),
// computed in double and rounded once to f32. The new conv always has a bias, and keeps the
// conv's stride, padding, dilation, groups, engine and math; its activation is the one given
// (Conv2dOptions::activation). Its parameters are new tensors: conv and batch_norm are
// unchanged. Reads the parameters after the current stream's queued work. Throws
// InvalidArgument, naming both layers, when batch_norm is in training mode, has no running
// statistics, has another number of channels than conv's outputs, or when conv has an
// activation of its own (the batch norm would then follow the activation, not the conv).
Conv2d fuse_conv_batch_norm_eval(const Conv2d& conv, const BatchNorm2dBase& batch_norm,
                                 FusedActivation activation = FusedActivation::none);

// An inference copy of model (in eval mode; InvalidArgument otherwise): every Conv2d followed
// by a BatchNorm2d with running statistics (and then a ReLU or a GELU), or by a
// BatchNorm2dActivation, becomes one conv from fuse_conv_batch_norm_eval with that activation;
// nested Sequentials are fused the same way. The other layers are shared with model, not
// copied; the result is in eval mode and its layers are numbered anew, so its state dict is
// not model's. For a trained model about to be deployed:
//   model.eval();
//   nn::Sequential fast = nn::fuse_for_inference(model);
Sequential fuse_for_inference(const Sequential& model);

}  // namespace strata::nn
