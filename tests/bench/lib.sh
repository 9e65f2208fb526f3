# What the benchmark scripts share. Source it from the checkout's root, after reading options.

# bench_setup NAME: installs what is missing, builds tided and tidectl, sources deploy/lib/pg.sh
# and makes $WORK (/tmp/tide-NAME-XXXXXX), removed on exit once tided ($TIDED_PID), the process
# in $SAMPLER_PID and every private PostgreSQL under $WORK/pg* are stopped.
bench_setup() {
  bash deploy/install-deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j2 --target tided tidectl >/dev/null
  source deploy/lib/pg.sh
  WORK=$(mktemp -d "/tmp/tide-$1-XXXXXX")
  chmod 755 "$WORK"
  TIDED_PID=
  SAMPLER_PID=
  trap bench_cleanup EXIT
}

bench_cleanup() {
  [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
  stop_tided
  local dir
  for dir in "$WORK"/pg*; do
    if [[ -d "$dir" ]]; then pg_stop "$dir"; fi
  done
  rm -rf "$WORK"
}

# start_tided DIR: tided on the bench database of the server on $PORT, spool and audit log
# under DIR; returns once it writes its audit log.
start_tided() {
  mkdir -p "$1"
  cat >"$1/tided.yaml" <<YAML
spool_dir: $1/spool
audit_log: $1/audit.jsonl
metrics_listen: 127.0.0.1:$(free_port)
databases:
  app: {dsn: "host=127.0.0.1 port=$PORT dbname=bench user=postgres"}
YAML
  build/tided --allow-root --config "$1/tided.yaml" 2>"$1/tided.log" &
  TIDED_PID=$!
  for _ in $(seq 100); do [[ -f "$1/audit.jsonl" ]] && break; sleep 0.1; done
}

stop_tided() {
  [[ -n "$TIDED_PID" ]] && kill -TERM "$TIDED_PID" 2>/dev/null && wait "$TIDED_PID" 2>/dev/null || true
  TIDED_PID=
}
