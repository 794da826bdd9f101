-- The per-user inbox (one node): every notification accepted for a user, as clients read it.
-- id is a UUIDv7, so ids order by acceptance time and their first 13 characters spell it (unix
-- ms in hex): retention deletes by id.
CREATE TABLE inbox (
    user_id TEXT NOT NULL,
    id      TEXT NOT NULL,
    payload TEXT NOT NULL, -- the JSON clients get: the SSE data: of event: notification
    PRIMARY KEY (user_id, id)
) WITHOUT ROWID;
CREATE INDEX inbox_id ON inbox (id);
