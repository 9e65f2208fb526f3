#!/usr/bin/env bash
# tide's backfill benchmark, side by side with a single UPDATE on the same machine and data.
#   bash tests/bench/bench.sh [--rows N] [--rounds R] [--seconds S] [--json FILE]
#                             [--only matrix|impact|bloat] [--exprs add,md5,join] [--orders key,uuid,shuffled]
#                             [--settings default,tuned] [--workers 1,2] [--tide-settings "k: v, ..."]
#                             [--tide-task "batch_by: key"]
# 1. The speed matrix (tests/bench/matrix.py): for each PostgreSQL settings (`default`: the
#    server's own defaults; `tuned`: shared_buffers 256MB, max_wal_size 4GB, checkpoint_timeout
#    30min), each expression (`a + 1`, `md5(a::text)`, a join) and each key order (a bigint key
#    in heap order, a uuid key, a bigint key with the heap shuffled), the single
#    `UPDATE t SET c = expr WHERE c IS NULL` against tide unthrottled with each worker count, over
#    R rounds (default 3) in alternating order on a fresh table each time: the median ratio and
#    every round's; then PostgreSQL's CPU seconds for each run, tide's over the UPDATE's.
# 2. The impact (tuned settings, the join, N rows): tide with 2 workers sharing
#    `max_rows_per_second` (N/20), the rate it held; pgbench -c 4 -j 2 alone for S seconds (TPS,
#    p50/p99 latency), before and after; the same pgbench while tide backfills with its defaults,
#    and while the single UPDATE runs (measured over the seconds the backfill or UPDATE ran);
#    R rounds, each bracketed by its own runs alone, the loaded runs in alternating order; every
#    round's ratios and their median.
# 3. The bloat (tuned settings, the join, N rows): the table and its index, pg_total_relation_size,
#    after the single UPDATE and after tide unthrottled with 2 workers: with its VACUUM between
#    batches, without (vacuum_between_batches: false), and by key (batch_by: key), over their
#    size before, with the heap and the index apart and the share of HOT updates; tide's seconds
#    with the VACUUM over its seconds without. R rounds, the order alternating.
# Each private PostgreSQL 15 has durable commits (fsync on) and is started under a temp folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
ROWS=1000000
SECONDS_PGBENCH=30
ROUNDS=3
JSON=$ROOT/build/bench.json
ONLY=
EXPRS=add,md5,join
ORDERS=key,uuid,shuffled
SETTINGS=default,tuned
WORKERS=1,2
TIDE_SETTINGS=  # plan settings added to tide's "defaults" run of the impact part (to try others)
TIDE_TASK=      # task keys added to that run (e.g. "batch_by: key")
usage() {
  echo "usage: tests/bench/bench.sh [--rows N] [--rounds R] [--seconds S] [--json FILE] [--only matrix|impact|bloat]" >&2
  echo "       [--exprs add,md5,join] [--orders key,uuid,shuffled] [--settings default,tuned] [--workers 1,2]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --seconds) SECONDS_PGBENCH=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --json) JSON=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --exprs) EXPRS=$2; shift 2 ;;
    --orders) ORDERS=$2; shift 2 ;;
    --settings) SETTINGS=$2; shift 2 ;;
    --workers) WORKERS=$2; shift 2 ;;
    --tide-settings) TIDE_SETTINGS=", $2"; shift 2 ;;
    --tide-task) TIDE_TASK="    $2"; shift 2 ;;
    *) usage ;;
  esac
done
[[ -z "$ONLY" || "$ONLY" == matrix || "$ONLY" == impact || "$ONLY" == bloat ]] || usage

source tests/bench/lib.sh
bench_setup bench
PSQL_BASE=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres)

MATRIX_JSON=$WORK/matrix.json
if [[ -z "$ONLY" || "$ONLY" == matrix ]]; then
  for setting in ${SETTINGS//,/ }; do
    case $setting in
      default) opts="" ;;
      tuned) opts=$TUNED_OPTS ;;
      *) echo "unknown --settings $setting (default, tuned)" >&2; exit 2 ;;
    esac
    PORT=$(free_port)
    PG_OPTS="$opts" pg_start "$WORK/pg_$setting" "$PORT"
    "${PSQL_BASE[@]}" -p "$PORT" -d postgres -c "CREATE DATABASE bench"
    start_tided "$WORK/tide_$setting"
    python3 tests/bench/matrix.py --port "$PORT" --spool "$WORK/tide_$setting/spool" \
      --audit "$WORK/tide_$setting/audit.jsonl" --tidectl build/tidectl --label "$setting" \
      --rows "$ROWS" --rounds "$ROUNDS" --exprs "$EXPRS" --orders "$ORDERS" --workers "$WORKERS" \
      --json "$MATRIX_JSON" --pgdata "$WORK/pg_$setting/data"
    stop_tided
    pg_stop "$WORK/pg_$setting"
  done
fi
if [[ "$ONLY" == matrix ]]; then
  python3 -c "import json,sys; json.dump({'matrix': json.load(open(sys.argv[1]))}, open(sys.argv[2], 'w'), indent=2)" \
    "$MATRIX_JSON" "$JSON"
  echo "JSON: $JSON"
  exit 0
fi
[[ -f "$MATRIX_JSON" ]] || echo "[]" >"$MATRIX_JSON"

PORT=$(free_port)
echo "== data: $ROWS rows to fill from a join (patient offers -> offers)"
join_bench_db "$ROWS"
EXPR=$JOIN_EXPR
now() { date +%s.%N; }

run_update() {  # prints seconds
  local start end
  start=$(now)
  "${PSQL[@]}" -d bench -c "UPDATE t SET clinic = $EXPR WHERE clinic IS NULL" >/dev/null
  end=$(now)
  echo "$start $end"
}

start_tided "$WORK"

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
gates:
  - null_count: {table: t, column: clinic}
YAML
  local start end line
  start=$(now)
  build/tidectl submit --spool "$WORK/spool" "$WORK/$name.yaml" >/dev/null
  # The audit log as it grows (tail follows it by inotify): no process started per look, which
  # would take CPU from the pgbench that the impact part measures.
  while IFS= read -r line; do
    case $line in
      *"\"event\":\"plan_done\",\"plan\":\"$name\""*) break ;;
      *"\"event\":\"plan_failed\",\"plan\":\"$name\""*)
        echo "plan $name failed; see $WORK/tided.log" >&2; exit 1 ;;
    esac
  done < <(tail -n +1 -F "$WORK/audit.jsonl" 2>/dev/null)
  kill $! 2>/dev/null || true
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

UNTHROTTLED=", max_replication_lag: 0s, max_active_sessions: 0, yield_ratio: 0, hold_on_autovacuum: false"

BLOAT=$WORK/bloat  # "label round start end bytes_before bytes_after heap_before heap_after index_before index_after hot updates" per run
table_bytes() { "${PSQL[@]}" -d bench -tA -c "SELECT pg_total_relation_size('t')"; }
heap_bytes() { "${PSQL[@]}" -d bench -tA -c "SELECT pg_relation_size('t')"; }
index_bytes() { "${PSQL[@]}" -d bench -tA -c "SELECT pg_indexes_size('t')"; }
# HOT updates and all updates of t (the statistics of tide's sessions arrive within a second).
update_counts() { sleep 1.5; "${PSQL[@]}" -d bench -tA -F' ' -c "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables WHERE relid = 't'::regclass"; }
bloat_run() {  # $1: update, tide_vacuum, tide_no_vacuum or tide_key; $2: round
  reset_table
  local before heap index t
  before=$(table_bytes); heap=$(heap_bytes); index=$(index_bytes)
  case $1 in
    update) t=$(run_update) ;;
    tide_vacuum) t=$(run_tide "bloat_vacuum_$2" "    workers: 2
    batch_by: pages" "$UNTHROTTLED") ;;
    tide_no_vacuum) t=$(run_tide "bloat_no_vacuum_$2" "    workers: 2
    batch_by: pages" "$UNTHROTTLED, vacuum_between_batches: false") ;;
    tide_key) t=$(run_tide "bloat_key_$2" "    workers: 2
    batch_by: key" "$UNTHROTTLED") ;;
  esac
  echo "$1 $2 $t $before $(table_bytes) $heap $(heap_bytes) $index $(index_bytes) $(update_counts)" >>"$BLOAT"
}
if [[ -z "$ONLY" || "$ONLY" == bloat ]]; then
  for ((r = 1; r <= ROUNDS; r++)); do
    if ((r % 2)); then order="update tide_vacuum tide_no_vacuum tide_key"; else order="tide_key tide_no_vacuum tide_vacuum update"; fi
    for what in $order; do
      echo "== 3. bloat round $r/$ROUNDS: $what"
      bloat_run "$what" "$r"
    done
  done
  python3 - "$BLOAT" "$WORK/bloat.json" "$WORK/audit.jsonl" <<'PY'
import json, statistics, sys
runs = [l.split() for l in open(sys.argv[1])]
vacuums, vacuum_ms = {}, {}
for line in open(sys.argv[3]):
    if '"event":"vacuumed"' in line:
        e = json.loads(line)
        plan = e["plan"]
        vacuums[plan] = vacuums.get(plan, 0) + 1
        vacuum_ms[plan] = vacuum_ms.get(plan, 0) + e.get("details", e).get("duration_ms", 0)
plans = {"tide_vacuum": "bloat_vacuum_", "tide_no_vacuum": "bloat_no_vacuum_", "tide_key": "bloat_key_"}
labels = ("update", "tide_vacuum", "tide_no_vacuum", "tide_key")
out = {"rounds": []}
by_round = {}
for label, r, start, end, before, after, heap0, heap, index0, index, hot, updates in runs:
    plan = plans.get(label, "-") + r
    by_round.setdefault(int(r), {})[label] = {
        "seconds": float(end) - float(start), "bytes_before": int(before), "bytes_after": int(after),
        "heap_bytes_after": int(heap), "index_bytes_after": int(index),
        "size_ratio": int(after) / int(before), "heap_ratio": int(heap) / int(heap0),
        "index_ratio": int(index) / int(index0), "hot_share": int(hot) / max(1, int(updates)),
        "vacuums": vacuums.get(plan, 0), "vacuum_seconds": vacuum_ms.get(plan, 0) / 1000.0}
for r in sorted(by_round):
    d = by_round[r]
    d["round"] = r
    d["vacuum_time_ratio"] = d["tide_vacuum"]["seconds"] / d["tide_no_vacuum"]["seconds"]
    out["rounds"].append(d)
med = lambda f: statistics.median(f(d) for d in out["rounds"])
out["median"] = {k: med(lambda d, k=k: d[k]["size_ratio"]) for k in labels}
for k in labels:
    for f in ("heap_ratio", "index_ratio", "hot_share", "seconds"):
        out["median"][k + "_" + f] = med(lambda d, k=k, f=f: d[k][f])
out["median"]["vacuum_time_ratio"] = med(lambda d: d["vacuum_time_ratio"])
json.dump(out, open(sys.argv[2], "w"), indent=2)
names = {"update": "single UPDATE", "tide_vacuum": "tide (VACUUM between batches)",
         "tide_no_vacuum": "tide, vacuum_between_batches: false", "tide_key": "tide, batch_by: key"}
print(f"\nbloat: table + index after / before, each round; then the medians")
print(f"{'':<38} {'rounds':<20} {'total':>6} {'heap':>6} {'index':>6} {'HOT':>5} {'s':>6} {'vacuums':>8}")
m = out["median"]
for k in labels:
    rounds = " ".join(f"{d[k]['size_ratio']:.2f}" for d in out["rounds"])
    print(f"{names[k]:<38} {rounds:<20} {m[k]:>6.2f} {m[k + '_heap_ratio']:>6.2f} {m[k + '_index_ratio']:>6.2f} "
          f"{m[k + '_hot_share']:>5.0%} {m[k + '_seconds']:>6.2f} {med(lambda d, k=k: d[k]['vacuums']):>8}")
rounds = " ".join(f"{d['vacuum_time_ratio']:.2f}" for d in out["rounds"])
print(f"{'time, VACUUM / none':<38} {rounds:<20} {m['vacuum_time_ratio']:>6.2f}")
PY
  if [[ "$ONLY" == bloat ]]; then
    python3 -c "import json,sys; json.dump({'bloat': json.load(open(sys.argv[1]))}, open(sys.argv[2], 'w'), indent=2)" \
      "$WORK/bloat.json" "$JSON"
    echo "JSON: $JSON"
    exit 0
  fi
fi
[[ -f "$WORK/bloat.json" ]] || echo "{}" >"$WORK/bloat.json"

TIMES=$WORK/times  # "label start end" per measured run
echo "== 2. impact: the single UPDATE alone, for reference"
reset_table; echo "single_update $(run_update)" >>"$TIMES"

CAP=$((ROWS / 20))
echo "== rate cap: 2 workers sharing max_rows_per_second: $CAP"
reset_table
echo "rate_cap $(run_tide bench_cap "    workers: 2
    max_rows_per_second: $CAP" "$UNTHROTTLED")" >>"$TIMES"

# The impact, R rounds: each round brackets its two loaded runs (tide, the single UPDATE; their
# order alternates) between two runs of pgbench alone, and is measured against them.
IMPACT_ROUNDS=$WORK/impact_rounds  # "round alone tide update alone_again" prefixes per round
pgbench_under() {  # $1: round, $2: tide or update
  reset_table
  run_pgbench "$2_$1" >"$WORK/p_$2_$1" &
  local pb=$!
  sleep 2
  if [[ $2 == tide ]]; then
    echo "tide_defaults_under_pgbench $(run_tide "bench_defaults_$1" "$TIDE_TASK" "$TIDE_SETTINGS")" >>"$TIMES"
  else
    echo "single_update_under_pgbench $(run_update)" >>"$TIMES"
  fi
  wait $pb
}
for ((r = 1; r <= ROUNDS; r++)); do
  echo "== impact round $r/$ROUNDS: pgbench alone (${SECONDS_PGBENCH}s)"
  # Every run starts as the loaded ones do: a fresh table and a checkpoint just before, so that
  # each pays the same full-page writes.
  reset_table
  A1=$(run_pgbench "alone_$r")
  if ((r % 2)); then order="tide update"; else order="update tide"; fi
  for what in $order; do
    echo "== impact round $r/$ROUNDS: pgbench while $([[ $what == tide ]] && echo "tide backfills with its defaults" || echo "the single UPDATE runs")"
    pgbench_under "$r" "$what"
  done
  echo "== impact round $r/$ROUNDS: pgbench alone again, so that the baseline brackets the loaded runs"
  reset_table
  A2=$(run_pgbench "alone_again_$r")
  echo "$r $A1 $(cat "$WORK/p_tide_$r") $(cat "$WORK/p_update_$r") $A2" >>"$IMPACT_ROUNDS"
done

python3 - "$ROWS" "$JSON" "$TIMES" "$WORK/audit.jsonl" "$CAP" "$ROUNDS" \
  "$IMPACT_ROUNDS" "$MATRIX_JSON" "$WORK/bloat.json" <<'PY'
import glob, json, statistics, sys
rows, out, times_file, audit_file = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
cap, rounds = int(sys.argv[5]), int(sys.argv[6])
impact_rounds = [l.split() for l in open(sys.argv[7])]
matrix = json.load(open(sys.argv[8]))
times = {}
for line in open(times_file):
    label, start, end = line.split()
    times.setdefault(label, []).append((float(start), float(end)))

def pgbench(prefix, start=None, end=None):
    # Transactions of a pgbench log, optionally only those that ended in [start, end]; the span
    # is the part of [start, end] during which pgbench ran, so that a backfill outlasting pgbench
    # does not dilute its TPS. A run alone is taken from its third second, as the loaded runs
    # are (tide and the UPDATE start two seconds after pgbench).
    done = []
    for path in glob.glob(prefix + ".*"):
        if path.endswith(".out"): continue
        for line in open(path):
            f = line.split()
            done.append((int(f[4]) + int(f[5]) / 1e6, int(f[2]) / 1000.0))
    if not done: return {"tps": 0, "p50_ms": 0, "p99_ms": 0, "seconds": 0, "transactions": 0}
    first = min(t for t, _ in done); last = max(t for t, _ in done)
    if start is not None: first, last = max(first, start), min(last, end)
    else: first += 2
    lat = sorted(l for t, l in done if first <= t <= last)
    span = last - first
    pct = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else 0
    return {"tps": len(lat) / span if span > 0 else 0, "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "seconds": span, "transactions": len(lat)}

def backfill(label):  # the median round, and every round's seconds
    secs = sorted(e - s for s, e in times[label])
    med = statistics.median(secs)
    return {"seconds": med, "rows_per_second": rows / med, "rounds_seconds": secs}

res = {"rows": rows, "rounds": rounds, "matrix": matrix, "bloat": json.load(open(sys.argv[9]))}
res["single_update"] = backfill("single_update")
base = res["single_update"]["rows_per_second"]

# The rate cap, over the backfill as tide timed it (setup included).
cap_done = [json.loads(l) for l in open(audit_file)
            if '"plan":"bench_cap"' in l and '"event":"backfill_finished"' in l][0]
d = cap_done.get("details", cap_done)
cap_rate = d["rows_updated"] / (d["duration_ms"] / 1000.0)
res["rate_cap"] = {"max_rows_per_second": cap, "workers": 2, "seconds": d["duration_ms"] / 1000.0,
                   "rows_per_second": cap_rate, "ratio_to_cap": cap_rate / cap}

# Each impact round against its own bracket of runs alone; the median of the rounds' ratios.
res["impact_rounds"] = []
for i, (r, alone, during_tide, during_update, alone_again) in enumerate(impact_rounds):
    d0, d1 = times["tide_defaults_under_pgbench"][i]
    w0, w1 = times["single_update_under_pgbench"][i]
    a1, a2 = pgbench(alone), pgbench(alone_again)
    rd = {"round": int(r), "pgbench_alone_before": a1, "pgbench_alone_after": a2,
          "pgbench_alone": {k: (a1[k] + a2[k]) / 2 for k in a1},
          "pgbench_during_tide_defaults": pgbench(during_tide, d0, d1),
          "tide_defaults_under_pgbench": {"seconds": d1 - d0, "rows_per_second": rows / (d1 - d0)},
          "pgbench_during_single_update": pgbench(during_update, w0, w1),
          "single_update_under_pgbench": {"seconds": w1 - w0, "rows_per_second": rows / (w1 - w0)}}
    a = rd["pgbench_alone"]
    for k in ("pgbench_alone_before", "pgbench_alone_after", "pgbench_during_tide_defaults",
              "pgbench_during_single_update"):
        rd[k]["tps_ratio"] = rd[k]["tps"] / a["tps"] if a["tps"] else 0
        rd[k]["p99_ratio"] = rd[k]["p99_ms"] / a["p99_ms"] if a["p99_ms"] else 0
    res["impact_rounds"].append(rd)
med = lambda f: statistics.median(f(rd) for rd in res["impact_rounds"])
res["impact_median"] = {
    "tide_tps_ratio": med(lambda rd: rd["pgbench_during_tide_defaults"]["tps_ratio"]),
    "tide_p99_ratio": med(lambda rd: rd["pgbench_during_tide_defaults"]["p99_ratio"]),
    "update_tps_ratio": med(lambda rd: rd["pgbench_during_single_update"]["tps_ratio"]),
    "update_p99_ratio": med(lambda rd: rd["pgbench_during_single_update"]["p99_ratio"]),
    "tide_seconds": med(lambda rd: rd["tide_defaults_under_pgbench"]["seconds"]),
    "update_seconds": med(lambda rd: rd["single_update_under_pgbench"]["seconds"])}
m = res["impact_median"]
res["tide_defaults_under_pgbench"] = {"seconds": m["tide_seconds"], "rows_per_second": rows / m["tide_seconds"]}
res["single_update_under_pgbench"] = {"seconds": m["update_seconds"], "rows_per_second": rows / m["update_seconds"]}
json.dump(res, open(out, "w"), indent=2)

if matrix:
    print("\nspeed matrix: tide's rows per second over the single UPDATE's, median of the rounds")
    variants = [k for k in matrix[0] if k.startswith("tide_")]
    print(f"{'settings':<8} {'expression':<10} {'key':<9} {'UPDATE s':>8} " +
          " ".join(f"{k[5:].replace('_workers', 'w'):>6}" for k in variants) + "   rounds")
    for c in matrix:
        print(f"{c['settings']:<8} {c['expression']:<10} {c['key']:<9} "
              f"{statistics.median(c['update_seconds']):>8.2f} " +
              " ".join(f"{c[k]['ratio_median']:>6.2f}" for k in variants) + "   " +
              " | ".join(" ".join(f"{x:.2f}" for x in c[k]["ratio_rounds"]) for k in variants))
print()
print(f"{'backfill of %d rows (the join)' % rows:<36} {'seconds':>8} {'rows/s':>10} "
      f"{'x UPDATE':>9}")
for k, label in (("single_update", "single UPDATE"),
                 ("tide_defaults_under_pgbench", "tide, defaults, under pgbench"),
                 ("single_update_under_pgbench", "single UPDATE, under pgbench")):
    r = res[k]
    print(f"{label:<36} {r['seconds']:>8.1f} {r['rows_per_second']:>10.0f} "
          f"{r['rows_per_second'] / base:>9.2f}")
c = res["rate_cap"]
print(f"\nrate cap {cap} rows/s, 2 workers: {c['rows_per_second']:.0f} rows/s over "
      f"{c['seconds']:.1f} s = {c['ratio_to_cap']:.3f} of the cap")
print()
for rd in res["impact_rounds"]:
    print(f"{'pgbench -c 4 -j 2, round %d' % rd['round']:<36} {'TPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'TPS x':>7} {'p99 x':>7}")
    for k, label in (("pgbench_alone_before", "alone, before"), ("pgbench_alone_after", "alone, after"),
                     ("pgbench_during_tide_defaults", "during tide (defaults)"),
                     ("pgbench_during_single_update", "during the single UPDATE")):
        r = rd[k]
        print(f"{label:<36} {r['tps']:>8.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['tps_ratio']:>7.2f} {r['p99_ratio']:>7.2f}")
    print()
print("(each round's ratios against the mean of its two runs alone)")
print(f"median of {len(res['impact_rounds'])} rounds: during tide's defaults TPS {m['tide_tps_ratio']:.2f}x, "
      f"p99 {m['tide_p99_ratio']:.2f}x; during the single UPDATE TPS {m['update_tps_ratio']:.2f}x, "
      f"p99 {m['update_p99_ratio']:.2f}x")
print(f"\nJSON: {out}")
PY
