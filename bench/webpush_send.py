"""W6 (Web Push) baseline: pywebpush 2.x, the application-server library of Mozilla's Web Push
team, against the same webpush-mock Switchboard sends to. Creates N subscriptions at the mock,
then (1) encrypts a notification-sized payload for each (WebPusher.encode: ECDH, HKDF,
AES-128-GCM; no network), and (2) sends N messages with webpush() one after another on one
requests session, with a VAPID key the mock requires, as an application server's loop does.

usage: webpush_send.py MOCK_URL VAPID_PEM --messages N
Prints one JSON object; a progress line on stderr."""
import argparse
import json
import sys
import time

import requests
from py_vapid import Vapid
from pywebpush import WebPusher, webpush

PAYLOAD = json.dumps(
    {
        "id": "0190a5d2-0000-7000-8000-000000000000",
        "data": {"ts": "1795000000000000"},
        "sent_at": 1795000000000,
    },
    separators=(",", ":"),
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mock_url")
    parser.add_argument("vapid_pem")
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    session = requests.Session()
    subs = []
    for _ in range(args.messages):
        r = session.post(f"{args.mock_url}/_mock/subscriptions")
        r.raise_for_status()
        subs.append(r.json())
    vapid = Vapid.from_file(args.vapid_pem)

    start = time.perf_counter()
    for sub in subs:
        WebPusher(sub).encode(PAYLOAD.encode())
    encrypt_secs = time.perf_counter() - start

    accepted = errors = 0
    start = time.perf_counter()
    for sub in subs:
        r = webpush(
            subscription_info=sub,
            data=PAYLOAD,
            vapid_private_key=vapid,
            vapid_claims={"sub": "mailto:bench@example.com"},
            ttl=60,
            requests_session=session,
        )
        if r.status_code == 201:
            accepted += 1
        else:
            errors += 1
    send_secs = time.perf_counter() - start
    report = {
        "library": "pywebpush",
        "messages": args.messages,
        "payload_bytes": len(PAYLOAD),
        "encryptions_per_sec": round(args.messages / encrypt_secs),
        "accepted": accepted,
        "errors": errors,
        "send_secs": round(send_secs, 3),
        "messages_per_sec": round(accepted / send_secs, 1),
    }
    print(json.dumps(report))
    print(
        f"pywebpush: encrypt {report['encryptions_per_sec']}/s; "
        f"{accepted} sent in {send_secs:.1f}s = {report['messages_per_sec']}/s ({errors} errors)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
