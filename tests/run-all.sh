#!/usr/bin/env bash
# Strata's test command (README.md; CI's .ci/run calls exactly this). It
#   1. builds the sim flavour with ASan+UBSan and warnings as errors, installs it into a
#      prefix inside its build folder and builds + runs tests/consumer against the install
#      (through CMake's find_package and through pkg-config);
#   2. does the same for the cuda flavour (sm_90a) and runs its tests when a GPU is present,
#      else says clearly that they were compiled but not run;
#   3. runs every test of the sim flavour with ctest (the kernel tests under the seeded,
#      shuffled schedule STRATA_SIM_SEED=7 that tests/kernels/CMakeLists.txt gives them),
#      last, so that ctest's own summary is the final test-result line.
# Exits non-zero on any failure. Environment (all optional):
#   STRATA_SIM_BUILD_DIR   sim build folder       (default build/sim-asan, reused if there)
#   STRATA_CUDA_BUILD_DIR  cuda build folder      (default build/cuda, reused if there)
#   STRATA_JOBS            parallel compile jobs  (default: number of cores)
#   STRATA_CTEST_JOBS      parallel tests         (default 2)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

sim_dir=${STRATA_SIM_BUILD_DIR:-build/sim-asan}
cuda_dir=${STRATA_CUDA_BUILD_DIR:-build/cuda}
jobs=${STRATA_JOBS:-$(nproc)}
ctest_jobs=${STRATA_CTEST_JOBS:-2}
started=$SECONDS

section() { printf '\n=== [%s] %s\n' "$(elapsed)" "$*"; }
elapsed() { local s=$((SECONDS - started)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

# A fresh Debian machine: installs the packages that are missing (nothing otherwise).
bash .ci/install-deps.sh
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

# configure DIR ARGS...: Ninja for a new build folder; a reused one keeps its generator.
configure() {
  local dir=$1
  shift
  local generator=()
  [ -f "$dir/CMakeCache.txt" ] || generator=(-G Ninja)
  cmake -S . -B "$dir" "${generator[@]}" "$@"
}

# install_and_consume DIR: installs DIR's build into DIR/_install, builds tests/consumer
# against it with CMake and with pkg-config, and runs both.
install_and_consume() {
  local dir=$1
  case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
  local prefix="$dir/_install" consumer="$dir/_consumer"
  rm -rf "$prefix" "$consumer"
  cmake --install "$dir" --prefix "$prefix" >/dev/null
  echo "installed into $prefix"

  echo "--- tests/consumer through find_package(Strata)"
  cmake -S tests/consumer -B "$consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix"
  cmake --build "$consumer"
  "$consumer/strata_consumer"

  local pc_dir
  pc_dir=$(dirname "$(find "$prefix" -name strata.pc -print -quit)")
  local pkg_config=(env PKG_CONFIG_PATH="$pc_dir" pkg-config)
  local backend
  backend=$("${pkg_config[@]}" --variable=backend strata)
  echo "--- tests/consumer through pkg-config ($backend flavour)"
  # shellcheck disable=SC2046  # pkg-config's flags are meant to split into words
  g++ -std=c++20 -DSTRATA_CONSUMER_EXPECTED_BACKEND="\"$backend\"" tests/consumer/main.cpp \
    $("${pkg_config[@]}" --cflags --libs strata) -o "$consumer/strata_consumer_pkgconfig"
  local libdir
  libdir=$("${pkg_config[@]}" --variable=libdir strata)
  LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$consumer/strata_consumer_pkgconfig"
}

gpu_present() {
  command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '
}

section "sim flavour + ASan/UBSan: configure and build ($sim_dir)"
configure "$sim_dir" -DSTRATA_BACKEND=sim -DSTRATA_SANITIZE=ON -DSTRATA_WARNINGS_AS_ERRORS=ON
cmake --build "$sim_dir" -j "$jobs"

section "sim flavour: install, build and run tests/consumer against the install"
install_and_consume "$sim_dir"

section "cuda flavour (sm_90a): configure and build ($cuda_dir)"
configure "$cuda_dir" -DSTRATA_BACKEND=cuda -DCMAKE_BUILD_TYPE=Release -DSTRATA_WARNINGS_AS_ERRORS=ON
cmake --build "$cuda_dir" -j "$jobs"

section "cuda flavour: install, build and run tests/consumer against the install"
install_and_consume "$cuda_dir"

cuda_tests="compiled, NOT run: no GPU on this machine"
if gpu_present; then
  section "cuda flavour: ctest on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)"
  if ctest --test-dir "$cuda_dir" --output-on-failure -j "$ctest_jobs"; then
    cuda_tests="passed on the GPU"
  else
    cuda_tests="FAILED on the GPU"
  fi
else
  section "cuda flavour: the CUDA tests were compiled but not run (no GPU: nvidia-smi -L finds none)"
fi

section "sim flavour + ASan/UBSan: ctest (every test; the kernel tests under STRATA_SIM_SEED=7)"
sim_tests="FAILED"
if ctest --test-dir "$sim_dir" --no-tests=error --output-on-failure -j "$ctest_jobs"; then
  sim_tests="passed"
fi

section "summary"
echo "sim+asan: built, installed, consumer ok (cmake, pkg-config); tests $sim_tests"
echo "cuda:     built, installed, consumer ok (cmake, pkg-config); tests $cuda_tests"
[ "$sim_tests" = passed ] && [ "$cuda_tests" != "FAILED on the GPU" ]
