// The determinism contract (strata/core/determinism.h, docs/determinism.md):
//  - The switch: set, read, restored by DeterministicGuard, process-wide; the environment
//    variable STRATA_DETERMINISTIC parsed on first use, a malformed value reported as an
//    InvalidArgument naming it (checked in fresh processes of determinism_training.cpp).
//  - Under the switch, conv2d_backward_filter overrides a request for float atomics: bit-
//    identical to the fixed-order reduction under any schedule; without it the request is
//    honoured (the atomics' order shows in the last bits).
//  - End to end: training runs of the seed network with batch norm and dropout, in fresh
//    processes with 1 to 4 simulator threads and different block and thread orders, and a
//    run resumed from a checkpoint in another process, end with bit-identical weights.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kernels/conv2d_plan.h"
#include "strata/core/config.h"
#include "strata/core/determinism.h"
#include "strata/core/safetensors.h"
#include "strata/core/stream.h"
#include "strata/core/tensor.h"
#include "strata/kernels/conv2d.h"
#include "tests/kernels/device_values.h"
#include "tests/support/compare.h"
#include "tests/support/device_test.h"
#if STRATA_BACKEND_SIM
#include "core/sim/runtime.h"
#endif

namespace strata {
namespace {

using ::testing::HasSubstr;

// ---- The switch ---------------------------------------------------------------------------

TEST(DeterminismSwitch, SetAndGuardRestore) {
  const bool original = is_deterministic();
  {
    DeterministicGuard on(true);
    EXPECT_TRUE(is_deterministic());
    {
      DeterministicGuard off(false);
      EXPECT_FALSE(is_deterministic());
      set_deterministic(true);
      EXPECT_TRUE(is_deterministic());
    }
    EXPECT_TRUE(is_deterministic()) << "the inner guard restores what was set when it was made";
  }
  EXPECT_EQ(is_deterministic(), original);
}

TEST(DeterminismSwitch, IsProcessWide) {
  // Stream workers and the graph executor's threads queue ops too: they must see the switch.
  DeterministicGuard on(true);
  bool seen_on = false;
  std::thread([&] { seen_on = is_deterministic(); }).join();
  EXPECT_TRUE(seen_on);
  set_deterministic(false);
  bool seen_off = true;
  std::thread([&] { seen_off = is_deterministic(); }).join();
  EXPECT_FALSE(seen_off);
}

// ---- Running determinism_training.cpp in fresh processes ------------------------------------

// One environment variable of a child process: a value, or nullopt to remove it (so the
// parent's environment, e.g. a CI job's STRATA_SIM_SEED, never leaks into a run).
using EnvironmentVariable = std::pair<std::string, std::optional<std::string>>;

struct ProgramResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

std::string shell_quoted(const std::string& text) {
  std::string quoted = "'";
  for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

ProgramResult run_training_program(const std::vector<EnvironmentVariable>& environment,
                                   const std::vector<std::string>& args) {
  // env takes its -u options before the assignments.
  std::string command = "env";
  for (const auto& [name, value] : environment) {
    if (!value) command += " -u " + shell_quoted(name);
  }
  for (const auto& [name, value] : environment) {
    if (value) command += " " + shell_quoted(name + "=" + *value);
  }
  command += " " + shell_quoted(STRATA_DETERMINISM_TRAINING);
  for (const std::string& arg : args) command += " " + shell_quoted(arg);
  command += " 2>&1";
  ProgramResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    result.output = "popen failed: " + std::string(std::strerror(errno));
    return result;
  }
  char buffer[4096];
  for (std::size_t read = 0; (read = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) result.output.append(buffer, read);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  return result;
}

// ---- The environment variable, read on first use ------------------------------------------

struct EnvironmentCase {
  std::optional<std::string> value;  // nullopt: unset
  std::string expected_output;       // the report line
};

TEST(DeterminismEnvironment, ValidValuesSetTheSwitch) {
  const std::vector<EnvironmentCase> cases = {
      {std::nullopt, "deterministic=off"}, {"", "deterministic=off"},     {"0", "deterministic=off"},
      {"false", "deterministic=off"},     {"FALSE", "deterministic=off"}, {"1", "deterministic=on"},
      {"true", "deterministic=on"},       {"True", "deterministic=on"},
  };
  for (const EnvironmentCase& test_case : cases) {
    SCOPED_TRACE("STRATA_DETERMINISTIC " + (test_case.value ? "'" + *test_case.value + "'" : std::string("unset")));
    const ProgramResult result = run_training_program({{"STRATA_DETERMINISTIC", test_case.value}}, {"report"});
    EXPECT_EQ(result.exit_code, 0) << result.output;
    EXPECT_EQ(result.output, test_case.expected_output + "\n");
  }
}

TEST(DeterminismEnvironment, MalformedValueIsAnErrorAtFirstUseNamingIt) {
  // The program starts (no crash during static initialisation) and its first call of
  // is_deterministic() throws InvalidArgument, which it prints.
  for (const std::string value : {"yes", "2", " 1", "on", "truee"}) {
    SCOPED_TRACE("STRATA_DETERMINISTIC '" + value + "'");
    const ProgramResult result = run_training_program({{"STRATA_DETERMINISTIC", value}}, {"report"});
    EXPECT_EQ(result.exit_code, 2) << result.output;
    EXPECT_THAT(result.output, HasSubstr("error: STRATA_DETERMINISTIC='" + value + "' is not a valid setting"));
    EXPECT_THAT(result.output, HasSubstr("use 1 or true"));
  }
}

// ---- conv2d_backward_filter under the switch ------------------------------------------------

using DeterminismKernelTest = testing::DeviceTest;

// x (2, 3, 16, 16) and dL_dy (2, 8, 16, 16) of a 3x3 convolution with padding 1: a filter
// reduction of N*P*Q = 512 steps, cut into several chunks.
struct FilterProblem {
  kernels::Conv2dParams params{.padding = {1, 1}};
  Shape weight_shape{8, 3, 3, 3};
  Tensor x;
  Tensor dL_dy;
};

FilterProblem make_filter_problem(cudaStream_t stream) {
  FilterProblem problem;
  problem.x = testing::device_tensor(testing::random_uniform(5101, 2 * 3 * 16 * 16), {2, 3, 16, 16}, stream);
  problem.dL_dy = testing::device_tensor(testing::random_uniform(5102, 2 * 8 * 16 * 16), {2, 8, 16, 16}, stream);
  return problem;
}

// dL_dweight with params.deterministic = request, under the simulator's block order of seed
// on one worker thread (so that the order of float atomics is the seed's, reproducibly); on
// a GPU, under whatever order the GPU runs the blocks in.
std::vector<float> backward_filter(const FilterProblem& problem, bool request, std::optional<std::uint64_t> seed,
                                   cudaStream_t stream) {
#if STRATA_BACKEND_SIM
  const std::optional<std::uint64_t> previous_seed = sim::schedule_seed();
  const int previous_threads = sim::worker_threads();
  sim::set_schedule_seed(seed);
  sim::set_worker_threads(1);
#else
  static_cast<void>(seed);
#endif
  kernels::Conv2dParams params = problem.params;
  params.deterministic = request;
  Tensor dL_dweight = testing::poisoned_tensor(problem.weight_shape, stream);  // (K, C, R, S)
  kernels::conv2d_backward_filter(problem.x, problem.dL_dy, dL_dweight, params, stream);
  std::vector<float> result = dL_dweight.to_vector<float>(stream);
#if STRATA_BACKEND_SIM
  sim::set_schedule_seed(previous_seed);
  sim::set_worker_threads(previous_threads);
#endif
  return result;
}

constexpr std::uint64_t kScheduleSeeds[] = {1, 7, 12345, 424242};

TEST_F(DeterminismKernelTest, SwitchOverridesARequestForAtomics) {
  const cudaStream_t stream = current_stream();
  ASSERT_GT(kernels::split_conv2d_reduction(2 * 16 * 16, /*output_blocks=*/1, kernels::kConv2dFewRowsTile.block_k)
                .splits,
            2);
  const FilterProblem problem = make_filter_problem(stream);
  const std::vector<float> fixed_order = backward_filter(problem, /*request=*/true, std::nullopt, stream);
  DeterministicGuard on(true);
  for (const std::uint64_t seed : kScheduleSeeds) {
    EXPECT_TRUE(testing::all_equal(backward_filter(problem, /*request=*/false, seed, stream), fixed_order))
        << "atomics requested under the switch, schedule seed " << seed;
    EXPECT_TRUE(testing::all_equal(backward_filter(problem, /*request=*/true, seed, stream), fixed_order))
        << "schedule seed " << seed;
  }
}

TEST_F(DeterminismKernelTest, WithoutTheSwitchARequestForAtomicsIsHonoured) {
  if (!STRATA_BACKEND_SIM) GTEST_SKIP() << "needs the simulator's reproducible block orders";
  const cudaStream_t stream = current_stream();
  const FilterProblem problem = make_filter_problem(stream);
  DeterministicGuard off(false);
  const std::vector<float> fixed_order = backward_filter(problem, /*request=*/true, std::nullopt, stream);
  // The atomics add the chunks' partial sums in the order the blocks finish: some order
  // other than the chunks' changes the last bits of some of the 216 sums. Each seed's order
  // is reproducible on one worker thread, so this does not flake.
  bool any_bits_differ = false;
  for (const std::uint64_t seed : kScheduleSeeds) {
    const std::vector<float> atomic = backward_filter(problem, /*request=*/false, seed, stream);
    EXPECT_TRUE(testing::all_close(atomic, testing::to_doubles(fixed_order), {.abs_tol = 1e-5, .rel_tol = 1e-5}))
        << "schedule seed " << seed;
    any_bits_differ = any_bits_differ || testing::bit_patterns(atomic) != testing::bit_patterns(fixed_order);
  }
  EXPECT_TRUE(any_bits_differ) << "float atomics in shuffled block orders gave the fixed-order bits every time: "
                                  "is the atomic variant still reachable without the switch?";
}

TEST_F(DeterminismKernelTest, MalformedEnvironmentFailsTheKernelsFirstCall) {
  // Shown in a fresh process: the training program's first backward-filter throws.
  const ProgramResult result = run_training_program(
      {{"STRATA_DETERMINISTIC", "maybe"}},
      {"train", "--steps", "1", "--out", (std::filesystem::temp_directory_path() / "unused.safetensors").string()});
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_THAT(result.output, HasSubstr("error: STRATA_DETERMINISTIC='maybe' is not a valid setting"));
}

// ---- Training runs end with bit-identical weights ---------------------------------------------

constexpr int kSteps = 4;

// A simulator configuration of one run: worker threads and block/thread order.
struct Schedule {
  int threads = 1;
  std::optional<std::uint64_t> seed;  // nullopt: in order
};

std::string describe(const Schedule& schedule) {
  return "STRATA_SIM_THREADS=" + std::to_string(schedule.threads) +
         " STRATA_SIM_SEED=" + (schedule.seed ? std::to_string(*schedule.seed) : std::string("unset"));
}

std::vector<EnvironmentVariable> run_environment(const Schedule& schedule) {
  return {{"STRATA_DETERMINISTIC", "1"},
          {"STRATA_SIM_THREADS", std::to_string(schedule.threads)},
          {"STRATA_SIM_SEED", schedule.seed ? std::optional(std::to_string(*schedule.seed)) : std::nullopt}};
}

// The "step k: loss x" lines of a run's output.
std::vector<std::string> loss_lines(const std::string& output) {
  std::vector<std::string> lines;
  std::istringstream stream(output);
  for (std::string line; std::getline(stream, line);) {
    if (line.rfind("step ", 0) == 0) lines.push_back(line);
  }
  return lines;
}

// Every tensor of two weight files bit for bit (the raw bytes: NaN payloads and signed
// zeros count), naming the first tensor and element that differ.
::testing::AssertionResult same_weights(const std::filesystem::path& actual_path,
                                        const std::filesystem::path& expected_path) {
  const SafetensorsFile actual = load_safetensors(actual_path);
  const SafetensorsFile expected = load_safetensors(expected_path);
  if (actual.tensors.size() != expected.tensors.size()) {
    return ::testing::AssertionFailure() << actual.tensors.size() << " tensors, expected " << expected.tensors.size();
  }
  for (std::size_t t = 0; t < expected.tensors.size(); ++t) {
    const auto& [name, expected_tensor] = expected.tensors[t];
    const Tensor& actual_tensor = actual.at(name);
    if (actual_tensor.shape() != expected_tensor.shape() || actual_tensor.dtype() != expected_tensor.dtype()) {
      return ::testing::AssertionFailure() << name << ": shape or dtype differs";
    }
    const auto* actual_bytes = static_cast<const unsigned char*>(actual_tensor.data_ptr());
    const auto* expected_bytes = static_cast<const unsigned char*>(expected_tensor.data_ptr());
    for (std::size_t byte = 0; byte < expected_tensor.nbytes(); ++byte) {
      if (actual_bytes[byte] != expected_bytes[byte]) {
        const std::size_t element_size = expected_tensor.nbytes() / static_cast<std::size_t>(expected_tensor.numel());
        return ::testing::AssertionFailure() << name << " differs first at element " << byte / element_size;
      }
    }
  }
  return ::testing::AssertionSuccess() << expected.tensors.size() << " tensors bit-identical";
}

class DeterministicTraining : public testing::DeviceTest {
 protected:
  void SetUp() override {
    testing::DeviceTest::SetUp();
    const ::testing::TestInfo* test = ::testing::UnitTest::GetInstance()->current_test_info();
    directory_ = std::filesystem::temp_directory_path() /
                 ("strata_determinism_" + std::to_string(getpid()) + "_" + test->name());
    std::filesystem::remove_all(directory_);
    std::filesystem::create_directories(directory_);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  // Trains kSteps steps under schedule (plus extra arguments) into directory_/name; the run's
  // loss lines, or a failure with its output.
  std::vector<std::string> train(const std::string& name, const Schedule& schedule,
                                 const std::vector<std::string>& extra_args = {}) {
    std::vector<std::string> args = {"train", "--steps", std::to_string(kSteps), "--out", weights(name).string()};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    const ProgramResult result = run_training_program(run_environment(schedule), args);
    EXPECT_EQ(result.exit_code, 0) << name << " (" << describe(schedule) << "):\n" << result.output;
    return loss_lines(result.output);
  }
  std::filesystem::path weights(const std::string& name) const { return directory_ / (name + ".safetensors"); }

  std::filesystem::path directory_;
};

TEST_F(DeterministicTraining, RunsAreBitIdenticalAcrossThreadCountsAndSchedules) {
  const Schedule baseline{.threads = 1, .seed = std::nullopt};
  const std::vector<std::string> baseline_losses = train("baseline", baseline);
  ASSERT_EQ(baseline_losses.size(), static_cast<std::size_t>(kSteps));
  for (const Schedule schedule : {Schedule{.threads = 2, .seed = 1}, Schedule{.threads = 4, .seed = 2},
                                  Schedule{.threads = 4, .seed = 987654321}}) {
    SCOPED_TRACE(describe(schedule));
    const std::string name = "threads" + std::to_string(schedule.threads) + "_seed" + std::to_string(*schedule.seed);
    EXPECT_EQ(train(name, schedule), baseline_losses);
    EXPECT_TRUE(same_weights(weights(name), weights("baseline")));
  }
}

TEST_F(DeterministicTraining, ResumedRunIsBitIdenticalToAnUninterruptedOne) {
  // The uninterrupted run saves a checkpoint after step 2 and carries on; a fresh process,
  // on a different schedule, resumes from it.
  const std::filesystem::path checkpoint = directory_ / "checkpoint";
  const std::vector<std::string> losses =
      train("uninterrupted", {.threads = 2, .seed = 31},
            {"--checkpoint-after", "2", "--checkpoint", checkpoint.string()});
  ASSERT_EQ(losses.size(), static_cast<std::size_t>(kSteps));
  const std::vector<std::string> resumed_losses =
      train("resumed", {.threads = 3, .seed = 5}, {"--resume", checkpoint.string()});
  EXPECT_EQ(resumed_losses, std::vector<std::string>(losses.begin() + 2, losses.end()));
  EXPECT_TRUE(same_weights(weights("resumed"), weights("uninterrupted")));
}

}  // namespace
}  // namespace strata
