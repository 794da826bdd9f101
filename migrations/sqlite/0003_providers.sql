-- Devices of every push provider and of several apps. `token` is what the provider addresses:
-- an FCM registration token, an APNs device token (hex), or a Web Push subscription (its JSON).
-- `app` is the app the device belongs to; '' is the default app (the top-level sections).
ALTER TABLE devices RENAME COLUMN fcm_token TO token;
ALTER TABLE devices ADD COLUMN provider TEXT NOT NULL DEFAULT 'fcm';
ALTER TABLE devices ADD COLUMN app TEXT NOT NULL DEFAULT '';
-- A queued send keeps the device as it was when the notification was routed.
ALTER TABLE push_queue RENAME COLUMN fcm_token TO token;
ALTER TABLE push_queue ADD COLUMN provider TEXT NOT NULL DEFAULT 'fcm';
ALTER TABLE push_queue ADD COLUMN app TEXT NOT NULL DEFAULT '';
