#!/usr/bin/env bash
# GPU check, run THERE on the lent GPU machine (docs/gpu-check.md): builds the cuda flavour
# with the dependencies carried in .deps/ (the machine has no network, fmt, nlohmann_json or
# GoogleTest), runs every test on the GPU, the full operator benchmark, the CIFAR-10 sample's
# airbench94 next to the PyTorch script of the same recipe, then compute-sanitizer racecheck on
# the cp.async and channels-last kernels and memcheck on each test executable with the time
# left, and ends with a short summary. The whole run stays inside
# STRATA_GPU_CHECK_BUDGET_S seconds (default 450, under the 8 minutes a device call is
# planned for); whatever is left when the budget runs out is reported as not run.
#   .ci/gpu-check.sh               the check
#   .ci/gpu-check.sh --build-only  configure and build only, no GPU needed (test it here)
# Environment: STRATA_GPU_BUILD_DIR (default build/gpu), STRATA_DEPS_DIR (default .deps),
# STRATA_JOBS (default: cores), STRATA_GPU_CTEST_JOBS (default 8), OUT (if set, the log and
# the ctest and sanitizer outputs are written there).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 1

build_only=0
case "${1:-}" in
  --build-only) build_only=1 ;;
  "") ;;
  *) echo "usage: $0 [--build-only]" >&2; exit 2 ;;
esac

build=${STRATA_GPU_BUILD_DIR:-build/gpu}
deps=${STRATA_DEPS_DIR:-$root/.deps}
jobs=${STRATA_JOBS:-$(nproc)}
ctest_jobs=${STRATA_GPU_CTEST_JOBS:-8}
budget=${STRATA_GPU_CHECK_BUDGET_S:-450}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
logs=${OUT:-$build/gpu-check-logs}
started=$SECONDS

elapsed() { echo $((SECONDS - started)); }
remaining() { echo $((budget - (SECONDS - started))); }
section() { printf '\n=== [%ss] %s\n' "$(elapsed)" "$*"; }

# run_within SECONDS CMD...: runs CMD with a time limit (never more than what is left).
run_within() {
  local limit=$1
  shift
  local left
  left=$(remaining)
  ((limit > left)) && limit=$left
  if ((limit < 5)); then
    echo "gpu-check: no time left for: $*"
    return 124
  fi
  timeout --kill-after=10 "$limit" "$@"
}

# The full operator benchmark (docs/performance.md): the table into the log, JSON into $logs.
phase_op_benchmark() {
  section "operator benchmark (full sizes, custom vs cuDNN vs cuBLAS)"
  # The benchmark stops starting cases at 65 s and still prints what it measured (airbench94's
  # shapes come first); the limit of 80 s only catches a hang.
  run_within 80 "$build/samples/strata_op_benchmark" --time-budget 65 --json "$logs/op_benchmark.json"
  local rc=$?
  ((rc == 0)) && benchmark_status="ok" || benchmark_status="exit $rc"
}

# The CIFAR-10 sample's airbench94 recipe and the PyTorch script of the same recipe, on the
# same copy of the data (docs/cifar10.md): decoded here from the JPEG archive carried in
# $deps/cifar10 (prepare-gpu-deps.sh), since the GPU machine has neither the data nor a network.
phase_cifar10() {
  section "CIFAR-10: airbench94 in Strata and in PyTorch"
  local archive_dir="$deps/cifar10" data="$build/cifar10-data"
  if [ ! -f "$data/cifar-10-batches-bin/test_batch.bin" ]; then
    if [ ! -f "$archive_dir/make_cifar10_bin.py" ]; then
      cifar10_status="skipped: no data carried ($archive_dir; run .ci/prepare-gpu-deps.sh with ../shared/data present)"
      echo "$cifar10_status"
      return 0
    fi
    if ! run_within 60 python3 "$archive_dir/make_cifar10_bin.py" "$data"; then
      cifar10_status="skipped: converting the carried archive failed (needs python3 with PIL)"
      echo "$cifar10_status"
      return 0
    fi
  fi
  run_within 90 "$build/samples/strata_cifar10" --net airbench94 --data "$data" --time-limit 60 \
    --metrics "$logs/cifar10"
  local rc=$?
  cifar10_status="strata exit $rc"
  run_within 60 python3 samples/cifar10/reference/airbench94_reference.py --data "$data" --seeds 1
  cifar10_status="$cifar10_status, pytorch reference exit $?"
  # The same recipe under autocast (bf16 storage, tensor cores): what the speed target is about.
  run_within 50 "$build/samples/strata_cifar10" --net airbench94 --data "$data" --time-limit 40 \
    --precision bf16 --metrics "$logs/cifar10_bf16"
  cifar10_status="$cifar10_status, strata bf16 exit $?"
  # And channels-last (issue 8), only when enough is left that the sanitizer phase after it
  # keeps its 150 s: the budget is a ceiling, not a plan.
  if (($(remaining) >= 200)); then
    run_within 50 "$build/samples/strata_cifar10" --net airbench94 --data "$data" --time-limit 40 \
      --precision bf16 --channels-last --metrics "$logs/cifar10_bf16_channels_last"
    cifar10_status="$cifar10_status, strata bf16 channels-last exit $?"
  else
    cifar10_status="$cifar10_status, strata bf16 channels-last skipped ($(remaining) s left)"
  fi
  # Then the same on Hopper's warpgroup MMA (the opt-in 128x128-wgmma conv tile), on the same
  # condition for what it leaves.
  if (($(remaining) >= 250)); then
    run_within 50 "$build/samples/strata_cifar10" --net airbench94 --data "$data" --time-limit 40 \
      --precision bf16 --channels-last --conv-tile 128x128-wgmma --metrics "$logs/cifar10_bf16_wgmma"
    cifar10_status="$cifar10_status, strata bf16 channels-last wgmma exit $?"
  else
    cifar10_status="$cifar10_status, strata bf16 channels-last wgmma skipped ($(remaining) s left)"
  fi
}

# compute-sanitizer racecheck on the kernels whose shared memory cp.async fills or one warp
# hands to another (issue 8): the channels-last tensor-core conv passes (in every block tile),
# the fused conv + pool and the channels-last per-channel reductions; only the tail of its report goes to the log
# (the device tool brings back few files). Skipped unless the memcheck phase keeps 150 s.
phase_racecheck() {
  section "compute-sanitizer racecheck (cp.async conv pipeline, channels-last reductions)"
  if ! command -v compute-sanitizer >/dev/null; then
    racecheck_status="compute-sanitizer not installed: skipped"
    return
  fi
  if (($(remaining) < 195)); then
    racecheck_status="skipped ($(remaining) s left)"
    return
  fi
  local report rc errors
  report=$(mktemp)
  run_within 45 compute-sanitizer --tool racecheck --error-exitcode 86 --print-limit 20 \
    "$build/tests/kernels/strata_kernels_tests" --gtest_brief=1 \
    --gtest_filter='Cases/Conv2dChannelsLast.*/VectorChannels*:Cases/Conv2dTensorCoreTiles.*/TwoRowGroups*:*FusedConvMaxPoolGivesTheContiguousBits:*BatchNormEveryDirectionIsTheContiguousBits' \
    >"$report" 2>&1
  rc=$?
  tail -n 30 "$report"
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$report" | tail -n 1)
  rm -f "$report"
  if ((rc == 124 || rc == 137)); then
    racecheck_status="TIMED OUT (budget), results incomplete"
  elif ((rc == 86)) || [ "${errors:-0}" != 0 ]; then
    racecheck_status="${errors:-?} racecheck hazards (see the log)"
    failed=1
  elif ((rc != 0)); then
    racecheck_status="tests FAILED under racecheck (exit $rc)"
    failed=1
  else
    racecheck_status="0 hazards"
  fi
}

main() {
  local gpu="none" driver="-" build_status="not run" ctest_status="not run" ctest_line=""
  local wgmma_status="not run"
  local tma_status="not run"
  local sanitizer_lines=() failed=0
  benchmark_status="not run" cifar10_status="not run" racecheck_status="not run"

  section "machine"
  if ((build_only == 0)); then
    if command -v nvidia-smi >/dev/null && nvidia-smi -L; then
      gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
      driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1)
    else
      echo "gpu-check: no GPU found (nvidia-smi -L); use --build-only to check the build alone"
      failed=1
    fi
  fi
  command -v nvcc >/dev/null || export PATH="/usr/local/cuda/bin:$PATH"
  nvcc --version | tail -n 2
  cmake --version | head -n 1
  echo "cores: $(nproc), commit: $(git rev-parse --short --verify -q HEAD 2>/dev/null || echo unknown)"

  # Carried sources instead of downloads: fail at once rather than hang on a fetch.
  if [ ! -f "$deps/fmt/include/fmt/format.h" ] || [ ! -f "$deps/nlohmann_json/include/nlohmann/json.hpp" ] \
     || [ ! -f "$deps/googletest/CMakeLists.txt" ]; then
    echo "gpu-check: $deps lacks fmt, nlohmann_json or googletest: run .ci/prepare-gpu-deps.sh here first and carry .deps"
    return 1
  fi

  # cuDNN: on the GPU machine it comes only inside PyTorch's wheels (nvidia/cudnn).
  local cudnn_args=()
  local cudnn_root
  cudnn_root=$(python3 -c 'import nvidia.cudnn as m; print(list(m.__path__)[0])' 2>/dev/null || true)
  if [ -n "$cudnn_root" ] && [ -d "$cudnn_root/include" ]; then
    echo "cuDNN hint: $cudnn_root"
    cudnn_args=(-DCUDNN_ROOT="$cudnn_root")
  fi

  section "configure and build the cuda flavour ($build, Release, sm_90a, -j$jobs)"
  local generator=()
  [ -f "$build/CMakeCache.txt" ] || generator=(-G Ninja)
  if run_within 90 cmake -S . -B "$build" "${generator[@]}" \
       -DSTRATA_BACKEND=cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90a \
       -DSTRATA_BUILD_TESTS=ON -DSTRATA_BUILD_SAMPLES=ON \
       -DSTRATA_DEPS_DIR="$deps" -DCMAKE_DISABLE_FIND_PACKAGE_fmt=ON -DCMAKE_DISABLE_FIND_PACKAGE_GTest=ON \
       -DCMAKE_DISABLE_FIND_PACKAGE_nlohmann_json=ON \
       -DFETCHCONTENT_FULLY_DISCONNECTED=ON "${cudnn_args[@]}" \
     && run_within $(($(remaining) - 200)) cmake --build "$build" -j "$jobs"; then
    build_status="ok"
    # libstrata.so dlopen()s libcudnn.so.9 when cuDNN is first used (docs/engines.md), and
    # libcudnn.so.9 its sub-libraries (libcudnn_ops.so.9, ...), both from the dynamic loader's
    # path; a wheel's folder is on no such path. With cuDNN found, the tests must load it
    # (STRATA_TEST_EXPECT_CUDNN): a load failure would otherwise only skip the cuDNN tests.
    local cudnn_library
    cudnn_library=$(sed -n 's/^CUDNN_LIBRARY:FILEPATH=//p' "$build/CMakeCache.txt")
    if [ -n "$cudnn_library" ] && [ "${cudnn_library%-NOTFOUND}" = "$cudnn_library" ]; then
      echo "cuDNN: $cudnn_library"
      LD_LIBRARY_PATH="$(dirname "$cudnn_library")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      export LD_LIBRARY_PATH
      export STRATA_TEST_EXPECT_CUDNN=1
    else
      echo "cuDNN: no library found at build time; the cuDNN tests will skip"
    fi
  else
    build_status="FAILED"
    failed=1
  fi

  if ((build_only == 0)) && [ "$build_status" = ok ] && [ "$gpu" != none ]; then
    section "ctest on the GPU (-j$ctest_jobs)"
    run_within 120 ctest --test-dir "$build" --no-tests=error --output-on-failure \
      -j "$ctest_jobs" --timeout 120 2>&1 | tee "$logs/ctest.txt"
    local ctest_rc=${PIPESTATUS[0]}
    ctest_line=$(grep -E 'tests passed, [0-9]+ tests failed out of' "$logs/ctest.txt" | tail -n 1)
    if ((ctest_rc == 0)); then
      ctest_status="passed"
    elif ((ctest_rc == 124 || ctest_rc == 137)); then
      ctest_status="TIMED OUT"
      failed=1
    else
      ctest_status="FAILED"
      failed=1
    fi
    # Hopper's warpgroup MMA (core/wgmma.cuh, the 128x128-wgmma tile): proven in the simulator
    # only until this line says so.
    local wgmma_lines
    wgmma_lines=$(grep -E 'Test +#[0-9]+: [^ ]*Wgmma' "$logs/ctest.txt" || true)
    wgmma_status="$(grep -c 'Passed' <<<"$wgmma_lines") passed, $(grep -cE 'Failed|Timeout|Exception' <<<"$wgmma_lines") failed, $(grep -c 'Skipped' <<<"$wgmma_lines") skipped (ctest names containing Wgmma)"
    # The Tensor Memory Accelerator (core/tma.cuh): its box layouts, and boxes multiplied by
    # wgmma as they land, likewise proven in the simulator only until this line says so.
    local tma_lines
    tma_lines=$(grep -E 'Test +#[0-9]+: [^ ]*Tma' "$logs/ctest.txt" || true)
    tma_status="$(grep -c 'Passed' <<<"$tma_lines") passed, $(grep -cE 'Failed|Timeout|Exception' <<<"$tma_lines") failed, $(grep -c 'Skipped' <<<"$tma_lines") skipped (ctest names containing Tma)"

    phase_op_benchmark
    phase_cifar10
    phase_racecheck

    section "compute-sanitizer memcheck on the test executables"
    # Every executable ctest runs (test suites and samples), as ctest itself lists them,
    # each marked "gtest" when ctest passes it GoogleTest flags.
    local executables
    mapfile -t executables < <(ctest --test-dir "$build" --show-only=json-v1 | python3 -c '
import json, sys
gtest = {}
for test in json.load(sys.stdin)["tests"]:
    command = test.get("command") or []
    if command:
        flags = any(arg.startswith("--gtest_") for arg in command[1:])
        gtest[command[0]] = gtest.get(command[0], False) or flags
for exe in sorted(gtest):
    print(exe, "gtest" if gtest[exe] else "plain", sep="\t")')
    if ! command -v compute-sanitizer >/dev/null; then
      sanitizer_lines+=("compute-sanitizer not installed: skipped")
    elif [ ${#executables[@]} -eq 0 ]; then
      sanitizer_lines+=("no test executables found: skipped")
    fi
    # One file for all of them: the device tool brings back at most 8 files.
    local entry exe kind name out="$logs/memcheck.txt" one_run rc errors args
    one_run=$(mktemp)
    : >"$out"
    for entry in "${executables[@]}"; do
      command -v compute-sanitizer >/dev/null || break
      IFS=$'\t' read -r exe kind <<<"$entry"
      name=$(basename "$exe")
      echo "--- $name" | tee -a "$out"
      args=()
      [ "$kind" = gtest ] && args=(--gtest_brief=1)
      run_within 150 compute-sanitizer --tool memcheck --error-exitcode 86 --print-limit 20 \
        "$exe" "${args[@]}" >"$one_run" 2>&1
      rc=$?
      cat "$one_run" >>"$out"
      tail -n 25 "$one_run"
      errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) error.*/\1/p' "$one_run" | tail -n 1)
      if grep -qiE 'device not supported|not supported on this (platform|device)|unable to find injection|error 999' "$one_run"; then
        sanitizer_lines+=("$name: compute-sanitizer does not support this device or runtime: skipped")
        break
      elif ((rc == 124 || rc == 137)); then
        sanitizer_lines+=("$name: TIMED OUT (budget), results incomplete")
        failed=1
      elif ((rc == 86)) || [ "${errors:-0}" != 0 ]; then
        sanitizer_lines+=("$name: ${errors:-?} memcheck ERRORS (see memcheck.txt)")
        failed=1
      elif ((rc != 0)); then
        sanitizer_lines+=("$name: tests FAILED under memcheck (exit $rc), ${errors:-?} memcheck errors")
        failed=1
      else
        sanitizer_lines+=("$name: 0 memcheck errors")
      fi
    done
    rm -f "$one_run"
  fi

  section "summary"
  echo "gpu:        $gpu (driver $driver)"
  echo "commit:     $(git rev-parse --verify -q HEAD 2>/dev/null || echo unknown)"
  echo "build:      $build_status"
  echo "ctest:      $ctest_status${ctest_line:+ ($ctest_line)}"
  echo "wgmma:      $wgmma_status"
  echo "tma:        $tma_status"
  echo "benchmark:  $benchmark_status"
  echo "cifar10:    $cifar10_status"
  echo "racecheck:  $racecheck_status"
  local line
  for line in "${sanitizer_lines[@]}"; do echo "memcheck:   $line"; done
  ((${#sanitizer_lines[@]} == 0)) && echo "memcheck:   not run"
  echo "wall time:  $(elapsed) s (budget $budget s)"
  return $failed
}

mkdir -p "$logs"
main 2>&1 | tee "$logs/gpu-check.log"
exit "${PIPESTATUS[0]}"
