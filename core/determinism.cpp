// The determinism switch (strata/core/determinism.h). The environment is read lazily, on the
// first use, so that a malformed STRATA_DETERMINISTIC is an exception a program can catch and
// report, not a crash during static initialisation.
#include "strata/core/determinism.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <fmt/format.h>

#include "strata/core/errors.h"

namespace strata {
namespace {

constexpr const char* kEnvironmentVariable = "STRATA_DETERMINISTIC";

enum class Mode : std::uint8_t { off, on, invalid_environment };

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  return std::ranges::equal(a, b, [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  });
}

struct Setting {
  std::atomic<Mode> mode{Mode::off};
  std::string environment_error;  // written before mode is first read, never after

  Setting() {
    const char* text = std::getenv(kEnvironmentVariable);
    if (text == nullptr || *text == '\0') return;
    const std::string_view value(text);
    if (value == "1" || equals_ignoring_case(value, "true")) {
      mode.store(Mode::on);
    } else if (value != "0" && !equals_ignoring_case(value, "false")) {
      environment_error = fmt::format(
          "{}='{}' is not a valid setting: use 1 or true to make every op bit-reproducible, 0 or false (the "
          "default) to let ops choose, or call strata::set_deterministic() before the first op",
          kEnvironmentVariable, value);
      mode.store(Mode::invalid_environment);
    }
  }
};

Setting& setting() {
  static Setting instance;  // initialised on first use, thread-safely
  return instance;
}

}  // namespace

bool is_deterministic() {
  Setting& current = setting();
  const Mode mode = current.mode.load(std::memory_order_relaxed);
  if (mode == Mode::invalid_environment) throw InvalidArgument(current.environment_error);
  return mode == Mode::on;
}

void set_deterministic(bool enabled) noexcept {
  setting().mode.store(enabled ? Mode::on : Mode::off, std::memory_order_relaxed);
}

}  // namespace strata
