// One-time warnings of the engine switch (strata/core/engine.h): a fallback from cuDNN to
// the custom kernels, or a request for cuDNN that some ops cannot honour yet, is worth
// saying once, not on every op of every step.
#pragma once

#include <string>

namespace strata::detail {

// Logs message with log_warning() the first time this process sees it; returns whether it
// logged.
bool warn_once(const std::string& message) noexcept;

// Says once that ops without a cuDNN path run the custom kernels (when the default engine
// becomes cudnn or auto). Names only ops that have none for good reason, and points to
// docs/engines.md for the list, so that it stays true as ops gain cuDNN paths.
void warn_custom_only_ops() noexcept;

// For tests of the warnings: forgets which ones were logged.
void forget_warnings_for_testing() noexcept;

}  // namespace strata::detail
