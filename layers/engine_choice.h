// Where an op of the functional API runs when its engine may be cuDNN (strata/core/engine.h):
// one rule for every op, so that Engine::cudnn and Engine::automatic mean the same thing
// for conv2d, pooling, softmax, batch norm and the activations.
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/engine_internal.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata::F::detail {

// Whether the op runs on cuDNN. refusal() is asked only when the engine is not custom, and
// returns why cuDNN cannot run this op (empty when it can). Engine::cudnn insists: it throws
// NotSupported "<op> on Engine::cudnn (<shapes>): <refusal>", where shapes describes the
// operands; Engine::automatic falls back to the custom kernels and says so once per op and
// reason.
template <typename Refusal>
bool runs_on_cudnn(Engine engine, std::string_view op, std::string_view shapes, Refusal refusal) {
  if (engine == Engine::custom) return false;
  const std::string reason = refusal();
  if (reason.empty()) return true;
  if (engine == Engine::cudnn) throw NotSupported(fmt::format("{} on Engine::cudnn ({}): {}", op, shapes, reason));
  strata::detail::warn_once(
      fmt::format("{}: Engine::auto runs Strata's custom kernels where cuDNN cannot: {}", op, reason));
  return false;
}

}  // namespace strata::F::detail
