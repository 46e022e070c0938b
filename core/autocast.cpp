// This thread's autocast dtype (strata/core/autocast.h).
#include "strata/core/autocast.h"

#include "core/check.h"
#include "core/format.h"

namespace strata {
namespace {

thread_local std::optional<DType> current_autocast_dtype;

}  // namespace

std::optional<DType> autocast_dtype() noexcept { return current_autocast_dtype; }

AutocastGuard::AutocastGuard(std::optional<DType> dtype) : previous_(current_autocast_dtype) {
  STRATA_CHECK(!dtype || *dtype == DType::bf16 || *dtype == DType::f16,
               "AutocastGuard: autocast runs ops in bf16 or f16, not {} (pass std::nullopt to switch it off)", *dtype);
  current_autocast_dtype = dtype;
}

AutocastGuard::~AutocastGuard() { current_autocast_dtype = previous_; }

}  // namespace strata
