// The shapes the benchmark runs: airbench94's layers, ResNet-18's CIFAR convolutions, and
// odd sizes; cut down by --quick.
//
// airbench94 (batch 1024): a 2x2 whitening conv without padding takes the 32x32 images to
// 31x31; each of its three blocks is conv3x3 (padding 1), max-pool 2, batch norm (bias
// only), GELU, conv3x3, batch norm, GELU, so the blocks work at 31 -> 15, 15 -> 7 and
// 7 -> 3; a 3x3 max-pool, a linear 256 -> 10 without bias and a label-smoothed
// cross-entropy end the net. ResNet-18 adds its ReLUs, residual adds and global average
// pooling; the odd set average pooling, and adaptive bins of unequal sizes (which cuDNN
// refuses: those rows say so).
//
// Every op besides conv2d runs in f32 storage and in bf16 storage ("-bf16io" engines), the
// builders adding both; conv2d's builder adds its fp32 and tensor-core configurations.
#include <algorithm>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

// Cuts sizes down for --quick: batch <= 2, channels and features <= 8, height and width <= 9.
struct Sizes {
  bool quick = false;
  std::int64_t batch(std::int64_t n) const { return quick ? std::min<std::int64_t>(n, 2) : n; }
  std::int64_t channels(std::int64_t c) const { return quick ? std::min<std::int64_t>(c, 8) : c; }
  std::int64_t spatial(std::int64_t h) const { return quick ? std::min<std::int64_t>(h, 9) : h; }
  std::int64_t elements(std::int64_t n) const { return quick ? std::min<std::int64_t>(n, 1000) : n; }
  Shape image(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) const {
    return {batch(n), channels(c), spatial(h), spatial(w)};
  }
};

struct Conv {
  std::int64_t batch, in_channels, size_h, size_w, out_channels, kernel;
  strata::kernels::Conv2dParams params;
  bool bias;
};

ConvSpec conv_spec(const std::string& set, const Conv& conv, const Sizes& sizes) {
  strata::kernels::Conv2dParams params = conv.params;
  const bool depthwise = params.groups == conv.in_channels;
  const std::int64_t in_channels = sizes.channels(conv.in_channels);
  const std::int64_t out_channels = sizes.channels(conv.out_channels);
  if (depthwise) params.groups = in_channels;
  return {.set = set,
          .x = {sizes.batch(conv.batch), in_channels, sizes.spatial(conv.size_h), sizes.spatial(conv.size_w)},
          .weight = {out_channels, in_channels / params.groups, conv.kernel, conv.kernel},
          .params = params,
          .bias = conv.bias};
}

}  // namespace

std::string BenchmarkCase::description() const {
  return set + " " + op + " " + direction + " " + shape + " " + engine;
}

std::vector<BenchmarkCase> benchmark_cases(const CaseOptions& options) {
  const Sizes sizes{.quick = options.quick};
  const int copies = options.input_copies;
  const strata::kernels::Conv2dParams same{.padding = {1, 1}};
  const strata::kernels::Conv2dParams same_stride2{.stride = {2, 2}, .padding = {1, 1}};
  std::vector<BenchmarkCase> cases;

  const std::string airbench = "airbench94";
  const std::int64_t a = 1024;  // airbench94's batch
  for (const Conv& conv : {Conv{a, 3, 32, 32, 24, 2, {}, true},  // the whitening conv
                           Conv{a, 24, 31, 31, 64, 3, same, false}, Conv{a, 64, 15, 15, 64, 3, same, false},
                           Conv{a, 64, 15, 15, 256, 3, same, false}, Conv{a, 256, 7, 7, 256, 3, same, false},
                           Conv{a, 256, 3, 3, 256, 3, same, false}}) {
    add_conv2d_cases(cases, conv_spec(airbench, conv, sizes), copies);
  }
  // Each conv group's conv1 with its pool, and its conv2 with an inference batch norm + GELU.
  for (const Conv& conv : {Conv{a, 24, 31, 31, 64, 3, same, false}, Conv{a, 64, 15, 15, 256, 3, same, false},
                           Conv{a, 256, 7, 7, 256, 3, same, false}}) {
    add_conv2d_max_pool2d_cases(cases, conv_spec(airbench, conv, sizes), copies);
  }
  for (const Conv& conv : {Conv{a, 64, 15, 15, 64, 3, same, false}, Conv{a, 256, 7, 7, 256, 3, same, false},
                           Conv{a, 256, 3, 3, 256, 3, same, false}}) {
    add_conv2d_epilogue_cases(cases, conv_spec(airbench, conv, sizes), copies);
  }
  for (const Shape& x : {sizes.image(a, 64, 31, 31), sizes.image(a, 256, 15, 15), sizes.image(a, 256, 7, 7)}) {
    add_max_pool2d_cases(cases, {.set = airbench, .x = x, .params = {.kernel = {2, 2}}}, copies);
  }
  add_max_pool2d_cases(cases, {.set = airbench, .x = sizes.image(a, 256, 3, 3), .params = {.kernel = {3, 3}}}, copies);
  for (const Shape& x : {sizes.image(a, 64, 15, 15), sizes.image(a, 256, 7, 7), sizes.image(a, 256, 3, 3)}) {
    add_batch_norm2d_cases(cases, airbench, x, copies);
    add_batch_norm2d_cudnn_cases(cases, airbench, x, copies);
    add_batch_norm2d_gelu_cases(cases, airbench, x, copies);
  }
  for (const Shape& x : {sizes.image(a, 24, 31, 31), sizes.image(a, 64, 15, 15), sizes.image(a, 256, 7, 7),
                         sizes.image(a, 256, 3, 3)}) {
    add_gelu_cases(cases, airbench, x, copies);
  }
  add_linear_cases(cases, airbench, {sizes.batch(a), sizes.channels(256)}, 10, copies);
  add_softmax_cross_entropy_cases(cases, airbench, {sizes.batch(a), 10}, copies);
  add_log_softmax_cases(cases, airbench, {sizes.batch(a), 10}, copies);

  // ResNet-18 on CIFAR (batch 128): each stage's first conv halves the size with stride 2,
  // its shortcut is a strided 1x1 conv.
  const std::string resnet = "resnet18";
  const std::int64_t r = 128;
  for (const Conv& conv : {Conv{r, 64, 32, 32, 64, 3, same, false}, Conv{r, 64, 32, 32, 128, 3, same_stride2, false},
                           Conv{r, 64, 32, 32, 128, 1, {.stride = {2, 2}}, false},
                           Conv{r, 128, 16, 16, 128, 3, same, false}, Conv{r, 128, 16, 16, 256, 3, same_stride2, false},
                           Conv{r, 256, 8, 8, 256, 3, same, false}, Conv{r, 256, 8, 8, 512, 3, same_stride2, false},
                           Conv{r, 512, 4, 4, 512, 3, same, false}}) {
    add_conv2d_cases(cases, conv_spec(resnet, conv, sizes), copies);
  }
  // Its ReLU and residual add at the first and last stages' sizes, and the global average
  // pooling before the classifier.
  for (const Shape& x : {sizes.image(r, 64, 32, 32), sizes.image(r, 512, 4, 4)}) {
    add_relu_cases(cases, resnet, x, copies);
    add_add_cases(cases, resnet, x, copies);
  }
  add_adaptive_avg_pool2d_cases(cases, resnet, sizes.image(r, 512, 4, 4), {1, 1}, copies);
  add_linear_cases(cases, resnet, {sizes.batch(r), sizes.channels(512)}, 10, copies);

  // Sizes that no tile, warp or vector width divides.
  const std::string odd = "odd";
  for (const Conv& conv : {Conv{7, 3, 37, 29, 17, 5, {.padding = {2, 2}}, true},
                           Conv{33, 32, 19, 19, 32, 3, {.stride = {2, 2}, .padding = {1, 1}, .groups = 32}, false},
                           Conv{5, 13, 23, 17, 11, 3, {.padding = {2, 2}, .dilation = {2, 2}}, true}}) {
    add_conv2d_cases(cases, conv_spec(odd, conv, sizes), copies);
  }
  add_max_pool2d_cases(cases,
                       {.set = odd, .x = sizes.image(9, 13, 27, 21),
                        .params = {.kernel = {3, 3}, .stride = strata::kernels::Size2d{2, 2}, .padding = {1, 1}}},
                       copies);
  add_avg_pool2d_cases(cases,
                       {.set = odd, .x = sizes.image(9, 13, 27, 21),
                        .params = {.kernel = {3, 3}, .stride = strata::kernels::Size2d{2, 2}, .padding = {1, 1}}},
                       copies);
  add_adaptive_avg_pool2d_cases(cases, odd, sizes.image(9, 13, 27, 21), {5, 3}, copies);
  add_batch_norm2d_cases(cases, odd, sizes.image(7, 13, 11, 9), copies);
  add_batch_norm2d_cudnn_cases(cases, odd, sizes.image(7, 13, 11, 9), copies);
  add_batch_norm2d_gelu_cases(cases, odd, sizes.image(7, 13, 11, 9), copies);
  add_gelu_cases(cases, odd, {sizes.elements(1000003)}, copies);
  add_softmax_cross_entropy_cases(cases, odd, {sizes.batch(333), 1001}, copies);
  add_log_softmax_cases(cases, odd, {sizes.batch(333), 1001}, copies);
  return cases;
}

}  // namespace op_benchmark
