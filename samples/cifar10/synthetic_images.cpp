#include "synthetic_images.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace cifar10 {

namespace {

// SplitMix64: a fixed mixing function, so the set is the same with every standard library.
std::uint64_t mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [0, 1) from a key.
double uniform(std::uint64_t key) { return static_cast<double>(mix(key) >> 11) * 0x1.0p-53; }

// Well-separated colours, one a class, in [0, 255].
constexpr int kPalette[kClasses][3] = {{230, 60, 50},  {60, 180, 75},  {50, 90, 220},  {240, 200, 40},
                                       {150, 60, 200}, {40, 200, 210}, {240, 130, 40}, {120, 120, 120},
                                       {200, 90, 150}, {130, 90, 40}};

}  // namespace

HostImages make_synthetic_images(std::int64_t count, std::uint64_t seed) {
  HostImages set;
  set.pixels.resize(static_cast<std::size_t>(count) * kImageBytes);
  set.labels.resize(static_cast<std::size_t>(count));
  for (std::int64_t n = 0; n < count; ++n) {
    const int label = static_cast<int>(n % kClasses);
    set.labels[static_cast<std::size_t>(n)] = static_cast<std::uint8_t>(label);
    const std::uint64_t image_key = mix(seed ^ mix(static_cast<std::uint64_t>(n)));
    const double brightness = 0.7 + 0.5 * uniform(image_key);
    const double phase = 6.2831853 * uniform(image_key + 1);
    // Stripes: horizontal for even classes, vertical for odd ones, of a class frequency.
    const double frequency = 0.3 + 0.12 * (label / 2);
    std::uint8_t* image = set.pixels.data() + static_cast<std::size_t>(n) * kImageBytes;
    for (int y = 0; y < kImageSize; ++y) {
      for (int x = 0; x < kImageSize; ++x) {
        const double stripe = 0.5 + 0.5 * std::sin(frequency * (label % 2 == 0 ? y : x) + phase);
        for (int channel = 0; channel < kChannels; ++channel) {
          const std::uint64_t pixel_key = image_key + 2 + static_cast<std::uint64_t>((channel * kImageSize + y) *
                                                                                     kImageSize + x);
          const double noise = 80.0 * (uniform(pixel_key) - 0.5);
          const double value = brightness * kPalette[label][channel] * (0.55 + 0.45 * stripe) + noise;
          image[(channel * kImageSize + y) * kImageSize + x] =
              static_cast<std::uint8_t>(std::clamp(std::lround(value), 0L, 255L));
        }
      }
    }
  }
  return set;
}

}  // namespace cifar10
