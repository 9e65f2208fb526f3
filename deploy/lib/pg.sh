# Shell helpers to run a private PostgreSQL 15 cluster on loopback. Source this file.
# PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user.

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# as_pg CMD...: runs CMD as the cluster's owner.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pg_start DIR PORT: initdb DIR (if new) and start the server on 127.0.0.1:PORT.
# PG_OPTS: extra server options; by default fsync is off (throwaway data). Set PG_OPTS="" for
# durable commits, as in production.
pg_start() {
  local dir port=$2
  dir=$(realpath -m "$1")
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres:postgres "$dir"; fi
  chmod 700 "$dir"
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; return 1; }
  fi
  as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir ${PG_OPTS--c fsync=off -c full_page_writes=off}" >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
}

pg_stop() {
  local dir=$1
  [[ -f "$dir/data/postmaster.pid" ]] && as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}
