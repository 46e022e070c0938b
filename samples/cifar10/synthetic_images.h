// A generated stand-in for CIFAR-10 (--synthetic): 32x32 RGB images of 10 classes that a
// small network separates within an epoch, for tests and for machines without the data.
// Class c is a colour of its own with a stripe pattern of its own orientation and
// frequency, under per-image brightness jitter and per-pixel noise; translation and
// flipping (the loader's augmentation) keep the class recognisable.
#pragma once

#include <cstdint>

#include "cifar10_files.h"

namespace cifar10 {

// count images, classes in turn (image i has class i % 10), the same for the same seed on
// every machine (the generator is a fixed integer hash, not a library distribution).
HostImages make_synthetic_images(std::int64_t count, std::uint64_t seed);

}  // namespace cifar10
