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

# The benchmark's tuned PostgreSQL settings, and its join to fill (`clinic` from `offers`).
TUNED_OPTS="-c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min"
JOIN_EXPR='(SELECT o.clinic FROM offers o WHERE o.id = t.offer_id)'

# join_bench_db ROWS: a tuned private PostgreSQL on $PORT (in $WORK/pg) with database `bench`:
# pgbench's tables (scale 10), `offers`, and `template`, ROWS rows whose `clinic` the join
# fills. Sets PSQL and PGBENCH.
join_bench_db() {
  PG_OPTS="$TUNED_OPTS" pg_start "$WORK/pg" "$PORT"
  PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
  PGBENCH=$PG_BIN/pgbench
  "${PSQL[@]}" -d postgres -c "CREATE DATABASE bench"
  "$PGBENCH" -i -q -s 10 -h 127.0.0.1 -p "$PORT" -U postgres bench >/dev/null 2>&1
  "${PSQL[@]}" -d bench <<SQL
CREATE TABLE offers (id bigint PRIMARY KEY, clinic text NOT NULL);
INSERT INTO offers SELECT g, 'clinic-' || (g % 200) FROM generate_series(1, 20000) g;
CREATE TABLE template AS
  SELECT g::bigint AS id, 1 + (g::bigint * 104729) % 20000 AS offer_id, NULL::text AS clinic
  FROM generate_series(1, $1) g;
SQL
}

# reset_table: `t`, a fresh copy of `template` with its primary key, vacuumed, after a checkpoint.
reset_table() {
  "${PSQL[@]}" -d bench -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS t" \
    -c "CREATE TABLE t AS SELECT * FROM template" -c "ALTER TABLE t ADD PRIMARY KEY (id)" \
    -c "VACUUM ANALYZE t" -c "CHECKPOINT" >/dev/null
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
