#include "tests/layers/synthetic_images.h"

#include <array>
#include <random>
#include <stdexcept>
#include <string>

namespace strata::testing {

namespace {

// What a bar adds to the red, green and blue channels: class c has colour c % 5 and is
// horizontal when c < 5, vertical otherwise.
constexpr std::array<std::array<float, 3>, 5> kBarColours = {{
    {2.0f, 0.0f, 0.0f},  // red
    {0.0f, 2.0f, 0.0f},  // green
    {0.0f, 0.0f, 2.0f},  // blue
    {2.0f, 2.0f, 0.0f},  // yellow
    {0.0f, 2.0f, 2.0f},  // cyan
}};

// Uniform in [0, 1) from the top 24 bits, so the value does not depend on the standard
// library's distributions (which the standard leaves unspecified).
float unit_uniform(std::mt19937_64& generator) { return static_cast<float>(generator() >> 40) * 0x1p-24f; }

// Uniform integer in [0, bound); the modulo bias is irrelevant for test data.
int below(std::mt19937_64& generator, int bound) {
  return static_cast<int>(generator() % static_cast<std::uint64_t>(bound));
}

}  // namespace

SyntheticImages make_synthetic_images(const SyntheticImagesParams& params) {
  if (params.count < 1 || params.bar_thickness < 1 || params.bar_length < params.bar_thickness ||
      params.bar_length > params.height || params.bar_length > params.width) {
    throw std::invalid_argument("make_synthetic_images: a bar of " + std::to_string(params.bar_length) + "x" +
                                std::to_string(params.bar_thickness) + " does not fit images of " +
                                std::to_string(params.height) + "x" + std::to_string(params.width));
  }
  SyntheticImages data;
  data.count = params.count;
  data.height = params.height;
  data.width = params.width;
  const std::size_t plane = static_cast<std::size_t>(params.height) * static_cast<std::size_t>(params.width);
  data.images.resize(static_cast<std::size_t>(params.count) * 3 * plane);
  data.labels.resize(static_cast<std::size_t>(params.count));
  std::mt19937_64 generator(params.seed);
  for (int n = 0; n < params.count; ++n) {
    const int label = n % kSyntheticClasses;
    data.labels[static_cast<std::size_t>(n)] = label;
    float* image = data.images.data() + static_cast<std::size_t>(n) * 3 * plane;  // (3, H, W)
    for (std::size_t i = 0; i < 3 * plane; ++i) image[i] = (2.0f * unit_uniform(generator) - 1.0f) * params.noise;

    const bool horizontal = label < 5;
    const int bar_height = horizontal ? params.bar_thickness : params.bar_length;
    const int bar_width = horizontal ? params.bar_length : params.bar_thickness;
    const int top = below(generator, params.height - bar_height + 1);
    const int left = below(generator, params.width - bar_width + 1);
    const std::array<float, 3>& colour = kBarColours[static_cast<std::size_t>(label % 5)];
    for (int c = 0; c < 3; ++c) {
      for (int y = top; y < top + bar_height; ++y) {
        for (int x = left; x < left + bar_width; ++x) {
          image[static_cast<std::size_t>(c) * plane + static_cast<std::size_t>(y * params.width + x)] += colour[c];
        }
      }
    }
  }
  return data;
}

}  // namespace strata::testing
