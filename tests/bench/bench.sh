#!/usr/bin/env bash
# tide's backfill benchmark, side by side with a single UPDATE on the same machine and data.
#   bash tests/bench/bench.sh [--rows N] [--seconds S] [--json FILE]
# 1. a single `UPDATE t SET c = expr WHERE c IS NULL` (the ceiling);
# 2. tide unthrottled with 1 and with 2 workers;
# 3. pgbench -c 4 -j 2 alone for S seconds (TPS, p50/p99 latency);
# 4. the same pgbench while tide backfills with its defaults, and while the single UPDATE runs
#    (measured over the seconds the backfill or UPDATE ran).
# A private PostgreSQL 15 with durable commits (fsync on) is started under a temp folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
ROWS=1000000
SECONDS_PGBENCH=30
JSON=$ROOT/build/bench.json
while [[ $# -gt 0 ]]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --seconds) SECONDS_PGBENCH=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    *) echo "usage: tests/bench/bench.sh [--rows N] [--seconds S] [--json FILE]" >&2; exit 2 ;;
  esac
done

bash deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target tided tidectl >/dev/null
source deploy/lib/pg.sh
WORK=$(mktemp -d /tmp/tide-bench-XXXXXX)
chmod 755 "$WORK"
PORT=$(free_port)
TIDED_PID=
cleanup() {
  [[ -n "$TIDED_PID" ]] && kill -TERM "$TIDED_PID" 2>/dev/null && wait "$TIDED_PID" 2>/dev/null || true
  pg_stop "$WORK/pg"
  rm -rf "$WORK"
}
trap cleanup EXIT
PG_OPTS="-c shared_buffers=256MB -c max_wal_size=4GB -c checkpoint_timeout=30min" pg_start "$WORK/pg" "$PORT"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE bench"
PGBENCH=$PG_BIN/pgbench
"$PGBENCH" -i -q -s 10 -h 127.0.0.1 -p "$PORT" -U postgres bench >/dev/null 2>&1

echo "== data: $ROWS rows to fill from a join (patient offers -> offers)"
"${PSQL[@]}" -d bench <<SQL
CREATE TABLE offers (id bigint PRIMARY KEY, clinic text NOT NULL);
INSERT INTO offers SELECT g, 'clinic-' || (g % 200) FROM generate_series(1, 20000) g;
CREATE TABLE template AS
  SELECT g::bigint AS id, 1 + (g::bigint * 104729) % 20000 AS offer_id, NULL::text AS clinic
  FROM generate_series(1, $ROWS) g;
SQL

reset_table() {
  "${PSQL[@]}" -d bench -c "SET client_min_messages = warning" \
    -c "DROP TABLE IF EXISTS t" \
    -c "CREATE TABLE t AS SELECT * FROM template" -c "ALTER TABLE t ADD PRIMARY KEY (id)" \
    -c "VACUUM ANALYZE t" -c "CHECKPOINT" >/dev/null
}
EXPR='(SELECT o.clinic FROM offers o WHERE o.id = t.offer_id)'
now() { date +%s.%N; }

run_update() {  # prints seconds
  local start end
  start=$(now)
  "${PSQL[@]}" -d bench -c "UPDATE t SET clinic = $EXPR WHERE clinic IS NULL" >/dev/null
  end=$(now)
  echo "$start $end"
}

cat >"$WORK/tided.yaml" <<YAML
spool_dir: $WORK/spool
audit_log: $WORK/audit.jsonl
metrics_listen: 127.0.0.1:$(free_port)
databases:
  app: {dsn: "host=127.0.0.1 port=$PORT dbname=bench user=postgres"}
YAML
build/tided --allow-root --config "$WORK/tided.yaml" 2>"$WORK/tided.log" &
TIDED_PID=$!
for _ in $(seq 100); do [[ -d "$WORK/spool/incoming" ]] && break; sleep 0.1; done

run_tide() {  # $1: plan name, $2: extra task keys (YAML lines), $3: extra settings; prints "start end"
  local name=$1
  cat >"$WORK/$name.yaml" <<YAML
plan: $name
database: app
settings: {statement_timeout: 5m $3}
backfill:
  - table: t
    set: {clinic: "$EXPR"}
$2
YAML
  local start end
  start=$(now)
  build/tidectl submit --spool "$WORK/spool" "$WORK/$name.yaml" >/dev/null
  until grep -q "\"event\":\"plan_done\",\"plan\":\"$name\"" "$WORK/audit.jsonl" 2>/dev/null; do
    if grep -q "\"event\":\"plan_failed\",\"plan\":\"$name\"" "$WORK/audit.jsonl" 2>/dev/null; then
      echo "plan $name failed; see $WORK/tided.log" >&2; exit 1
    fi
    sleep 0.05
  done
  end=$(now)
  echo "$start $end"
}

# pgbench for S seconds with per-transaction logs; $1: label. Prints the log prefix.
run_pgbench() {
  local prefix=$WORK/pgbench_$1
  (cd "$WORK" && "$PGBENCH" -c 4 -j 2 -T "$SECONDS_PGBENCH" -l --log-prefix="$prefix" \
     -h 127.0.0.1 -p "$PORT" -U postgres bench >"$prefix.out" 2>&1)
  echo "$prefix"
}

echo "== 1. single UPDATE"
reset_table; read -r U0 U1 < <(run_update)
echo "== 2. tide unthrottled, 1 worker"
reset_table; read -r T10 T11 < <(run_tide bench_1 "    workers: 1" ", max_replication_lag: 0s, max_active_sessions: 0, yield_ratio: 0")
echo "== 2. tide unthrottled, 2 workers"
reset_table; read -r T20 T21 < <(run_tide bench_2 "    workers: 2" ", max_replication_lag: 0s, max_active_sessions: 0, yield_ratio: 0")

echo "== 3. pgbench alone (${SECONDS_PGBENCH}s)"
P_ALONE=$(run_pgbench alone)
echo "== 4. pgbench while tide backfills with its defaults"
reset_table
run_pgbench tide >"$WORK/p_tide" &
PB=$!
sleep 2
read -r D0 D1 < <(run_tide bench_defaults "" "")
wait $PB
P_TIDE=$(cat "$WORK/p_tide")
echo "== 4. pgbench while the single UPDATE runs"
reset_table
run_pgbench update >"$WORK/p_update" &
PB=$!
sleep 2
read -r W0 W1 < <(run_update)
wait $PB
P_UPDATE=$(cat "$WORK/p_update")

python3 - "$ROWS" "$JSON" "$U0" "$U1" "$T10" "$T11" "$T20" "$T21" "$D0" "$D1" "$W0" "$W1" \
  "$P_ALONE" "$P_TIDE" "$P_UPDATE" <<'PY'
import glob, json, sys
rows = int(sys.argv[1]); out = sys.argv[2]
u0, u1, t10, t11, t20, t21, d0, d1, w0, w1 = map(float, sys.argv[3:13])
alone, during_tide, during_update = sys.argv[13:16]

def pgbench(prefix, start=None, end=None):
    lat = []; first = last = None
    for path in glob.glob(prefix + ".*"):
        if path.endswith(".out"): continue
        for line in open(path):
            f = line.split()
            t = int(f[4]) + int(f[5]) / 1e6
            if start is not None and not (start <= t <= end): continue
            lat.append(int(f[2]) / 1000.0)
            first = t if first is None else min(first, t); last = t if last is None else max(last, t)
    lat.sort()
    span = (end - start) if start is not None else (last - first)
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
    return {"tps": len(lat) / span if span > 0 else 0, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "seconds": span, "transactions": len(lat)}

res = {
  "rows": rows,
  "single_update": {"seconds": u1 - u0, "rows_per_second": rows / (u1 - u0)},
  "tide_1_worker": {"seconds": t11 - t10, "rows_per_second": rows / (t11 - t10)},
  "tide_2_workers": {"seconds": t21 - t20, "rows_per_second": rows / (t21 - t20)},
  "pgbench_alone": pgbench(alone),
  "pgbench_during_tide_defaults": pgbench(during_tide, d0, d1),
  "tide_defaults_under_pgbench": {"seconds": d1 - d0, "rows_per_second": rows / (d1 - d0)},
  "pgbench_during_single_update": pgbench(during_update, w0, w1),
  "single_update_under_pgbench": {"seconds": w1 - w0},
}
base = res["single_update"]["rows_per_second"]
for k in ("tide_1_worker", "tide_2_workers"):
    res[k]["ratio_to_single_update"] = res[k]["rows_per_second"] / base
a = res["pgbench_alone"]
for k in ("pgbench_during_tide_defaults", "pgbench_during_single_update"):
    res[k]["tps_ratio"] = res[k]["tps"] / a["tps"] if a["tps"] else 0
    res[k]["p99_ratio"] = res[k]["p99_ms"] / a["p99_ms"] if a["p99_ms"] else 0
json.dump(res, open(out, "w"), indent=2)

print()
print(f"{'backfill of %d rows' % rows:<36} {'seconds':>8} {'rows/s':>10} {'x UPDATE':>9}")
for k, label in (("single_update", "single UPDATE"), ("tide_1_worker", "tide, 1 worker, unthrottled"),
                 ("tide_2_workers", "tide, 2 workers, unthrottled"),
                 ("tide_defaults_under_pgbench", "tide, defaults, under pgbench")):
    r = res[k]
    print(f"{label:<36} {r['seconds']:>8.1f} {r['rows_per_second']:>10.0f} {r['rows_per_second'] / base:>9.2f}")
print()
print(f"{'pgbench -c 4 -j 2':<36} {'TPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'TPS x':>7} {'p99 x':>7}")
for k, label in (("pgbench_alone", "alone"), ("pgbench_during_tide_defaults", "during tide (defaults)"),
                 ("pgbench_during_single_update", "during the single UPDATE")):
    r = res[k]
    print(f"{label:<36} {r['tps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
          f"{r['tps'] / a['tps']:>7.2f} {r['p99_ms'] / a['p99_ms']:>7.2f}")
print(f"\nJSON: {out}")
PY
