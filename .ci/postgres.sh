#!/usr/bin/env bash
# A throw-away PostgreSQL server for the search storage tests, on 127.0.0.1, in a temp dir.
#   bash .ci/postgres.sh start DIR  -> prints the server's URL (nothing, exit 1, if impossible)
#   bash .ci/postgres.sh stop DIR   -> stops it and removes DIR (an empty dir of yours, e.g. mktemp -d)
# The server runs as the tests' own user, or as `nobody` when that is root (PostgreSQL refuses
# root). Without PostgreSQL installed, root installs the Debian package `postgresql` with apt-get.
set -uo pipefail
say() { echo "postgres.sh: $*" >&2; }

bindir() {
    local d
    for d in "$(pg_config --bindir 2>/dev/null)" /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
    done
    return 1
}

as_owner() {  # run "$@" as the server's owner
    if [ "$(id -u)" = 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

start() {
    local dir=$1 bin port t0
    if ! bin=$(bindir); then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            t0=$(date +%s)
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql \
                >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
                    postgresql >/dev/null 2>&1; }
            say "apt-get install postgresql took $(( $(date +%s) - t0 )) s"
        fi
        bin=$(bindir) || { say "no PostgreSQL (initdb) found; its tests will skip"; return 1; }
    fi
    [ -d "$dir" ] && [ -z "$(ls -A "$dir")" ] || { say "$dir must be an empty directory"; return 1; }
    [ "$(id -u)" = 0 ] && chown nobody "$dir"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    if ! as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
       ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" \
            start >/dev/null 2>&1; then
        say "could not start a server (see $dir/*.log); its tests will skip"
        return 1
    fi
    touch "$dir/.elastic-lm-pg"
    echo "postgresql://postgres@127.0.0.1:$port/postgres"
}

stop() {
    local dir=$1 bin
    [ -f "$dir/.elastic-lm-pg" ] || { say "$dir is not a server of ours"; return 1; }
    bin=$(bindir) && as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1
    rm -rf -- "$dir"
}

case "${1:-}" in
    start) start "${2:?usage: postgres.sh start DIR}" ;;
    stop) stop "${2:?usage: postgres.sh stop DIR}" ;;
    *) echo "usage: postgres.sh start DIR | stop DIR" >&2; exit 2 ;;
esac
