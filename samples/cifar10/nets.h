// The CIFAR-10 sample's three networks, built from Strata's modules as a PyTorch user builds
// them, and what runs at test time: airbench's six-view test-time augmentation and the
// count of correct predictions, both on the device without synchronising.
//
//   seed        conv-ReLU-maxpool twice, global average pool, flatten, linear: the network
//               of samples/train_seed at CIFAR-10 widths.
//   airbench94  Keller Jordan's airbench94 (2024): a frozen 2x2 whitening conv, GELU, three
//               conv groups, max pool, linear, times 1/9. The module names are airbench's
//               ("2.conv1.weight", "4.norm2.bias"), so its PyTorch state dicts map one to one
//               (except the batch-norm weights, fixed at 1 and not tensors here).
//   resnet18    the CIFAR ResNet-18 (3x3 stem, no max pool, BasicBlocks [2, 2, 2, 2]).
#pragma once

#include <array>
#include <cstdint>

#include <cuda_runtime_api.h>

#include <strata/core/tensor.h>
#include <strata/layers/module.h>
#include <strata/layers/modules.h>

namespace cifar10 {

struct SeedNetOptions {
  std::int64_t width1 = 32;  // channels of the first conv
  std::int64_t width2 = 64;  // channels of the second conv
};
// Conv(3->w1, 3x3, pad 1) ReLU MaxPool2 Conv(w1->w2) ReLU MaxPool2 AdaptiveAvgPool(1) Flatten
// Linear(w2->10): any image size of at least 4x4.
strata::nn::Sequential seed_net(const SeedNetOptions& options = {});

struct Airbench94NetOptions {
  std::array<std::int64_t, 3> widths = {64, 256, 256};  // the three conv groups
  float batchnorm_momentum = 0.4f;  // PyTorch's convention (airbench writes 0.6 = 1 - this)
  float batchnorm_eps = 1e-12f;
  float scale = 1.0f / 9;  // of the logits
  // Each batch norm and the GELU after it as one fused module (nn::BatchNorm2dActivation: the
  // same results bit for bit and the same state dict, without storing the pre-activation).
  // Off: the separate modules, so that Engine::cudnn can run batch norm and GELU on cuDNN.
  bool fuse_norm_activation = true;
  // In training, with fuse_norm_activation: each conv group's pool and conv2 also write the
  // per-channel statistics of their outputs (F::max_pool2d, F::conv2d), which the batch norm
  // after them takes instead of reading its input a second time (F::batch_norm2d_activation).
  // Custom kernels only (on cuDNN the norm computes its own). The statistics are summed in
  // another order, so results are within float roundings of the separate modules, not bit
  // for bit: off where that matters.
  bool statistics_from_producer = true;
  // Each conv group's conv1 and pool as one op (F::conv2d_max_pool2d) where that fuses them:
  // with tensor-core conv math (--conv-math tf32 or bf16) on the custom kernels, one kernel
  // writes the pooled output (and its statistics) without the full conv output. The same
  // results bit for bit (the statistics, when the pool gives them, summed in another order)
  // and the same modules and state dict; fp32 math, cuDNN and auto run the two modules.
  bool fuse_conv_pool = true;
};
// Layer 0 (the whitening conv, 3->24, 2x2, unpadded, with bias) starts with PyTorch's default
// initialisation; the recipe replaces its weight by whitening_weight() and freezes it. The
// conv groups (layers 2..4) are airbench's ConvGroup: conv1, pool, norm1, activ, conv2,
// norm2, activ (norm1 and norm2 carrying the GELU when fused, without an activ; conv1 and pool
// as one op with fuse_conv_pool); their convs are 3x3, same-padded, without bias, with output channels
// [0, C_in) initialised as the identity (Dirac) and the rest PyTorch's default; batch norm
// has a bias only (weight fixed at 1). Input (N, 3, 32, 32) -> (N, 10).
strata::nn::Sequential airbench94_net(const Airbench94NetOptions& options = {});
// The layers the recipe treats specially.
inline constexpr std::size_t kAirbenchWhitenLayer = 0;

// conv3x3(3->64) BN ReLU, then four stages of two BasicBlocks (64, 128, 256, 512 channels,
// strides 1, 2, 2, 2; a block is Residual(conv3x3 BN ReLU conv3x3 BN, shortcut) then ReLU,
// the shortcut a 1x1 conv with BN where the shape changes), adaptive average pool, flatten,
// Linear(512->10). Convs have no bias. 11,173,962 parameters, as the common PyTorch version.
strata::nn::Sequential resnet18_net();

// The number of elements of every parameter of module (each once).
std::int64_t count_parameters(const strata::nn::Module& module);

// Images translated and mirrored as airbench's evaluation views are, for normalised f32
// images (N, C, H, W) on the device: each view is one exact matrix product (a 0/1
// selection matrix made once per size, fp32 GEMM without TF32), so no extra kernel is needed.
class TestViews {
 public:
  // The image mirrored left to right.
  strata::Tensor mirror(const strata::Tensor& images);
  // The image moved by (dy, dx) pixels with reflection at the borders:
  // out[y][x] = in[reflect(y - dy)][reflect(x - dx)], |dy|, |dx| < H, W. airbench's crops of
  // the image reflect-padded by 1 at (0, 0) and (2, 2) are translate(1, 1) and translate(-1, -1).
  strata::Tensor translate(const strata::Tensor& images, int dy, int dx);

 private:
  // (H*W, H*W) or (W, W) f32 device matrices, made on first use for each size and move.
  struct Selection {
    std::int64_t height, width;
    int dy, dx;
    bool mirror;
    strata::Tensor matrix;
  };
  const strata::Tensor& selection(std::int64_t height, std::int64_t width, int dy, int dx, bool mirror);
  std::vector<Selection> selections_;
};

// airbench94's tta_level 2, with m(v) = (model(v) + model(mirror(v))) / 2: the logits
// 0.5 * m(x) + 0.25 * (m(translate(x, 1, 1)) + m(translate(x, -1, -1))). model should be in
// eval mode, under a NoGradGuard. images (N, 3, H, W) -> (N, classes); the views are made
// from images in NCHW order and given to model in format.
strata::Tensor six_view_logits(strata::nn::UnaryModule& model, const strata::Tensor& images, TestViews& views,
                               strata::MemoryFormat format = strata::MemoryFormat::contiguous);

// How many rows of logits (N, classes) have their largest value (the first, on a tie; a NaN
// counts as largest) at the label (N, i64): () i64 on the device, F::count_equal of
// F::argmax. Queued on current_stream(), recorded as ops when a graph is being recorded; no
// gradients.
strata::Tensor count_correct(const strata::Tensor& logits, const strata::Tensor& labels);

}  // namespace cifar10
