-- Each row's place in its user's inbox: 1, 2, 3... in the order the rows were stored. Trimming a
-- user to the newest inbox.max_per_user then deletes below one cut found with a single index
-- probe (the user's largest seq), instead of ranking or counting all the user's rows, which
-- cost each append a walk of up to max_per_user index entries once inboxes are full.
ALTER TABLE inbox ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;
UPDATE inbox SET seq = ranked.pos
    FROM (SELECT user_id, id, ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY id) AS pos
          FROM inbox) AS ranked
    WHERE inbox.user_id = ranked.user_id AND inbox.id = ranked.id;
CREATE INDEX inbox_seq ON inbox (user_id, seq);
