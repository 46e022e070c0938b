// The demo: Strata's main job until the CIFAR-10 sample takes its place (samples/main-job.sh
// runs it). It prints the device, then sends a little work through a stream and checks
// what comes back: a fill, a random fill and a matrix product. Public API only.
#include <cmath>
#include <cstdio>
#include <exception>
#include <numeric>
#include <vector>

#include <strata/strata.h>

namespace {

// Fails the demo with a message naming what was wrong.
void expect(bool condition, const char* what) {
  if (!condition) throw strata::Error(std::string("demo check failed: ") + what);
}

void run() {
  std::printf("Strata %s, %s flavour\n", STRATA_VERSION_STRING, STRATA_BACKEND_SIM ? "simulator" : "cuda");
  if (strata::device_count() == 0) throw strata::Error("no GPU found: use the simulator flavour (STRATA_BACKEND=sim)");
  std::printf("%s\n", strata::describe(strata::device_properties()).c_str());

  strata::Stream stream;

  // A fill on the device, copied back.
  strata::Tensor x = strata::Tensor::empty({2, 3, 4, 4}, strata::DType::f32, stream);  // (N, C, H, W)
  x.fill(0.5, stream);
  const std::vector<float> filled = x.to_vector<float>(stream);
  const double sum = std::accumulate(filled.begin(), filled.end(), 0.0);
  std::printf("fill:    %s, sum %.1f\n", x.to_string().c_str(), sum);
  expect(sum == 0.5 * static_cast<double>(x.numel()), "sum of a tensor filled with 0.5");

  // Uniform random values in [0, 1): their mean is near 0.5.
  strata::fill_uniform(x, {.low = 0.0f, .high = 1.0f, .seed = 42}, stream);
  const std::vector<float> uniform = x.to_vector<float>(stream);
  const double mean = std::accumulate(uniform.begin(), uniform.end(), 0.0) / static_cast<double>(uniform.size());
  std::printf("uniform: mean %.3f over %zu values\n", mean, uniform.size());
  expect(mean > 0.35 && mean < 0.65, "mean of 96 uniform values in [0, 1)");

  // C (2, 2) = A (2, 3) * B (3, 2), small integers so the result is exact.
  const std::vector<float> a_values = {1, 2, 3, 4, 5, 6};
  const std::vector<float> b_values = {7, 8, 9, 10, 11, 12};
  strata::Tensor a = strata::Tensor::from_vector(a_values, {2, 3}).to_device(stream);  // (m, k)
  strata::Tensor b = strata::Tensor::from_vector(b_values, {3, 2}).to_device(stream);  // (k, n)
  strata::Tensor c = strata::Tensor::empty({2, 2}, strata::DType::f32, stream);        // (m, n)
  strata::gemm({.m = 2, .n = 2, .k = 3,
                .a = a.data<float>(), .lda = 3,
                .b = b.data<float>(), .ldb = 2,
                .c = c.data<float>(), .ldc = 2},
               stream);
  const std::vector<float> product = c.to_vector<float>(stream);
  std::printf("gemm:    [[%g, %g], [%g, %g]]\n", product[0], product[1], product[2], product[3]);
  expect(product == std::vector<float>{58, 64, 139, 154}, "2x3 by 3x2 matrix product");

  std::printf("demo: all checks passed\n");
}

}  // namespace

int main() {
  try {
    run();
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "strata_demo: %s\n", error.what());
    return 1;
  }
}
