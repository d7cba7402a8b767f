#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the tests: `pg-test-cluster.sh start DIR` creates a cluster
# in DIR (initdb, trust authentication, no TCP: a Unix socket in DIR), starts it and prints its
# URL (postgres:///postgres?host=DIR&user=postgres); `pg-test-cluster.sh stop DIR` stops it.
# PostgreSQL's binaries refuse to run as root, so as root they run as the `postgres` user
# (runuser). Nothing is left running at boot; DIR can be deleted after `stop`.
set -euo pipefail
cmd=${1:-}; dir=${2:-}
if [[ -z $cmd || -z $dir ]]; then
  echo "usage: $0 start|stop DIR" >&2
  exit 2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [[ -z $bin ]]; then
  echo "no PostgreSQL server binaries (run scripts/install-test-deps.sh)" >&2
  exit 1
fi
as_pg=()
if [[ $(id -u) -eq 0 ]]; then
  as_pg=(runuser -u postgres --)
fi
case $cmd in
  start)
    mkdir -p "$dir"
    if [[ $(id -u) -eq 0 ]]; then chown postgres "$dir"; fi
    if [[ ! -f $dir/data/PG_VERSION ]]; then
      "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 \
        --locale=C >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
      -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=off -c max_connections=300 -c shared_buffers=64MB" \
      start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres:///postgres?host=$dir&user=postgres"
    ;;
  stop)
    "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    ;;
  *)
    echo "usage: $0 start|stop DIR" >&2
    exit 2
    ;;
esac
