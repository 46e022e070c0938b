// Pooling cases: max, average and adaptive average pooling, forward and backward, in each
// storage dtype. The custom side calls the launchers (strata/kernels/pool2d.h,
// adaptive_pool2d.h); the cuDNN side comes from add_cudnn_unary_cases through F::. Average
// pooling's compulsory traffic, counted alike for both engines: x read and y written forward,
// dL_dy read and dL_dx written backward (an average's gradient needs neither x nor y, though
// cuDNN's routine is handed them).
#include <string>
#include <vector>

#include "benchmark_cases.h"

namespace op_benchmark {

namespace {

std::string window_text(const Shape& x, const kernels::Pool2dParams& p) {
  std::string text = "x " + x.to_string() + ", kernel " + std::to_string(p.kernel.h);
  if (p.effective_stride() != p.kernel) text += ", stride " + std::to_string(p.effective_stride().h);
  if (p.padding != kernels::Size2d{0, 0}) text += ", padding " + std::to_string(p.padding.h);
  return text;
}

}  // namespace

void add_max_pool2d_cases(std::vector<BenchmarkCase>& cases, const PoolSpec& spec, int input_copies) {
  const Shape y_shape = kernels::max_pool2d_output_shape(spec.x, spec.params);
  const std::string shape = window_text(spec.x, spec.params);
  // The argmax the training forward writes for the backward: i32, as F::max_pool2d stores it.
  const double argmax_bytes = tensor_bytes(y_shape, sizeof(std::int32_t));
  for (const DType storage : kStorageDtypes) {
    const std::size_t element = strata::element_size(storage);
    const double x_bytes = tensor_bytes(spec.x, element), y_bytes = tensor_bytes(y_shape, element);
    cases.push_back(bytes_case(spec.set, "max_pool2d", "forward", shape, storage, x_bytes + y_bytes + argmax_bytes,
                               [spec, y_shape, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> x = random_copies(spec.x, input_copies, 1, stream, storage);
                                 Tensor y = Tensor::empty(y_shape, storage, stream);
                                 Tensor argmax = Tensor::empty(y_shape, DType::i32, stream);
                                 return [x, y, argmax, params = spec.params](int run, cudaStream_t s) mutable {
                                   kernels::max_pool2d_forward(x[copy_of(run, x.size())], y, argmax, params, s);
                                 };
                               }));
    cases.push_back(bytes_case(
        spec.set, "max_pool2d", "backward", shape, storage, y_bytes + argmax_bytes + x_bytes,
        [spec, y_shape, storage, input_copies](cudaStream_t stream) -> RunFunction {
          const std::vector<Tensor> x = random_copies(spec.x, input_copies, 1, stream, storage);
          const std::vector<Tensor> dL_dy = random_copies(y_shape, input_copies, 2, stream, storage);
          std::vector<Tensor> argmax;
          for (const Tensor& copy : x) {
            Tensor y = Tensor::empty(y_shape, storage, stream);
            argmax.push_back(Tensor::empty(y_shape, DType::i32, stream));
            kernels::max_pool2d_forward(copy, y, argmax.back(), spec.params, stream);
          }
          Tensor dL_dx = Tensor::empty(spec.x, storage, stream);
          return [dL_dy, argmax, dL_dx, params = spec.params](int run, cudaStream_t s) mutable {
            const std::size_t k = copy_of(run, dL_dy.size());
            kernels::max_pool2d_backward(dL_dy[k], argmax[k], dL_dx, params, s);
          };
        }));
    // cuDNN keeps no argmax: its backward reads x and y besides dL_dy.
    add_cudnn_unary_cases(cases,
                          {.set = spec.set, .op = "max_pool2d", .shape = shape, .x = spec.x, .dtype = storage,
                           .forward_bytes = x_bytes + y_bytes, .backward_bytes = 2 * y_bytes + 2 * x_bytes,
                           .run_on_cudnn = [params = spec.params](const Tensor& x) {
                             return strata::F::max_pool2d(x, params, strata::Engine::cudnn);
                           }},
                          input_copies);
  }
}

void add_avg_pool2d_cases(std::vector<BenchmarkCase>& cases, const PoolSpec& spec, int input_copies) {
  const kernels::AvgPool2dParams params{.window = spec.params};
  const Shape y_shape = kernels::avg_pool2d_output_shape(spec.x, params);
  const std::string shape = window_text(spec.x, spec.params);
  for (const DType storage : kStorageDtypes) {
    const std::size_t element = strata::element_size(storage);
    const double bytes = tensor_bytes(spec.x, element) + tensor_bytes(y_shape, element);
    cases.push_back(bytes_case(spec.set, "avg_pool2d", "forward", shape, storage, bytes,
                               [spec, y_shape, params, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> x = random_copies(spec.x, input_copies, 1, stream, storage);
                                 Tensor y = Tensor::empty(y_shape, storage, stream);
                                 return [x, y, params](int run, cudaStream_t s) mutable {
                                   kernels::avg_pool2d_forward(x[copy_of(run, x.size())], y, params, s);
                                 };
                               }));
    cases.push_back(bytes_case(spec.set, "avg_pool2d", "backward", shape, storage, bytes,
                               [spec, y_shape, params, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> dL_dy =
                                     random_copies(y_shape, input_copies, 2, stream, storage);
                                 Tensor dL_dx = Tensor::empty(spec.x, storage, stream);
                                 return [dL_dy, dL_dx, params](int run, cudaStream_t s) mutable {
                                   kernels::avg_pool2d_backward(dL_dy[copy_of(run, dL_dy.size())], dL_dx, params, s);
                                 };
                               }));
    add_cudnn_unary_cases(cases,
                          {.set = spec.set, .op = "avg_pool2d", .shape = shape, .x = spec.x, .dtype = storage,
                           .forward_bytes = bytes, .backward_bytes = bytes,
                           .run_on_cudnn = [params](const Tensor& x) {
                             return strata::F::avg_pool2d(x, params, strata::Engine::cudnn);
                           }},
                          input_copies);
  }
}

void add_adaptive_avg_pool2d_cases(std::vector<BenchmarkCase>& cases, const std::string& set, const Shape& x_shape,
                                   kernels::Size2d output_size, int input_copies) {
  const kernels::AdaptivePool2dParams params{.output_size = output_size};
  const Shape y_shape = kernels::adaptive_avg_pool2d_output_shape(x_shape, params);
  const std::string shape =
      "x " + x_shape.to_string() + ", output " + std::to_string(output_size.h) + "x" + std::to_string(output_size.w);
  for (const DType storage : kStorageDtypes) {
    const std::size_t element = strata::element_size(storage);
    const double bytes = tensor_bytes(x_shape, element) + tensor_bytes(y_shape, element);
    cases.push_back(bytes_case(set, "adaptive_avg_pool2d", "forward", shape, storage, bytes,
                               [x_shape, y_shape, params, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> x = random_copies(x_shape, input_copies, 1, stream, storage);
                                 Tensor y = Tensor::empty(y_shape, storage, stream);
                                 return [x, y, params](int run, cudaStream_t s) mutable {
                                   kernels::adaptive_avg_pool2d_forward(x[copy_of(run, x.size())], y, params, s);
                                 };
                               }));
    cases.push_back(bytes_case(set, "adaptive_avg_pool2d", "backward", shape, storage, bytes,
                               [x_shape, y_shape, params, storage, input_copies](cudaStream_t stream) -> RunFunction {
                                 const std::vector<Tensor> dL_dy =
                                     random_copies(y_shape, input_copies, 2, stream, storage);
                                 Tensor dL_dx = Tensor::empty(x_shape, storage, stream);
                                 return [dL_dy, dL_dx, params](int run, cudaStream_t s) mutable {
                                   kernels::adaptive_avg_pool2d_backward(dL_dy[copy_of(run, dL_dy.size())], dL_dx,
                                                                         params, s);
                                 };
                               }));
    add_cudnn_unary_cases(cases,
                          {.set = set, .op = "adaptive_avg_pool2d", .shape = shape, .x = x_shape, .dtype = storage,
                           .forward_bytes = bytes, .backward_bytes = bytes,
                           .run_on_cudnn = [output_size](const Tensor& x) {
                             return strata::F::adaptive_avg_pool2d(x, output_size, strata::Engine::cudnn);
                           }},
                          input_copies);
  }
}

}  // namespace op_benchmark
