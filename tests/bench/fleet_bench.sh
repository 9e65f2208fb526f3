#!/usr/bin/env bash
# One plan over a fleet: 50 databases of 100,000 rows on one PostgreSQL 15, the same plan (add a
# column, fill it, a null_count gate) run as a rollout with max_parallel 1, 2 and 4, and database
# by database as single-database plans (each submitted once the one before is done), side by
# side in one run: total seconds and the most sessions tided held on the server at once
# (pg_stat_activity, sampled every 100 ms). R rounds, the order of the runs alternating; fresh
# databases (copies of one template) for every run.
#   bash tests/bench/fleet_bench.sh [--databases N] [--rows N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/../.."
DATABASES=50
ROWS=100000
ROUNDS=2
while [[ $# -gt 0 ]]; do
  case $1 in
    --databases) DATABASES=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: tests/bench/fleet_bench.sh [--databases N] [--rows N] [--rounds R]" >&2; exit 2 ;;
  esac
done

source tests/bench/lib.sh
bench_setup fleet-bench
PORT=$(free_port)
PG_OPTS="-c max_connections=300" pg_start "$WORK/pg" "$PORT"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE fleet_template"
"${PSQL[@]}" -d fleet_template -c "CREATE TABLE t (id bigint PRIMARY KEY, a int NOT NULL);
  INSERT INTO t SELECT g, g % 1000 FROM generate_series(1, $ROWS) g;"
"${PSQL[@]}" -d fleet_template -c "VACUUM ANALYZE t"

PLAN_BODY='expand:
  - add_column: {table: t, column: b, type: int}
backfill:
  - table: t
    set: {b: "a + 1"}
gates:
  - null_count: {table: t, column: b}'

# $1: run label. Creates its databases, starts tided on them, prints nothing.
setup_run() {
  local label=$1 dir=$WORK/$1
  mkdir -p "$dir"
  {
    echo "spool_dir: $dir/spool"
    echo "audit_log: $dir/audit.jsonl"
    echo "metrics_listen: 127.0.0.1:$(free_port)"
    echo "max_workers: 4"
    echo "databases:"
    for i in $(seq -w 1 "$DATABASES"); do
      "${PSQL[@]}" -d postgres -c "CREATE DATABASE ${label}_$i TEMPLATE fleet_template" >/dev/null
      echo "  s$i: {dsn: \"host=127.0.0.1 port=$PORT dbname=${label}_$i user=postgres\"}"
    done
    echo "database_groups:"
    echo "  fleet: [\"s*\"]"
  } >"$dir/tided.yaml"
  build/tided --allow-root --config "$dir/tided.yaml" 2>"$dir/tided.log" &
  TIDED_PID=$!
  for _ in $(seq 100); do [[ -f "$dir/audit.jsonl" ]] && break; sleep 0.1; done
  : >"$dir/sessions"
  (while :; do
     "${PSQL[@]}" -d postgres -tA -c "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'tided%'" \
       >>"$dir/sessions" 2>/dev/null || true
     sleep 0.1
   done) &
  SAMPLER_PID=$!
}

# $1: run label. Stops tided and the sampler, drops the databases, prints the most sessions.
teardown_run() {
  local label=$1 dir=$WORK/$1
  kill "$SAMPLER_PID" 2>/dev/null || true
  wait "$SAMPLER_PID" 2>/dev/null || true
  SAMPLER_PID=
  kill -TERM "$TIDED_PID" 2>/dev/null && wait "$TIDED_PID" 2>/dev/null || true
  TIDED_PID=
  for i in $(seq -w 1 "$DATABASES"); do
    "${PSQL[@]}" -d postgres -c "DROP DATABASE ${label}_$i" >/dev/null
  done
  sort -n "$dir/sessions" | tail -1
}

# $1: label, $2: max_parallel or "serial". Prints "seconds sessions".
run_variant() {
  local label=$1 mode=$2 dir=$WORK/$1 start end
  setup_run "$label"
  start=$(date +%s.%N)
  if [[ $mode == serial ]]; then
    for i in $(seq -w 1 "$DATABASES"); do
      printf 'plan: fill_b\ndatabase: s%s\n%s\n' "$i" "$PLAN_BODY" >"$dir/p$i.yaml"
      build/tidectl submit --config "$dir/tided.yaml" "$dir/p$i.yaml" >/dev/null
      until [[ $("${PSQL[@]}" -d "${label}_$i" -tA -c "SELECT state FROM tide.plans WHERE name = 'fill_b'" 2>/dev/null) == done ]]; do
        sleep 0.05
      done
    done
  else
    printf 'plan: fill_b\ndatabase: fleet\nrollout: {canary: 1, max_parallel: %s}\n%s\n' "$mode" "$PLAN_BODY" >"$dir/plan.yaml"
    build/tidectl submit --config "$dir/tided.yaml" "$dir/plan.yaml" >/dev/null
    until grep -q '"event":"rollout_done"' "$dir/audit.jsonl"; do
      if grep -q '"event":"rollout_halted"' "$dir/audit.jsonl"; then
        echo "rollout halted; see $dir/tided.log" >&2; exit 1
      fi
      sleep 0.1
    done
  fi
  end=$(date +%s.%N)
  local sessions
  sessions=$(teardown_run "$label")
  echo "$(python3 -c "print(round($end - $start, 1))") $sessions"
}

MODES=(serial 1 2 4)
declare -A SECONDS_OF SESSIONS_OF
for round in $(seq 1 "$ROUNDS"); do
  order=("${MODES[@]}")
  if ((round % 2 == 0)); then order=(4 2 1 serial); fi
  for mode in "${order[@]}"; do
    read -r secs sessions < <(run_variant "r${round}_m${mode}" "$mode")
    echo "round $round, ${mode}: ${secs} s, at most ${sessions} sessions" >&2
    SECONDS_OF[$mode]+="$secs "
    SESSIONS_OF[$mode]+="$sessions "
  done
done

echo
echo "== $DATABASES databases of $ROWS rows, $ROUNDS rounds (alternating order)"
printf '%-28s %-22s %-10s %-10s %s\n' run "seconds (rounds)" median "vs serial" "most sessions"
serial_median=$(python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1].split())))" "${SECONDS_OF[serial]}")
for mode in "${MODES[@]}"; do
  median=$(python3 -c "import statistics,sys; print(round(statistics.median(map(float, sys.argv[1].split())), 1))" "${SECONDS_OF[$mode]}")
  ratio=$(python3 -c "print(round($serial_median / $median, 2))")
  most=$(python3 -c "import sys; print(max(map(int, sys.argv[1].split())))" "${SESSIONS_OF[$mode]}")
  name=$([[ $mode == serial ]] && echo "database by database" || echo "rollout, max_parallel $mode")
  printf '%-28s %-22s %-10s %-10s %s\n' "$name" "${SECONDS_OF[$mode]}" "$median" "${ratio}x" "$most"
done
