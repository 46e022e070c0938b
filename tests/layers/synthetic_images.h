// A small, deterministic, learnable image set for training tests: 10 classes, each a bar of
// one of five colours, horizontal or vertical, at a random place on a noisy background.
// The seed network (convolutions, then a global average pool) can tell them apart only by
// learning colour and orientation detectors, since the bar's position varies; a few
// hundred images are made in well under a millisecond each, the same on every platform.
//
//   SyntheticImages data = make_synthetic_images({.count = 256, .seed = 7});
//   Tensor x = Tensor::from_vector(data.images, data.batch_shape()).to_device(stream);
#pragma once

#include <cstdint>
#include <vector>

#include "strata/core/shape.h"

namespace strata::testing {

inline constexpr int kSyntheticClasses = 10;

struct SyntheticImagesParams {
  int count = 256;
  int height = 12;
  int width = 12;
  int bar_length = 6;     // pixels along the bar; at most min(height, width)
  int bar_thickness = 2;  // pixels across it
  float noise = 1.0f;     // every pixel gets uniform noise in [-noise, noise] in every channel
  std::uint64_t seed = 1;
};

struct SyntheticImages {
  int count = 0;
  int height = 0;
  int width = 0;
  std::vector<float> images;         // (count, 3, height, width)
  std::vector<std::int64_t> labels;  // (count), in [0, kSyntheticClasses)

  Shape batch_shape() const { return Shape{count, 3, height, width}; }
};

// Labels cycle through the classes (count / 10 images of each, the remainder to the first
// classes); everything else is drawn from std::mt19937_64(seed), whose output the standard
// fixes, so the set is the same everywhere.
SyntheticImages make_synthetic_images(const SyntheticImagesParams& params);

}  // namespace strata::testing
