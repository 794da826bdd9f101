#!/usr/bin/env bash
# Switchboard benchmark: Switchboard and Nchan (nginx pub/sub) under the same load, in one run.
#
#   bench/run.sh                        # everything, full durations (about 15 minutes)
#   BENCH_DURATION=5 bench/run.sh       # a quick check of the whole pipeline
#   BENCH_ONLY="W2 W5" bench/run.sh     # some workloads only
#
# Writes bench/results/results.md (table), bench/results/chart.png and raw JSON + logs in
# bench/results/raw/. Each workload starts its servers fresh and stops them after.
#
# Environment (defaults in brackets):
#   BENCH_DURATION [20]      publish window of W2-W6, seconds
#   BENCH_W7_DURATION [60]   window of each W7 run (inbox polling, push, mixed)
#   BENCH_STREAMS [15000]    streams of W1, W2, W3, W5
#   BENCH_W4_STREAMS [10000] streams of W4 (two nodes on Redis)
#   BENCH_FCM_USERS [20000]  offline users of W6
#   BENCH_WEBPUSH_USERS [5000]  offline browsers of W6W (W6 for Web Push); pywebpush sends
#                            BENCH_WEBPUSH_SDK_MESSAGES [1000] against the same mock
#   BENCH_W7_CLIENTS [10000] users of W7 (pollers, or streams)
#   BENCH_CONNECTIONS [16]   publisher connections
#   BENCH_HOLD_SECS [10]     W1: how long streams stay open before memory is read
#   BENCH_ONLY [W1-W7]       space-separated subset of W1 W2 W3 W4 W5 W6 W6A W6W W7 E1 E2 E3 B
#                            (W6A: W6 for APNs at apns-mock, over 1 and BENCH_APNS_CONNECTIONS
#                            HTTP/2 connections; W6W: W6 for Web Push at webpush-mock)
#   BENCH_APNS_CONNECTIONS [4]  W6A: apns.connections of its second run
#                            (E1-E3: limits and abuse; B: W1/W2 against BENCH_BASELINE_BIN)
#   BENCH_E1_STREAMS [15000] E1: reconnecting clients (restart under them)
#   BENCH_E2_STREAMS [1000]  E2: real streams; BENCH_E2_FLOOD [10000] anonymous connections
#   BENCH_E2_NOTIFICATIONS [10000] per phase, at BENCH_E2_RATE [500]/s; BENCH_E2_ROUNDS [2]
#   BENCH_E2_MAX_CONNECTIONS [0]   E2: server.max_connections (0 = derived from the file limit)
#   BENCH_E2_HEADER_TIMEOUT [10]   E2: server.header_timeout_secs (how long a flood connection lives)
#   BENCH_E2_RAMP [0.5]            E2: seconds over which the flood's first connects spread
#   BENCH_E3_STREAMS [1000], BENCH_E3_RATE [500]/s for BENCH_E3_DURATION [10] s per phase,
#   BENCH_E3_PRODUCER_RATE [1000] limits.producer_rate_per_sec of E3; BENCH_E3_ROUNDS [2];
#   BENCH_E3_NOISY_RATE [max] the noisy producer's requests/s (8 connections)
#   BENCH_BASELINE_BIN []    a switchboard binary built before the edge work: with B, W1 and W2
#                            run against it and the current one, interleaved, BENCH_BASELINE_ROUNDS [2]
#   BENCH_RESULTS [bench/results]  where results go
#   BENCH_SKIP_INSTALL=1     do not apt-get/pip install anything
#   BENCH_SKIP_BUILD=1       use the release binaries already in target/release
#   BENCH_BIN_DIR [target/release]  where the binaries are (with BENCH_SKIP_BUILD=1)
#   BENCH_SOURCE_IPS [127.0.0.2-127.0.0.20]  load generator source addresses
#   NCHAN_WORKERS [auto]     nginx worker_processes (auto = one per core, like tokio)
#   Ports (127.0.0.1): SB_PORT [18080] SB_PORT_B [18081] NCHAN_PORT [18090] NCHAN_PORT_B [18091]
#                      FCM_MOCK_PORT [14000] APNS_MOCK_PORT [14001] WEBPUSH_MOCK_PORT [14002]
#                      REDIS_PORT [16379]
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")

DURATION=${BENCH_DURATION:-20}
W7_DURATION=${BENCH_W7_DURATION:-60}
STREAMS=${BENCH_STREAMS:-15000}
W4_STREAMS=${BENCH_W4_STREAMS:-10000}
FCM_USERS=${BENCH_FCM_USERS:-20000}
WEBPUSH_USERS=${BENCH_WEBPUSH_USERS:-5000}
WEBPUSH_SDK_MESSAGES=${BENCH_WEBPUSH_SDK_MESSAGES:-1000}
W7_CLIENTS=${BENCH_W7_CLIENTS:-10000}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
HOLD_SECS=${BENCH_HOLD_SECS:-10}
ONLY=${BENCH_ONLY:-W1 W2 W3 W4 W5 W6 W6W W7}
E1_STREAMS=${BENCH_E1_STREAMS:-15000}
E2_STREAMS=${BENCH_E2_STREAMS:-1000}
E2_FLOOD=${BENCH_E2_FLOOD:-10000}
E2_NOTIFICATIONS=${BENCH_E2_NOTIFICATIONS:-10000}
E2_RATE=${BENCH_E2_RATE:-500}
E2_ROUNDS=${BENCH_E2_ROUNDS:-2}
E2_MAX_CONNECTIONS=${BENCH_E2_MAX_CONNECTIONS:-0}
E2_HEADER_TIMEOUT=${BENCH_E2_HEADER_TIMEOUT:-10}
E2_RAMP=${BENCH_E2_RAMP:-0.5}
E3_STREAMS=${BENCH_E3_STREAMS:-1000}
E3_RATE=${BENCH_E3_RATE:-500}
E3_DURATION=${BENCH_E3_DURATION:-10}
E3_PRODUCER_RATE=${BENCH_E3_PRODUCER_RATE:-1000}
E3_ROUNDS=${BENCH_E3_ROUNDS:-2}
E3_NOISY_RATE=${BENCH_E3_NOISY_RATE:-max}
BASELINE_BIN=${BENCH_BASELINE_BIN:-}
BASELINE_ROUNDS=${BENCH_BASELINE_ROUNDS:-2}
RESULTS=${BENCH_RESULTS:-$BENCH_DIR/results}
SOURCE_IPS=${BENCH_SOURCE_IPS:-127.0.0.2-127.0.0.20}
NCHAN_WORKERS=${NCHAN_WORKERS:-auto}
SB_PORT=${SB_PORT:-18080}
SB_PORT_B=${SB_PORT_B:-18081}
NCHAN_PORT=${NCHAN_PORT:-18090}
NCHAN_PORT_B=${NCHAN_PORT_B:-18091}
FCM_MOCK_PORT=${FCM_MOCK_PORT:-14000}
APNS_MOCK_PORT=${APNS_MOCK_PORT:-14001}
APNS_CONNECTIONS=${BENCH_APNS_CONNECTIONS:-4}
WEBPUSH_MOCK_PORT=${WEBPUSH_MOCK_PORT:-14002}
REDIS_PORT=${REDIS_PORT:-16379}

RAW=$RESULTS/raw
BIN=${BENCH_BIN_DIR:-$ROOT/target/release}
LOADGEN=$BIN/loadgen
RUN=$(mktemp -d "${TMPDIR:-/tmp}/sb-bench.XXXXXX")
PIDS=()
FAILED=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---------------------------------------------------------------- processes and cleanup

# Stops every server this script started (each by its own pid), newest first.
stop_servers() {
    local i pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[$i]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

cleanup() {
    local rc=$?
    stop_servers
    rm -rf "$RUN"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url, name
    for _ in $(seq 1 200); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    log "$2 did not come up at $1"
    return 1
}

wait_port() { # port, name
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    log "$2 did not open port $1"
    return 1
}

# ---------------------------------------------------------------- setup

install_deps() {
    [ "${BENCH_SKIP_INSTALL:-0}" = 1 ] && return 0
    local pkgs=()
    have nginx || pkgs+=(nginx)
    [ -e /usr/lib/nginx/modules/ngx_nchan_module.so ] || pkgs+=(libnginx-mod-nchan)
    have redis-server || pkgs+=(redis-server)
    have curl || pkgs+=(curl)
    have python3 || pkgs+=(python3 python3-pip)
    if [ ${#pkgs[@]} -gt 0 ]; then
        log "installing ${pkgs[*]}"
        # No service may start during the install: this script runs its own servers.
        local policy=/usr/sbin/policy-rc.d created_policy=0
        if [ ! -e "$policy" ]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
        fi
        apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}"
        [ "$created_policy" = 1 ] && rm -f "$policy"
    fi
    python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install -q matplotlib
    python3 -c 'import firebase_admin' 2>/dev/null || python3 -m pip install -q 'firebase-admin==7.7.0'
}

build() {
    [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && return 0
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -q -p switchboard -p fcm-mock -p apns-mock -p webpush-mock -p sb-loadgen &&
        cargo build --release -q -p switchboard --example webpush_encrypt)
}

# ---------------------------------------------------------------- servers

SB_PID=
# Which binary start_switchboard runs, and the limits it sets (callers override both with
# `local`): the W-workloads push one producer key at full speed and thousands of streams per
# source address, so the producer and per-address rate limits that guard a public node are off
# there (LIMITS=off); the E-workloads run with the shipped limits (LIMITS=default); a binary from
# before the limits existed knows no [limits] section (LIMITS=none).
SB_BIN=
LIMITS=off
# start_switchboard NAME PORT [VAR=value ...]: a fresh router with its own SQLite database.
start_switchboard() {
    local name=$1 port=$2
    shift 2
    local dir=$RUN/$name
    mkdir -p "$dir"
    local limits=()
    [ "$LIMITS" = off ] && limits=(SWITCHBOARD__LIMITS__PRODUCER_RATE_PER_SEC=0
        SWITCHBOARD__LIMITS__STREAM_OPENS_PER_IP_PER_SEC=0)
    (
        cd "$dir"
        exec env RUST_LOG=warn \
            SWITCHBOARD__SERVER__LISTEN="127.0.0.1:$port" \
            SWITCHBOARD__SERVER__SHUTDOWN_GRACE_SECS=3 \
            SWITCHBOARD__STORE__URL="sqlite://$dir/switchboard.db?mode=rwc" \
            SWITCHBOARD__SSE__HEARTBEAT_SECS=15 \
            SWITCHBOARD__SSE__MAX_CONNECTIONS_PER_USER=8 \
            "${limits[@]}" "$@" "${SB_BIN:-$BIN/switchboard}" serve
    ) >"$RAW/$name.server.log" 2>&1 &
    SB_PID=$!
    PIDS+=("$SB_PID")
    wait_http "http://127.0.0.1:$port/healthz" "switchboard $name"
}

NCHAN_PID=
# start_nchan NAME PORT CONF: nginx + Nchan in the foreground (its pid is the master's).
start_nchan() {
    local name=$1 port=$2 conf=$3
    local dir=$RUN/$name
    mkdir -p "$dir"
    sed -e "s|__PORT__|$port|g" -e "s|__RUNDIR__|$dir|g" -e "s|__WORKERS__|$NCHAN_WORKERS|g" \
        -e "s|__REDIS_URL__|redis://127.0.0.1:$REDIS_PORT|g" \
        -e "s|__ERROR_LOG__|$RAW/$name.error.log|g" "$conf" >"$dir/nginx.conf"
    nginx -c "$dir/nginx.conf" -p "$dir" -e "$RAW/$name.error.log" >"$RAW/$name.server.log" 2>&1 &
    NCHAN_PID=$!
    PIDS+=("$NCHAN_PID")
    wait_http "http://127.0.0.1:$port/healthz" "nchan $name"
}

start_redis() {
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
        --daemonize no --maxclients 10000 >"$RAW/redis.$1.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 1 100); do
        redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    log "redis did not start on $REDIS_PORT"
    return 1
}

MOCK_URL=http://127.0.0.1:$FCM_MOCK_PORT
start_fcm_mock() {
    [ -f "$RUN/fcm-key.json" ] ||
        "$BIN/fcm-mock" gen-key --out "$RUN/fcm-key.json" --mock-url "$MOCK_URL" >/dev/null
    RUST_LOG=warn "$BIN/fcm-mock" --listen "127.0.0.1:$FCM_MOCK_PORT" \
        --service-account "$RUN/fcm-key.json" >"$RAW/fcm-mock.$1.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$FCM_MOCK_PORT" fcm-mock
}

WEBPUSH_MOCK_URL=http://127.0.0.1:$WEBPUSH_MOCK_PORT
# start_webpush_mock NAME: webpush-mock requiring the run's VAPID key; it decrypts every
# message and counts it, recording none (the run would fill its memory).
start_webpush_mock() {
    [ -f "$RUN/vapid.pem" ] ||
        "$BIN/webpush-mock" gen-key --out "$RUN/vapid.pem" >"$RUN/vapid.pub" 2>/dev/null
    RUST_LOG=warn "$BIN/webpush-mock" --listen "127.0.0.1:$WEBPUSH_MOCK_PORT" \
        --vapid-public-key "$(cat "$RUN/vapid.pub")" --max-recorded 0 \
        >"$RAW/webpush-mock.$1.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$WEBPUSH_MOCK_PORT" webpush-mock
}

APNS_MOCK_URL=http://127.0.0.1:$APNS_MOCK_PORT
APNS_TOPIC=com.example.bench
APNS_TEAM=BENCHTEAM1
APNS_KEY_ID=
start_apns_mock() {
    [ -f "$RUN/apns-key.p8" ] ||
        "$BIN/apns-mock" gen-key --out "$RUN/apns-key.p8" >"$RUN/apns-key.id" 2>/dev/null
    APNS_KEY_ID=$(cat "$RUN/apns-key.id")
    RUST_LOG=warn "$BIN/apns-mock" --listen "127.0.0.1:$APNS_MOCK_PORT" --key-id "$APNS_KEY_ID" \
        --team-id "$APNS_TEAM" --auth-key "$RUN/apns-key.p8" --topic "$APNS_TOPIC" \
        --max-recorded 1000 >"$RAW/apns-mock.$1.log" 2>&1 &
    PIDS+=("$!")
    wait_port "$APNS_MOCK_PORT" apns-mock
}

# ---------------------------------------------------------------- load

# lg NAME ARGS...: one load generator run; JSON to raw/NAME.json, its summary to the terminal.
lg() {
    local name=$1
    shift
    log "$name: loadgen $*"
    if "$LOADGEN" "$@" --source-ips "$SOURCE_IPS" >"$RAW/$name.json" 2>"$RAW/$name.log"; then
        tail -n 1 "$RAW/$name.log" >&2
    else
        log "$name FAILED (exit $?): see $RAW/$name.log"
        tail -n 5 "$RAW/$name.log" >&2
        FAILED+=("$name")
        rm -f "$RAW/$name.json"
    fi
}

SB=(--target switchboard --url "http://127.0.0.1:$SB_PORT")
NCHAN=(--target nchan --url "http://127.0.0.1:$NCHAN_PORT")

w1() { # idle streams: server memory per stream
    start_switchboard sb-w1 "$SB_PORT"
    lg w1-switchboard idle "${SB[@]}" --streams "$STREAMS" --hold-secs "$HOLD_SECS" --server-pid "$SB_PID"
    stop_servers
    start_nchan nchan-w1 "$NCHAN_PORT" "$BENCH_DIR/nchan/nginx.conf"
    lg w1-nchan idle "${NCHAN[@]}" --streams "$STREAMS" --hold-secs "$HOLD_SECS" --server-pid "$NCHAN_PID"
    stop_servers
}

w2() { # unicast, single publish at max rate
    start_switchboard sb-w2 "$SB_PORT"
    lg w2-switchboard unicast "${SB[@]}" --streams "$STREAMS" --duration "$DURATION" \
        --connections "$CONNECTIONS" --server-pid "$SB_PID"
    stop_servers
    start_nchan nchan-w2 "$NCHAN_PORT" "$BENCH_DIR/nchan/nginx.conf"
    lg w2-nchan unicast "${NCHAN[@]}" --streams "$STREAMS" --duration "$DURATION" \
        --connections "$CONNECTIONS" --server-pid "$NCHAN_PID"
    stop_servers
}

w3() { # unicast through /v1/notify/batch, 100 per request (Nchan has no batch: W2's figure)
    start_switchboard sb-w3 "$SB_PORT"
    lg w3-switchboard unicast "${SB[@]}" --streams "$STREAMS" --duration "$DURATION" \
        --connections "$CONNECTIONS" --batch 100 --server-pid "$SB_PID"
    stop_servers
}

w4() { # two nodes on one Redis: streams on B, publishes to A
    start_redis sb
    start_switchboard sb-w4-a "$SB_PORT" SWITCHBOARD__BROKER__KIND=redis \
        SWITCHBOARD__BROKER__REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    local a=$SB_PID
    start_switchboard sb-w4-b "$SB_PORT_B" SWITCHBOARD__BROKER__KIND=redis \
        SWITCHBOARD__BROKER__REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    local b=$SB_PID
    lg w4-switchboard unicast --target switchboard --url "http://127.0.0.1:$SB_PORT_B" \
        --pub-url "http://127.0.0.1:$SB_PORT" --streams "$W4_STREAMS" --duration "$DURATION" \
        --connections "$CONNECTIONS" --server-pid "$a,$b" --redis-addr "127.0.0.1:$REDIS_PORT"
    stop_servers
    start_redis nchan
    start_nchan nchan-w4-a "$NCHAN_PORT" "$BENCH_DIR/nchan/nginx-redis.conf"
    a=$NCHAN_PID
    start_nchan nchan-w4-b "$NCHAN_PORT_B" "$BENCH_DIR/nchan/nginx-redis.conf"
    b=$NCHAN_PID
    lg w4-nchan unicast --target nchan --url "http://127.0.0.1:$NCHAN_PORT_B" \
        --pub-url "http://127.0.0.1:$NCHAN_PORT" --streams "$W4_STREAMS" --duration "$DURATION" \
        --connections "$CONNECTIONS" --server-pid "$a,$b" --redis-addr "127.0.0.1:$REDIS_PORT"
    stop_servers
}

w5() { # one topic, every stream on it: max rate, then 1/s
    local kind
    for kind in switchboard nchan; do
        for mode in max 1hz; do
            local rate=()
            [ "$mode" = 1hz ] && rate=(--rate 1 --connections 1)
            [ "$mode" = max ] && rate=(--connections "$CONNECTIONS")
            if [ "$kind" = switchboard ]; then
                start_switchboard "sb-w5-$mode" "$SB_PORT"
                lg "w5-$mode-switchboard" broadcast "${SB[@]}" --streams "$STREAMS" \
                    --duration "$DURATION" "${rate[@]}" --server-pid "$SB_PID"
            else
                start_nchan "nchan-w5-$mode" "$NCHAN_PORT" "$BENCH_DIR/nchan/nginx.conf"
                lg "w5-$mode-nchan" broadcast "${NCHAN[@]}" --streams "$STREAMS" \
                    --duration "$DURATION" "${rate[@]}" --server-pid "$NCHAN_PID"
            fi
            stop_servers
        done
    done
}

w6() { # offline users → FCM at fcm-mock; then Google's Admin SDK against a fresh mock
    start_fcm_mock sb
    start_switchboard sb-w6 "$SB_PORT" SWITCHBOARD__FCM__SERVICE_ACCOUNT="$RUN/fcm-key.json" \
        SWITCHBOARD__FCM__ENDPOINT="$MOCK_URL"
    lg w6-switchboard fcm "${SB[@]}" --users "$FCM_USERS" --duration "$DURATION" \
        --mock-url "$MOCK_URL" --rate max --connections "$CONNECTIONS" --server-pid "$SB_PID"
    stop_servers
    start_fcm_mock sdk
    log "w6-admin-sdk: firebase-admin send_each, $FCM_USERS messages in batches of 500"
    if python3 "$BENCH_DIR/fcm_admin_send.py" "$MOCK_URL" "$RUN/fcm-key.json" \
        --messages "$FCM_USERS" --batch 500 >"$RAW/w6-admin-sdk.json" 2>"$RAW/w6-admin-sdk.log"; then
        tail -n 1 "$RAW/w6-admin-sdk.log" >&2
    else
        log "w6-admin-sdk FAILED: see $RAW/w6-admin-sdk.log"
        tail -n 5 "$RAW/w6-admin-sdk.log" >&2
        FAILED+=(w6-admin-sdk)
        rm -f "$RAW/w6-admin-sdk.json"
    fi
    stop_servers
}

w6w() { # W6 for Web Push: encryption alone; offline browsers → webpush-mock; pywebpush against a fresh mock
    local example=$BIN/examples/webpush_encrypt
    log "w6w-encrypt: RFC 8291 encryptions and VAPID signatures per second, one thread"
    if "$example" 5 >"$RAW/w6w-encrypt.json" 2>"$RAW/w6w-encrypt.log"; then
        tail -n 1 "$RAW/w6w-encrypt.log" >&2
    else
        log "w6w-encrypt FAILED: see $RAW/w6w-encrypt.log"
        FAILED+=(w6w-encrypt)
        rm -f "$RAW/w6w-encrypt.json"
    fi
    start_webpush_mock sb
    start_switchboard sb-w6w "$SB_PORT" SWITCHBOARD__WEBPUSH__VAPID_PRIVATE_KEY="$RUN/vapid.pem" \
        SWITCHBOARD__WEBPUSH__SUBJECT=mailto:bench@example.com
    lg w6w-switchboard fcm "${SB[@]}" --provider webpush --users "$WEBPUSH_USERS" --duration "$DURATION" \
        --mock-url "$WEBPUSH_MOCK_URL" --rate max --connections "$CONNECTIONS" --server-pid "$SB_PID"
    stop_servers
    start_webpush_mock sdk
    log "w6w-pywebpush: $WEBPUSH_SDK_MESSAGES messages, one after another on one session"
    if python3 "$BENCH_DIR/webpush_send.py" "$WEBPUSH_MOCK_URL" "$RUN/vapid.pem" \
        --messages "$WEBPUSH_SDK_MESSAGES" >"$RAW/w6w-pywebpush.json" 2>"$RAW/w6w-pywebpush.log"; then
        tail -n 1 "$RAW/w6w-pywebpush.log" >&2
    else
        log "w6w-pywebpush FAILED: see $RAW/w6w-pywebpush.log"
        tail -n 5 "$RAW/w6w-pywebpush.log" >&2
        FAILED+=(w6w-pywebpush)
        rm -f "$RAW/w6w-pywebpush.json"
    fi
    stop_servers
}

w6a() { # offline iOS users → APNs at apns-mock (HTTP/2, ES256 provider token), 1 and N connections
    local conns
    for conns in 1 "$APNS_CONNECTIONS"; do
        start_apns_mock "c$conns"
        start_switchboard "sb-w6a-c$conns" "$SB_PORT" \
            SWITCHBOARD__APNS__KEY_PATH="$RUN/apns-key.p8" SWITCHBOARD__APNS__KEY_ID="$APNS_KEY_ID" \
            SWITCHBOARD__APNS__TEAM_ID="$APNS_TEAM" SWITCHBOARD__APNS__TOPIC="$APNS_TOPIC" \
            SWITCHBOARD__APNS__ENDPOINT="$APNS_MOCK_URL" SWITCHBOARD__APNS__CONNECTIONS="$conns"
        lg "w6a-switchboard-apns-c$conns" fcm "${SB[@]}" --provider apns --users "$FCM_USERS" \
            --duration "$DURATION" --mock-url "$APNS_MOCK_URL" --rate max \
            --connections "$CONNECTIONS" --server-pid "$SB_PID"
        stop_servers
    done
}

w7() { # polling the inbox vs push: 10K users, one notification each per minute at random
    start_switchboard sb-w7-poll "$SB_PORT"
    lg w7-poll-switchboard w7 "${SB[@]}" --how poll --users "$W7_CLIENTS" --interval-secs 3 \
        --duration "$W7_DURATION" --connections "$CONNECTIONS" --server-pid "$SB_PID"
    stop_servers
    start_switchboard sb-w7-push "$SB_PORT"
    lg w7-push-switchboard w7 "${SB[@]}" --how push --users "$W7_CLIENTS" \
        --duration "$W7_DURATION" --connections "$CONNECTIONS" --server-pid "$SB_PID"
    stop_servers
    # The producer's side alone (notifies and their inbox writes, in both figures above).
    start_switchboard sb-w7-quiet "$SB_PORT"
    lg w7-quiet-switchboard w7 "${SB[@]}" --how quiet --users "$W7_CLIENTS" \
        --duration "$W7_DURATION" --connections "$CONNECTIONS" --server-pid "$SB_PID"
    stop_servers
    start_fcm_mock sb
    start_switchboard sb-w7-mixed "$SB_PORT" SWITCHBOARD__FCM__SERVICE_ACCOUNT="$RUN/fcm-key.json" \
        SWITCHBOARD__FCM__ENDPOINT="$MOCK_URL"
    lg w7-mixed-switchboard w7 "${SB[@]}" --how mixed --online 0.6 --users "$W7_CLIENTS" \
        --duration "$W7_DURATION" --mock-url "$MOCK_URL" --connections "$CONNECTIONS" --server-pid "$SB_PID"
    stop_servers
}

# ---------------------------------------------------------------- limits and abuse (E1-E3)

# lg_restart NAME RESTART_FN LOADGEN-ARGS...: a `storm` run; when the clients are ready, RESTART_FN
# stops the server with SIGTERM and starts it again, and sets RESTARTED to
# "<new pid> <SIGTERM unix µs> <listening again unix µs>" for the load generator.
RESTARTED=
lg_restart() {
    local name=$1 restart=$2
    shift 2
    local signal=$RUN/$name.signal
    rm -f "$signal" "$signal.restarted"
    log "$name: loadgen $*"
    "$LOADGEN" "$@" --signal-file "$signal" --source-ips "$SOURCE_IPS" \
        >"$RAW/$name.json" 2>"$RAW/$name.log" &
    local lg_pid=$!
    while [ ! -e "$signal" ] && kill -0 "$lg_pid" 2>/dev/null; do sleep 0.02; done
    if [ -e "$signal" ]; then
        "$restart"
        echo "$RESTARTED" >"$signal.tmp" && mv "$signal.tmp" "$signal.restarted"
        log "$name: restarted ($RESTARTED)"
    fi
    if wait "$lg_pid"; then
        tail -n 1 "$RAW/$name.log" >&2
    else
        log "$name FAILED: see $RAW/$name.log"
        tail -n 5 "$RAW/$name.log" >&2
        FAILED+=("$name")
        rm -f "$RAW/$name.json"
    fi
}

now_us() { date +%s%6N; }

# stop_pid PID: SIGTERM, then wait for it to exit (SIGKILL after 30 s).
stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 1 1500); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.02
    done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

E1_SB_ENV=()
restart_switchboard_e1() {
    local t_term
    t_term=$(now_us)
    stop_pid "$SB_PID"
    start_switchboard sb-e1-restarted "$SB_PORT" "${E1_SB_ENV[@]}"
    RESTARTED="$SB_PID $t_term $(now_us)"
}

restart_nchan_e1() {
    local t_term
    t_term=$(now_us)
    stop_pid "$NCHAN_PID"
    start_nchan nchan-e1-restarted "$NCHAN_PORT" "$BENCH_DIR/nchan/nginx-redis.conf"
    RESTARTED="$NCHAN_PID $t_term $(now_us)"
}

e1() { # reconnect storm: the server restarted under 15 000 reconnecting clients; Nchan the same
    local LIMITS=default
    start_redis sb-e1
    # The replay buffers and records live in Redis, so that a restarted node can replay.
    E1_SB_ENV=(SWITCHBOARD__BROKER__KIND=redis
        SWITCHBOARD__BROKER__REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
        SWITCHBOARD__STORE__URL="sqlite://$RUN/sb-e1/switchboard.db?mode=rwc")
    start_switchboard sb-e1 "$SB_PORT" "${E1_SB_ENV[@]}"
    # No bound on connects in flight: 15 000 phones do not queue behind each other.
    lg_restart e1-switchboard restart_switchboard_e1 storm "${SB[@]}" --streams "$E1_STREAMS" \
        --connect-concurrency "$E1_STREAMS" --server-pid "$SB_PID"
    stop_servers
    start_redis nchan-e1
    start_nchan nchan-e1 "$NCHAN_PORT" "$BENCH_DIR/nchan/nginx-redis.conf"
    lg_restart e1-nchan restart_nchan_e1 storm "${NCHAN[@]}" --streams "$E1_STREAMS" \
        --connect-concurrency "$E1_STREAMS" --server-pid "$NCHAN_PID"
    stop_servers
}

e2() { # flood: anonymous connections held while real streams get notifications
    local LIMITS=default
    start_switchboard sb-e2 "$SB_PORT" SWITCHBOARD__SERVER__MAX_CONNECTIONS="$E2_MAX_CONNECTIONS" \
        SWITCHBOARD__SERVER__HEADER_TIMEOUT_SECS="$E2_HEADER_TIMEOUT"
    lg e2-switchboard flood "${SB[@]}" --streams "$E2_STREAMS" --flood "$E2_FLOOD" \
        --notifications "$E2_NOTIFICATIONS" --rate "$E2_RATE" --rounds "$E2_ROUNDS" \
        --flood-ramp-secs "$E2_RAMP" \
        --connections 4 --server-pid "$SB_PID"
    stop_servers
}

e3() { # a producer over its rate limit beside one under it
    local LIMITS=default
    start_switchboard sb-e3 "$SB_PORT" SWITCHBOARD__AUTH__PRODUCER_KEYS="[dev-producer-key,noisy-producer-key]" \
        SWITCHBOARD__LIMITS__PRODUCER_RATE_PER_SEC="$E3_PRODUCER_RATE" \
        SWITCHBOARD__LIMITS__PRODUCER_BURST=1000
    lg e3-switchboard noisy "${SB[@]}" --streams "$E3_STREAMS" --rate "$E3_RATE" \
        --duration "$E3_DURATION" --noisy-key noisy-producer-key --noisy-connections 8 \
        --noisy-rate "$E3_NOISY_RATE" \
        --rounds "$E3_ROUNDS" --connections 4 --server-pid "$SB_PID"
    stop_servers
}

# W1 and W2 against the binary of BENCH_BASELINE_BIN and the current one, interleaved (current,
# baseline, baseline, current, ...), so that drift of the shared machine falls on both alike.
# The current binary runs with every limit on, the producer's so high that it never refuses:
# the delivery path pays for each check, as on a public node.
baseline() {
    if [ -z "$BASELINE_BIN" ] || [ ! -x "$BASELINE_BIN" ]; then
        log "B: BENCH_BASELINE_BIN is not an executable: skipped"
        return 0
    fi
    local round order which
    for round in $(seq 1 "$BASELINE_ROUNDS"); do
        order="current baseline"
        [ $((round % 2)) = 0 ] && order="baseline current"
        for which in $order; do
            local SB_BIN=$BIN/switchboard LIMITS=default extra=()
            if [ "$which" = baseline ]; then
                SB_BIN=$BASELINE_BIN
                LIMITS=none
            else
                extra=(SWITCHBOARD__LIMITS__PRODUCER_RATE_PER_SEC=1000000000
                    SWITCHBOARD__LIMITS__PRODUCER_BURST=1000000000)
            fi
            start_switchboard "sb-b-w1-$which-$round" "$SB_PORT" "${extra[@]}"
            lg "b-w1-$which-$round" idle "${SB[@]}" --streams "$STREAMS" --hold-secs "$HOLD_SECS" \
                --server-pid "$SB_PID"
            stop_servers
            start_switchboard "sb-b-w2-$which-$round" "$SB_PORT" "${extra[@]}"
            lg "b-w2-$which-$round" unicast "${SB[@]}" --streams "$STREAMS" --duration "$DURATION" \
                --connections "$CONNECTIONS" --server-pid "$SB_PID"
            stop_servers
        done
    done
}

# ---------------------------------------------------------------- main

main() {
    install_deps
    build
    mkdir -p "$RAW"
    rm -f "$RAW"/*.json "$RAW"/*.log
    local started=$SECONDS w
    log "run dir $RUN; results in $RESULTS; workloads: $ONLY; duration ${DURATION}s"
    {
        echo "{"
        echo "  \"date\": \"$(date -u +%FT%TZ)\","
        echo "  \"commit\": \"$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)\","
        echo "  \"dirty\": $(cd "$ROOT" && [ -n "$(git status --porcelain -- src 2>/dev/null)" ] && echo true || echo false),"
        echo "  \"cores\": $(nproc),"
        echo "  \"loadavg\": \"$(cut -d' ' -f1-3 /proc/loadavg)\","
        echo "  \"nginx\": \"$(nginx -v 2>&1 | sed 's/.*nginx\///')\","
        echo "  \"nchan_workers\": \"$NCHAN_WORKERS\","
        echo "  \"duration\": $DURATION, \"w7_duration\": $W7_DURATION, \"streams\": $STREAMS,"
        echo "  \"w4_streams\": $W4_STREAMS, \"fcm_users\": $FCM_USERS, \"webpush_users\": $WEBPUSH_USERS, \"w7_clients\": $W7_CLIENTS,"
        echo "  \"connections\": $CONNECTIONS,"
        echo "  \"baseline_bin\": \"$BASELINE_BIN\", \"baseline_rounds\": $BASELINE_ROUNDS"
        echo "}"
    } >"$RAW/run.json"
    for w in $ONLY; do
        case $w in
        W1 | w1) w1 ;;
        W2 | w2) w2 ;;
        W3 | w3) w3 ;;
        W4 | w4) w4 ;;
        W5 | w5) w5 ;;
        W6 | w6) w6 ;;
        W6A | w6a) w6a ;;
        W6W | w6w) w6w ;;
        W7 | w7) w7 ;;
        E1 | e1) e1 ;;
        E2 | e2) e2 ;;
        E3 | e3) e3 ;;
        B | b) baseline ;;
        *) log "unknown workload $w" ;;
        esac
    done
    local elapsed=$((SECONDS - started))
    python3 "$BENCH_DIR/report.py" "$RAW" "$RESULTS" --elapsed "$elapsed"
    log "done in ${elapsed}s: $RESULTS/results.md, $RESULTS/chart.png"
    if [ ${#FAILED[@]} -gt 0 ]; then
        log "failed runs: ${FAILED[*]}"
        return 1
    fi
}

main "$@"
