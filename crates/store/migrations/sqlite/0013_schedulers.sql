-- Schedulers switched on or off from the web UI or the API (Buildbot's `schedulers.enabled`): one row per
-- scheduler whose switch was ever set; a scheduler without a row is enabled.
CREATE TABLE schedulers (
    name TEXT NOT NULL PRIMARY KEY,
    enabled INTEGER NOT NULL DEFAULT 1
);
