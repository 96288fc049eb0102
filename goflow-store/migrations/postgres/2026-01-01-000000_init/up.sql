-- goflow's store. Every timestamp is a BIGINT counting microseconds since
-- 1970-01-01T00:00:00Z (UTC): identical ordering, arithmetic and precision on
-- SQLite and PostgreSQL, with no time zone or text format involved.

CREATE TABLE dags (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    namespace TEXT,
    version INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    file_path TEXT NOT NULL,
    file_format TEXT NOT NULL,
    created_date BIGINT NOT NULL,
    last_updated_date BIGINT NOT NULL,
    last_seen_date BIGINT NOT NULL,
    is_paused BOOLEAN NOT NULL,
    schedule TEXT NOT NULL,
    timezone TEXT NOT NULL,
    description TEXT,
    tags TEXT NOT NULL,
    max_active_runs INTEGER NOT NULL,
    max_active_tasks INTEGER NOT NULL
);

CREATE TABLE dag_runs (
    id BIGSERIAL PRIMARY KEY,
    dag_id TEXT NOT NULL REFERENCES dags (id) ON DELETE CASCADE,
    run_id TEXT NOT NULL,
    status TEXT NOT NULL,
    run_type TEXT NOT NULL,
    execution_date BIGINT NOT NULL,
    data_interval_start BIGINT NOT NULL,
    data_interval_end BIGINT NOT NULL,
    conf TEXT NOT NULL,
    dag_version INTEGER NOT NULL,
    start_date BIGINT,
    end_date BIGINT,
    last_updated_date BIGINT NOT NULL,
    created_date BIGINT NOT NULL,
    claimed_by TEXT,
    CONSTRAINT dag_runs_dag_id_execution_date_key UNIQUE (dag_id, execution_date),
    CONSTRAINT dag_runs_dag_id_run_id_key UNIQUE (dag_id, run_id)
);
CREATE INDEX dag_runs_status_idx ON dag_runs (status, dag_id);

CREATE TABLE task_instances (
    id BIGSERIAL PRIMARY KEY,
    dag_run_id BIGINT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    dag_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    state TEXT NOT NULL,
    try_number INTEGER NOT NULL,
    tries_before_clear INTEGER NOT NULL,
    max_tries INTEGER NOT NULL,
    follow TEXT,
    priority_weight INTEGER NOT NULL,
    pool TEXT NOT NULL,
    executor TEXT NOT NULL,
    executor_handle TEXT,
    queued_date BIGINT,
    start_date BIGINT,
    end_date BIGINT,
    duration_ms BIGINT,
    next_retry_date BIGINT,
    exit_code INTEGER,
    peak_memory_bytes BIGINT,
    cpu_user_ms BIGINT,
    cpu_system_ms BIGINT,
    last_error TEXT,
    claimed_by TEXT,
    heartbeat_date BIGINT,
    last_updated_date BIGINT NOT NULL,
    CONSTRAINT task_instances_run_task_key UNIQUE (dag_run_id, task_id)
);
CREATE INDEX task_instances_claim_idx ON task_instances (state, priority_weight DESC, id);
CREATE INDEX task_instances_pool_idx ON task_instances (pool, state);
CREATE INDEX task_instances_owner_idx ON task_instances (claimed_by, state);

CREATE TABLE task_tries (
    id BIGSERIAL PRIMARY KEY,
    dag_run_id BIGINT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    dag_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    try_number INTEGER NOT NULL,
    state TEXT NOT NULL,
    queued_date BIGINT,
    start_date BIGINT,
    end_date BIGINT,
    duration_ms BIGINT,
    exit_code INTEGER,
    peak_memory_bytes BIGINT,
    cpu_user_ms BIGINT,
    cpu_system_ms BIGINT,
    executor_handle TEXT,
    error TEXT,
    CONSTRAINT task_tries_key UNIQUE (dag_run_id, task_id, try_number)
);
CREATE INDEX task_tries_history_idx ON task_tries (dag_id, task_id, id);

CREATE TABLE task_outputs (
    dag_run_id BIGINT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (dag_run_id, task_id)
);

CREATE TABLE task_logs (
    id BIGSERIAL PRIMARY KEY,
    dag_run_id BIGINT NOT NULL REFERENCES dag_runs (id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    try_number INTEGER NOT NULL,
    timestamp BIGINT NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX task_logs_read_idx ON task_logs (dag_run_id, task_id, try_number, id);

CREATE TABLE schedulers (
    id TEXT PRIMARY KEY NOT NULL,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_date BIGINT NOT NULL,
    heartbeat_date BIGINT NOT NULL
);

CREATE TABLE pools (
    name TEXT PRIMARY KEY NOT NULL,
    slots INTEGER NOT NULL,
    description TEXT NOT NULL
);
