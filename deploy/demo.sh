#!/usr/bin/env bash
# The demo: a private PostgreSQL with a million-row multi-tenant data set, tided running on it,
# three example plans submitted and followed until they finish, then the audit trail.
# Everything runs under .demo/ in this checkout and is stopped at the end.
#   deploy/demo.sh [--rows N]     (default 1000000 patient offers)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ROWS=1000000
while [[ $# -gt 0 ]]; do
  case $1 in
    --rows) ROWS=$2; shift 2 ;;
    *) echo "usage: deploy/demo.sh [--rows N]" >&2; exit 2 ;;
  esac
done

bash deploy/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j2 --target tided tidectl

source deploy/lib/pg.sh
DEMO=$ROOT/.demo
pg_stop "$DEMO/pg" 2>/dev/null || true
rm -rf "$DEMO"
mkdir -p "$DEMO"
chmod 755 "$DEMO"
PORT=$(free_port)
METRICS_PORT=$(free_port)
TIDED_PID=
cleanup() {
  [[ -n "$TIDED_PID" ]] && kill -TERM "$TIDED_PID" 2>/dev/null && wait "$TIDED_PID" 2>/dev/null || true
  pg_stop "$DEMO/pg"
}
trap cleanup EXIT

echo "== starting PostgreSQL 15 on 127.0.0.1:$PORT (data in .demo/pg)"
pg_start "$DEMO/pg" "$PORT"
psql_app() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
psql_app -d postgres -c "CREATE DATABASE app"
echo "== loading the data set: $ROWS patient offers, 20,000 offers, 50,000 users, 100,000 grades, 100,000 clinic-patient links"
psql_app -d app -v rows="$ROWS" -f deploy/demo-data.sql

cat >"$DEMO/tided.yaml" <<YAML
spool_dir: $DEMO/spool
audit_log: $DEMO/audit.jsonl
metrics_listen: 127.0.0.1:$METRICS_PORT
databases:
  app:
    dsn: "host=127.0.0.1 port=$PORT dbname=app user=postgres"
defaults: {lock_timeout: 2s, statement_timeout: 30s, batch_size: 1000, gate_recheck_interval: 5s}
YAML

echo "== starting tided (log in .demo/tided.log, metrics on http://127.0.0.1:$METRICS_PORT/metrics)"
build/tided --allow-root --config "$DEMO/tided.yaml" --foreground 2>"$DEMO/tided.log" &
TIDED_PID=$!
for _ in $(seq 50); do [[ -d "$DEMO/spool/incoming" ]] && break; sleep 0.1; done

for plan in plans/*.yaml; do
  build/tidectl submit --config "$DEMO/tided.yaml" "$plan"
done

echo "== progress"
start=$(date +%s)
while :; do
  sleep 2
  status=$(build/tidectl status --config "$DEMO/tided.yaml")
  echo "--- $(( $(date +%s) - start ))s"
  echo "$status"
  pending=$(grep -cE '^app/.*  (accepted|expanding|backfilling|gating|contracting)' <<<"$status" || true)
  if [[ $(ls "$DEMO/spool/incoming" | wc -l) -eq 0 && "$pending" -eq 0 ]] && grep -q '^app/' <<<"$status"; then
    break
  fi
  if ! kill -0 "$TIDED_PID" 2>/dev/null; then echo "tided exited; see .demo/tided.log" >&2; exit 1; fi
  if ls "$DEMO/spool/rejected/"*.error >/dev/null 2>&1; then
    echo "a plan was rejected:" >&2; cat "$DEMO/spool/rejected/"*.error >&2; exit 1
  fi
  if (( $(date +%s) - start > 1800 )); then
    echo "the plans did not finish in 30 minutes; see .demo/tided.log" >&2; tail -20 "$DEMO/tided.log" >&2; exit 1
  fi
done

echo "== a few metrics"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^tide_(backfill_rows_total|plans_total|plan_state\{.*state="done")' || true

echo "== audit trail (.demo/audit.jsonl)"
build/tidectl audit --config "$DEMO/tided.yaml"

echo "== the database afterwards"
psql_app -d app -c 'SELECT count(*) AS patient_offers, count("clinicId") AS with_clinic FROM patient_offers' \
  -c '\d patient_offers'
failed=$(grep -c '^app/.*  failed' <<<"$status" || true)
[[ "$failed" -eq 0 ]] || { echo "some plans failed" >&2; exit 1; }
echo "== demo finished: every plan is done"
