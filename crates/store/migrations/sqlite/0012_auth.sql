-- Logins, API tokens and the audit of control actions. Session ids and tokens are stored as their SHA-256
-- (hex) only: a copy of the store lets nobody log in.
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    roles TEXT NOT NULL,          -- JSON list
    csrf TEXT NOT NULL,
    how TEXT NOT NULL,            -- how the user logged in: "password"
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_by_user ON sessions (username);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER,
    last_used_at INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (username);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    username TEXT NOT NULL,
    how TEXT NOT NULL,            -- session, token, basic, proxy
    address TEXT NOT NULL,
    action TEXT NOT NULL,
    builder TEXT,
    buildid INTEGER,
    buildrequestid INTEGER,
    buildsetid INTEGER,
    worker TEXT,
    detail TEXT
);
CREATE INDEX audit_by_builder ON audit (builder, id);
CREATE INDEX audit_by_build ON audit (buildid);
CREATE INDEX audit_by_worker ON audit (worker, id);
