// The classification ops of the functional API (strata/layers/functional.h): argmax over
// the last dimension and the count of equal entries, each one kernel (strata/kernels/argmax.h)
// in an op named after it, with no autograd node: their results are integers.
#include <string>

#include "core/check.h"
#include "strata/core/op.h"
#include "strata/core/stream.h"
#include "strata/kernels/argmax.h"
#include "strata/layers/functional.h"

namespace strata::F {

Tensor argmax(const Tensor& x) {
  STRATA_CHECK(x.defined() && x.dim() >= 1, "F::argmax: x {} must have at least one dimension",
               x.defined() ? x.shape().to_string() : std::string("(undefined)"));
  const auto dims = x.shape().dims();
  Tensor indices = Tensor::empty(Shape(dims.first(dims.size() - 1)), DType::i64, current_stream());
  graph::run_op("argmax_last_dim", {x}, {indices}, [x = x.detach(), indices](cudaStream_t s) mutable {
    kernels::argmax_last_dim(x, indices, s);
  });
  return indices;
}

Tensor count_equal(const Tensor& a, const Tensor& b) {
  Tensor count = Tensor::empty(Shape{}, DType::i64, current_stream());
  graph::run_op("count_equal", {a, b}, {count}, [a = a.detach(), b = b.detach(), count](cudaStream_t s) mutable {
    kernels::count_equal(a, b, count, s);
  });
  return count;
}

}  // namespace strata::F
