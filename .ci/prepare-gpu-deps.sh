#!/usr/bin/env bash
# Run HERE before a GPU check (docs/gpu-check.md): copies the sources that the GPU machine
# lacks and cannot download into .deps/ (ignored by git), which the device run carries:
#   .deps/fmt/include/fmt/  fmt's headers, used header-only (from Debian's libfmt-dev)
#   .deps/googletest/       GoogleTest's sources, built with the tests (Debian's googletest)
# cmake/StrataDependencies.cmake looks there (STRATA_DEPS_DIR) when fmt and GTest are not
# installed. Idempotent: the copies are replaced each time.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fmt_source=${FMT_INCLUDE_DIR:-/usr/include}/fmt
gtest_source=${GTEST_SOURCE_DIR:-/usr/src/googletest}
deps=.deps

[ -f "$fmt_source/format.h" ] || { echo "prepare-gpu-deps: no fmt headers at $fmt_source (apt-get install libfmt-dev)" >&2; exit 1; }
[ -f "$gtest_source/CMakeLists.txt" ] || { echo "prepare-gpu-deps: no GoogleTest sources at $gtest_source (apt-get install googletest)" >&2; exit 1; }

rm -rf "$deps/fmt" "$deps/googletest"
mkdir -p "$deps/fmt/include"
cp -R "$fmt_source" "$deps/fmt/include/fmt"
cp -R "$gtest_source" "$deps/googletest"

echo "prepared $deps: fmt $(sed -n 's/^#define FMT_VERSION \([0-9]*\).*/\1/p' "$deps/fmt/include/fmt/core.h"), googletest from $gtest_source ($(du -sh "$deps" | cut -f1))"
echo "carry it to the GPU machine: run(command=\"bash .ci/gpu-check.sh\", carry=[\".deps\"], timeout_s=540)"
