#!/usr/bin/env python3
"""The backfill speed matrix: expression x key order x workers against a single UPDATE.

Run by tests/bench/bench.sh against a PostgreSQL it started and a tided watching `--spool`.
For each cell, over `--rounds` rounds in alternating order, on a fresh copy of the table each
time: the single `UPDATE t SET c = expr WHERE c IS NULL`, then tide unthrottled with each worker
count. Prints each cell's median ratio (tide's rows per second over the UPDATE's) and the rounds,
and appends the cell to the JSON file.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

EXPRESSIONS = {
    # kind: (column type, expression)
    "add": ("int", "a + 1"),
    "md5": ("text", "md5(a::text)"),
    "join": ("text", "(SELECT o.clinic FROM offers o WHERE o.id = t.offer_id)"),
}
ORDERS = {
    # order: (key type, the key from g, the heap order)
    "key": ("bigint", "g::bigint", "g"),
    "shuffled": ("bigint", "g::bigint", "md5(g::text)"),
    "uuid": ("uuid", "md5(g::text)::uuid", "g"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", required=True)
    ap.add_argument("--db", default="bench")
    ap.add_argument("--spool", required=True)
    ap.add_argument("--audit", required=True)
    ap.add_argument("--tidectl", required=True)
    ap.add_argument("--label", required=True, help="the PostgreSQL settings, for the report")
    ap.add_argument("--rows", type=int, default=1000000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--exprs", default="add,md5,join")
    ap.add_argument("--orders", default="key,uuid,shuffled")
    ap.add_argument("--workers", default="1,2",
                    help="worker counts, batching by page (batch_by: pages); a count with a k (2k) batches by key (batch_by: key)")
    ap.add_argument("--json", required=True)
    ap.add_argument("--pgdata", required=True, help="the server's data folder (its postmaster.pid)")
    a = ap.parse_args()
    with open(os.path.join(a.pgdata, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", a.port,
            "-U", "postgres", "-d", a.db]

    def sql(*statements, out=False):
        cmd = psql + ["-t", "-A"] + [x for s in statements for x in ("-c", s)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            sys.exit(f"psql failed: {r.stderr.strip()}")
        return r.stdout.strip() if out else None

    orders = a.orders.split(",")
    exprs = a.exprs.split(",")
    workers = a.workers.split(",")
    sql("SET client_min_messages = warning",
        "DROP TABLE IF EXISTS offers",
        "CREATE TABLE offers (id bigint PRIMARY KEY, clinic text NOT NULL)",
        "INSERT INTO offers SELECT g, 'clinic-' || (g % 200) FROM generate_series(1, 20000) g")
    for order in orders:
        key_type, key, heap = ORDERS[order]
        sql("SET client_min_messages = warning", f"DROP TABLE IF EXISTS tpl_{order}",
            f"CREATE TABLE tpl_{order} AS SELECT {key} AS id, (g::bigint * 7919 % 1000003)::int AS a, "
            f"1 + (g::bigint * 104729) % 20000 AS offer_id, 'note ' || g AS note "
            f"FROM generate_series(1, {a.rows}) g ORDER BY {heap}")

    def reset(order, expr):
        col_type = EXPRESSIONS[expr][0]
        sql("SET client_min_messages = warning", "DROP TABLE IF EXISTS t",
            f"CREATE TABLE t AS SELECT * FROM tpl_{order}", "ALTER TABLE t ADD PRIMARY KEY (id)",
            f"ALTER TABLE t ADD COLUMN c {col_type}", "VACUUM ANALYZE t", "CHECKPOINT")

    def check(what):
        left = int(sql("SELECT count(*) FROM t WHERE c IS NULL", out=True))
        if left:
            sys.exit(f"{what} left {left} rows unfilled")

    def single(expr):
        cpu = settled_cpu()
        start = time.monotonic()
        sql(f"UPDATE t SET c = {EXPRESSIONS[expr][1]} WHERE c IS NULL")
        seconds = time.monotonic() - start
        cpu = settled_cpu() - cpu
        check("the single UPDATE")
        return {"seconds": seconds, "cpu": cpu}

    def pg_cpu():
        """CPU seconds the server's processes used so far: the postmaster's, its children's alive,
        and those of the children it has reaped. A child reaped during the scan of /proc can be
        missed or counted twice: a few ticks of noise, as autovacuum's workers come and go."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile: its time is in the postmaster's reaped children
            pid, ppid = int(entry), int(fields[1])
            if pid == postmaster:
                total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
            elif ppid == postmaster:
                total += sum(int(x) for x in fields[11:15])  # and what it reaped (archive_command)
        return total / tick

    def settled_cpu():
        time.sleep(0.5)  # the backends of a session that ended are reaped
        return pg_cpu()

    seen = [0]

    def tide(name, expr, variant):
        w = int(variant.rstrip("k"))
        by = "    batch_by: key\n" if variant.endswith("k") else "    batch_by: pages\n"
        plan = os.path.join(os.path.dirname(a.json), name + ".yaml")
        with open(plan, "w") as f:
            f.write(f"plan: {name}\ndatabase: app\n"
                    "settings: {statement_timeout: 5m, max_replication_lag: 0s, "
                    "max_active_sessions: 0, yield_ratio: 0, hold_on_autovacuum: false}\n"
                    f"backfill:\n  - table: t\n    set: {{c: \"{EXPRESSIONS[expr][1]}\"}}\n"
                    f"    workers: {w}\n{by}"
                    "gates:\n  - null_count: {table: t, column: c}\n")
        cpu = settled_cpu()
        start = time.monotonic()
        subprocess.run([a.tidectl, "submit", "--spool", a.spool, plan], check=True,
                       capture_output=True)
        finished = None
        while True:
            with open(a.audit) as f:
                f.seek(seen[0])
                for line in f:
                    if f'"plan":"{name}"' not in line:
                        continue
                    e = json.loads(line)
                    if e["event"] == "backfill_finished":
                        finished = e.get("details", e)
                    if e["event"] in ("plan_failed", "plan_rejected"):
                        sys.exit(f"plan {name} failed: {line}")
                    if e["event"] == "plan_done":
                        seconds = time.monotonic() - start
                        cpu = settled_cpu() - cpu
                        seen[0] = os.path.getsize(a.audit)
                        check(f"tide ({name})")
                        return {"seconds": seconds, "cpu": cpu,
                                "backfill_seconds": finished["duration_ms"] / 1000.0,
                                "batches": finished["batches"]}
            time.sleep(0.05)

    run = time.strftime("%H%M%S")  # plan names are unique per database
    results = []
    cpu_lines = []
    print(f"\n== backfill speed, {a.rows} rows, PostgreSQL settings: {a.label}, "
          f"median of {a.rounds} rounds in alternating order")
    print(f"{'expression':<8} {'key':<9} {'UPDATE s':>8} " +
          " ".join(f"{f'{w}w x UPDATE':>12}" for w in workers) + "   rounds")
    sys.stdout.flush()
    for expr in exprs:
        for order in orders:
            runs = {"update": []}
            for w in workers:
                runs[f"tide_{w}"] = []
            for r in range(a.rounds):
                seq = ["update"] + [f"tide_{w}" for w in workers]
                if r % 2:
                    seq.reverse()
                for what in seq:
                    reset(order, expr)
                    if what == "update":
                        runs[what].append(single(expr))
                    else:
                        w = what.split("_")[1]
                        runs[what].append(tide(f"m{run}_{a.label}_{expr}_{order}_{w}_{r}", expr, w))
            cell = {"settings": a.label, "expression": expr, "key": order, "rows": a.rows,
                    "rounds": a.rounds, "update_seconds": [x["seconds"] for x in runs["update"]],
                    "update_cpu_seconds": [x["cpu"] for x in runs["update"]]}
            update_cores = statistics.median(u["cpu"] / u["seconds"] for u in runs["update"])
            cpu_texts = []
            texts = []
            for w in workers:
                ratios = [u["seconds"] / t["seconds"]
                          for u, t in zip(runs["update"], runs[f"tide_{w}"])]
                backfill = [u["seconds"] / t["backfill_seconds"]
                            for u, t in zip(runs["update"], runs[f"tide_{w}"])]
                cell[f"tide_{w}_workers"] = {
                    "seconds": [x["seconds"] for x in runs[f"tide_{w}"]],
                    "ratio_median": statistics.median(ratios), "ratio_rounds": ratios,
                    "backfill_only_ratio_median": statistics.median(backfill),
                    "batches": [x["batches"] for x in runs[f"tide_{w}"]],
                    "cpu_seconds": [x["cpu"] for x in runs[f"tide_{w}"]],
                    # PostgreSQL's CPU for tide's run over its CPU for the UPDATE, same round
                    "cpu_ratio_median": statistics.median(
                        t["cpu"] / max(u["cpu"], 0.01) for u, t in zip(runs["update"], runs[f"tide_{w}"])),
                    "cores_median": statistics.median(t["cpu"] / t["seconds"] for t in runs[f"tide_{w}"])}
                c = cell[f"tide_{w}_workers"]
                cpu_texts.append(f"{c['cpu_ratio_median']:>8.2f} {c['cores_median']:>5.2f}")
                texts.append(" ".join(f"{x:.2f}" for x in ratios))
            results.append(cell)
            print(f"{expr:<8} {order:<9} {statistics.median(cell['update_seconds']):>8.2f} " +
                  " ".join(f"{cell[f'tide_{w}_workers']['ratio_median']:>12.2f}" for w in workers) +
                  "   " + " | ".join(texts))
            cpu_lines.append(f"{expr:<8} {order:<9} {update_cores:>12.2f} " + " ".join(cpu_texts))
            sys.stdout.flush()
    # Where the time goes: a run can be no faster than its CPU seconds over the cores it gets.
    print(f"\nPostgreSQL's CPU (seconds of its processes during each run; median of {a.rounds} rounds): "
          "the UPDATE's cores busy, then per worker count tide's CPU over the UPDATE's and its cores busy")
    print(f"{'expression':<8} {'key':<9} {'UPDATE cores':>12} " +
          " ".join(f"{f'{w}w cpu x':>8} {'cores':>5}" for w in workers))
    for line in cpu_lines:
        print(line)
    sys.stdout.flush()
    old = []
    if os.path.exists(a.json):
        with open(a.json) as f:
            old = json.load(f)
    with open(a.json, "w") as f:
        json.dump(old + results, f, indent=2)


if __name__ == "__main__":
    main()
