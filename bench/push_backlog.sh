#!/usr/bin/env bash
# Backlog drain of the durable push queue: fcm-mock answers 503 to everything while loadgen
# publishes to offline users (each send is queued), then FCM recovers and the queue drains.
# Reports sends queued, the time to drain them, sends/s, and duplicates (fcm-mock's count
# against the distinct notification ids it recorded). Separate from run.sh; release binaries.
#
#   bench/push_backlog.sh                          # 100 000 queued sends, one node on SQLite
#   BACKLOG_SENDS=20000 bench/push_backlog.sh      # smaller
#   BACKLOG_BROKER=redis bench/push_backlog.sh     # the queue in Redis (127.0.0.1:6379)
#
# BACKLOG_USERS [20000] offline users the sends go to (several per user); BACKLOG_RATE [5000]/s.
#
# Ports (127.0.0.1): BACKLOG_SB_PORT [18180], BACKLOG_MOCK_PORT [14100]. BACKLOG_BIN_DIR [target/release].
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BACKLOG_BIN_DIR:-$ROOT/target/release}
SENDS=${BACKLOG_SENDS:-100000}
BROKER=${BACKLOG_BROKER:-memory}
SB_PORT=${BACKLOG_SB_PORT:-18180}
MOCK_PORT=${BACKLOG_MOCK_PORT:-14100}
RATE=${BACKLOG_RATE:-5000}
USERS=${BACKLOG_USERS:-20000}
RUN=$(mktemp -d "${TMPDIR:-/tmp}/sb-backlog.XXXXXX")
MOCK="http://127.0.0.1:$MOCK_PORT"
SB="http://127.0.0.1:$SB_PORT"
PIDS=()
log() { printf '[backlog %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$RUN"
}
trap cleanup EXIT
wait_http() {
    for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
    log "nothing at $1"; return 1
}
metric() { curl -fsS "$SB/metrics" | awk -v m="$1" '$1 == m {print $2}'; }
mock_accepted() { curl -fsS "$MOCK/_mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])'; }

"$BIN/fcm-mock" gen-key --out "$RUN/key.json" --mock-url "$MOCK" >/dev/null
RUST_LOG=warn "$BIN/fcm-mock" --listen "127.0.0.1:$MOCK_PORT" --service-account "$RUN/key.json" \
    --max-recorded $((SENDS * 2)) >"$RUN/mock.log" 2>&1 &
PIDS+=("$!")
extra=()
if [ "$BROKER" = redis ]; then
    extra=(SWITCHBOARD__BROKER__KIND=redis SWITCHBOARD__BROKER__REDIS_URL=redis://127.0.0.1:6379
        SWITCHBOARD__BROKER__NAMESPACE="backlog$$")
fi
(cd "$RUN" && exec env RUST_LOG=warn SWITCHBOARD__SERVER__LISTEN="127.0.0.1:$SB_PORT" \
    SWITCHBOARD__STORE__URL="sqlite://$RUN/sb.db?mode=rwc" \
    SWITCHBOARD__LIMITS__PRODUCER_RATE_PER_SEC=0 \
    SWITCHBOARD__FCM__SERVICE_ACCOUNT="$RUN/key.json" SWITCHBOARD__FCM__ENDPOINT="$MOCK" \
    "${extra[@]}" "$BIN/switchboard" serve) >"$RUN/sb.log" 2>&1 &
PIDS+=("$!")
SB_PID=$!
wait_http "$SB/healthz"

redis_used() { redis-cli -h 127.0.0.1 -p 6379 info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
[ "$BROKER" = redis ] && redis_before=$(redis_used)
curl -fsS -X POST "$MOCK/_mock/faults" -H 'content-type: application/json' \
    -d '{"status": 503, "count": 4000000000}'
# Rounds of loadgen until SENDS are queued: the router accepts less than RATE while every send
# also fails once and is rescheduled, so one window of SENDS / RATE seconds falls short.
round=0
depth=0
while [ "$depth" -lt "$SENDS" ] && [ "$round" -lt 40 ]; do
    round=$((round + 1))
    left=$((SENDS - depth))
    log "outage, round $round: publishing $left notifications to $USERS offline users at $RATE/s"
    "$BIN/loadgen" fcm --url "$SB" --users "$USERS" --rate "$RATE" \
        --duration "$(python3 -c "print(max(5.0, $left / $RATE))")" --mock-url "$MOCK" \
        --fcm-drain-secs 0 --server-pid "$SB_PID" >"$RUN/loadgen.json" 2>"$RUN/loadgen.log" ||
        { tail -5 "$RUN/loadgen.log"; exit 1; }
    sleep 1.5 # the depth gauge is refreshed every second
    depth=$(metric switchboard_push_queue_depth)
    depth=${depth%.*}
done
log "queued: $depth sends in $round rounds (oldest $(metric switchboard_push_queue_oldest_seconds) s); mock accepted $(mock_accepted)"
if [ "$BROKER" = redis ]; then
    # The namespace's own keys (other users of this Redis do not count): MEMORY USAGE of the
    # two sorted sets and of a sample of entry and batch hashes (one send per notification here).
    python3 - "$depth" "$(redis_used)" "$redis_before" "backlog$$" <<'PY' >&2
import subprocess, sys
depth, after, before, ns = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def r(*a):
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", "6379", *a],
                          capture_output=True, text=True, check=True).stdout.split()
pre = "{%s}:pq:" % ns
zsets = sum(int(r("MEMORY", "USAGE", pre + k, "SAMPLES", "0")[0]) for k in ("due", "age"))
members = r("ZRANGE", pre + "due", "0", "199")
entry = [int(r("MEMORY", "USAGE", pre + "e:" + m)[0]) for m in members]
batch = [int(r("MEMORY", "USAGE", pre + "b:" + m[:36])[0]) for m in members]
per = zsets / depth + sum(entry) / len(entry) + sum(batch) / len(batch)
print(f"queue cost (redis): {per:.0f} bytes per queued send by MEMORY USAGE "
      f"(sorted sets {zsets / depth:.0f}, entry hash {sum(entry) / len(entry):.0f}, "
      f"batch hash {sum(batch) / len(batch):.0f}); used_memory delta {(after - before) / depth:.0f} "
      f"bytes per send (the Redis is shared: noisy)")
PY
else
    # dbstat: the pages of the queue's tables and indexes only (not the devices table).
    bytes=$(sqlite3 "$RUN/sb.db" "SELECT SUM(pgsize) FROM dbstat WHERE name IN ('push_queue', \
        'push_batches', 'push_queue_due', 'push_queue_created', 'sqlite_autoindex_push_queue_1', \
        'sqlite_autoindex_push_batches_1');")
    log "queue cost (sqlite): $((bytes / depth)) bytes of database pages per queued send ($bytes bytes for $depth; tables and indexes of the queue, by dbstat)"
fi
curl -fsS -X DELETE "$MOCK/_mock/faults"
start=$(date +%s.%N)
while :; do
    d=$(metric switchboard_push_queue_depth)
    [ "${d:-1}" = 0 ] && [ "$(mock_accepted)" -ge "$depth" ] && break
    sleep 0.2
done
end=$(date +%s.%N)
curl -fsS "$SB/metrics" | grep -E '^switchboard_push_(retries|abandoned)' >&2 || true
grep -E 'WARN|ERROR' "$RUN/sb.log" | sed -E 's/^[^ ]+ +//' | sort | uniq -c | sort -rn | head -5 >&2 || true
accepted=$(mock_accepted)
distinct=$(curl -fsS "$MOCK/_mock/messages" | python3 -c '
import json, sys
m = json.load(sys.stdin)["messages"]
print(len({x["message"]["data"]["switchboard_id"] for x in m}))')
python3 - "$depth" "$accepted" "$distinct" "$start" "$end" "$BROKER" <<'PY'
import sys
depth, accepted, distinct = (int(float(x)) for x in sys.argv[1:4])
secs = float(sys.argv[5]) - float(sys.argv[4])
print(f"backlog ({sys.argv[6]} broker): {depth} queued during the outage, {accepted} delivered after it "
      f"({distinct} distinct, {accepted - distinct} duplicates) in {secs:.1f} s: {accepted / secs:.0f} sends/s")
PY
