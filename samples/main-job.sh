#!/usr/bin/env bash
# Strata's main job (README.md): builds and runs the CIFAR-10 sample, strata_cifar10
# (docs/cifar10.md). Uses the cuda flavour when a GPU is present, else the simulator, where
# the sample itself chooses a short demonstration run (the seed network on a subset, for a
# bounded time) and says so. Arguments are passed on to the sample.
# The data: --data DIR or STRATA_CIFAR10_DIR when given; else ../shared/data beside the
# repository, converted once into the build folder; else the synthetic set (--synthetic).
# Environment: STRATA_BACKEND (cuda or sim: overrides the choice), STRATA_MAIN_BUILD_DIR
# (default build/main-<flavour>), STRATA_JOBS (default: number of cores).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# A fresh Debian machine: installs the packages that are missing (nothing otherwise).
bash .ci/install-deps.sh
if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi

backend=${STRATA_BACKEND:-}
if [ -z "$backend" ]; then
  backend=sim
  if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    backend=cuda
  fi
fi
dir=${STRATA_MAIN_BUILD_DIR:-build/main-$backend}

generator=()
[ -f "$dir/CMakeCache.txt" ] || generator=(-G Ninja)
cmake -S . -B "$dir" "${generator[@]}" -DSTRATA_BACKEND="$backend" -DCMAKE_BUILD_TYPE=Release \
  -DSTRATA_BUILD_TESTS=OFF -DSTRATA_BUILD_SAMPLES=ON >/dev/null
cmake --build "$dir" -j "${STRATA_JOBS:-$(nproc)}" --target strata_cifar10

data_args=()
given=no
for arg in "$@"; do
  case "$arg" in
    --data|--data=*|--synthetic|--help|-h) given=yes ;;
  esac
done
if [ "$given" = no ] && [ -z "${STRATA_CIFAR10_DIR:-}" ]; then
  shared=$root/../shared/data
  converted=$dir/cifar10-data
  if [ -f "$converted/cifar-10-batches-bin/test_batch.bin" ]; then
    data_args=(--data "$converted")
  elif [ -f "$shared/make_cifar10_bin.py" ]; then
    echo "main-job: converting $shared (JPEG) to CIFAR-10's binary files in $converted (once)"
    rm -rf "$converted.partial"
    /usr/bin/python3 "$shared/make_cifar10_bin.py" "$converted.partial"
    rm -rf "$converted"
    mv "$converted.partial" "$converted"
    data_args=(--data "$converted")
  else
    echo "main-job: no CIFAR-10 data (no --data, no STRATA_CIFAR10_DIR, no $shared):" \
         "training on the synthetic set instead (--synthetic). docs/cifar10.md says how to get the data."
    data_args=(--synthetic)
  fi
fi
exec "$dir/samples/strata_cifar10" "${data_args[@]}" "$@"
