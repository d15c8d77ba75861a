-- Small named state of long-lived objects (change sources, schedulers): Buildbot's `object_state`.
-- `name` is the object's unique name, `key` one fact about it, `value` a JSON document.
CREATE TABLE object_state (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (name, key)
);
