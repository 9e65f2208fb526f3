#!/usr/bin/env bash
# Builds tide and runs every test: unit (no server), integration (a throwaway PostgreSQL 15 the
# tests start themselves), end-to-end (tided and tidectl as processes, a real Prometheus and a
# streaming standby), the unit and integration tests again under AddressSanitizer and
# UndefinedBehaviorSanitizer, the orchestrator and worker-pool tests under ThreadSanitizer, and
# the plan parser's fuzzer for FUZZ_SECONDS (60). Any sanitizer report fails the run.
# Installs whatever is missing first (deploy/install-deps.sh), so it works on a fresh Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD=${BUILD_DIR:-build}

echo "== AddressSanitizer + UndefinedBehaviorSanitizer: unit and integration tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDE_SANITIZE=address,undefined >/dev/null
cmake --build build-asan -j2 --target tide_unit_tests tide_integration_tests
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
build-asan/tide_unit_tests --gtest_brief=1
build-asan/tide_integration_tests --gtest_brief=1
unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS

echo "== ThreadSanitizer: the orchestrator, its worker pool and the shared rate limiter"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTIDE_SANITIZE=thread >/dev/null
cmake --build build-tsan -j2 --target tide_unit_tests
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
  build-tsan/tide_unit_tests --gtest_brief=1 --gtest_filter='OrchestratorTest.*:RateLimiter.*'

echo "== fuzzing"
bash tests/fuzz/run.sh

echo "== build and every test"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2
cd "$BUILD"
ctest --output-on-failure --timeout 900 "$@"
