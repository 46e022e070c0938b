// The operator benchmark: times every op Strata trains with, per direction, on Strata's
// own kernels and on cuDNN (and cuBLAS for linear), on airbench94's and ResNet-18's layer
// shapes and a few odd sizes; prints a table and writes the results as JSON.
//
//   strata_op_benchmark [--filter SUBSTRING] [--repeats N] [--quick] [--time-budget SECONDS] [--json FILE]
//
// Each case: warm-up runs, then N timed runs (median reported), each after an L2 flush, with
// CUDA events on one stream, inputs rotated among copies. Rates are compared with the device
// copy bandwidth and the cuBLAS fp32 and bf16 GEMM rates measured at the start of the same
// run. Ops run in f32 storage and in bf16 storage (autocast's; "-bf16io" engines). The
// simulator build always runs the quick sizes, and its times mean nothing. With a time
// budget, cases not started when it runs out are counted as skipped, so that a run on a
// borrowed GPU still reports what it measured instead of being killed. Public API only.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>
#include <vector>

#include <strata/strata.h>

#include "benchmark_cases.h"
#include "benchmark_peaks.h"
#include "benchmark_report.h"
#include "benchmark_timer.h"

namespace {

using namespace op_benchmark;

constexpr bool kSimulator = STRATA_BACKEND_SIM != 0;

struct Options {
  std::string filter;
  int repeats = 20;
  bool quick = false;
  double time_budget_s = 0;  // 0: none
  std::string json_path;
};

[[noreturn]] void usage(const char* problem) {
  std::fprintf(stderr,
               "strata_op_benchmark: %s\n"
               "usage: strata_op_benchmark [--filter SUBSTRING] [--repeats N (default 20)] [--quick]\n"
               "                           [--time-budget SECONDS] [--json FILE]\n"
               "  --filter   only the cases whose \"set op direction shape engine\" contains SUBSTRING\n"
               "  --repeats  timed runs per case, median reported (at least 1; 20 or more for real numbers)\n"
               "  --quick    tiny sizes: proves that every case runs (always so in the simulator build)\n"
               "  --time-budget  start no case after SECONDS (from the program's start; the first\n"
               "             case always runs); the rest are counted as skipped\n"
               "  --json     also write the results to FILE\n",
               problem);
  std::exit(2);
}

Options parse_options(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string argument = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage((argument + " needs a value").c_str());
      return argv[++i];
    };
    if (argument == "--filter") {
      options.filter = value();
    } else if (argument == "--repeats") {
      const std::string text = value();
      char* end = nullptr;
      const long repeats = std::strtol(text.c_str(), &end, 10);
      if (end == text.c_str() || *end != '\0' || repeats < 1 || repeats > 100000) {
        usage(("--repeats takes a whole number from 1 to 100000, not '" + text + "'").c_str());
      }
      options.repeats = static_cast<int>(repeats);
    } else if (argument == "--quick") {
      options.quick = true;
    } else if (argument == "--time-budget") {
      const std::string text = value();
      char* end = nullptr;
      const double seconds = std::strtod(text.c_str(), &end);
      if (end == text.c_str() || *end != '\0' || !(seconds > 0) || seconds > 86400) {
        usage(("--time-budget takes a number of seconds above 0 (at most 86400), not '" + text + "'").c_str());
      }
      options.time_budget_s = seconds;
    } else if (argument == "--json") {
      options.json_path = value();
    } else if (argument == "--help" || argument == "-h") {
      usage("times Strata's ops against cuDNN");
    } else {
      usage(("unknown argument '" + argument + "'").c_str());
    }
  }
  if (kSimulator) options.quick = true;
  return options;
}

// Times one case; a case its engine cannot run (NotSupported) becomes an n/a result, and so
// does a cuDNN case that cuDNN itself fails (CudnnError: a status such as NOT_SUPPORTED for a
// dtype this cuDNN version lacks), so that one such case does not lose the rest of a GPU run.
Result run_case(const BenchmarkCase& bench_case, const TimerOptions& timer, L2Flush& flush, cudaStream_t stream) {
  std::optional<Timing> timing;
  std::string unavailable;
  try {
    const RunFunction run = bench_case.prepare(stream);
    timing = time_runs(run, timer, flush, stream);
  } catch (const strata::NotSupported& refused) {
    unavailable = refused.what();
  } catch (const strata::CudnnError& failed) {
    if (!bench_case.engine.starts_with("cudnn")) throw;
    unavailable = std::string("cuDNN failed: ") + failed.what();
  }
  return make_result(bench_case, timing, unavailable);
}

int run(const Options& options) {
  const auto started = std::chrono::steady_clock::now();
  const auto out_of_time = [&] {
    const std::chrono::duration<double> elapsed = std::chrono::steady_clock::now() - started;
    return options.time_budget_s > 0 && elapsed.count() >= options.time_budget_s;
  };
  if (strata::device_count() == 0) throw strata::Error("no GPU found: use the simulator flavour (STRATA_BACKEND=sim)");
  strata::Stream stream;
  const strata::StreamGuard on_stream(stream);

  // A simulated L2 flush of twice the simulated 50 MiB would be a CPU memset costing more
  // than the tiny ops it separates; the simulator's times mean nothing anyway.
  const std::size_t flush_bytes = kSimulator ? std::size_t{1} << 20 : 2 * l2_cache_bytes();
  L2Flush flush(flush_bytes, stream);
  const TimerOptions timer{.warmup_runs = options.quick ? 1 : 3, .timed_runs = options.repeats};
  const int input_copies = options.quick ? 2 : 4;

  RunInfo info{.backend = kSimulator ? "simulator" : "cuda",
                     .times_meaningful = !kSimulator,
                     .device = strata::describe(strata::device_properties()),
                     .cudnn = strata::cudnn_available() ? "available"
                                                        : "unavailable: " + std::string(strata::cudnn_unavailable_reason()),
                     .warmup_runs = timer.warmup_runs,
                     .timed_runs = timer.timed_runs,
                     .input_copies = input_copies,
                     .flush_bytes = flush.bytes(),
                     .quick = options.quick,
                     .filter = options.filter,
                     .time_budget_s = options.time_budget_s};
  if (kSimulator) std::printf("SIMULATOR BUILD: quick sizes only, and the times below mean nothing.\n");

  const PeakSizes peak_sizes = kSimulator ? PeakSizes{.copy_bytes = std::size_t{1} << 20, .gemm_size = 32} : PeakSizes{};
  const Peaks peaks = measure_peaks(peak_sizes, timer, flush, stream);

  std::vector<Result> results;
  std::vector<std::string> no_cudnn_reasons;
  for (const BenchmarkCase& bench_case :
       benchmark_cases({.quick = options.quick, .input_copies = input_copies})) {
    const std::string description = bench_case.description();
    if (description.find(options.filter) == std::string::npos) continue;
    if (!results.empty() && out_of_time()) {  // the first case always runs
      ++info.cases_skipped;
      continue;
    }
    std::fprintf(stderr, "  %s\n", description.c_str());
    results.push_back(run_case(bench_case, timer, flush, stream));
    no_cudnn_reasons.push_back(bench_case.no_cudnn_reason);
  }
  if (results.empty()) throw strata::InvalidArgument("--filter '" + options.filter + "' matches no case");
  complete_results(results, no_cudnn_reasons, peaks);

  print_table(stdout, results, peaks, info);
  if (!options.json_path.empty()) {
    write_json(options.json_path, results, peaks, info);
    std::printf("results written to %s\n", options.json_path.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  try {
    return run(options);
  } catch (const std::exception& error) {
    std::fprintf(stderr, "strata_op_benchmark: %s\n", error.what());
    return 1;
  }
}
