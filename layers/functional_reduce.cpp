// The classification ops of the functional API (strata/layers/functional.h): argmax over
// the last dimension and the count of equal entries, each one kernel (strata/kernels/argmax.h)
// in an op named after it, with no autograd node: their results are integers. Both read
// NCHW order: a channels-last input is converted with F::contiguous first.
#include <string>

#include "core/check.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/argmax.h"
#include "strata/layers/functional.h"

namespace strata::F {

Tensor argmax(const Tensor& x_given) {
  STRATA_CHECK(x_given.defined() && x_given.dim() >= 1, "F::argmax: x {} must have at least one dimension",
               x_given.defined() ? x_given.shape().to_string() : std::string("(undefined)"));
  const Tensor x = contiguous(x_given);
  const auto dims = x.shape().dims();
  Tensor indices = Tensor::empty(Shape(dims.first(dims.size() - 1)), DType::i64, current_stream());
  graph::run_op("argmax_last_dim", {x}, {indices}, [x = x.detach(), indices](cudaStream_t s) mutable {
    kernels::argmax_last_dim(x, indices, s);
  });
  return indices;
}

Tensor count_equal(const Tensor& a_given, const Tensor& b_given) {
  const Tensor a = contiguous(a_given);
  const Tensor b = contiguous(b_given);
  Tensor count = Tensor::empty(Shape{}, DType::i64, current_stream());
  graph::run_op("count_equal", {a, b}, {count}, [a = a.detach(), b = b.detach(), count](cudaStream_t s) mutable {
    kernels::count_equal(a, b, count, s);
  });
  return count;
}

}  // namespace strata::F
