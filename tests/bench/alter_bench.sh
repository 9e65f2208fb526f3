#!/usr/bin/env bash
# The integer-to-bigint change of a table with a foreign key: a plain ALTER TABLE ... TYPE bigint
# against tide's alter_column plan, side by side, under a simulated application, on a private
# PostgreSQL 15 the benchmark starts itself (see tests/bench/alter_bench.cc).
#   bash tests/bench/alter_bench.sh [--rows N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/../.."
bash deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target tided tidectl tide_alter_bench >/dev/null
exec build/tide_alter_bench "$@"
