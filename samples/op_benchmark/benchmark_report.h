// What the operator benchmark reports: one result per case, the table on the terminal
// and the same results as JSON.
#pragma once

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "benchmark_cases.h"
#include "benchmark_peaks.h"

namespace op_benchmark {

struct Result {
  std::string set, op, direction, shape, engine;
  WorkKind work_kind = WorkKind::flops;
  double work = 0.0;
  bool tensor_cores = false;      // a flops case on the tensor cores
  std::string cudnn_twin;         // the cuDNN engine its ratio divides by
  std::optional<Timing> timing;   // absent when the engine could not run the case
  std::string unavailable_reason; // why not (the NotSupported message)
  // Filled by complete_results():
  double rate = 0.0;              // TFLOP/s for flops, GB/s for bytes
  std::string peak;               // "copy", "gemm_fp32" or "gemm_bf16": what fraction_of_peak is of
  double fraction_of_peak = 0.0;
  std::optional<double> time_over_cudnn;  // this median / the cudnn_twin row's median for the same case
  std::string no_ratio_reason;            // why time_over_cudnn is absent
};

// A result for bench_case with its timing, or with the reason it could not run.
Result make_result(const BenchmarkCase& bench_case, std::optional<Timing> timing, std::string unavailable_reason);

// Rates, fractions of the peaks (the copy bandwidth for bytes, the bf16 GEMM rate for
// tensor-core flops, the fp32 one for other flops) and ratios to the cuDNN twin of each.
// no_cudnn_reasons[i] belongs to results[i].
void complete_results(std::vector<Result>& results, const std::vector<std::string>& no_cudnn_reasons,
                      const Peaks& peaks);

// How the run was made, for the table's heading and the JSON.
struct RunInfo {
  std::string backend;       // "cuda" or "simulator"
  bool times_meaningful = true;
  std::string device;        // strata::describe() of the device
  std::string cudnn;         // "available", or the reason it is not
  int warmup_runs = 0;
  int timed_runs = 0;
  int input_copies = 0;
  std::size_t flush_bytes = 0;
  bool quick = false;
  std::string filter;
  double time_budget_s = 0;  // 0: none
  int cases_skipped = 0;     // matching cases not started: the time budget ran out
};

void print_table(std::FILE* out, const std::vector<Result>& results, const Peaks& peaks, const RunInfo& info);

// Throws strata::IoError when the file cannot be written.
void write_json(const std::string& path, const std::vector<Result>& results, const Peaks& peaks, const RunInfo& info);

}  // namespace op_benchmark
