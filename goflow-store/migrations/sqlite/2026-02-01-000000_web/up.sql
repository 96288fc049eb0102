-- The web UI and REST API: settings kept by the server (the generated API
-- token) and UI login sessions. Timestamps are BIGINT microseconds since the
-- Unix epoch, UTC, as everywhere else.

CREATE TABLE web_settings (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    created_date BIGINT NOT NULL
);

CREATE TABLE web_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    csrf_token TEXT NOT NULL,
    username TEXT NOT NULL,
    created_date BIGINT NOT NULL,
    expires_date BIGINT NOT NULL
);
CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_date);
