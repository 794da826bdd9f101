"""Drives fcm-mock with Google's own Admin SDK (pip install firebase-admin).

Usage: python3 admin_sdk_send.py <mock-url> <service-account-key.json>

The mock must already have "gone-token" marked unregistered. Prints one JSON line with the
message names; exits non-zero on any unexpected outcome.
"""

import asyncio
import json
import sys

import firebase_admin
from firebase_admin import credentials, messaging


def message(token, i):
    return messaging.Message(
        token=token,
        data={"i": str(i), "kind": "admin-sdk"},
        notification=messaging.Notification(title=f"title {i}", body="body"),
        android=messaging.AndroidConfig(
            collapse_key="ck",
            priority="high",
            ttl=3.5,
            restricted_package_name="com.example.app",
            notification=messaging.AndroidNotification(
                click_action="OPEN", channel_id="alerts", color="#ff0000",
                priority="high", visibility="public", vibrate_timings_millis=[100, 200],
                light_settings=messaging.LightSettings(
                    color="#00ff00", light_on_duration_millis=200, light_off_duration_millis=300),
            ),
            fcm_options=messaging.AndroidFCMOptions(analytics_label="label"),
        ),
        apns=messaging.APNSConfig(payload=messaging.APNSPayload(aps=messaging.Aps(badge=1))),
        webpush=messaging.WebpushConfig(headers={"TTL": "60"}),
        fcm_options=messaging.FCMOptions(analytics_label="top"),
    )


def main():
    url, key_file = sys.argv[1], sys.argv[2]
    app = firebase_admin.initialize_app(credentials.Certificate(key_file), name="fcm-mock")
    # The Admin SDK has no public endpoint override; its service keeps the URL here.
    service = messaging._get_messaging_service(app)
    service._fcm_url = f"{url}/v1/projects/{app.project_id}/messages:send"

    names = [messaging.send(message("sdk-token-0", 0), app=app)]

    batch = messaging.send_each([message(f"sdk-token-{i}", i) for i in (1, 2, 3)], app=app)
    if batch.success_count != 3:
        raise SystemExit(f"send_each: {[str(r.exception) for r in batch.responses]}")
    names += [r.message_id for r in batch.responses]

    dry = messaging.send(message("sdk-token-dry", 9), dry_run=True, app=app)
    if not dry.startswith("projects/"):
        raise SystemExit(f"dry run answered {dry!r}")

    try:
        messaging.send(message("gone-token", 10), app=app)
        raise SystemExit("send to an unregistered token did not fail")
    except messaging.UnregisteredError:
        pass

    batch = asyncio.run(messaging.send_each_async([message("sdk-token-4", 4)], dry_run=False, app=app))
    if batch.success_count != 1:
        raise SystemExit(f"send_each_async: {[str(r.exception) for r in batch.responses]}")
    names += [r.message_id for r in batch.responses]

    print(json.dumps({"names": names}))


if __name__ == "__main__":
    main()
