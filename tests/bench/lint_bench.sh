#!/usr/bin/env bash
# The lint's time per statement: PostgreSQL's parser (libpg_query) and tide's rules over the
# lint corpus, and whole example plans (see tests/bench/lint_bench.cc).
#   bash tests/bench/lint_bench.sh [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target tide_lint_bench >/dev/null
exec build/tide_lint_bench "$@"
