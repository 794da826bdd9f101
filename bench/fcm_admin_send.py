"""W6 baseline: Google's firebase-admin Python SDK sending to fcm-mock with messaging.send_each.

Usage: python3 fcm_admin_send.py <mock-url> <service-account-key.json> [--messages N] [--batch 500]

Sends N data messages (tokens tok-0 .. tok-N-1, as the router's W6 users have) in batches of at
most 500 (send_each's limit; it sends each message as its own HTTP request, on a thread pool of
one thread per message). Prints one JSON object: messages, seconds, messages_per_sec, failures.
The SDK has no public endpoint override: its messaging service keeps the URL in `_fcm_url`
(as fcm-mock/tests/admin_sdk_send.py does).
"""

import argparse
import json
import logging
import resource
import sys
import time

import firebase_admin
from firebase_admin import credentials, messaging


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mock_url")
    parser.add_argument("key_file")
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    # urllib3 warns for every connection beyond its pool of 10 that send_each's threads open.
    logging.getLogger("urllib3").setLevel(logging.ERROR)

    app = firebase_admin.initialize_app(credentials.Certificate(args.key_file), name="bench")
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{args.mock_url}/v1/projects/{app.project_id}/messages:send"

    sent = failures = 0
    errors = {}
    started = time.monotonic()
    for first in range(0, args.messages, args.batch):
        ts = str(time.time_ns() // 1000)
        batch = [
            messaging.Message(token=f"tok-{i}", data={"ts": ts, "i": str(i)})
            for i in range(first, min(args.messages, first + args.batch))
        ]
        answer = messaging.send_each(batch, app=app)
        sent += answer.success_count
        failures += answer.failure_count
        for r in answer.responses:
            if r.exception is not None:
                name = type(r.exception).__name__
                errors[name] = errors.get(name, 0) + 1
    seconds = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "mode": "firebase_admin_send_each",
        "messages": sent,
        "failures": failures,
        "errors": errors,
        "batch": args.batch,
        "seconds": round(seconds, 3),
        "messages_per_sec": round(sent / seconds, 3) if seconds > 0 else 0,
        "client_cpu_secs": round(usage.ru_utime + usage.ru_stime, 3),
    }
    print(json.dumps(report))
    print(
        f"firebase-admin send_each: {sent} messages ({failures} failed) in {seconds:.1f}s"
        f" = {report['messages_per_sec']:.0f}/s",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
