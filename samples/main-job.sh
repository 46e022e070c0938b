#!/usr/bin/env bash
# Strata's main job (README.md): builds and runs the main sample, for now the demo
# (samples/demo); the CIFAR-10 training sample will take its place. Uses the cuda flavour
# when a GPU is present, else the simulator. Arguments are passed on to the sample.
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
cmake --build "$dir" -j "${STRATA_JOBS:-$(nproc)}" --target strata_demo
exec "$dir/samples/strata_demo" "$@"
