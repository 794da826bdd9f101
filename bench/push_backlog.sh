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
# Ports (127.0.0.1): BACKLOG_SB_PORT [18180], BACKLOG_MOCK_PORT [14100].
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release
SENDS=${BACKLOG_SENDS:-100000}
BROKER=${BACKLOG_BROKER:-memory}
SB_PORT=${BACKLOG_SB_PORT:-18180}
MOCK_PORT=${BACKLOG_MOCK_PORT:-14100}
RATE=${BACKLOG_RATE:-5000}
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
log "outage: publishing $SENDS notifications to $SENDS offline users at $RATE/s"
"$BIN/loadgen" fcm --url "$SB" --users "$SENDS" --rate "$RATE" \
    --duration "$(python3 -c "print($SENDS / $RATE)")" --mock-url "$MOCK" --fcm-drain-secs 0 \
    --server-pid "$SB_PID" >"$RUN/loadgen.json" 2>"$RUN/loadgen.log" || { tail -5 "$RUN/loadgen.log"; exit 1; }
sleep 2
depth=$(metric switchboard_push_queue_depth)
log "queued: $depth sends (oldest $(metric switchboard_push_queue_oldest_seconds) s); mock accepted $(mock_accepted)"
if [ "$BROKER" = redis ]; then
    log "queue cost: $(( ($(redis_used) - redis_before) / depth )) bytes of Redis memory per queued send"
else
    sqlite3 "$RUN/sb.db" 'PRAGMA wal_checkpoint(TRUNCATE);' >/dev/null 2>&1 || true
    log "queue cost: $(( $(stat -c %s "$RUN/sb.db") / depth )) bytes of SQLite file per queued send (devices table included)"
fi
curl -fsS -X DELETE "$MOCK/_mock/faults"
start=$(date +%s.%N)
while :; do
    d=$(metric switchboard_push_queue_depth)
    [ "${d:-1}" = 0 ] && [ "$(mock_accepted)" -ge "$depth" ] && break
    sleep 0.2
done
end=$(date +%s.%N)
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
