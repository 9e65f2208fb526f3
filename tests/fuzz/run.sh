#!/usr/bin/env bash
# Builds the libFuzzer target with clang and runs it for FUZZ_SECONDS (60 by default) on a
# corpus seeded from plans/, the bad plans and configs of tests/data, and every input that once
# failed (tests/fuzz/regressions/, replayed first). Any crash, hang, leak or sanitizer report
# fails the run; the input is kept under build-fuzz/ and belongs in tests/fuzz/regressions/.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN=${FUZZ_SECONDS:-60}
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DTIDE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j2 --target plan_fuzzer
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
for f in plans/*.yaml tests/data/bad_plans/*.yaml tests/data/bad_configs/*.yaml; do
  cp "$f" "$corpus/$(basename "$(dirname "$f")")-$(basename "$f")"  # names repeat across folders
done
echo "fuzz: plan parser, validator, lint and config parser for ${SECONDS_TO_RUN}s"
if ! build-fuzz/plan_fuzzer "$corpus" tests/fuzz/regressions -max_total_time="$SECONDS_TO_RUN" \
    -timeout=10 -rss_limit_mb=2048 -max_len=65536 -artifact_prefix=build-fuzz/ -print_final_stats=1 \
    2>build-fuzz/fuzz.log; then
  tail -60 build-fuzz/fuzz.log
  echo "fuzz: FAILED; the input is in build-fuzz/ (crash-*, leak-*, timeout-*): add it to" \
       "tests/fuzz/regressions/ once fixed" >&2
  exit 1
fi
grep -E "^stat::(number_of_executed_units|new_units_added|peak_rss_mb)" build-fuzz/fuzz.log || true
echo "fuzz: no crash, hang, leak or sanitizer report"
