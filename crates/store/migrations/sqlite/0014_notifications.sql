-- The reporters' outbox: each notice is decided and kept in the transaction that stores what it reports (a
-- build's start or result), then a sender per reporter delivers it. Times of attempts and leases are in
-- milliseconds since the epoch; created_at and sent_at in seconds, as elsewhere.
CREATE TABLE notifications (
    id INTEGER PRIMARY KEY,
    reporter TEXT NOT NULL,
    event TEXT NOT NULL,                     -- build.finished, build.started, request.new, worker.missing, …
    subject_id BIGINT NOT NULL,              -- build, request or worker id
    target TEXT NOT NULL,                    -- address, repo@sha#context, room, URL
    dedupe_key TEXT NOT NULL UNIQUE,         -- reporter|event|subject|target: kept once
    supersede_key TEXT,                      -- statuses of one commit and context: in order, newest wins
    payload BLOB NOT NULL,                   -- rendered when decided: a retry sends the same bytes
    state TEXT NOT NULL DEFAULT 'pending',   -- pending | sending | sent | dead | superseded
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_until BIGINT,
    last_error TEXT,
    answer TEXT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
-- A sender's question: its due notices, oldest first.
CREATE INDEX notifications_due ON notifications (reporter, next_attempt_at) WHERE state IN ('pending', 'sending');
CREATE INDEX notifications_supersede ON notifications (supersede_key, id) WHERE supersede_key IS NOT NULL;
CREATE INDEX notifications_subject ON notifications (event, subject_id);
