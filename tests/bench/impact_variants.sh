#!/usr/bin/env bash
# Plan settings side by side under the same application load, on one private PostgreSQL 15.
#   bash tests/bench/impact_variants.sh [--rounds R] [--seconds S] [--rows N] NAME=SETTINGS ...
# e.g. bash tests/bench/impact_variants.sh defaults= "yield_2.5=yield_ratio: 2.5"
# Each round (R, default 3; the order alternating) runs, for `none` (pgbench alone) and each
# variant, `pgbench -c 4 -j 2` for S seconds (default 16) while tide backfills N rows (default
# 1,000,000) of the bench's join with the variant's plan settings, on a fresh table; tide starts
# a second after pgbench. pgbench's p99 and TPS are taken over the seconds from tide's submit to
# pgbench's end; each variant's median p99 is shown over none's.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=3 SECONDS_PGBENCH=16 ROWS=1000000 VARIANTS=("none=")
while [[ $# -gt 0 ]]; do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PGBENCH=$2; shift 2 ;;
    --rows) ROWS=$2; shift 2 ;;
    *=*) VARIANTS+=("$1"); shift ;;
    *) echo "usage: tests/bench/impact_variants.sh [--rounds R] [--seconds S] [--rows N] NAME=SETTINGS ..." >&2; exit 2 ;;
  esac
done
source tests/bench/lib.sh
bench_setup variants
PORT=$(free_port)
join_bench_db "$ROWS"
start_tided "$WORK/tide"
LOGS=$WORK/logs
mkdir -p "$LOGS"
for ((r = 1; r <= ROUNDS; r++)); do
  if ((r % 2)); then order=$(seq 0 $((${#VARIANTS[@]} - 1))); else order=$(seq $((${#VARIANTS[@]} - 1)) -1 0); fi
  for i in $order; do
    name=${VARIANTS[$i]%%=*}
    settings=${VARIANTS[$i]#*=}
    plan=v${i}_r$r
    echo "== round $r/$ROUNDS: $name"
    reset_table
    cat >"$WORK/$plan.yaml" <<YAML
plan: $plan
database: app
settings: {statement_timeout: 5m${settings:+, $settings}}
backfill:
  - table: t
    set: {clinic: "$JOIN_EXPR"}
gates:
  - null_count: {table: t, column: clinic}
YAML
    (cd "$WORK" && "$PGBENCH" -c 4 -j 2 -T "$SECONDS_PGBENCH" -l --log-prefix="$LOGS/$plan" \
       -h 127.0.0.1 -p "$PORT" -U postgres bench >"$LOGS/$plan.out" 2>&1) &
    pb=$!
    sleep 1
    date +%s.%N >"$LOGS/$plan.submit"
    [[ $name == none ]] || build/tidectl submit --spool "$WORK/tide/spool" "$WORK/$plan.yaml" >/dev/null
    wait $pb
    date +%s.%N >"$LOGS/$plan.end"
    if [[ $name != none ]]; then
      until grep -q "\"event\":\"plan_done\",\"plan\":\"$plan\"" "$WORK/tide/audit.jsonl"; do
        if grep -q "\"event\":\"plan_failed\",\"plan\":\"$plan\"" "$WORK/tide/audit.jsonl"; then
          echo "plan $plan failed; see $WORK/tide/tided.log" >&2; exit 1
        fi
        sleep 0.1
      done
    fi
  done
done
python3 - "$LOGS" "${VARIANTS[@]}" <<'PY'
import glob, statistics, sys
logs, variants = sys.argv[1], [v.split("=", 1)[0] for v in sys.argv[2:]]
res = {}
for i, name in enumerate(variants):
    rounds = []
    for sub in sorted(glob.glob(f"{logs}/v{i}_r*.submit"), key=lambda p: int(p.rsplit("_r", 1)[1][:-7])):
        plan = sub[:-7]
        t0, t1 = float(open(sub).read()), float(open(plan + ".end").read())
        lat = sorted(int(p[2]) / 1000.0 for f in glob.glob(plan + ".[0-9]*") for p in map(str.split, open(f))
                     if t0 <= int(p[4]) + int(p[5]) / 1e6 <= t1)
        rounds.append((lat[int(0.99 * (len(lat) - 1))], len(lat) / (t1 - t0)))
    res[name] = rounds
base = statistics.median(p for p, _ in res["none"])
base_tps = statistics.median(t for _, t in res["none"])
print(f"\n{'variant':<16} {'p99 ms per round':<24} {'median':>7} {'x none':>7} {'TPS x none':>11}")
for name, rounds in res.items():
    p99 = statistics.median(p for p, _ in rounds)
    tps = statistics.median(t for _, t in rounds)
    print(f"{name:<16} {' '.join(f'{p:.2f}' for p, _ in rounds):<24} {p99:>7.2f} {p99 / base:>7.2f} {tps / base_tps:>11.2f}")
PY
