#include "benchmark_report.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <tuple>

namespace op_benchmark {

namespace {

const char* unit_of(WorkKind kind) { return kind == WorkKind::flops ? "TFLOP/s" : "GB/s"; }

std::string format(const char* pattern, double value) {
  char text[64];
  std::snprintf(text, sizeof(text), pattern, value);
  return text;
}

std::string shortened(const std::string& text, std::size_t length) {
  return text.size() <= length ? text : text.substr(0, length - 3) + "...";
}

// The table's columns, left-aligned text then right-aligned numbers. A row shorter than
// the first (the heading) ends in a note that runs on past the columns it covers, so that
// it widens none of them.
void print_rows(std::FILE* out, const std::vector<std::vector<std::string>>& rows, std::size_t first_number_column) {
  const std::size_t columns = rows.front().size();
  std::vector<std::size_t> widths(columns, 0);
  for (const auto& row : rows) {
    const std::size_t aligned = row.size() == columns ? columns : row.size() - 1;
    for (std::size_t i = 0; i < aligned; ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      const bool note = row.size() < columns && i + 1 == row.size();
      const std::string padding(note ? 0 : widths[i] - row[i].size(), ' ');
      line += i >= first_number_column ? padding + row[i] : row[i] + padding;
      if (i + 1 < row.size()) line += "  ";
    }
    std::fprintf(out, "%s\n", line.c_str());
  }
}

// "conv2d on Engine::cudnn (input ..., groups 1): cuDNN is not available ..." -> the reason
// after the description of the call, for the table (the JSON keeps all of it).
std::string reason_only(const std::string& message) {
  const std::size_t end_of_call = message.find("): ");
  return end_of_call == std::string::npos ? message : message.substr(end_of_call + 3);
}

std::string json_string(const std::string& text) {
  std::string quoted = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      quoted += '\\';
      quoted += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\u%04x", static_cast<unsigned>(c));
      quoted += escaped;
    } else {
      quoted += c;
    }
  }
  return quoted + "\"";
}

std::string json_number(double value) { return format("%.6g", value); }

std::string timing_json(const Timing& timing) {
  return "{\"median_ms\": " + json_number(timing.median_ms) + ", \"min_ms\": " + json_number(timing.min_ms) +
         ", \"max_ms\": " + json_number(timing.max_ms) + ", \"runs\": " + std::to_string(timing.runs) + "}";
}

}  // namespace

Result make_result(const BenchmarkCase& bench_case, std::optional<Timing> timing, std::string unavailable_reason) {
  Result result;
  result.set = bench_case.set;
  result.op = bench_case.op;
  result.direction = bench_case.direction;
  result.shape = bench_case.shape;
  result.engine = bench_case.engine;
  result.work_kind = bench_case.work_kind;
  result.work = bench_case.work;
  result.tensor_cores = bench_case.tensor_cores;
  result.cudnn_twin = bench_case.cudnn_twin;
  result.timing = timing;
  result.unavailable_reason = std::move(unavailable_reason);
  return result;
}

void complete_results(std::vector<Result>& results, const std::vector<std::string>& no_cudnn_reasons,
                      const Peaks& peaks) {
  using Key = std::tuple<std::string, std::string, std::string, std::string, std::string>;
  std::map<Key, const Result*> cudnn;  // by set, op, direction, shape and engine
  for (const Result& result : results) {
    if (result.engine.starts_with("cudnn")) {
      cudnn[{result.set, result.op, result.direction, result.shape, result.engine}] = &result;
    }
  }
  for (std::size_t i = 0; i < results.size(); ++i) {
    Result& result = results[i];
    const bool flops = result.work_kind == WorkKind::flops;
    result.peak = !flops ? "copy" : result.tensor_cores ? "gemm_bf16" : "gemm_fp32";
    if (result.timing) {
      result.rate = rate_per_second(result.work, result.timing->median_ms, flops ? 1e12 : 1e9);
      const double peak = !flops ? peaks.copy_gb_per_s
                          : result.tensor_cores ? peaks.gemm_bf16_tflop_per_s
                                                : peaks.gemm_tflop_per_s;
      result.fraction_of_peak = peak > 0.0 ? result.rate / peak : 0.0;
    }
    const auto match = cudnn.find({result.set, result.op, result.direction, result.shape, result.cudnn_twin});
    if (match == cudnn.end()) {
      // No reason given: there is a twin, but --filter left it out.
      result.no_ratio_reason = no_cudnn_reasons[i].empty() ? result.cudnn_twin + " not run (--filter)"
                                                           : no_cudnn_reasons[i];
    } else if (!match->second->timing) {
      result.no_ratio_reason = match->second->engine + " could not run it";
    } else if (result.timing && match->second->timing->median_ms > 0.0) {
      result.time_over_cudnn = result.timing->median_ms / match->second->timing->median_ms;
    } else {
      result.no_ratio_reason = "no time measured";
    }
  }
}

void print_table(std::FILE* out, const std::vector<Result>& results, const Peaks& peaks, const RunInfo& info) {
  if (!info.times_meaningful) {
    std::fprintf(out, "\n*** SIMULATOR BUILD: kernels run on the CPU; these times mean NOTHING about GPU speed. ***\n"
                      "*** They only show that every case runs. Use the CUDA build on a GPU for real numbers. ***\n\n");
  }
  std::fprintf(out, "device: %s\n", info.device.c_str());
  std::fprintf(out, "cuDNN: %s\n", info.cudnn.c_str());
  std::fprintf(out, "%d warm-up and %d timed runs per case (median), %d input copies rotated, %.1f MiB L2 flush%s\n",
               info.warmup_runs, info.timed_runs, info.input_copies,
               static_cast<double>(info.flush_bytes) / (1024.0 * 1024.0), info.quick ? ", quick sizes" : "");
  std::fprintf(out,
               "peaks: device copy %.1f GB/s (%.0f MiB, read + write), cuBLAS GEMM (%lld^3) fp32 %.2f TFLOP/s, "
               "bf16 (tensor cores, f32 accumulation) %.2f TFLOP/s\n\n",
               peaks.copy_gb_per_s, static_cast<double>(peaks.sizes.copy_bytes) / (1024.0 * 1024.0),
               static_cast<long long>(peaks.sizes.gemm_size), peaks.gemm_tflop_per_s, peaks.gemm_bf16_tflop_per_s);
  if (info.cases_skipped > 0) {
    std::fprintf(out, "*** the time budget of %g s ran out: %d matching cases were not run (see --filter) ***\n\n",
                 info.time_budget_s, info.cases_skipped);
  }

  std::vector<std::vector<std::string>> rows = {
      {"set", "op", "direction", "shape", "engine", "median ms", "rate", "% peak", "t/cuDNN"}};
  for (const Result& result : results) {
    std::vector<std::string> row = {result.set, result.op, result.direction, result.shape, result.engine};
    if (!result.timing) {
      row.push_back("n/a (" + shortened(reason_only(result.unavailable_reason), 70) + ")");
    } else {
      row.push_back(format("%.4f", result.timing->median_ms));
      row.push_back(format(result.work_kind == WorkKind::flops ? "%.2f " : "%.1f ", result.rate) +
                    unit_of(result.work_kind));
      row.push_back(format("%.1f%%", 100.0 * result.fraction_of_peak));
      row.push_back(result.time_over_cudnn ? format("%.2fx", *result.time_over_cudnn)
                                           : "n/a (" + shortened(result.no_ratio_reason, 40) + ")");
    }
    rows.push_back(std::move(row));
  }
  print_rows(out, rows, 5);
  std::fprintf(out,
               "\nengines: -tf32/-bf16: tensor-core math on f32 tensors; -bf16io: bf16 tensors (as autocast "
               "stores them), f32 arithmetic; -cl: channels-last activations; -64x64/-128x128: the block tile of "
               "conv2d's asynchronous tensor-core path fixed (-cl alone: chosen per shape).\n"
               "rate: TFLOP/s = 2 * multiply-adds, GB/s = each large tensor read or written once, at its element "
               "size; %% peak: of the copy bandwidth (GB/s rows), the bf16 GEMM rate (tensor-core rows: "
               "-tf32, -bf16, -bf16io) or the fp32 GEMM rate (other TFLOP/s rows); t/cuDNN: median time / that "
               "of cuDNN in the same configuration (cudnn-bf16io for -bf16io rows, cudnn-tf32 for conv2d's "
               "custom-tf32/-bf16; cuDNN's own rows: / its fp32 row), below 1: faster.\n");
}

void write_json(const std::string& path, const std::vector<Result>& results, const Peaks& peaks, const RunInfo& info) {
  std::ofstream file(path);
  if (!file) throw strata::IoError("op_benchmark: cannot write the JSON results to " + path);
  file << "{\n  \"strata_version\": " << json_string(STRATA_VERSION_STRING) << ",\n"
       << "  \"backend\": " << json_string(info.backend) << ",\n"
       << "  \"times_meaningful\": " << (info.times_meaningful ? "true" : "false") << ",\n"
       << "  \"device\": " << json_string(info.device) << ",\n"
       << "  \"cudnn\": " << json_string(info.cudnn) << ",\n"
       << "  \"options\": {\"warmup_runs\": " << info.warmup_runs << ", \"timed_runs\": " << info.timed_runs
       << ", \"input_copies\": " << info.input_copies << ", \"l2_flush_bytes\": " << info.flush_bytes
       << ", \"quick\": " << (info.quick ? "true" : "false") << ", \"filter\": " << json_string(info.filter)
       << ", \"time_budget_s\": " << json_number(info.time_budget_s) << ", \"cases_skipped\": " << info.cases_skipped
       << "},\n"
       << "  \"peaks\": {\"copy_bytes\": " << peaks.sizes.copy_bytes
       << ", \"copy_GB_per_s\": " << json_number(peaks.copy_gb_per_s) << ", \"copy\": " << timing_json(peaks.copy)
       << ", \"gemm_size\": " << peaks.sizes.gemm_size << ", \"gemm_TFLOP_per_s\": "
       << json_number(peaks.gemm_tflop_per_s) << ", \"gemm\": " << timing_json(peaks.gemm)
       << ", \"gemm_bf16_TFLOP_per_s\": " << json_number(peaks.gemm_bf16_tflop_per_s)
       << ", \"gemm_bf16\": " << timing_json(peaks.gemm_bf16) << "},\n"
       << "  \"results\": [";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    const bool flops = r.work_kind == WorkKind::flops;
    file << (i == 0 ? "\n" : ",\n") << "    {\"set\": " << json_string(r.set) << ", \"op\": " << json_string(r.op)
         << ", \"direction\": " << json_string(r.direction) << ", \"shape\": " << json_string(r.shape)
         << ", \"engine\": " << json_string(r.engine) << ", \"work_kind\": " << json_string(flops ? "flops" : "bytes")
         << ", \"work\": " << json_number(r.work);
    if (r.timing) {
      file << ", \"timing\": " << timing_json(*r.timing) << ", " << json_string(flops ? "TFLOP_per_s" : "GB_per_s")
           << ": " << json_number(r.rate) << ", \"fraction_of_peak\": " << json_number(r.fraction_of_peak)
           << ", \"peak\": " << json_string(r.peak);
    } else {
      file << ", \"timing\": null, \"unavailable\": " << json_string(r.unavailable_reason);
    }
    file << ", \"time_over_cudnn\": " << (r.time_over_cudnn ? json_number(*r.time_over_cudnn) : "null")
         << ", \"cudnn_twin\": " << json_string(r.cudnn_twin);
    if (!r.time_over_cudnn) file << ", \"no_ratio_reason\": " << json_string(r.no_ratio_reason);
    file << "}";
  }
  file << "\n  ]\n}\n";
  if (!file) throw strata::IoError("op_benchmark: writing the JSON results to " + path + " failed");
}

}  // namespace op_benchmark
