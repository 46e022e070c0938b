// Shape: construction limits, element counts, strides, flattening and printing (host only).
#include <sstream>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "strata/core/errors.h"
#include "strata/core/shape.h"

namespace strata {
namespace {

using ::testing::HasSubstr;

TEST(Shape, CountsElementsAndPrintsLikeATuple) {
  const Shape image{8, 3, 32, 32};
  EXPECT_EQ(image.rank(), 4);
  EXPECT_EQ(image.numel(), 8 * 3 * 32 * 32);
  EXPECT_EQ(image[1], 3);
  EXPECT_EQ(image.to_string(), "(8, 3, 32, 32)");
  std::ostringstream os;
  os << image;
  EXPECT_EQ(os.str(), "(8, 3, 32, 32)");

  EXPECT_EQ(Shape{}.rank(), 0);
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_EQ(Shape{}.to_string(), "()");
  EXPECT_EQ(Shape{5}.to_string(), "(5)");
  EXPECT_EQ((Shape{4, 0, 2}.numel()), 0);
}

TEST(Shape, AllowsFiveDimensionsAndNoMore) {
  EXPECT_EQ((Shape{1, 2, 3, 4, 5}.numel()), 120);
  EXPECT_THROW((Shape{1, 2, 3, 4, 5, 6}), InvalidArgument);
  EXPECT_THAT([] { Shape({2, -3}); }, ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("(2, -3)")));
  EXPECT_THAT([] { Shape({1LL << 40, 1LL << 40}); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("more elements than a 64-bit count can hold")));
  EXPECT_EQ((Shape{0, 1LL << 40}.numel()), 0);
  EXPECT_THROW((Shape{0, 1LL << 62, 1LL << 62}), InvalidArgument);
}

TEST(Shape, EqualityComparesRankAndSizes) {
  EXPECT_EQ((Shape{2, 3}), (Shape{2, 3}));
  EXPECT_NE((Shape{2, 3}), (Shape{3, 2}));
  EXPECT_NE((Shape{2, 3}), (Shape{2, 3, 1}));
  EXPECT_NE(Shape{}, Shape{0});
}

TEST(Shape, RowMajorStrides) {
  const Shape shape{2, 3, 4, 5};
  EXPECT_EQ(shape.stride(0), 60);
  EXPECT_EQ(shape.stride(1), 20);
  EXPECT_EQ(shape.stride(2), 5);
  EXPECT_EQ(shape.stride(3), 1);
  EXPECT_THAT([&] { shape.stride(4); },
              ::testing::ThrowsMessage<InvalidArgument>(HasSubstr("dimension 4 out of range for shape (2, 3, 4, 5)")));
}

TEST(Shape, FlattenMergesTrailingDimensions) {
  const Shape shape{8, 3, 32, 32};
  EXPECT_EQ(shape.flatten(0), (Shape{24576}));
  EXPECT_EQ(shape.flatten(1), (Shape{8, 3072}));
  EXPECT_EQ(shape.flatten(3), shape);
  EXPECT_EQ(Shape{}.flatten(0), (Shape{1}));
  EXPECT_THROW(shape.flatten(4), InvalidArgument);
  EXPECT_THROW(shape.flatten(-1), InvalidArgument);
}

TEST(Shape, WithDimReplacesOneSize) {
  EXPECT_EQ((Shape{8, 3}.with_dim(0, 2)), (Shape{2, 3}));
  EXPECT_THROW((Shape{8, 3}.with_dim(2, 1)), InvalidArgument);
  EXPECT_THROW((Shape{8, 3}.with_dim(0, -1)), InvalidArgument);
}

TEST(Shape, IndexOutOfRangeThrows) {
  const Shape shape{2, 3};
  EXPECT_THROW(shape[2], InvalidArgument);
  EXPECT_THROW(shape[-1], InvalidArgument);
}

}  // namespace
}  // namespace strata
