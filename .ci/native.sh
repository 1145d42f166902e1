#!/usr/bin/env bash
# Native part of CI: configure, build (host library, tests and, when nvcc is found, the CUDA fatbin),
# run ctest. Takes well under a minute on 2 cores. Called from .ci/run; runnable on its own.
#
#   EDGE_LS_NATIVE_BUILD  build directory (default: build/native in the checkout)
#   EDGE_LS_REQUIRE_CUDA  1: fail when no CUDA compiler is found instead of building the host part only
#   extra arguments go to the cmake configure step (e.g. -DEDGE_LS_CUDA_ARCHS="87;80")
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${EDGE_LS_NATIVE_BUILD:-$repo/build/native}"
jobs="$(nproc 2>/dev/null || echo 2)"

command -v cmake >/dev/null || { echo "native: cmake not found: install cmake >= 3.25" >&2; exit 1; }
generator=()
if command -v ninja >/dev/null && [ ! -f "$build/CMakeCache.txt" ]; then
  generator=(-G Ninja)
fi

start=$SECONDS
cmake -S "$repo" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build" -j "$jobs"

fatbin="$(sed -n 's/^EDGE_LS_KERNELS_FATBIN:INTERNAL=//p' "$build/CMakeCache.txt")"
if [ -n "$fatbin" ]; then
  [ -s "$fatbin" ] || { echo "native: nvcc was found but $fatbin was not built" >&2; exit 1; }
  echo "native: built $fatbin ($(wc -c <"$fatbin") bytes)"
elif [ "${EDGE_LS_REQUIRE_CUDA:-0}" = 1 ]; then
  echo "native: no CUDA compiler found and EDGE_LS_REQUIRE_CUDA=1" >&2
  exit 1
else
  echo "native: no CUDA compiler: host library and tests only"
fi

ctest --test-dir "$build" --output-on-failure -j "$jobs"
echo "native: ok in $((SECONDS - start)) s (library: $build/lib)"
