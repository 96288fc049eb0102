-- Alerts and cursors (issue 6). Timestamps are BIGINT microseconds since the
-- Unix epoch, UTC, as everywhere else.

-- The alerts outbox: one row per alert and channel, written before it is
-- sent. (dedupe_key, channel) is unique, so an event is recorded (and sent)
-- once, whichever process or replica detects it and however often.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    dedupe_key TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    dag_id TEXT NOT NULL,
    run_id TEXT,
    task_id TEXT,
    try_number INTEGER,
    payload TEXT NOT NULL,
    -- pending, sending (leased to lease_owner until lease_until), sent, failed
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_date BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    last_error TEXT,
    created_date BIGINT NOT NULL,
    sent_date BIGINT,
    last_updated_date BIGINT NOT NULL,
    CONSTRAINT alerts_dedupe_key UNIQUE (dedupe_key, channel)
);
CREATE INDEX alerts_due_idx ON alerts (status, next_attempt_date);
CREATE INDEX alerts_dag_idx ON alerts (dag_id, id);

-- Named positions of background readers of the store: the alert detector
-- (last task try id, last run end...) and log shipping (last task log id).
CREATE TABLE cursors (
    name TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL,
    last_updated_date BIGINT NOT NULL
);

-- Runs that ended since a time, for the alert detector.
CREATE INDEX dag_runs_end_date_idx ON dag_runs (end_date, id);
