#!/usr/bin/env bash
# What a batch costs besides its rows, in SQL alone (no tided): 1,000,000 rows (id bigint key,
# a int, note text) and `c = a + 1` filled on a private PostgreSQL 15 with its default settings,
# a fresh table after a checkpoint each time, each variant once per round, the order rotating:
#   update        the single UPDATE t SET c = a + 1 WHERE c IS NULL
#   tid_range     one UPDATE over a TID range of the whole table
#   shares_10     ten UPDATEs over the whole table, one per share (tide's share filter)
#   spans_60      tide's page batches of 10 shares over 6 spans: 60 statements
#   spans_490     the same over 49 spans: 490 statements, about what tide runs for 1M rows
#   spans_490_cte the 490 with tide's count of filled and unfilled rows (a CTE over RETURNING)
# Each statement commits on its own without waiting for the WAL flush, as tide's batches do.
#   bash tests/bench/batch_costs.sh [--rows N] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROWS=1000000
ROUNDS=3
while [[ $# -gt 0 ]]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    *) echo "usage: tests/bench/batch_costs.sh [--rows N] [--rounds R]" >&2; exit 2 ;;
  esac
done
source tests/bench/lib.sh
bench_setup batch-costs
PORT=$(free_port)
PG_OPTS="" pg_start "$WORK/pg" "$PORT"
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres)
"${PSQL[@]}" -c "CREATE TABLE tpl AS SELECT g::bigint AS id, (g::bigint * 7919 % 1000003)::int AS a, \
  'note ' || g AS note FROM generate_series(1, $ROWS) g"
PAGES=$("${PSQL[@]}" -tA -c "SELECT pg_relation_size('tpl') / 8192 + 1")
SHARE="(((pg_catalog.hashint8(id::bigint) % 10) % 10 + 10) % 10)"

# batches SPANS CTE: the statements of 10 shares over SPANS spans, in tide's order (each share
# over every span, then the next share), one transaction each.
batches() {
  local spans=$1 cte=$2 s i lo hi where
  for s in 0 1 2 3 4 5 6 7 8 9; do
    for ((i = 0; i < spans; i++)); do
      lo=$((i * PAGES / spans)); hi=$(((i + 1) * PAGES / spans))
      where="ctid >= '($lo,0)'::tid AND ctid < '($hi,0)'::tid AND $SHARE = $s AND (c IS NULL)"
      if [[ $cte == cte ]]; then
        echo "WITH tide_updated AS (UPDATE ONLY t SET c = a + 1 WHERE $where RETURNING (c IS NULL) AS tide_unfilled) SELECT count(*) FILTER (WHERE NOT tide_unfilled), count(*) FILTER (WHERE tide_unfilled) FROM tide_updated;"
      else
        echo "UPDATE ONLY t SET c = a + 1 WHERE $where;"
      fi
    done
  done
}
batches 1 plain >"$WORK/shares_10.sql"
batches 6 plain >"$WORK/spans_60.sql"
batches 49 plain >"$WORK/spans_490.sql"
batches 49 cte >"$WORK/spans_490_cte.sql"
echo "UPDATE t SET c = a + 1 WHERE c IS NULL;" >"$WORK/update.sql"
echo "UPDATE t SET c = a + 1 WHERE ctid >= '(0,0)'::tid AND ctid < '($PAGES,0)'::tid AND c IS NULL;" >"$WORK/tid_range.sql"

VARIANTS=(update tid_range shares_10 spans_60 spans_490 spans_490_cte)
declare -A SECONDS_OF
for ((r = 0; r < ROUNDS; r++)); do
  for ((k = 0; k < ${#VARIANTS[@]}; k++)); do
    v=${VARIANTS[$(((k + r) % ${#VARIANTS[@]}))]}
    "${PSQL[@]}" -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS t" \
      -c "CREATE TABLE t AS SELECT * FROM tpl" -c "ALTER TABLE t ADD PRIMARY KEY (id)" \
      -c "ALTER TABLE t ADD COLUMN c int" -c "VACUUM ANALYZE t" -c "CHECKPOINT" >/dev/null
    start=$(date +%s.%N)
    # As tide's batches: commits that do not wait for the WAL flush (their checkpoint is in the
    # same transaction), and no JIT.
    PGOPTIONS="-c synchronous_commit=off -c jit=off" "${PSQL[@]}" -f "$WORK/$v.sql" >/dev/null
    end=$(date +%s.%N)
    left=$("${PSQL[@]}" -tA -c "SELECT count(*) FROM t WHERE c IS NULL")
    [[ $left == 0 ]] || { echo "$v left $left rows unfilled" >&2; exit 1; }
    SECONDS_OF[$v]+="$(echo "$end - $start" | bc) "
  done
done
echo "seconds per variant, $ROWS rows, $ROUNDS rounds (order rotating); median over the UPDATE's"
for v in "${VARIANTS[@]}"; do
  python3 - "$v" "${SECONDS_OF[$v]}" "${SECONDS_OF[update]}" <<'PY'
import statistics, sys
name, mine, base = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ratio = statistics.median(m / b for m, b in zip(mine, base))
print(f"{name:<14} {' '.join(f'{x:5.2f}' for x in mine)}   x UPDATE {ratio:.2f}")
PY
done
