// Element-wise cases: GELU and ReLU forward and backward, the residual add forward, in each
// storage dtype. The custom side calls the launchers (strata/kernels/activations.h,
// elementwise.h); the activations' cuDNN side comes from add_cudnn_unary_cases through F::.
#include <string>
#include <vector>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

constexpr const char* kNoCudnnAdd = "Strata's add has no cuDNN engine";

}  // namespace

void add_gelu_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                    int input_copies) {
  const std::string shape = "x " + x_shape.to_string();
  for (const DType storage : kStorageDtypes) {
    const double x_bytes = tensor_bytes(x_shape, strata::element_size(storage));
    cases.push_back(bytes_case(set, "gelu", "forward", shape, storage, 2 * x_bytes,
                               [x_shape, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
                                 Tensor y = Tensor::empty(x_shape, storage, stream);
                                 return [x, y](int run, cudaStream_t s) mutable {
                                   kernels::gelu_forward(x[copy_of(run, x.size())], y, {}, s);
                                 };
                               }));
    cases.push_back(bytes_case(set, "gelu", "backward", shape, storage, 3 * x_bytes,
                               [x_shape, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
                                 const std::vector<Tensor> dL_dy =
                                     random_copies(x_shape, input_copies, 2, stream, storage);
                                 Tensor dL_dx = Tensor::empty(x_shape, storage, stream);
                                 return [x, dL_dy, dL_dx](int run, cudaStream_t s) mutable {
                                   const std::size_t k = copy_of(run, x.size());
                                   kernels::gelu_backward(dL_dy[k], x[k], dL_dx, {}, s);
                                 };
                               }));
    add_cudnn_unary_cases(cases,
                          {.set = set, .op = "gelu", .shape = shape, .x = x_shape, .dtype = storage,
                           .forward_bytes = 2 * x_bytes, .backward_bytes = 3 * x_bytes,
                           .run_on_cudnn = [](const Tensor& x) {
                             return strata::F::gelu(x, strata::F::GeluApproximation::none, strata::Engine::cudnn);
                           }},
                          input_copies);
  }
}

void add_relu_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                    int input_copies) {
  const std::string shape = "x " + x_shape.to_string();
  for (const DType storage : kStorageDtypes) {
    const double x_bytes = tensor_bytes(x_shape, strata::element_size(storage));
    cases.push_back(bytes_case(set, "relu", "forward", shape, storage, 2 * x_bytes,
                               [x_shape, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
                                 Tensor y = Tensor::empty(x_shape, storage, stream);
                                 return [x, y](int run, cudaStream_t s) mutable {
                                   kernels::relu_forward(x[copy_of(run, x.size())], y, {}, s);
                                 };
                               }));
    // From the saved output, as F::relu's backward: dL_dy and y read, dL_dx written.
    cases.push_back(bytes_case(set, "relu", "backward", shape, storage, 3 * x_bytes,
                               [x_shape, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
                                 const std::vector<Tensor> dL_dy =
                                     random_copies(x_shape, input_copies, 2, stream, storage);
                                 std::vector<Tensor> y;
                                 for (const Tensor& copy : x) y.push_back(kernels::relu_forward(copy, {}, stream));
                                 Tensor dL_dx = Tensor::empty(x_shape, storage, stream);
                                 return [y, dL_dy, dL_dx](int run, cudaStream_t s) mutable {
                                   const std::size_t k = copy_of(run, y.size());
                                   kernels::relu_backward(dL_dy[k], y[k], dL_dx, {}, s);
                                 };
                               }));
    add_cudnn_unary_cases(cases,
                          {.set = set, .op = "relu", .shape = shape, .x = x_shape, .dtype = storage,
                           .forward_bytes = 2 * x_bytes, .backward_bytes = 3 * x_bytes,
                           .run_on_cudnn = [](const Tensor& x) { return strata::F::relu(x, strata::Engine::cudnn); }},
                          input_copies);
  }
}

void add_add_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                   int input_copies) {
  for (const DType storage : kStorageDtypes) {
    // a and b read, y written.
    cases.push_back(bytes_case(set, "add", "forward", "a, b " + x_shape.to_string(), storage,
                               3 * tensor_bytes(x_shape, strata::element_size(storage)),
                               [x_shape, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> a = random_copies(x_shape, input_copies, 1, stream, storage);
                                 const std::vector<Tensor> b = random_copies(x_shape, input_copies, 2, stream, storage);
                                 Tensor y = Tensor::empty(x_shape, storage, stream);
                                 return [a, b, y](int run, cudaStream_t s) mutable {
                                   const std::size_t k = copy_of(run, a.size());
                                   kernels::add_forward(a[k], b[k], y, {}, s);
                                 };
                               },
                               kNoCudnnAdd));
  }
}

}  // namespace op_benchmark
