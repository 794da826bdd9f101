"""Sends Web Push messages with pywebpush (Mozilla's application-server library), as an
independent client of webpush-mock. Reads a JSON list of jobs on stdin:
  {"subscription": <PushSubscription JSON>, "data": str, "vapid_key": <PEM path> | null,
   "ttl": int, "headers": {..}}
A null vapid_key makes the script generate its own key with py_vapid. Prints a JSON list of
{"status", "location", "body", "public_key"} (the base64url VAPID public key used)."""
import base64
import json
import sys

from cryptography.hazmat.primitives import serialization
from py_vapid import Vapid
from pywebpush import WebPushException, webpush


def public_key(vapid):
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def send(job):
    if job.get("vapid_key"):
        vapid = Vapid.from_file(job["vapid_key"])
    else:
        vapid = Vapid()
        vapid.generate_keys()
    try:
        response = webpush(
            subscription_info=job["subscription"],
            data=job["data"],
            vapid_private_key=vapid,
            vapid_claims={"sub": "mailto:pywebpush@example.com"},
            ttl=job.get("ttl", 0),
            headers=job.get("headers") or {},
        )
    except WebPushException as error:
        response = error.response
        if response is None:
            raise
    return {
        "status": response.status_code,
        "location": response.headers.get("location"),
        "body": response.text,
        "public_key": public_key(vapid),
    }


def main():
    jobs = json.load(sys.stdin)
    print(json.dumps([send(job) for job in jobs]))


if __name__ == "__main__":
    main()
