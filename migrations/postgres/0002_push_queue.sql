-- The durable push queue (one node): one row per (notification, device) send not yet settled.
-- due_at: when it may be tried next, or, while a sender holds it (claim), when its lease ends.
CREATE TABLE push_queue (
    notification_id TEXT    NOT NULL,
    device_id       TEXT    NOT NULL,
    user_id         TEXT    NOT NULL,
    fcm_token       TEXT    NOT NULL,
    platform        TEXT    NOT NULL,
    payload         TEXT    NOT NULL, -- the notification's JSON
    attempts        BIGINT  NOT NULL,
    due_at          BIGINT  NOT NULL, -- unix ms
    created_at      BIGINT  NOT NULL, -- unix ms
    deadline_at     BIGINT  NOT NULL, -- unix ms: given up at its first chance after this
    last_error      TEXT,
    claim           TEXT,
    PRIMARY KEY (notification_id, device_id)
);
CREATE INDEX push_queue_due ON push_queue (due_at);
CREATE INDEX push_queue_created ON push_queue (created_at);
-- One row per notification with sends in the queue: how many sends are left, and how many were
-- accepted (the notification's final status when the last one ends).
CREATE TABLE push_batches (
    notification_id TEXT   PRIMARY KEY,
    remaining       BIGINT NOT NULL,
    accepted        BIGINT NOT NULL
);
