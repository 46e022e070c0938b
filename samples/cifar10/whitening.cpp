#include "whitening.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

#include <strata/core/autograd.h>
#include <strata/core/shape.h>
#include <strata/core/stream.h>
#include <strata/kernels/conv2d.h>
#include <strata/layers/functional.h>

namespace cifar10 {

std::vector<double> patch_second_moments(std::span<const float> images, std::int64_t count, int channels,
                                         int height, int width, int patch) {
  if (count < 1 || channels < 1 || patch < 1 || height < patch || width < patch) {
    throw std::invalid_argument("patch_second_moments: no " + std::to_string(patch) + "x" + std::to_string(patch) +
                                " window fits images (" + std::to_string(count) + ", " + std::to_string(channels) +
                                ", " + std::to_string(height) + ", " + std::to_string(width) + ")");
  }
  const std::size_t image_size = static_cast<std::size_t>(channels) * height * width;
  if (images.size() != image_size * static_cast<std::size_t>(count)) {
    throw std::invalid_argument("patch_second_moments: " + std::to_string(images.size()) + " values for images (" +
                                std::to_string(count) + ", " + std::to_string(channels) + ", " +
                                std::to_string(height) + ", " + std::to_string(width) + ")");
  }
  const int dims = channels * patch * patch;
  const int rows = height - patch + 1, cols = width - patch + 1;
  const std::size_t windows = static_cast<std::size_t>(rows) * cols;
  // Per image, component d of every window as one contiguous row, so that each of the
  // D(D+1)/2 sums is a dot product of two rows (which the compiler vectorises).
  std::vector<double> components(static_cast<std::size_t>(dims) * windows);  // (D, rows * cols)
  std::vector<double> sums(static_cast<std::size_t>(dims) * dims, 0.0);      // (D, D)
  for (std::int64_t n = 0; n < count; ++n) {
    const float* image = images.data() + static_cast<std::size_t>(n) * image_size;  // (C, H, W)
    for (int c = 0; c < channels; ++c) {
      for (int i = 0; i < patch; ++i) {
        for (int j = 0; j < patch; ++j) {
          double* row = components.data() + static_cast<std::size_t>((c * patch + i) * patch + j) * windows;
          for (int y = 0; y < rows; ++y) {
            const float* source = image + (static_cast<std::size_t>(c) * height + y + i) * width + j;
            for (int x = 0; x < cols; ++x) row[static_cast<std::size_t>(y) * cols + x] = source[x];
          }
        }
      }
    }
    for (int a = 0; a < dims; ++a) {
      const double* row_a = components.data() + static_cast<std::size_t>(a) * windows;
      for (int b = a; b < dims; ++b) {
        const double* row_b = components.data() + static_cast<std::size_t>(b) * windows;
        double dot = 0.0;
        for (std::size_t w = 0; w < windows; ++w) dot += row_a[w] * row_b[w];
        sums[static_cast<std::size_t>(a) * dims + b] += dot;
      }
    }
  }
  const double total = static_cast<double>(windows) * static_cast<double>(count);
  for (int a = 0; a < dims; ++a) {
    for (int b = a; b < dims; ++b) {
      const double mean = sums[static_cast<std::size_t>(a) * dims + b] / total;
      sums[static_cast<std::size_t>(a) * dims + b] = mean;
      sums[static_cast<std::size_t>(b) * dims + a] = mean;
    }
  }
  return sums;
}

std::vector<double> device_patch_second_moments(const strata::Tensor& images, int patch, cudaStream_t stream,
                                                std::int64_t chunk_images) {
  using strata::Tensor;
  const std::int64_t count = images.size(0), channels = images.size(1), height = images.size(2);
  const std::int64_t width = images.size(3);
  if (count < 1 || patch < 1 || height < patch || width < patch || chunk_images < 1) {
    throw std::invalid_argument("device_patch_second_moments: no " + std::to_string(patch) + "x" +
                                std::to_string(patch) + " window fits images " + images.shape().to_string());
  }
  const std::int64_t dims = channels * patch * patch;
  const strata::Shape filter_shape{dims, channels, patch, patch};
  // Filter d picks component d = (c, i, j) of each window: output channel d of the
  // convolution holds that component of every window, exactly.
  std::vector<float> one_hot(static_cast<std::size_t>(dims * dims), 0.0f);
  for (std::int64_t d = 0; d < dims; ++d) one_hot[static_cast<std::size_t>(d * dims + d)] = 1.0f;
  strata::StreamGuard on_stream(stream, strata::current_device());
  strata::autograd::NoGradGuard no_grad;
  const Tensor filters = Tensor::from_vector(one_hot, filter_shape).to_device(stream);  // (D, C, p, p)
  const std::int64_t chunks = (count + chunk_images - 1) / chunk_images;
  Tensor sums = Tensor::empty({chunks, dims * dims}, strata::DType::f32, stream);  // (chunks, D*D)
  for (std::int64_t chunk = 0; chunk < chunks; ++chunk) {
    const std::int64_t first = chunk * chunk_images;
    const Tensor x = images.narrow(0, first, std::min(chunk_images, count - first));  // (n, C, H, W)
    const Tensor windows = strata::F::conv2d(x, filters, Tensor());  // (n, D, H-p+1, W-p+1)
    // dL/dweight[a, (c, i, j)] = the sum over images and windows of windows[a] * x[c, y + i, x + j].
    Tensor chunk_sums = sums.narrow(0, chunk, 1).reshape(filter_shape);
    strata::kernels::conv2d_backward_filter(x, windows, chunk_sums, {}, stream);
  }
  const std::vector<float> partial = sums.to_vector<float>(stream);
  const auto d = static_cast<std::size_t>(dims);
  std::vector<double> moments(d * d, 0.0);
  for (std::size_t chunk = 0; chunk < static_cast<std::size_t>(chunks); ++chunk) {
    for (std::size_t e = 0; e < d * d; ++e) moments[e] += partial[chunk * d * d + e];
  }
  const double total = static_cast<double>(count) * static_cast<double>((height - patch + 1) * (width - patch + 1));
  for (std::size_t a = 0; a < d; ++a) {  // the mean, made exactly symmetric
    for (std::size_t b = a; b < d; ++b) {
      const double mean = 0.5 * (moments[a * d + b] + moments[b * d + a]) / total;
      moments[a * d + b] = mean;
      moments[b * d + a] = mean;
    }
  }
  return moments;
}

namespace {

// The sum of squares of the off-diagonal elements of a (n, n).
double off_diagonal_squares(const std::vector<double>& a, int n) {
  double sum = 0.0;
  for (int p = 0; p < n; ++p) {
    for (int q = 0; q < n; ++q) {
      if (p != q) sum += a[static_cast<std::size_t>(p) * n + q] * a[static_cast<std::size_t>(p) * n + q];
    }
  }
  return sum;
}

}  // namespace

SymmetricEigen symmetric_eigen(std::span<const double> matrix, int size) {
  const auto n = static_cast<std::size_t>(size);
  if (size < 1 || matrix.size() != n * n) {
    throw std::invalid_argument("symmetric_eigen: " + std::to_string(matrix.size()) + " values for a (" +
                                std::to_string(size) + ", " + std::to_string(size) + ") matrix");
  }
  double norm_squared = 0.0;
  for (std::size_t p = 0; p < n; ++p) {
    for (std::size_t q = 0; q < n; ++q) {
      const double upper = matrix[p * n + q], lower = matrix[q * n + p];
      if (std::abs(upper - lower) > 1e-12 * (std::abs(upper) + std::abs(lower))) {
        throw std::invalid_argument("symmetric_eigen: the matrix is not symmetric: element (" + std::to_string(p) +
                                    ", " + std::to_string(q) + ") differs from its transpose");
      }
      norm_squared += upper * upper;
    }
  }
  std::vector<double> a(matrix.begin(), matrix.end());
  std::vector<double> v(n * n, 0.0);  // columns: the eigenvectors, accumulated rotations
  for (std::size_t p = 0; p < n; ++p) v[p * n + p] = 1.0;
  const double tolerance = 1e-28 * norm_squared;  // (1e-14 of the norm)^2
  int sweep = 0;
  for (; sweep < 100 && off_diagonal_squares(a, size) > tolerance; ++sweep) {
    for (std::size_t p = 0; p + 1 < n; ++p) {
      for (std::size_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0.0) continue;
        // The rotation that zeroes a(p, q) (Golub & Van Loan, the symmetric Schur decomposition).
        const double tau = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
        const double t = (tau >= 0 ? 1.0 : -1.0) / (std::abs(tau) + std::sqrt(1.0 + tau * tau));
        const double c = 1.0 / std::sqrt(1.0 + t * t), s = t * c;
        for (std::size_t k = 0; k < n; ++k) {  // a = a J: columns p and q
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (std::size_t k = 0; k < n; ++k) {  // a = J^T a: rows p and q
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (std::size_t k = 0; k < n; ++k) {  // v = v J
          const double vkp = v[k * n + p], vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  if (!(off_diagonal_squares(a, size) <= tolerance)) {
    throw std::runtime_error("symmetric_eigen: no convergence after " + std::to_string(sweep) +
                             " Jacobi sweeps (does the matrix hold NaN or infinity?)");
  }
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t i, std::size_t j) { return a[i * n + i] > a[j * n + j]; });
  SymmetricEigen result{std::vector<double>(n), std::vector<double>(n * n)};
  for (std::size_t r = 0; r < n; ++r) {
    const std::size_t column = order[r];
    result.values[r] = a[column * n + column];
    std::size_t largest = 0;  // the component of largest magnitude, the first on a tie
    for (std::size_t k = 1; k < n; ++k) {
      if (std::abs(v[k * n + column]) > std::abs(v[largest * n + column])) largest = k;
    }
    const double sign = v[largest * n + column] < 0 ? -1.0 : 1.0;
    for (std::size_t k = 0; k < n; ++k) result.vectors[r * n + k] = sign * v[k * n + column];
  }
  return result;
}

std::vector<float> whitening_filters(const std::vector<double>& second_moments, int channels, int patch,
                                     double eps) {
  const int dims = channels * patch * patch;
  const SymmetricEigen eigen = symmetric_eigen(second_moments, dims);
  const auto d = static_cast<std::size_t>(dims);
  std::vector<float> filters(2 * d * d);  // (2D, C, p, p)
  for (std::size_t k = 0; k < d; ++k) {
    // A negative eigenvalue (rounding, for a singular matrix) larger than eps would give NaN:
    // say so rather than train on it.
    if (!(eigen.values[k] + eps > 0.0)) {
      throw std::runtime_error("whitening_filters: eigenvalue " + std::to_string(k) + " is " +
                               std::to_string(eigen.values[k]) + ", not above -eps = " + std::to_string(-eps));
    }
    const double scale = 1.0 / std::sqrt(eigen.values[k] + eps);
    for (std::size_t j = 0; j < d; ++j) {
      const double value = eigen.vectors[k * d + j] * scale;
      filters[k * d + j] = static_cast<float>(value);
      filters[(d + k) * d + j] = static_cast<float>(-value);
    }
  }
  return filters;
}

strata::Tensor whitening_weight(const DeviceImages& train, const Normalisation& normalisation,
                                const WhiteningOptions& options, cudaStream_t stream) {
  const std::int64_t count = std::min(options.images, train.count());
  const strata::Tensor images = train.normalised(0, count, normalisation, stream);  // (count, 3, 32, 32)
  const int channels = static_cast<int>(images.size(1));
  const std::vector<double> moments = device_patch_second_moments(images, options.patch_size, stream);
  const std::vector<float> filters = whitening_filters(moments, channels, options.patch_size, options.eps);
  const std::int64_t p = options.patch_size, dims = channels * p * p;
  return strata::Tensor::from_vector(filters, {2 * dims, channels, p, p}).to_device(stream);
}

}  // namespace cifar10
