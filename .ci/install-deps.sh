#!/usr/bin/env bash
# Installs the Debian 12 packages that Strata's builds and tests need, and nothing when
# they are all present (idempotent, quiet). The CUDA toolkit is not installed here: it is
# expected at /usr/local/cuda (nvcc, cuBLAS, cuDNN 9), as on the project's machines.
#   .ci/install-deps.sh          install what is missing (needs root, or sudo)
#   .ci/install-deps.sh --check  only list what is missing; exit 1 if anything is
set -euo pipefail

packages=(cmake ninja-build g++ libfmt-dev nlohmann-json3-dev libgtest-dev libboost-context-dev libcli11-dev pkg-config python3)
# The CIFAR-10 data test converts ../shared/data with /usr/bin/python3, which needs PIL.
packages+=(python3-pil)

if ! command -v dpkg-query >/dev/null; then
  echo "install-deps: not a Debian system; install the equivalents of: ${packages[*]}" >&2
  exit 0
fi

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$package")
done

if [ "${1:-}" = --check ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    echo "missing Debian packages: ${missing[*]}"
    exit 1
  fi
  exit 0
fi

if [ ${#missing[@]} -gt 0 ]; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "install-deps: need root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "install-deps: the CUDA toolkit (nvcc, cuBLAS, cuDNN 9) is required at /usr/local/cuda or on PATH" >&2
  exit 1
fi
