// CPU references of batch_norm2d, in double, written from PyTorch's definitions: training
// (batch statistics, biased variance for normalising, unbiased for the running variance),
// eval (running statistics) and the training backward.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace strata::reference {

struct BatchNormSizes {
  std::int64_t batch;
  std::int64_t channels;
  std::int64_t height;
  std::int64_t width;
};

struct BatchNormTrainingResult {
  std::vector<double> y;             // (N, C, H, W)
  std::vector<double> mean;          // (C)
  std::vector<double> invstd;        // (C): 1 / sqrt(biased variance + eps)
  std::vector<double> running_mean;  // (C), updated (empty when none was given)
  std::vector<double> running_var;   // (C), updated
};

// weight, bias (C) or empty (weight 1, bias 0). running_mean/var (C) or empty.
BatchNormTrainingResult batch_norm2d_training(std::span<const double> x, std::span<const double> weight,
                                              std::span<const double> bias, std::span<const double> running_mean,
                                              std::span<const double> running_var, const BatchNormSizes& sizes,
                                              double eps, double momentum);

std::vector<double> batch_norm2d_eval(std::span<const double> x, std::span<const double> weight,
                                      std::span<const double> bias, std::span<const double> running_mean,
                                      std::span<const double> running_var, const BatchNormSizes& sizes, double eps);

struct BatchNormGradientsResult {
  std::vector<double> dL_dx;       // (N, C, H, W)
  std::vector<double> dL_dweight;  // (C)
  std::vector<double> dL_dbias;    // (C)
};

// The backward of batch_norm2d_training (weight empty: 1).
BatchNormGradientsResult batch_norm2d_backward(std::span<const double> dL_dy, std::span<const double> x,
                                               std::span<const double> weight, const BatchNormSizes& sizes,
                                               double eps);

}  // namespace strata::reference
