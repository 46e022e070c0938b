// Sequential: layers applied in order, children named by index.
#include "strata/layers/module.h"

#include <string>

#include <fmt/format.h>

#include "core/check.h"

namespace strata::nn {

void Sequential::push_back(AnyModule layer) {
  layers_.push_back(register_module(std::to_string(layers_.size()), layer.get()));
}

UnaryModule& Sequential::operator[](std::size_t i) const {
  STRATA_CHECK(i < layers_.size(), "{}: no layer {} in a Sequential of {} layers", describe(), i, layers_.size());
  return *layers_[i];
}

const std::shared_ptr<UnaryModule>& Sequential::layer_ptr(std::size_t i) const {
  (void)(*this)[i];  // the range check
  return layers_[i];
}

void Sequential::throw_wrong_type(std::size_t i) const {
  detail::throw_invalid_argument(__FILE__, __LINE__,
                                 fmt::format("{}: layer {} ({}) is not of the type asked for", describe(), i,
                                             layers_[i]->type_name()));
}

Tensor Sequential::forward_impl(const Tensor& x) {
  Tensor y = x;
  for (const auto& layer : layers_) y = layer->forward(y);
  return y;
}

}  // namespace strata::nn
