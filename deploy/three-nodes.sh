#!/usr/bin/env bash
# Three Switchboard nodes behind nginx, on one machine.
#
#   deploy/three-nodes.sh          start (or keep running) nodes on 127.0.0.1:8081-8083, nginx on :8088
#   deploy/three-nodes.sh stop     stop them (nodes first, so streams get `event: shutdown`)
#   deploy/three-nodes.sh status
#
# Needs Redis >= 7.0 on REDIS_URL and PostgreSQL with trust auth on PGHOST:PGPORT (user PGUSER);
# creates the database PGDATABASE if it is missing, installs nginx with apt-get if it is missing.
# Every node inherits SWITCHBOARD__* from this environment (set SWITCHBOARD__AUTH__JWT_SECRET and
# SWITCHBOARD__AUTH__PRODUCER_KEYS here for anything but a demo) and reads ./config.toml.
# Behind nginx every client has nginx's address, so the per-address stream-open limit is off
# on the nodes unless SWITCHBOARD__LIMITS__STREAM_OPENS_PER_IP_PER_SEC is set.
# Logs and pid files: deploy/run/ (node1.log … node3.log, nginx/logs/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUN=$ROOT/deploy/run
BIN=$ROOT/target/release/switchboard
NGINX_CONF=$ROOT/deploy/nginx/switchboard.conf
NGINX_PREFIX=$RUN/nginx

REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
PGHOST=${PGHOST:-127.0.0.1}
PGPORT=${PGPORT:-5432}
PGUSER=${PGUSER:-postgres}
PGDATABASE=${PGDATABASE:-switchboard_demo}
PORTS=(8081 8082 8083)

log() { printf 'three-nodes: %s\n' "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# The pid in FILE, if that process is alive and its command line contains WORD.
live_pid() {
    local file=$1 word=$2 pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$word" || return 1
    echo "$pid"
}

nginx_cmd() { nginx -p "$NGINX_PREFIX/" -e logs/error.log -c "$NGINX_CONF" "$@"; }

wait_ready() {
    local port=$1 i
    for i in $(seq 1 100); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    return 1
}

start() {
    mkdir -p "$RUN" "$NGINX_PREFIX/logs" "$NGINX_PREFIX/tmp"

    # Redis: reachable, and >= 7.0 (sharded pub/sub: SPUBLISH / SSUBSCRIBE).
    if have redis-cli; then
        local version
        version=$(redis-cli -u "$REDIS_URL" info server 2>/dev/null | tr -d '\r' | sed -n 's/^redis_version://p')
        [ -n "$version" ] || { log "Redis is not reachable at $REDIS_URL"; exit 1; }
        [ "${version%%.*}" -ge 7 ] || { log "Redis $version at $REDIS_URL: need >= 7.0 (sharded pub/sub)"; exit 1; }
    fi

    # PostgreSQL: the shared device registry.
    if [ "$(psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -Atc \
            "SELECT 1 FROM pg_database WHERE datname = '$PGDATABASE'")" != 1 ]; then
        log "creating database $PGDATABASE"
        psql -h "$PGHOST" -p "$PGPORT" -U "$PGUSER" -d postgres -qc "CREATE DATABASE \"$PGDATABASE\""
    fi

    if ! have nginx; then
        log "installing nginx"
        local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q nginx
    fi

    log "building (cargo build --release --bin switchboard)"
    cargo build --release --bin switchboard

    local i port pid
    for i in 1 2 3; do
        port=${PORTS[$((i - 1))]}
        if pid=$(live_pid "$RUN/node$i.pid" switchboard); then
            log "node$i already running (pid $pid, 127.0.0.1:$port)"
            continue
        fi
        SWITCHBOARD__SERVER__LISTEN=127.0.0.1:$port \
        SWITCHBOARD__SERVER__NODE_ID=node$i \
        SWITCHBOARD__BROKER__KIND=redis \
        SWITCHBOARD__BROKER__REDIS_URL=$REDIS_URL \
        SWITCHBOARD__STORE__URL=postgres://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE \
        SWITCHBOARD__LIMITS__STREAM_OPENS_PER_IP_PER_SEC=${SWITCHBOARD__LIMITS__STREAM_OPENS_PER_IP_PER_SEC:-0} \
            setsid "$BIN" serve >>"$RUN/node$i.log" 2>&1 </dev/null &
        echo $! >"$RUN/node$i.pid"
        log "node$i started (pid $!, 127.0.0.1:$port, log deploy/run/node$i.log)"
    done
    for i in 1 2 3; do
        port=${PORTS[$((i - 1))]}
        wait_ready "$port" || { log "node$i is not ready on :$port; see $RUN/node$i.log"; tail -n 20 "$RUN/node$i.log" >&2; exit 1; }
    done

    nginx_cmd -t -q
    if pid=$(live_pid "$NGINX_PREFIX/logs/nginx.pid" nginx); then
        nginx_cmd -s reload
        log "nginx reloaded (pid $pid)"
    else
        nginx_cmd
        log "nginx started on 127.0.0.1:8088 (logs deploy/run/nginx/logs/)"
    fi
    status
}

stop() {
    local i pid n
    for i in 1 2 3; do
        if pid=$(live_pid "$RUN/node$i.pid" switchboard); then
            kill -TERM "$pid"
            # shutdown_grace_secs (10 s by default), then a little more.
            for n in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            if kill -0 "$pid" 2>/dev/null; then log "node$i did not stop; SIGKILL"; kill -KILL "$pid"; fi
            log "node$i stopped"
        fi
        rm -f "$RUN/node$i.pid"
    done
    if pid=$(live_pid "$NGINX_PREFIX/logs/nginx.pid" nginx); then
        # Fast stop: a graceful quit would wait for open streams (up to worker_shutdown_timeout).
        nginx_cmd -s stop
        for n in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        log "nginx stopped"
    fi
}

status() {
    local i pid
    for i in 1 2 3; do
        if pid=$(live_pid "$RUN/node$i.pid" switchboard); then
            echo "node$i  pid $pid  127.0.0.1:${PORTS[$((i - 1))]}"
        else
            echo "node$i  stopped"
        fi
    done
    if pid=$(live_pid "$NGINX_PREFIX/logs/nginx.pid" nginx); then
        echo "nginx  pid $pid  127.0.0.1:8088"
    else
        echo "nginx  stopped"
    fi
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    *) echo "usage: $0 [start|stop|status|restart]" >&2; exit 2 ;;
esac
