#!/usr/bin/env bash
# The contract, checked by an independent tool: schemathesis generates requests for every
# operation of GET /openapi.json (valid and invalid ones, then stateful sequences through the
# document's links) against a live node, and checks every answer against the document:
# no 5xx, only documented status codes and content types, bodies that match their schemas.
#
# The node is the real binary with its embedded defaults, plus a test JWT secret, producer
# key and operator key, SQLite in a temporary directory and fcm-mock as its FCM. Fails on any failure.
#
#   tests/contract/schemathesis.sh          # what CI runs (from .ci/run): seed 1, 50 cases per operation
#   SCHEMATHESIS_SEED=$RANDOM SCHEMATHESIS_MAX_EXAMPLES=200 tests/contract/schemathesis.sh
#   SCHEMATHESIS_ARGS="--workers 2" tests/contract/schemathesis.sh    # more schemathesis options
#
# CI uses a fixed seed so that a run fails for a change, not for a draw; another seed explores
# other inputs (schemathesis prints the seed of each run).
set -euo pipefail
cd "$(dirname "$0")/../.."

SCHEMATHESIS_VERSION=4.32.5
TARGET_DIR=${CARGO_TARGET_DIR:-target}
VENV=$TARGET_DIR/contract-venv
PRODUCER_KEY=contract-producer-key
OPERATOR_KEY=contract-operator-key
JWT_SECRET=contract-jwt-secret
CLIENT_USER=alice

log() { echo "contract: $*" >&2; }

# schemathesis, pinned, in its own virtualenv (kept with the build, outside git).
if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    log "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build -q --bin switchboard && cargo build -q -p fcm-mock --bin fcm-mock
BIN=$TARGET_DIR/debug

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until the log at $1 has a line "listening on http://ADDR"; prints ADDR.
listening_on() {
    for _ in $(seq 1 100); do
        local addr
        addr=$(sed -n 's|.*listening on http://\([^ ]*\).*|\1|p' "$1" 2>/dev/null | head -n1)
        if [ -n "$addr" ]; then echo "$addr"; return 0; fi
        sleep 0.1
    done
    log "no 'listening on' line in $1:"; cat "$1" >&2; return 1
}

MOCK_URL=http://127.0.0.1:$(free_port)
"$BIN/fcm-mock" gen-key --out "$WORK/key.json" --mock-url "$MOCK_URL" >/dev/null
"$BIN/fcm-mock" --listen "${MOCK_URL#http://}" --service-account "$WORK/key.json" \
    >/dev/null 2>"$WORK/fcm-mock.log" &
PIDS+=($!)
listening_on "$WORK/fcm-mock.log" >/dev/null

export SWITCHBOARD__SERVER__LISTEN=127.0.0.1:0
export SWITCHBOARD__AUTH__JWT_SECRET=$JWT_SECRET
export SWITCHBOARD__AUTH__PRODUCER_KEYS="[$PRODUCER_KEY]"
export SWITCHBOARD__AUTH__OPERATOR_KEYS="[$OPERATOR_KEY]"
export SWITCHBOARD__STORE__URL="sqlite://$WORK/switchboard.db?mode=rwc"
export SWITCHBOARD__FCM__SERVICE_ACCOUNT=$WORK/key.json
export SWITCHBOARD__FCM__ENDPOINT=$MOCK_URL
# Web Push on, so that GET /v1/webpush/vapid_public_key answers its key (its 200 is checked
# against the document too, not only its not_configured 404).
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/vapid.pem"
export SWITCHBOARD__WEBPUSH__VAPID_PRIVATE_KEY=$WORK/vapid.pem
export SWITCHBOARD__WEBPUSH__SUBJECT=mailto:contract@example.com
# The per-node limits are raised far above what schemathesis sends: what is checked here is
# the API's shape, and a refusal that depends on how fast the run goes (429 past a rate, 409
# past devices.max_per_user as it registers random devices) would hide the answers behind it.
# The limits themselves are tested in tests/limits.rs and tests/edge.rs.
export SWITCHBOARD__LIMITS__PRODUCER_RATE_PER_SEC=1000000
export SWITCHBOARD__LIMITS__PRODUCER_BURST=1000000
export SWITCHBOARD__LIMITS__STREAM_OPENS_PER_USER_PER_MIN=1000000
export SWITCHBOARD__LIMITS__STREAM_OPENS_PER_USER_BURST=1000000
export SWITCHBOARD__LIMITS__STREAM_OPENS_PER_IP_PER_SEC=1000000
export SWITCHBOARD__LIMITS__STREAM_OPENS_PER_IP_BURST=1000000
export SWITCHBOARD__DEVICES__MAX_PER_USER=1000000
export RUST_LOG=${RUST_LOG:-warn,switchboard=info}
(cd "$WORK" && exec "$OLDPWD/$BIN/switchboard" serve) 2>"$WORK/switchboard.log" &
PIDS+=($!)
BASE=http://$(listening_on "$WORK/switchboard.log")
log "switchboard at $BASE, fcm-mock at $MOCK_URL"

# What schemathesis and Hypothesis keep between runs (failures to replay, examples that
# found them) stays with the build, outside git.
export SB_SCHEMATHESIS_CACHE=$TARGET_DIR/schemathesis-cache
export HYPOTHESIS_STORAGE_DIRECTORY=$TARGET_DIR/hypothesis
export SB_PRODUCER_KEY=$PRODUCER_KEY
export SB_OPERATOR_KEY=$OPERATOR_KEY
SB_CLIENT_TOKEN=$("$BIN/switchboard" token --user "$CLIENT_USER")
export SB_CLIENT_TOKEN

# A device of the client's user, so that the documented examples' notify (to alice) goes
# through FCM.
curl -fsS -o /dev/null -X PUT "$BASE/v1/devices/contract-phone" \
    -H "Authorization: Bearer $SB_CLIENT_TOKEN" -H 'Content-Type: application/json' \
    -d '{"fcm_token":"contract-fcm-token","platform":"android"}'

# `--include-path-regex ^/` selects every operation, GET /openapi.json too (schemathesis leaves
# out the operation that served the document unless a filter names it). The checks are in
# schemathesis.toml.
status=0
"$VENV/bin/schemathesis" --config-file tests/contract/schemathesis.toml run "$BASE/openapi.json" \
    --include-path-regex '^/' \
    --phases examples,coverage,fuzzing,stateful \
    --max-examples "${SCHEMATHESIS_MAX_EXAMPLES:-50}" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --no-color \
    ${SCHEMATHESIS_ARGS:-} \
    >"$WORK/schemathesis.out" 2>&1 || status=$?
cat "$WORK/schemathesis.out"

accepted=$(curl -fsS "$MOCK_URL/_mock/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["accepted"])')
log "fcm-mock accepted $accepted message(s) from the node"
if grep -qi "panicked" "$WORK/switchboard.log"; then
    log "the node panicked:"; grep -i -A5 "panicked" "$WORK/switchboard.log" >&2; status=1
fi
if [ "$status" != 0 ]; then
    log "FAILED (schemathesis exit $status); the node's log:"
    tail -n 50 "$WORK/switchboard.log" >&2
    exit "$status"
fi
log "passed"
