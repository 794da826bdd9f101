-- Device registry: one row per (user, device); the FCM token is what offline delivery targets.
CREATE TABLE devices (
    user_id    TEXT   NOT NULL,
    device_id  TEXT   NOT NULL,
    fcm_token  TEXT   NOT NULL,
    platform   TEXT   NOT NULL,
    updated_at BIGINT NOT NULL, -- unix ms
    PRIMARY KEY (user_id, device_id)
);
CREATE INDEX devices_fcm_token ON devices (fcm_token);
