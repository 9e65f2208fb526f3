#!/usr/bin/env bash
# Builds tide and runs every test: unit (no server), integration (a throwaway PostgreSQL 15 the
# tests start themselves) and end-to-end (tided and tidectl as processes).
# Installs whatever is missing first (deploy/install-deps.sh), so it works on a fresh Debian 12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/install-deps.sh
BUILD=${BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2
cd "$BUILD"
ctest --output-on-failure --timeout 900 "$@"
