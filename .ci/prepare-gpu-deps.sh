#!/usr/bin/env bash
# Run HERE before a GPU check (docs/gpu-check.md): copies the sources that the GPU machine
# lacks and cannot download into .deps/ (ignored by git), which the device run carries:
#   .deps/fmt/include/fmt/  fmt's headers, used header-only (from Debian's libfmt-dev)
#   .deps/nlohmann_json/include/nlohmann/
#                           nlohmann/json's headers (from Debian's nlohmann-json3-dev)
#   .deps/googletest/       GoogleTest's sources, built with the tests (Debian's googletest)
#   .deps/cifar10/          CIFAR-10 as the 19 MB JPEG archive and its converter, from
#                           ../shared/data when present (the GPU check decodes it there)
# cmake/StrataDependencies.cmake looks there (STRATA_DEPS_DIR) when fmt, nlohmann_json and
# GTest are not installed. Idempotent: the copies are replaced each time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fmt_source=${FMT_INCLUDE_DIR:-/usr/include}/fmt
json_source=${NLOHMANN_JSON_INCLUDE_DIR:-/usr/include}/nlohmann
gtest_source=${GTEST_SOURCE_DIR:-/usr/src/googletest}
deps=.deps

[ -f "$fmt_source/format.h" ] || { echo "prepare-gpu-deps: no fmt headers at $fmt_source (apt-get install libfmt-dev)" >&2; exit 1; }
[ -f "$json_source/json.hpp" ] || { echo "prepare-gpu-deps: no nlohmann/json headers at $json_source (apt-get install nlohmann-json3-dev)" >&2; exit 1; }
[ -f "$gtest_source/CMakeLists.txt" ] || { echo "prepare-gpu-deps: no GoogleTest sources at $gtest_source (apt-get install googletest)" >&2; exit 1; }

rm -rf "$deps/fmt" "$deps/nlohmann_json" "$deps/googletest" "$deps/cifar10"
mkdir -p "$deps/fmt/include" "$deps/nlohmann_json/include"
cp -R "$fmt_source" "$deps/fmt/include/fmt"
cp -R "$json_source" "$deps/nlohmann_json/include/nlohmann"
cp -R "$gtest_source" "$deps/googletest"
shared_data=${STRATA_SHARED_DATA:-../shared/data}
if [ -f "$shared_data/cifar10-jpeg.tar.gz" ] && [ -f "$shared_data/make_cifar10_bin.py" ]; then
  mkdir -p "$deps/cifar10"
  cp "$shared_data/cifar10-jpeg.tar.gz" "$shared_data/make_cifar10_bin.py" "$deps/cifar10/"
else
  echo "prepare-gpu-deps: no CIFAR-10 archive at $shared_data: the GPU check will skip the CIFAR-10 runs"
fi

echo "prepared $deps: fmt $(sed -n 's/^#define FMT_VERSION \([0-9]*\).*/\1/p' "$deps/fmt/include/fmt/core.h"), nlohmann_json $(grep -rhoE '^#define NLOHMANN_JSON_VERSION_(MAJOR|MINOR|PATCH) +[0-9]+' "$deps/nlohmann_json/include/nlohmann" | awk '{print $3}' | head -n 3 | paste -sd.), googletest from $gtest_source ($(du -sh "$deps" | cut -f1))"
echo "carry it to the GPU machine: run(command=\"bash .ci/gpu-check.sh\", carry=[\".deps\"], timeout_s=540)"
