#!/usr/bin/env python3
"""Writes the hand-made seed inputs of each fuzz target into seeds/<target>/ (kept in git).
Run from fuzz/: python3 seeds.py"""
import base64, hashlib, hmac, json, os, re

def write(target, name, data):
    d = os.path.join("seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())

# stream_head: first byte 0 = reads as large as the buffer allows, else pieces.
heads = {
    "stream": b"GET /v1/events?topics=news,sport&device_id=phone-1&ack=true HTTP/1.1\r\nHost: push.example\r\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\r\nAccept: text/event-stream\r\nLast-Event-ID: 0193a5b2-7c1d-7e2f-8a3b-4c5d6e7f8091\r\nCache-Control: no-cache\r\n\r\n",
    "eventsource": b"GET /v1/events?access_token=abc.def.ghi&last_event_id=x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
    "origin": b"GET /v1/events HTTP/1.1\r\nHost: h\r\nOrigin: https://app.example\r\n\r\n",
    "http10": b"GET /v1/events HTTP/1.0\r\n\r\n",
    "bare-lf": b"GET /v1/events?topics=a HTTP/1.1\nHost: h\n\n",
    "notify": b"POST /v1/notify HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer dev-producer-key\r\nContent-Type: application/json\r\nContent-Length: 35\r\n\r\n{\"user_id\":\"u1\",\"data\":{\"k\":\"v\"}}",
    "h2": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64\x00\x04\x00\x00\xff\xff\x00\x06\x00\x00\x40\x00",
    "pri-not-h2": b"PRI /x HTTP/1.1\r\n\r\n",
    "upgrade": b"GET /v1/events HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "long-complete": b"GET /v1/events HTTP/1.1\r\nX: " + b"a" * (17 * 1024) + b"\r\n\r\n",
    "many-headers": b"GET /v1/events HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(60)) + b"\r\n",
}
for name, head in heads.items():
    write("stream_head", name, b"\x00" + head)
    write("stream_head", name + "-pieces", b"\x2a" + head)

# auth_extract: even first byte = header value, query, producer key; odd = signed header, claims.
SECRET = b"fuzz-secret-0123456789abcdef0123456789"
write("auth_extract", "bearer", b"\x00Bearer abc.def.ghi\ntopics=a,b&device_id=d\npk-one")
write("auth_extract", "query-token", b"\x00\naccess_token=abc.def.ghi&topics=news&ack=1\npk-two-longer")
write("auth_extract", "basic", b"\x00Basic dXNlcjpwYXNz\n\nnope")
write("auth_extract", "lowercase", b"\x00bearer   tok  \nlast_event_id=1\n")
FAR = 4102444800  # 2100-01-01: seeds stay valid
for name, header, claims in [
    ("valid", {"alg": "HS256", "typ": "JWT"}, {"sub": "alice", "exp": FAR, "topics": ["news"]}),
    ("strict", {"alg": "HS256"}, {"sub": "bob", "exp": FAR, "iss": "https://login.example", "aud": ["switchboard", "x"]}),
    ("nbf-ahead", {"alg": "HS256"}, {"sub": "carol", "exp": FAR, "nbf": FAR - 10}),
    ("expired", {"alg": "HS256"}, {"sub": "dave", "exp": 1000000}),
    ("alg-none", {"alg": "none"}, {"sub": "eve", "exp": FAR}),
    ("hs384", {"alg": "HS384"}, {"sub": "eve", "exp": FAR}),
    ("bad-sub", {"alg": "HS256"}, {"sub": "a b\n", "exp": FAR}),
    ("no-exp", {"alg": "HS256"}, {"sub": "frank"}),
    ("float-exp", {"alg": "HS256"}, {"sub": "g", "exp": 4102444800.5}),
]:
    write("auth_extract", "signed-" + name,
          b"\x01" + json.dumps(header).encode() + b"\n" + json.dumps(claims).encode())
def jwt(claims):
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=")
    s = enc(b'{"alg":"HS256","typ":"JWT"}') + b"." + enc(json.dumps(claims).encode())
    return s + b"." + enc(hmac.new(SECRET, s, hashlib.sha256).digest())
write("auth_extract", "minted-header", b"\x00Bearer " + jwt({"sub": "alice", "exp": FAR}) + b"\ntopics=news\n")
write("auth_extract", "minted-query", b"\x00\naccess_token=" + jwt({"sub": "alice", "exp": FAR, "topics": ["a"]}) + b"&topics=a,b\n" + jwt({"sub": "x", "exp": FAR}))

# notification_sse: first byte even = notify body, odd = broadcast body.
notifies = {
    "plain": {"user_id": "alice", "data": {"order": "42", "status": "filled"}, "notification": {"title": "Order filled", "body": "Your order 42 was filled"}},
    "options": {"user_id": "u_1-2.3:x", "data": {"k": "v"}, "ttl_secs": 3600, "priority": "normal", "collapse_key": "orders", "idempotency_key": "req-1"},
    "injection": {"user_id": "bob", "data": {"a": "line1\nline2\r\nevent: evil\rdata: x\n\n", "nul": "a\u0000b", "ls": "\u2028\u2029\u0085"}, "notification": {"title": "\r\n\r\nid: 1", "image": "https://i.example/a.png"}},
    "unicode": {"user_id": "carol", "data": {"emoji": "\U0001F600", "bidi": "\u202e", "bom": "\ufeff"}},
    "only-notification": {"user_id": "d", "notification": {}},
}
for name, body in notifies.items():
    write("notification_sse", "notify-" + name, b"\x00" + json.dumps(body, ensure_ascii=(name != "unicode")).encode())
broadcasts = {
    "plain": {"topic": "news", "data": {"headline": "hello", "n": 1}},
    "floats": {"topic": "prices", "data": {"p": 1.2345678901234567e-300, "q": 0.1, "r": 2.2250738585072014e-308, "s": 1.7976931348623157e308, "t": -0.0, "u": 123456789012345678901234567890}},
    "nested": {"topic": "a.b:c-d_e", "data": {"list": [1, "two", None, True, {"x": [1.5e10]}], "s": "line\nbreak\r\n\u2028"}},
}
for name, body in broadcasts.items():
    write("notification_sse", "broadcast-" + name, b"\x01" + json.dumps(body).encode())

# config_layers: TOML text, NUL, NAME=value lines.
repo_config = open("../config.toml").read()
write("config_layers", "repo-config", repo_config)
write("config_layers", "exposed", '[server]\nlisten = "0.0.0.0:8080"\n[auth]\njwt_secret = "0123456789abcdef0123456789abcdef"\nproducer_keys = ["k1", "k2"]\n')
write("config_layers", "redis", '[broker]\nkind = "redis"\nredis_url = "redis://:secret@10.0.0.1:6379/0"\nnamespace = "prod-1"\n[store]\nurl = "postgres://sb:pw@db/sb"\n')
write("config_layers", "env-only", "\0SWITCHBOARD__SERVER__LISTEN=0.0.0.0:9000\nSWITCHBOARD__AUTH__JWT_SECRET=env-secret-value-0123456789abcdef\nSWITCHBOARD__AUTH__PRODUCER_KEYS=[a, b]\nSWITCHBOARD__SSE__QUEUE_CAPACITY=8\nswitchboard__delivery__replay_capacity=6\nOTHER=1\n")
write("config_layers", "overflow", "[delivery]\nreplay_capacity = 18446744073709551615\nrecord_retention_secs = 18446744073709551615\n")
write("config_layers", "types", "[sse]\nheartbeat_secs = \"x\"\n[limits]\nproducer_burst = -1\n\0SWITCHBOARD__AUTH__JWT_SECRET=[1,2]\nSWITCHBOARD__SERVER=3\n")
write("config_layers", "service-account", '[fcm]\nservice_account = "/dev/zero"\n')

# A dictionary for config_layers: every section and key of config.toml.
keys, section = set(), None
for line in repo_config.splitlines():
    m = re.match(r"\s*\[(\w+)\]", line)
    if m:
        section = m.group(1); keys.add("[%s]" % section); continue
    m = re.match(r"\s*(\w+)\s*=", line)
    if m and section:
        keys.add(m.group(1))
        keys.add("SWITCHBOARD__%s__%s=" % (section.upper(), m.group(1).upper()))
with open("config_layers.dict", "w") as f:
    for k in sorted(keys):
        f.write(json.dumps(k) + "\n")
