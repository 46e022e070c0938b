// Image augmentation kernels: the gather, reflect-padded crop, flip, cutout and
// normalisation against a double reference (exact on small images, by hand where torch's
// reflect padding is the question), the plan against a host recomputation of its Philox
// formula, its determinism and the alternating flip's semantics, and argument errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <numeric>
#include <string>
#include <vector>

#include "strata/core/philox.h"
#include "strata/core/stream.h"
#include "strata/kernels/cast.h"
#include "strata/kernels/image_augment.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/storage_dtypes.h"

namespace strata::kernels {
namespace {

using testing::all_close;
using testing::device_tensor;
using testing::invalid_argument_message;
using testing::poisoned_tensor;
using testing::Tolerance;

// (v / 255 - mean) / stddev in float against double: a few ulp of values of order 1 / stddev.
constexpr Tolerance kNormaliseTolerance{.abs_tol = 2e-6, .rel_tol = 1e-6};

struct ImageSet {
  std::int64_t n = 0, c = 0, h = 0, w = 0;
  std::vector<std::uint8_t> pixels;  // (N, C, H, W)

  std::uint8_t at(std::int64_t image, std::int64_t channel, std::int64_t y, std::int64_t x) const {
    return pixels[static_cast<std::size_t>(((image * c + channel) * h + y) * w + x)];
  }
  Shape shape() const { return Shape{n, c, h, w}; }
};

// Seeded pixels in [0, 256), from Philox so that the test needs no other generator.
ImageSet random_images(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w, std::uint64_t seed) {
  ImageSet set{n, c, h, w, {}};
  set.pixels.resize(static_cast<std::size_t>(n * c * h * w));
  for (std::size_t i = 0; i < set.pixels.size(); ++i) {
    set.pixels[i] = static_cast<std::uint8_t>(philox_group(seed, i / 4).x[i % 4] >> 24);
  }
  return set;
}

ImageNormalisation test_normalisation() {
  return ImageNormalisation{.mean = {0.4914f, 0.4822f, 0.4465f, 0.25f}, .stddev = {0.2470f, 0.2435f, 0.2616f, 0.5f}};
}

using PlanRow = std::array<std::int32_t, kImagePlanColumns>;

Tensor plan_tensor(const std::vector<PlanRow>& rows, cudaStream_t stream) {
  std::vector<std::int32_t> values;
  for (const PlanRow& row : rows) values.insert(values.end(), row.begin(), row.end());
  return device_tensor(values, Shape{static_cast<std::int64_t>(rows.size()), kImagePlanColumns}, stream);
}

// torch.nn.functional.pad(mode="reflect") of one axis, written out independently of the kernel.
std::int64_t reflect(std::int64_t padded_index, std::int64_t pad, std::int64_t size) {
  std::int64_t s = padded_index - pad;
  while (s < 0 || s >= size) s = s < 0 ? -s : 2 * (size - 1) - s;
  return s;
}

double normalised(std::uint8_t v, const ImageNormalisation& normalisation, std::int64_t c) {
  return (static_cast<double>(v) / 255.0 - normalisation.mean[c]) / normalisation.stddev[c];
}

// The reference of image_augment_normalise, in double.
std::vector<double> reference_augment(const ImageSet& set, const std::vector<PlanRow>& plan, int pad, int cutout,
                                      const ImageNormalisation& normalisation) {
  std::vector<double> out;
  for (const PlanRow& row : plan) {
    for (std::int64_t c = 0; c < set.c; ++c) {
      for (std::int64_t y = 0; y < set.h; ++y) {
        for (std::int64_t x = 0; x < set.w; ++x) {
          if (row[kImagePlanSource] < 0 || row[kImagePlanSource] >= set.n || row[kImagePlanShiftY] < 0 ||
              row[kImagePlanShiftY] > 2 * pad || row[kImagePlanShiftX] < 0 || row[kImagePlanShiftX] > 2 * pad) {
            out.push_back(std::nan(""));
            continue;
          }
          const bool in_cutout = cutout > 0 && y >= row[kImagePlanCutoutY] && y < row[kImagePlanCutoutY] + cutout &&
                                 x >= row[kImagePlanCutoutX] && x < row[kImagePlanCutoutX] + cutout;
          if (in_cutout) {
            out.push_back(0.0);
            continue;
          }
          // Crop the padded image, then mirror the crop.
          const std::int64_t crop_x = row[kImagePlanFlip] != 0 ? set.w - 1 - x : x;
          const std::int64_t source_y = reflect(y + row[kImagePlanShiftY], pad, set.h);
          const std::int64_t source_x = reflect(crop_x + row[kImagePlanShiftX], pad, set.w);
          out.push_back(normalised(set.at(row[kImagePlanSource], c, source_y, source_x), normalisation, c));
        }
      }
    }
  }
  return out;
}

std::vector<float> run_augment(const ImageSet& set, const std::vector<PlanRow>& plan, int pad, int cutout,
                               const ImageNormalisation& normalisation, cudaStream_t stream) {
  const Tensor images = device_tensor(set.pixels, set.shape(), stream);
  Tensor out = poisoned_tensor(Shape{static_cast<std::int64_t>(plan.size()), set.c, set.h, set.w}, stream);
  image_augment_normalise(images, plan_tensor(plan, stream), out, {.pad = pad, .cutout = cutout}, normalisation,
                          stream);
  return out.to_vector<float>(stream);
}

// The plan formula of image_augment.h, recomputed on the host.
PlanRow reference_plan_row(std::int32_t id, std::int64_t b, Size2d size, const ImageAugmentParams& params) {
  auto group = [&](std::int64_t epoch, int k) {
    return philox_group(params.seed, static_cast<std::uint64_t>(epoch) * (std::uint64_t{1} << 33) +
                                         static_cast<std::uint64_t>(id) * 2 + static_cast<std::uint64_t>(k));
  };
  auto below = [](std::uint32_t word, std::int64_t n) {
    return static_cast<std::int32_t>((static_cast<std::uint64_t>(word) * static_cast<std::uint64_t>(n)) >> 32);
  };
  const Philox4x32 words = group(params.epoch, 0);
  PlanRow row{};
  row[kImagePlanSource] = params.staged ? static_cast<std::int32_t>(b) : id;
  row[kImagePlanShiftY] = below(words.x[0], 2 * params.pad + 1);
  row[kImagePlanShiftX] = below(words.x[1], 2 * params.pad + 1);
  row[kImagePlanCutoutY] = params.cutout > 0 ? below(words.x[2], size.h - params.cutout + 1) : 0;
  row[kImagePlanCutoutX] = params.cutout > 0 ? below(words.x[3], size.w - params.cutout + 1) : 0;
  switch (params.flip) {
    case ImageFlip::none: row[kImagePlanFlip] = 0; break;
    case ImageFlip::random: row[kImagePlanFlip] = static_cast<std::int32_t>(group(params.epoch, 1).x[0] >> 31); break;
    case ImageFlip::alternating:
      row[kImagePlanFlip] =
          static_cast<std::int32_t>(group(0, 1).x[0] >> 31) ^ static_cast<std::int32_t>(params.epoch & 1);
      break;
  }
  return row;
}

std::vector<PlanRow> run_plan(const std::vector<std::int32_t>& ids, Size2d size, const ImageAugmentParams& params,
                              cudaStream_t stream) {
  const auto batch = static_cast<std::int64_t>(ids.size());
  Tensor plan = Tensor::empty(Shape{batch, kImagePlanColumns}, DType::i32, stream);
  plan.fill(-7, stream);  // poison: no plan value is negative
  image_augment_plan(device_tensor(ids, Shape{batch}, stream), plan, size, params, stream);
  const std::vector<std::int32_t> values = plan.to_vector<std::int32_t>(stream);
  std::vector<PlanRow> rows(ids.size());
  for (std::size_t b = 0; b < rows.size(); ++b) {
    for (int k = 0; k < kImagePlanColumns; ++k)
      rows[b][static_cast<std::size_t>(k)] = values[b * kImagePlanColumns + k];
  }
  return rows;
}

std::vector<std::int32_t> iota_ids(std::int32_t count, std::int32_t first = 0) {
  std::vector<std::int32_t> ids(static_cast<std::size_t>(count));
  for (std::int32_t i = 0; i < count; ++i) ids[static_cast<std::size_t>(i)] = first + i;
  return ids;
}

TEST(ImageNormalise, GathersARangeAndNormalisesEveryChannel) {
  const cudaStream_t stream = current_stream();
  const ImageNormalisation normalisation = test_normalisation();
  // Odd sizes, one to four channels, a range that starts inside the set.
  for (const std::int64_t channels : {1, 3, 4}) {
    SCOPED_TRACE("channels " + std::to_string(channels));
    const ImageSet set = random_images(6, channels, 5, 7, 100 + static_cast<std::uint64_t>(channels));
    const std::int64_t first = 2, count = 3;
    Tensor out = poisoned_tensor(Shape{count, channels, 5, 7}, stream);
    image_normalise(device_tensor(set.pixels, set.shape(), stream), first, out, normalisation, stream);
    std::vector<double> expected;
    for (std::int64_t b = 0; b < count; ++b) {
      for (std::int64_t c = 0; c < channels; ++c) {
        for (std::int64_t y = 0; y < 5; ++y) {
          for (std::int64_t x = 0; x < 7; ++x)
            expected.push_back(normalised(set.at(first + b, c, y, x), normalisation, c));
        }
      }
    }
    EXPECT_TRUE(all_close(out.to_vector<float>(stream), expected, kNormaliseTolerance));
  }
}

// Every pixel value 0..255 through mean 0, stddev 1: exactly v / 255 rounded once.
TEST(ImageNormalise, EveryByteValueMapsToItsFraction) {
  const cudaStream_t stream = current_stream();
  ImageSet set{1, 1, 16, 16, {}};
  for (int v = 0; v < 256; ++v) set.pixels.push_back(static_cast<std::uint8_t>(v));
  Tensor out = poisoned_tensor(set.shape(), stream);
  image_normalise(device_tensor(set.pixels, set.shape(), stream), 0, out, ImageNormalisation{}, stream);
  const std::vector<float> values = out.to_vector<float>(stream);
  for (int v = 0; v < 256; ++v) EXPECT_EQ(values[static_cast<std::size_t>(v)], static_cast<float>(v) / 255.0f) << v;
}

// torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect") of the 3x4 image with rows
// r0 r1 r2 and columns a b c d has rows r2 r1 r0 r1 r2 r1 r0 and columns c b a b c d c b:
// the crop at (0, 0) is rows r2 r1 r0 of columns c b a b, written out here by hand.
TEST(ImageAugment, ReflectPaddingMatchesTorchByHand) {
  const cudaStream_t stream = current_stream();
  ImageSet set{1, 1, 3, 4, {}};
  for (int v = 0; v < 12; ++v) set.pixels.push_back(static_cast<std::uint8_t>(10 * v));  // row y, column x: 40 y + 10 x
  const std::vector<std::uint8_t> corner = {100, 90, 80, 90,                             //
                                            60,  50, 40, 50,                             //
                                            20,  10, 0,  10};
  // Shift (4, 4) is the opposite corner: rows r2 r1 r0 again, columns c d c b.
  const std::vector<std::uint8_t> opposite = {100, 110, 100, 90,  //
                                              60,  70,  60,  50,  //
                                              20,  30,  20,  10};
  const std::vector<float> out =
      run_augment(set, {PlanRow{0, 0, 0, 0, 0, 0}, PlanRow{0, 4, 4, 0, 0, 0}}, 2, 0, ImageNormalisation{}, stream);
  for (std::size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(out[i], static_cast<float>(corner[i]) / 255.0f) << "corner, pixel " << i;
    EXPECT_EQ(out[12 + i], static_cast<float>(opposite[i]) / 255.0f) << "opposite, pixel " << i;
  }
}

TEST(ImageAugment, EveryCropOffsetAndFlipMatchesTheReference) {
  const cudaStream_t stream = current_stream();
  const ImageNormalisation normalisation = test_normalisation();
  struct Case {
    std::int64_t c, h, w;
    int pad;
  };
  // Odd and even sizes; pad up to min(H, W) - 1, the largest reflect padding allows.
  for (const Case& size : {Case{3, 5, 7, 2}, Case{1, 4, 3, 2}, Case{2, 6, 6, 5}, Case{3, 1, 1, 0}, Case{4, 2, 5, 1}}) {
    SCOPED_TRACE("image " + std::to_string(size.c) + "x" + std::to_string(size.h) + "x" + std::to_string(size.w) +
                 ", pad " + std::to_string(size.pad));
    const ImageSet set = random_images(3, size.c, size.h, size.w, 7 + static_cast<std::uint64_t>(size.h * size.w));
    std::vector<PlanRow> plan;
    for (std::int32_t sy = 0; sy <= 2 * size.pad; ++sy) {
      for (std::int32_t sx = 0; sx <= 2 * size.pad; ++sx) {
        for (std::int32_t flip = 0; flip < 2; ++flip) plan.push_back(PlanRow{(sy + sx + flip) % 3, sy, sx, flip, 0, 0});
      }
    }
    EXPECT_TRUE(all_close(run_augment(set, plan, size.pad, 0, normalisation, stream),
                          reference_augment(set, plan, size.pad, 0, normalisation), kNormaliseTolerance));
  }
}

// A flip alone mirrors each row exactly; the unshifted crop (shift = pad) is the identity.
TEST(ImageAugment, FlipMirrorsRowsAndTheCentredCropIsTheImage) {
  const cudaStream_t stream = current_stream();
  const ImageSet set = random_images(2, 3, 4, 5, 31);
  const std::vector<float> out =
      run_augment(set, {PlanRow{1, 2, 2, 1, 0, 0}, PlanRow{0, 2, 2, 0, 0, 0}}, 2, 0, ImageNormalisation{}, stream);
  for (std::int64_t c = 0; c < 3; ++c) {
    for (std::int64_t y = 0; y < 4; ++y) {
      for (std::int64_t x = 0; x < 5; ++x) {
        const auto i = static_cast<std::size_t>((c * 4 + y) * 5 + x);
        EXPECT_EQ(out[i], static_cast<float>(set.at(1, c, y, 4 - x)) / 255.0f) << "flipped, c y x " << c << y << x;
        EXPECT_EQ(out[60 + i], static_cast<float>(set.at(0, c, y, x)) / 255.0f) << "identity, c y x " << c << y << x;
      }
    }
  }
}

// Cutout squares at the corners and the centre, of sides 1 to the whole image, with flips
// and shifts: zero in the normalised output, in output coordinates, the rest untouched.
TEST(ImageAugment, CutoutZeroesTheSquareAfterNormalisation) {
  const cudaStream_t stream = current_stream();
  const ImageNormalisation normalisation = test_normalisation();
  const ImageSet set = random_images(4, 3, 6, 7, 55);
  for (const int cutout : {1, 2, 3, 6}) {
    SCOPED_TRACE("cutout " + std::to_string(cutout));
    std::vector<PlanRow> plan;
    for (std::int32_t corner_y = 0; corner_y <= 6 - cutout; corner_y += std::max(1, 6 - cutout)) {
      for (std::int32_t corner_x = 0; corner_x <= 7 - cutout; corner_x += std::max(1, (7 - cutout) / 2)) {
        plan.push_back(PlanRow{corner_x % 4, corner_y % 3, (corner_x + 1) % 3, corner_x % 2, corner_y, corner_x});
      }
    }
    const std::vector<float> out = run_augment(set, plan, 1, cutout, normalisation, stream);
    EXPECT_TRUE(all_close(out, reference_augment(set, plan, 1, cutout, normalisation), kNormaliseTolerance));
    // The zeros: exactly cutout^2 per channel of each image (random pixels are never exactly
    // the mean, since 255 mean is not an integer).
    const std::size_t per_image = 3 * 6 * 7;
    for (std::size_t b = 0; b < plan.size(); ++b) {
      const auto zeros = std::count(out.begin() + static_cast<std::ptrdiff_t>(b * per_image),
                                    out.begin() + static_cast<std::ptrdiff_t>((b + 1) * per_image), 0.0f);
      EXPECT_EQ(zeros, 3 * cutout * cutout) << "image " << b;
    }
  }
}

// A plan row out of range makes that image NaN and leaves the others right.
TEST(ImageAugment, OutOfRangePlanRowsGiveNaNImages) {
  const cudaStream_t stream = current_stream();
  const ImageSet set = random_images(2, 1, 3, 3, 77);
  const std::vector<PlanRow> plan = {PlanRow{0, 1, 1, 0, 0, 0}, PlanRow{2, 1, 1, 0, 0, 0},  PlanRow{-1, 1, 1, 0, 0, 0},
                                     PlanRow{1, 3, 1, 0, 0, 0}, PlanRow{1, 1, -1, 0, 0, 0}, PlanRow{1, 0, 2, 1, 0, 0}};
  const std::vector<float> out = run_augment(set, plan, 1, 0, ImageNormalisation{}, stream);
  const std::vector<double> expected = reference_augment(set, plan, 1, 0, ImageNormalisation{});
  EXPECT_TRUE(all_close(out, expected, kNormaliseTolerance));
  for (std::size_t i = 9; i < 45; ++i) EXPECT_TRUE(std::isnan(out[i])) << i;
}

TEST(ImageAugmentPlan, MatchesTheHostFormula) {
  const cudaStream_t stream = current_stream();
  const std::vector<std::int32_t> ids = {0, 5, 49999, 17, 17, 123456789, 3};
  struct Case {
    Size2d size;
    ImageAugmentParams params;
  };
  const std::vector<Case> cases = {
      {{32, 32}, {.pad = 2, .cutout = 0, .flip = ImageFlip::alternating, .seed = 1, .epoch = 0}},
      {{32, 32}, {.pad = 2, .cutout = 12, .flip = ImageFlip::alternating, .seed = 1, .epoch = 7}},
      {{32, 32}, {.pad = 4, .cutout = 8, .flip = ImageFlip::random, .seed = 0xfedcba9876543210ULL, .epoch = 3}},
      {{5, 7}, {.pad = 0, .cutout = 5, .flip = ImageFlip::none, .seed = 9, .epoch = (1 << 30) - 1}},
      {{5, 7}, {.pad = 3, .cutout = 1, .flip = ImageFlip::random, .seed = 9, .epoch = 2, .staged = true}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("pad " + std::to_string(c.params.pad) + ", cutout " + std::to_string(c.params.cutout) + ", epoch " +
                 std::to_string(c.params.epoch));
    const std::vector<PlanRow> rows = run_plan(ids, c.size, c.params, stream);
    for (std::size_t b = 0; b < ids.size(); ++b) {
      EXPECT_EQ(rows[b], reference_plan_row(ids[b], static_cast<std::int64_t>(b), c.size, c.params)) << "row " << b;
    }
  }
}

// Same seed and epoch: the same row for an image whatever its batch and position; another
// seed or epoch: other rows. Shifts and corners cover their whole ranges about uniformly.
TEST(ImageAugmentPlan, IsAFunctionOfSeedEpochAndImageOnly) {
  const cudaStream_t stream = current_stream();
  const ImageAugmentParams params{.pad = 2, .cutout = 4, .flip = ImageFlip::random, .seed = 42, .epoch = 5};
  const std::vector<PlanRow> all = run_plan(iota_ids(2000), {32, 32}, params, stream);
  const std::vector<PlanRow> some = run_plan({1999, 4, 1000}, {32, 32}, params, stream);
  EXPECT_EQ(some[0], all[1999]);
  EXPECT_EQ(some[1], all[4]);
  EXPECT_EQ(some[2], all[1000]);
  EXPECT_EQ(run_plan(iota_ids(2000), {32, 32}, params, stream), all);

  for (const ImageAugmentParams& other :
       {ImageAugmentParams{.pad = 2, .cutout = 4, .flip = ImageFlip::random, .seed = 43, .epoch = 5},
        ImageAugmentParams{.pad = 2, .cutout = 4, .flip = ImageFlip::random, .seed = 42, .epoch = 6}}) {
    const std::vector<PlanRow> rows = run_plan(iota_ids(2000), {32, 32}, other, stream);
    int same = 0;
    for (std::size_t b = 0; b < rows.size(); ++b) same += rows[b] == all[b] ? 1 : 0;
    EXPECT_LT(same, 20) << "seed " << other.seed << ", epoch " << other.epoch;
  }

  std::map<int, int> shifts, corners, flips;
  for (const PlanRow& row : all) {
    ++shifts[row[kImagePlanShiftY]];
    ++shifts[row[kImagePlanShiftX]];
    ++corners[row[kImagePlanCutoutY]];
    ++flips[row[kImagePlanFlip]];
  }
  ASSERT_EQ(shifts.size(), 5u);
  EXPECT_EQ(shifts.begin()->first, 0);
  for (const auto& [shift, count] : shifts) EXPECT_NEAR(count, 800, 120) << "shift " << shift;
  ASSERT_EQ(corners.size(), 29u);  // 0..28 = 32 - 4
  EXPECT_EQ(corners.rbegin()->first, 28);
  ASSERT_EQ(flips.size(), 2u);
  EXPECT_NEAR(flips[1], 1000, 120);
}

// airbench's alternating flip: epoch 0 as random's epoch 0, odd epochs its mirror, even
// epochs the same again; random flips afresh every epoch.
TEST(ImageAugmentPlan, AlternatingFlipMirrorsEpochZeroInOddEpochs) {
  const cudaStream_t stream = current_stream();
  const std::vector<std::int32_t> ids = iota_ids(500, 1000);
  auto flips = [&](ImageFlip flip, std::int64_t epoch) {
    std::vector<std::int32_t> result;
    for (const PlanRow& row : run_plan(ids, {32, 32}, {.pad = 2, .flip = flip, .seed = 8, .epoch = epoch}, stream)) {
      result.push_back(row[kImagePlanFlip]);
    }
    return result;
  };
  const std::vector<std::int32_t> epoch0 = flips(ImageFlip::alternating, 0);
  EXPECT_EQ(epoch0, flips(ImageFlip::random, 0));
  const auto flipped = std::count(epoch0.begin(), epoch0.end(), 1);
  EXPECT_GT(flipped, 200);
  EXPECT_LT(flipped, 300);
  for (const std::int64_t epoch : {1, 2, 3, 10, 11}) {
    const std::vector<std::int32_t> flags = flips(ImageFlip::alternating, epoch);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      EXPECT_EQ(flags[i], epoch0[i] ^ static_cast<std::int32_t>(epoch & 1)) << "epoch " << epoch << ", image " << i;
    }
  }
  const std::vector<std::int32_t> random1 = flips(ImageFlip::random, 1);
  const auto agree = std::inner_product(random1.begin(), random1.end(), epoch0.begin(), 0, std::plus<>(),
                                        [](std::int32_t a, std::int32_t b) { return a == b ? 1 : 0; });
  EXPECT_GT(agree, 200);  // independent of epoch 0: about half agree
  EXPECT_LT(agree, 300);
  for (const std::int32_t flag : flips(ImageFlip::none, 3)) EXPECT_EQ(flag, 0);
}

// A batch staged in order (plan source b) equals the gather from the whole set.
// A batch written straight in f16 or bf16, channels-last or not, has the bits of the f32
// contiguous batch cast and converted afterwards (kernels::cast): each value rounded once,
// the same element at the same place. Shifts, flips, cutout and a NaN row; and image_normalise.
TEST(ImageAugment, EveryDtypeAndLayoutIsTheF32BatchCastAndConverted) {
  const cudaStream_t stream = current_stream();
  const ImageNormalisation normalisation = test_normalisation();
  const ImageSet set = random_images(4, 3, 5, 7, 61);
  const Tensor images = device_tensor(set.pixels, set.shape(), stream);
  const std::vector<PlanRow> rows = {PlanRow{3, 0, 2, 1, 1, 2}, PlanRow{0, 2, 1, 0, 0, 0}, PlanRow{5, 1, 1, 0, 0, 0},
                                     PlanRow{2, 1, 0, 1, 3, 4}, PlanRow{1, 2, 2, 0, 2, 1}};
  const Tensor plan = plan_tensor(rows, stream);
  const ImageAugmentParams params{.pad = 1, .cutout = 2};
  const Shape batch{5, 3, 5, 7};
  Tensor augmented_f32 = poisoned_tensor(batch, stream);
  image_augment_normalise(images, plan, augmented_f32, params, normalisation, stream);
  Tensor normalised_f32 = poisoned_tensor(Shape{3, 3, 5, 7}, stream);
  image_normalise(images, 1, normalised_f32, normalisation, stream);
  const auto bits = [&](const Tensor& t) {
    return testing::bit_patterns(testing::storage_values(t.contiguous(stream), stream));
  };
  for (const DType dtype : {DType::f32, DType::f16, DType::bf16}) {
    for (const MemoryFormat format : {MemoryFormat::contiguous, MemoryFormat::channels_last}) {
      SCOPED_TRACE(std::string(dtype_name(dtype)) + ", " + std::string(memory_format_name(format)));
      Tensor augmented = testing::poisoned_storage(batch, dtype, stream).to_memory_format(format, stream);
      image_augment_normalise(images, plan, augmented, params, normalisation, stream);
      EXPECT_EQ(augmented.memory_format(), format);
      EXPECT_EQ(bits(augmented), bits(cast(augmented_f32, dtype, format, stream)));
      Tensor normalised = testing::poisoned_storage(Shape{3, 3, 5, 7}, dtype, stream).to_memory_format(format, stream);
      image_normalise(images, 1, normalised, normalisation, stream);
      EXPECT_EQ(bits(normalised), bits(cast(normalised_f32, dtype, format, stream)));
    }
  }
}

TEST(ImageAugmentPlan, StagedBatchEqualsTheGather) {
  const cudaStream_t stream = current_stream();
  const ImageSet set = random_images(9, 3, 8, 8, 91);
  const std::vector<std::int32_t> ids = {7, 2, 2, 8, 0};
  ImageAugmentParams params{.pad = 2, .cutout = 3, .flip = ImageFlip::alternating, .seed = 5, .epoch = 1};
  ImageSet staged{5, 3, 8, 8, {}};
  for (const std::int32_t id : ids) {
    const auto first = set.pixels.begin() + id * 3 * 64;
    staged.pixels.insert(staged.pixels.end(), first, first + 3 * 64);
  }
  const Tensor id_tensor = device_tensor(ids, Shape{5}, stream);
  const ImageNormalisation normalisation = test_normalisation();
  std::vector<std::vector<float>> results;
  for (const bool stage : {false, true}) {
    params.staged = stage;
    const ImageSet& source = stage ? staged : set;
    Tensor plan = Tensor::empty(Shape{5, kImagePlanColumns}, DType::i32, stream);
    image_augment_plan(id_tensor, plan, {8, 8}, params, stream);
    Tensor out = poisoned_tensor(Shape{5, 3, 8, 8}, stream);
    image_augment_normalise(device_tensor(source.pixels, source.shape(), stream), plan, out, params, normalisation,
                            stream);
    results.push_back(out.to_vector<float>(stream));
  }
  EXPECT_EQ(testing::bit_patterns(results[0]), testing::bit_patterns(results[1]));
}

// The whole augmentation, plan and images, is bit-identical under every simulated thread
// order (and on reruns on a GPU).
TEST(ImageAugment, DeterministicAcrossSchedules) {
  const cudaStream_t stream = current_stream();
  const ImageSet set = random_images(20, 3, 9, 9, 12);
  const Tensor images = device_tensor(set.pixels, set.shape(), stream);
  const Tensor ids = device_tensor(iota_ids(20), Shape{20}, stream);
  const ImageAugmentParams params{.pad = 3, .cutout = 4, .flip = ImageFlip::alternating, .seed = 77, .epoch = 3};
  const std::vector<std::vector<std::uint32_t>> runs =
      testing::run_with_schedule_seeds<std::vector<std::uint32_t>>([&] {
        Tensor plan = Tensor::empty(Shape{20, kImagePlanColumns}, DType::i32, stream);
        image_augment_plan(ids, plan, {9, 9}, params, stream);
        Tensor out = poisoned_tensor(Shape{20, 3, 9, 9}, stream);
        image_augment_normalise(images, plan, out, params, test_normalisation(), stream);
        return testing::bit_patterns(out.to_vector<float>(stream));
      });
  for (std::size_t i = 1; i < runs.size(); ++i) EXPECT_EQ(runs[i], runs[0]) << "schedule " << i;
}

TEST(ImageAugment, RejectsBadArguments) {
  const cudaStream_t stream = current_stream();
  const Tensor images = Tensor::zeros(Shape{2, 3, 4, 4}, DType::u8, stream);
  const Tensor plan = Tensor::zeros(Shape{2, kImagePlanColumns}, DType::i32, stream);
  Tensor out = Tensor::zeros(Shape{2, 3, 4, 4}, DType::f32, stream);
  auto augment = [&](const Tensor& set, const Tensor& rows, Tensor& result, const ImageAugmentParams& params) {
    return invalid_argument_message([&] { image_augment_normalise(set, rows, result, params, {}, stream); });
  };
  EXPECT_NE(augment(images, plan, out, {.pad = 4}).find("pad 4 must be in [0, min(H, W))"), std::string::npos);
  EXPECT_NE(augment(images, plan, out, {.cutout = 5}).find("cutout 5"), std::string::npos);
  EXPECT_NE(
      augment(Tensor::zeros(Shape{2, 3, 4, 4}, DType::f32, stream), plan, out, {}).find("images must have dtype u8"),
      std::string::npos);
  EXPECT_NE(augment(Tensor::zeros(Shape{2, 5, 4, 4}, DType::u8, stream), plan, out, {}).find("1 to 4 channels"),
            std::string::npos);
  EXPECT_NE(
      augment(images, Tensor::zeros(Shape{2, 5}, DType::i32, stream), out, {}).find("plan must have shape (B, 6)"),
      std::string::npos);
  Tensor wrong_out = Tensor::zeros(Shape{3, 3, 4, 4}, DType::f32, stream);
  EXPECT_NE(augment(images, plan, wrong_out, {}).find("out must have shape (2, 3, 4, 4)"), std::string::npos);
  EXPECT_NE(invalid_argument_message([&] {
              image_augment_normalise(images, plan, out, {}, {.mean = {0, 0, 0, 0}, .stddev = {1, 0, 1, 1}}, stream);
            }).find("channel 1 needs a finite mean and a finite non-zero stddev"),
            std::string::npos);
  EXPECT_NE(invalid_argument_message([&] { image_normalise(images, 1, out, {}, stream); }).find("images [1, 3)"),
            std::string::npos);

  const Tensor ids = Tensor::zeros(Shape{2}, DType::i32, stream);
  Tensor rows = Tensor::zeros(Shape{2, kImagePlanColumns}, DType::i32, stream);
  auto plan_message = [&](const Tensor& id_tensor, const ImageAugmentParams& params) {
    return invalid_argument_message([&] { image_augment_plan(id_tensor, rows, {4, 4}, params, stream); });
  };
  EXPECT_NE(plan_message(ids, {.epoch = -1}).find("epoch -1"), std::string::npos);
  EXPECT_NE(plan_message(ids, {.epoch = std::int64_t{1} << 30}).find("epoch"), std::string::npos);
  EXPECT_NE(plan_message(Tensor::zeros(Shape{3}, DType::i32, stream), {}).find("plan must have shape (3, 6)"),
            std::string::npos);
  EXPECT_NE(plan_message(Tensor::zeros(Shape{2}, DType::i64, stream), {}).find("image_ids must have dtype i32"),
            std::string::npos);
}

}  // namespace
}  // namespace strata::kernels
