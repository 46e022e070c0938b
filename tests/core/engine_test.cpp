// The engine switch (strata/core/engine.h): names, the process default and its guard, the
// environment variable STRATA_ENGINE read at first use (in fresh processes: death tests of
// the threadsafe style re-run the test binary), the one-time warnings, and what the
// simulator build says about cuDNN.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "core/engine_internal.h"
#include "strata/core/config.h"
#include "strata/core/engine.h"
#include "strata/core/errors.h"

namespace strata {
namespace {

using ::testing::HasSubstr;

TEST(EngineNames, RoundTripAndIgnoreCase) {
  for (const Engine engine : {Engine::custom, Engine::cudnn, Engine::automatic}) {
    EXPECT_EQ(engine_from_name(engine_name(engine)), engine);
  }
  EXPECT_EQ(engine_name(Engine::automatic), "auto");
  EXPECT_EQ(engine_from_name("CuDNN"), Engine::cudnn);
  EXPECT_EQ(engine_from_name("AUTO"), Engine::automatic);
  EXPECT_EQ(engine_from_name("automatic"), std::nullopt);
  EXPECT_EQ(engine_from_name(""), std::nullopt);
  EXPECT_EQ(engine_from_name("cudnn "), std::nullopt);
}

TEST(EngineDefault, SetAndGuardRestore) {
  const Engine original = default_engine();
  set_default_engine(Engine::cudnn);
  EXPECT_EQ(default_engine(), Engine::cudnn);
  {
    const EngineGuard guard(Engine::automatic);
    EXPECT_EQ(default_engine(), Engine::automatic);
    {
      const EngineGuard inner(Engine::custom);
      EXPECT_EQ(default_engine(), Engine::custom);
    }
    EXPECT_EQ(default_engine(), Engine::automatic);
  }
  EXPECT_EQ(default_engine(), Engine::cudnn);
  set_default_engine(original);
}

TEST(EngineDefault, LayersOwnChoiceWinsOverTheDefault) {
  const EngineGuard guard(Engine::cudnn);
  EXPECT_EQ(resolve_engine(std::nullopt), Engine::cudnn);
  EXPECT_EQ(resolve_engine(Engine::custom), Engine::custom);
  EXPECT_EQ(resolve_engine(Engine::automatic), Engine::automatic);
}

// Runs in a fresh process: sets STRATA_ENGINE, reads the default, and exits with the engine's
// value (or 100 after printing the InvalidArgument's message).
[[noreturn]] void exit_with_default_engine(const char* value) {
  ::setenv("STRATA_ENGINE", value, 1);
  try {
    std::exit(static_cast<int>(default_engine()));
  } catch (const InvalidArgument& error) {
    std::fprintf(stderr, "%s\n", error.what());
    std::exit(100);
  }
}

class EngineEnvironment : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(EngineEnvironment, ValidValuesSetTheDefault) {
  EXPECT_EXIT(exit_with_default_engine(""), ::testing::ExitedWithCode(static_cast<int>(Engine::custom)), "");
  EXPECT_EXIT(exit_with_default_engine("custom"), ::testing::ExitedWithCode(static_cast<int>(Engine::custom)), "");
  // Asking for cuDNN says once that ops without a cuDNN path run the custom kernels.
  EXPECT_EXIT(exit_with_default_engine("cudnn"), ::testing::ExitedWithCode(static_cast<int>(Engine::cudnn)),
              "ops without a cuDNN path run Strata's custom kernels");
  EXPECT_EXIT(exit_with_default_engine("Auto"), ::testing::ExitedWithCode(static_cast<int>(Engine::automatic)), "");
}

TEST_F(EngineEnvironment, MalformedValueIsAnErrorAtFirstUseNamingIt) {
  EXPECT_EXIT(exit_with_default_engine("fastest"), ::testing::ExitedWithCode(100),
              "STRATA_ENGINE='fastest' is not a valid setting: use custom");
}

TEST(EngineWarnings, EachMessageIsLoggedOnce) {
  detail::forget_warnings_for_testing();
  ::testing::internal::CaptureStderr();
  EXPECT_TRUE(detail::warn_once("engine test: first"));
  EXPECT_FALSE(detail::warn_once("engine test: first"));
  EXPECT_TRUE(detail::warn_once("engine test: second"));
  const std::string output = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(output, "strata: warning: engine test: first\nstrata: warning: engine test: second\n");
}

TEST(EngineWarnings, AskingForCudnnSaysOnceWhichOpsHaveNoCudnnPath) {
  const EngineGuard original(Engine::custom);
  detail::forget_warnings_for_testing();
  ::testing::internal::CaptureStderr();
  set_default_engine(Engine::cudnn);
  set_default_engine(Engine::automatic);
  set_default_engine(Engine::custom);
  const std::string output = ::testing::internal::GetCapturedStderr();
  EXPECT_THAT(output, HasSubstr("ops without a cuDNN path run Strata's custom kernels"));
  EXPECT_EQ(output.find("without a cuDNN path"), output.rfind("without a cuDNN path")) << output;
}

TEST(CudnnAvailability, ReasonIsEmptyExactlyWhenAvailable) {
  EXPECT_EQ(cudnn_available(), cudnn_unavailable_reason().empty());
  if (STRATA_BACKEND_SIM) {
    EXPECT_FALSE(cudnn_available());
    EXPECT_THAT(std::string(cudnn_unavailable_reason()), HasSubstr("not available in the simulator build"));
  }
}

}  // namespace
}  // namespace strata
