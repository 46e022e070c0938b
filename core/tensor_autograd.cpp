// Tensor's autograd members, Tensor::add_, and the backward of views.
#include "core/autograd_meta.h"
#include "core/autograd_views.h"
#include "core/check.h"
#include "core/format.h"
#include "core/tensor_ops.h"
#include "strata/core/autograd.h"
#include "strata/core/op.h"

namespace strata {

namespace detail {

AutogradMeta& TensorAccess::ensure_meta(Tensor& tensor) {
  if (tensor.autograd_ == nullptr) {
    tensor.autograd_ = std::make_shared<AutogradMeta>();
    tensor.autograd_->shape = tensor.shape();
    tensor.autograd_->dtype = tensor.dtype();
    tensor.autograd_->memory_format = tensor.memory_format();
  }
  return *tensor.autograd_;
}

void record_reshape_history(const Tensor& base, Tensor& view) {
  if (!autograd::needs_grad({base})) return;
  autograd::record("ReshapeBackward", {base}, view,
                   [base_shape = base.shape()](autograd::Gradients dL_dview, cudaStream_t) {
                     return autograd::Gradients{dL_dview[0].reshape(base_shape)};
                   });
}

void record_narrow_history(const Tensor& base, Tensor& view, int dim, std::int64_t start) {
  if (!autograd::needs_grad({base})) return;
  autograd::record("NarrowBackward", {base}, view,
                   [base_shape = base.shape(), base_dtype = base.dtype(), dim, start](autograd::Gradients dL_dview,
                                                                                       cudaStream_t stream) {
                     Tensor dL_dbase = Tensor::zeros(base_shape, base_dtype, stream);
                     dL_dbase.narrow(dim, start, dL_dview[0].size(dim)).copy_from(dL_dview[0], stream);
                     return autograd::Gradients{dL_dbase};
                   });
}

}  // namespace detail

namespace {
const Tensor undefined_tensor;
const std::shared_ptr<autograd::Node> no_node;
}  // namespace

bool Tensor::requires_grad() const noexcept { return autograd_ != nullptr && autograd_->requires_grad; }

Tensor& Tensor::set_requires_grad(bool requires_grad) {
  check_defined("Tensor::set_requires_grad");
  STRATA_CHECK(is_leaf(),
               "Tensor::set_requires_grad: the tensor of shape {} was produced by {}; only leaves can be marked "
               "(use detach() for a leaf sharing its elements)",
               shape_, autograd_->grad_fn->name());
  if (requires_grad) {
    STRATA_CHECK(is_floating_point(dtype_),
                 "Tensor::set_requires_grad: only floating-point tensors (f32, f16, bf16) can require gradients, not "
                 "{} (shape {})", dtype_, shape_);
  }
  if (requires_grad || autograd_ != nullptr) detail::TensorAccess::ensure_meta(*this).requires_grad = requires_grad;
  return *this;
}

bool Tensor::is_leaf() const noexcept { return autograd_ == nullptr || autograd_->grad_fn == nullptr; }

const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const noexcept {
  return autograd_ != nullptr ? autograd_->grad_fn : no_node;
}

int Tensor::output_nr() const noexcept { return autograd_ != nullptr ? autograd_->output_nr : 0; }

const Tensor& Tensor::grad() const noexcept { return autograd_ != nullptr ? autograd_->grad : undefined_tensor; }

void Tensor::set_grad(Tensor grad) {
  check_defined("Tensor::set_grad");
  if (grad.defined()) {
    STRATA_CHECK(grad.shape() == shape_ && grad.dtype() == dtype_ && grad.memory_kind() == memory_kind_,
                 "Tensor::set_grad: a gradient of shape {}, dtype {}, {} memory for a tensor of shape {}, dtype {}, "
                 "{} memory",
                 grad.shape(), grad.dtype(), memory_kind_name(grad.memory_kind()), shape_, dtype_,
                 memory_kind_name(memory_kind_));
  } else if (autograd_ == nullptr) {
    return;
  }
  detail::TensorAccess::ensure_meta(*this).grad = std::move(grad).detach();
}

Tensor Tensor::detach() const {
  Tensor detached = *this;
  detached.autograd_ = nullptr;
  return detached;
}

void Tensor::backward(const Tensor& dL_dself, cudaStream_t stream, const autograd::BackwardOptions& options) const {
  autograd::backward(*this, dL_dself, stream, options);
}

void Tensor::backward(const Tensor& dL_dself) const { autograd::backward(*this, dL_dself, current_stream(), {}); }

void Tensor::backward() const { backward(Tensor()); }

Tensor& Tensor::add_(const Tensor& other, float alpha, cudaStream_t stream) {
  check_defined("Tensor::add_");
  STRATA_CHECK(other.defined(), "Tensor::add_: the other tensor is undefined");
  // f16 and bf16 too (computed in f32, rounded once), so that gradients of reduced-precision
  // activations accumulate in their own dtype.
  STRATA_CHECK(is_device() && other.is_device() && is_floating_point(dtype_) && other.dtype() == dtype_,
               "Tensor::add_: both tensors must be device tensors of one floating dtype (f32, f16 or bf16); got {} {} "
               "({} memory) += {} {} ({} memory){}",
               shape_, dtype_, memory_kind_name(memory_kind_), other.shape(), other.dtype(),
               memory_kind_name(other.memory_kind()),
               other.dtype() != dtype_ ? "; cast one with to_dtype first" : "");
  STRATA_CHECK(shape_ == other.shape(), "Tensor::add_: shapes {} and {} differ (no broadcasting)", shape_,
               other.shape());
  STRATA_CHECK(stream != nullptr, "Tensor::add_: no stream given; Strata never uses the default stream");
  if (other.memory_format() != memory_format_ && !layouts_coincide(shape_)) {
    return add_(other.to_memory_format(memory_format_, stream), alpha, stream);
  }
  const auto* begin = static_cast<const std::byte*>(memory_ptr());
  const auto* other_begin = static_cast<const std::byte*>(other.memory_ptr());
  const bool same = begin == other_begin;
  const bool overlap = begin < other_begin + other.nbytes() && other_begin < begin + nbytes();
  STRATA_CHECK(same || !overlap, "Tensor::add_: the tensors {} and {} overlap partially", shape_, other.shape());
  graph::run_op_on(stream, "add_", {*this, other}, {*this},
                   [target = detach(), addend = other.detach(), alpha](cudaStream_t s) mutable {
                     detail::launch_add(target.memory_ptr(), addend.memory_ptr(), target.memory_ptr(), target.dtype(),
                                        target.numel(), alpha, s);
                   });
  return *this;
}

}  // namespace strata
