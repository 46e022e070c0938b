// airbench94's whitening layer, computed from data: the 2x2 patches of the first 5,000
// normalised training images, their 12x12 second-moment matrix (airbench does not subtract
// the mean), its eigenvectors sorted by eigenvalue, largest first, each divided by
// sqrt(eigenvalue + eps); the 12 filters and their negations are the frozen weight
// (24, 3, 2, 2) of the first convolution. The matrix is summed on the device (a
// convolution with one-hot filters gives the patches; the convolution's filter gradient,
// with the patches as dL/dy, gives their products), in fp32 over chunks of images whose
// sums are added on the host in double; the 12x12 eigenproblem is solved on the host in
// double by cyclic Jacobi rotations. patch_second_moments is the same sum on the host in
// double (0.3 s for 5,000 images on one core): the reference the device sum is tested against.
//
// Sign convention: an eigenvector is defined up to its sign; here the component of largest
// magnitude is positive (the first such on a tie). airbench takes whatever sign
// torch.linalg.eigh returns. The sign cannot change what the network computes beyond a
// permutation of its first 24 channels, since each filter appears with both signs.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include <cuda_runtime_api.h>

#include <strata/core/tensor.h>

#include "device_images.h"

namespace cifar10 {

struct WhiteningOptions {
  int patch_size = 2;         // patches of patch_size x patch_size pixels, all channels
  double eps = 5e-4;          // added to each eigenvalue before the square root
  std::int64_t images = 5000;  // the first this many training images (all if fewer)
};

// The eigenvalues (descending) and unit eigenvectors (row i belongs to value i) of a
// symmetric matrix (size, size), row-major, in double.
struct SymmetricEigen {
  std::vector<double> values;   // (size)
  std::vector<double> vectors;  // (size, size)
};

// The second-moment matrix (D, D), D = channels * patch * patch, of every patch x patch
// window (stride 1, no padding) of images (count, channels, height, width): the mean over
// windows of p p^T, p flattened channel-major as a convolution weight is (c, i, j).
// Throws std::invalid_argument when the sizes do not fit the data or no window fits.
std::vector<double> patch_second_moments(std::span<const float> images, std::int64_t count, int channels,
                                         int height, int width, int patch);

// The same from normalised f32 images (N, C, H, W) on the device, summed per chunk of
// chunk_images images in fp32 (the convolution kernels' deterministic reductions), the
// chunks added in double on the host. Waits for stream.
std::vector<double> device_patch_second_moments(const strata::Tensor& images, int patch, cudaStream_t stream,
                                                std::int64_t chunk_images = 500);

// Cyclic Jacobi: rotations until the off-diagonal part is below 1e-14 of the matrix's norm,
// then sorted by value, largest first, and signed by the convention above. Throws
// std::invalid_argument unless matrix holds size * size values and is symmetric, and
// std::runtime_error when 100 sweeps do not converge (a matrix with NaN).
SymmetricEigen symmetric_eigen(std::span<const double> matrix, int size);

// The whitening weight (2D, channels, patch, patch) as a flat vector: filter k < D is
// eigenvector k / sqrt(value k + eps), filter D + k its negation.
std::vector<float> whitening_filters(const std::vector<double>& second_moments, int channels, int patch,
                                     double eps);

// The whole computation from the training images on the device: the weight
// (2 * 3 * p * p, 3, p, p) as an f32 device tensor on stream. Waits for stream (the images
// are read back to the host).
strata::Tensor whitening_weight(const DeviceImages& train, const Normalisation& normalisation,
                                const WhiteningOptions& options, cudaStream_t stream);

}  // namespace cifar10
