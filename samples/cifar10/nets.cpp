#include "nets.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <strata/core/autograd.h>
#include <strata/core/engine.h>
#include <strata/core/stream.h>
#include <strata/layers/functional.h>
#include <strata/layers/init.h>

#include "cifar10_files.h"

namespace cifar10 {

namespace nn = strata::nn;
namespace F = strata::F;
using strata::Tensor;

nn::Sequential seed_net(const SeedNetOptions& options) {
  return nn::Sequential(nn::Conv2d(3, options.width1, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                        nn::Conv2d(options.width1, options.width2, 3, {.padding = 1}), nn::ReLU(), nn::MaxPool2d(2),
                        nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(options.width2, kClasses));
}

namespace {

// The conv group's layers with a second forward that also gives (producers) or takes (the
// batch norm) the per-channel statistics of the producer's output (F::conv2d's statistics):
// the same module, type name and state, run as its own forward is (input check, error names).
class StatisticsConv2d : public nn::Conv2d {
 public:
  using nn::Conv2d::Conv2d;
  Tensor forward(const Tensor& x, F::ChannelStatistics* statistics) {
    return run_forward([&] {
      check_input(x);
      return F::conv2d(x, weight(), bias(), params(), engine(), statistics);
    });
  }
  // This conv and a max pool after it as one op (F::conv2d_max_pool2d), run as this module's
  // forward; statistics (may be null) are the pooled output's.
  Tensor forward_pooled(const Tensor& x, const F::Pool2dParams& pool, F::ChannelStatistics* statistics) {
    return run_forward([&] {
      check_input(x);
      return F::conv2d_max_pool2d(x, weight(), bias(), params(), pool, engine(), statistics);
    });
  }
  using nn::Conv2d::forward;
};

class StatisticsMaxPool2d : public nn::MaxPool2d {
 public:
  using nn::MaxPool2d::MaxPool2d;
  Tensor forward(const Tensor& x, F::ChannelStatistics* statistics) {
    return run_forward([&] {
      check_input(x);
      return F::max_pool2d(x, params(), engine(), statistics);
    });
  }
  using nn::MaxPool2d::forward;
};

class StatisticsBatchNorm2dActivation : public nn::BatchNorm2dActivation {
 public:
  using nn::BatchNorm2dActivation::BatchNorm2dActivation;
  Tensor forward(const Tensor& x, const F::ChannelStatistics& statistics) {
    return run_forward([&] {
      check_input(x);
      const F::BatchNormActivationParams params{.norm = norm_params(), .activation = activation()};
      return F::batch_norm2d_activation(x, weight(), bias(), running(), uses_batch_statistics(), params,
                                        &statistics);
    });
  }
  using nn::BatchNorm2dActivation::forward;
};

// airbench's Conv: 3x3, same padding, no bias; output channels [0, in) start as the identity.
std::shared_ptr<StatisticsConv2d> identity_start_conv(std::int64_t in_channels, std::int64_t out_channels) {
  auto conv =
      std::make_shared<StatisticsConv2d>(in_channels, out_channels, 3, nn::Conv2dOptions{.padding = 1, .bias = false});
  Tensor identity_part = conv->weight().detach().narrow(0, 0, std::min(in_channels, out_channels));  // (in, in, 3, 3)
  strata::init::dirac_(identity_part, strata::current_stream());
  return conv;
}

// airbench's ConvGroup: conv1 -> pool -> norm1 -> activ -> conv2 -> norm2 -> activ, with its
// children's names, so that the state dict's keys are airbench's. Fused, norm1 and norm2 apply
// the GELU themselves and there is no activ; with statistics_from_producer, the pool and conv2
// give norm1 and norm2 the statistics of their inputs in training. With fuse_conv_pool, conv1
// and pool run as one op (F::conv2d_max_pool2d) when conv1 has tensor-core math and both run on
// the custom kernels; on other engines they stay the two modules' forwards.
class ConvGroup : public nn::UnaryModule {
 public:
  ConvGroup(std::int64_t in_channels, std::int64_t out_channels, const Airbench94NetOptions& options)
      : conv1_(register_module("conv1", identity_start_conv(in_channels, out_channels))),
        pool_(register_module("pool", std::make_shared<StatisticsMaxPool2d>(2))),
        norm1_(register_module("norm1", batch_norm(out_channels, options))),
        conv2_(register_module("conv2", identity_start_conv(out_channels, out_channels))),
        norm2_(register_module("norm2", batch_norm(out_channels, options))),
        statistics_from_producer_(options.fuse_norm_activation && options.statistics_from_producer),
        fuse_conv_pool_(options.fuse_conv_pool) {
    if (!options.fuse_norm_activation) activ_ = register_module("activ", std::make_shared<nn::GELU>());
  }

  std::string type_name() const override { return "ConvGroup"; }

 protected:
  Tensor forward_impl(const Tensor& x) override {
    if (statistics_from_producer_ && is_training()) return forward_with_producer_statistics(x);
    Tensor y = activation((*norm1_)(conv_pool(x, nullptr)));
    return activation((*norm2_)((*conv2_)(y)));
  }

 private:
  Tensor activation(const Tensor& x) { return activ_ ? (*activ_)(x) : x; }

  // pool(conv1(x)), as one op where fuse_conv_pool allows; statistics (may be null) of the
  // pooled output for norm1.
  Tensor conv_pool(const Tensor& x, F::ChannelStatistics* statistics) {
    const bool custom_engines = strata::resolve_engine(conv1_->engine()) == strata::Engine::custom &&
                                strata::resolve_engine(pool_->engine()) == strata::Engine::custom;
    if (fuse_conv_pool_ && conv1_->math() != strata::kernels::ConvMath::fp32 && custom_engines) {
      return conv1_->forward_pooled(x, pool_->params(), statistics);
    }
    if (statistics == nullptr) return (*pool_)((*conv1_)(x));
    return pool_->forward((*conv1_)(x), statistics);
  }

  // The fused norms read the statistics the pool and conv2 wrote (undefined on cuDNN: the
  // norm then computes its own).
  Tensor forward_with_producer_statistics(const Tensor& x) {
    auto& norm1 = static_cast<StatisticsBatchNorm2dActivation&>(*norm1_);
    auto& norm2 = static_cast<StatisticsBatchNorm2dActivation&>(*norm2_);
    F::ChannelStatistics pooled;
    const Tensor y = norm1.forward(conv_pool(x, &pooled), pooled);
    F::ChannelStatistics convolved;
    return norm2.forward(conv2_->forward(y, &convolved), convolved);
  }

  // Batch norm with a bias only (weight fixed at 1), and the GELU after it when fused.
  static std::shared_ptr<nn::UnaryModule> batch_norm(std::int64_t channels, const Airbench94NetOptions& options) {
    if (options.fuse_norm_activation) {
      return std::make_shared<StatisticsBatchNorm2dActivation>(
          channels, nn::BatchNorm2dActivationOptions{.eps = options.batchnorm_eps,
                                                     .momentum = options.batchnorm_momentum,
                                                     .affine = nn::BatchNormAffine::bias_only,
                                                     .activation = nn::FusedActivation::gelu});
    }
    return std::make_shared<nn::BatchNorm2d>(
        channels, nn::BatchNorm2dOptions{.eps = options.batchnorm_eps,
                                         .momentum = options.batchnorm_momentum,
                                         .affine = nn::BatchNormAffine::bias_only});
  }

  std::shared_ptr<StatisticsConv2d> conv1_;
  std::shared_ptr<StatisticsMaxPool2d> pool_;
  std::shared_ptr<nn::UnaryModule> norm1_;  // StatisticsBatchNorm2dActivation when fused
  std::shared_ptr<StatisticsConv2d> conv2_;
  std::shared_ptr<nn::UnaryModule> norm2_;
  std::shared_ptr<nn::GELU> activ_;  // null when fused
  bool statistics_from_producer_;
  bool fuse_conv_pool_;
};

nn::Sequential conv_bn(std::int64_t in_channels, std::int64_t out_channels, std::int64_t kernel,
                       std::int64_t stride) {
  return nn::Sequential(
      nn::Conv2d(in_channels, out_channels, kernel, {.stride = stride, .padding = kernel / 2, .bias = false}),
      nn::BatchNorm2d(out_channels));
}

// ResNet's BasicBlock: relu(conv3x3 BN relu conv3x3 BN (x) + shortcut(x)).
nn::Sequential basic_block(std::int64_t in_channels, std::int64_t out_channels, std::int64_t stride) {
  auto body = nn::Sequential(nn::Conv2d(in_channels, out_channels, 3, {.stride = stride, .padding = 1, .bias = false}),
                             nn::BatchNorm2d(out_channels), nn::ReLU(),
                             nn::Conv2d(out_channels, out_channels, 3, {.padding = 1, .bias = false}),
                             nn::BatchNorm2d(out_channels));
  if (stride == 1 && in_channels == out_channels) return nn::Sequential(nn::Residual(std::move(body)), nn::ReLU());
  return nn::Sequential(nn::Residual(std::move(body), conv_bn(in_channels, out_channels, 1, stride)), nn::ReLU());
}

}  // namespace

nn::Sequential airbench94_net(const Airbench94NetOptions& options) {
  const auto& widths = options.widths;
  constexpr std::int64_t kWhitenWidth = 2 * 3 * 2 * 2;  // the 12 whitening filters and their negations
  return nn::Sequential(nn::Conv2d(3, kWhitenWidth, 2, {.padding = 0, .bias = true}), nn::GELU(),
                        std::make_shared<ConvGroup>(kWhitenWidth, widths[0], options),
                        std::make_shared<ConvGroup>(widths[0], widths[1], options),
                        std::make_shared<ConvGroup>(widths[1], widths[2], options), nn::MaxPool2d(3), nn::Flatten(),
                        nn::Linear(widths[2], kClasses, {.bias = false}), nn::Scale(options.scale));
}

nn::Sequential resnet18_net() {
  nn::Sequential net(conv_bn(3, 64, 3, 1), nn::ReLU());
  std::int64_t channels = 64;
  for (const std::int64_t width : {64, 128, 256, 512}) {
    const std::int64_t stride = width == 64 ? 1 : 2;
    net.push_back(nn::Sequential(basic_block(channels, width, stride), basic_block(width, width, 1)));
    channels = width;
  }
  net.push_back(nn::AdaptiveAvgPool2d(1));
  net.push_back(nn::Flatten());
  net.push_back(nn::Linear(channels, kClasses));
  return net;
}

std::int64_t count_parameters(const nn::Module& module) {
  std::int64_t count = 0;
  for (const Tensor& parameter : module.parameters()) count += parameter.numel();
  return count;
}

namespace {

// Index i moved into [0, n) by reflection at the borders (PyTorch's 'reflect' padding).
std::int64_t reflect(std::int64_t i, std::int64_t n) {
  if (i < 0) return -i;
  if (i >= n) return 2 * (n - 1) - i;
  return i;
}

}  // namespace

const Tensor& TestViews::selection(std::int64_t height, std::int64_t width, int dy, int dx, bool mirror) {
  for (const Selection& made : selections_) {
    if (made.height == height && made.width == width && made.dy == dy && made.dx == dx && made.mirror == mirror) {
      return made.matrix;
    }
  }
  if (std::abs(dy) >= height || std::abs(dx) >= width) {
    throw std::invalid_argument("TestViews::translate: a move of (" + std::to_string(dy) + ", " + std::to_string(dx) +
                                ") does not fit images of " + std::to_string(height) + "x" + std::to_string(width));
  }
  // y[..., out] = sum_in x[..., in] * matrix[out][in]: row out has a single 1, at its source.
  std::vector<float> matrix;
  std::int64_t size = 0;
  if (mirror) {
    size = width;
    matrix.assign(static_cast<std::size_t>(size * size), 0.0f);
    for (std::int64_t x = 0; x < width; ++x) matrix[static_cast<std::size_t>(x * size + (width - 1 - x))] = 1.0f;
  } else {
    size = height * width;
    matrix.assign(static_cast<std::size_t>(size * size), 0.0f);
    for (std::int64_t y = 0; y < height; ++y) {
      for (std::int64_t x = 0; x < width; ++x) {
        const std::int64_t source = reflect(y - dy, height) * width + reflect(x - dx, width);
        matrix[static_cast<std::size_t>((y * width + x) * size + source)] = 1.0f;
      }
    }
  }
  Tensor device = Tensor::from_vector(matrix, {size, size}).to_device(strata::current_stream());
  selections_.push_back({height, width, dy, dx, mirror, std::move(device)});
  return selections_.back().matrix;
}

Tensor TestViews::mirror(const Tensor& images) {
  const std::int64_t height = images.size(2), width = images.size(3);
  return F::linear(images, selection(height, width, 0, 0, true), Tensor());  // (N, C, H, W): rows of W
}

Tensor TestViews::translate(const Tensor& images, int dy, int dx) {
  const std::int64_t n = images.size(0), channels = images.size(1), height = images.size(2), width = images.size(3);
  const Tensor planes = images.reshape({n * channels, height * width});  // (N*C, H*W)
  return F::linear(planes, selection(height, width, dy, dx, false), Tensor()).reshape({n, channels, height, width});
}

Tensor six_view_logits(nn::UnaryModule& model, const Tensor& images, TestViews& views, strata::MemoryFormat format) {
  // The views are made in NCHW order (linear maps of rows); the model sees each in format.
  const auto run = [&](const Tensor& view) { return model(F::to_memory_format(view, format)); };
  const auto mirror_average = [&](const Tensor& view) {
    return F::mul(F::add(run(view), run(views.mirror(view))), 0.5f);
  };
  const Tensor plain = mirror_average(images);
  const Tensor moved = F::add(mirror_average(views.translate(images, 1, 1)),
                              mirror_average(views.translate(images, -1, -1)));
  return F::add(F::mul(plain, 0.5f), moved, 0.25f);
}

Tensor count_correct(const Tensor& logits, const Tensor& labels) {
  strata::autograd::NoGradGuard no_grad;
  return F::count_equal(F::argmax(logits.detach()), labels.detach());  // (N) i64 against (N) i64: () i64
}

}  // namespace cifar10
