#!/usr/bin/env bash
# Installs the Debian 12 packages tide needs to build, test and run its demo.
# Only what is missing is installed; `apt-get update` runs once, and only when something is.
set -euo pipefail

PACKAGES=(
  g++ cmake make pkg-config
  libpqxx-dev libboost-dev libyaml-cpp-dev libspdlog-dev libfmt-dev
  prometheus-cpp-dev libgtest-dev libgmock-dev libsystemd-dev libssl-dev
  libpg-query-dev nlohmann-json3-dev
  postgresql postgresql-contrib prometheus pgbouncer
  clang-14 libclang-rt-14-dev
  ca-certificates procps util-linux python3 curl
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run this script as root (or install them with apt-get) and try again" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
# The postgresql package may start the machine's own cluster; tide never uses it.
