//! The diesel schema, shared by both backends. Timestamps are `BigInt`
//! microseconds since the Unix epoch, UTC.

diesel::table! {
    dags (id) {
        id -> Text,
        name -> Text,
        namespace -> Nullable<Text>,
        version -> Integer,
        fingerprint -> Text,
        file_path -> Text,
        file_format -> Text,
        created_date -> BigInt,
        last_updated_date -> BigInt,
        last_seen_date -> BigInt,
        is_paused -> Bool,
        schedule -> Text,
        timezone -> Text,
        description -> Nullable<Text>,
        tags -> Text,
        max_active_runs -> Integer,
        max_active_tasks -> Integer,
    }
}

diesel::table! {
    dag_runs (id) {
        id -> BigInt,
        dag_id -> Text,
        run_id -> Text,
        status -> Text,
        run_type -> Text,
        execution_date -> BigInt,
        data_interval_start -> BigInt,
        data_interval_end -> BigInt,
        conf -> Text,
        dag_version -> Integer,
        start_date -> Nullable<BigInt>,
        end_date -> Nullable<BigInt>,
        last_updated_date -> BigInt,
        created_date -> BigInt,
        claimed_by -> Nullable<Text>,
    }
}

diesel::table! {
    task_instances (id) {
        id -> BigInt,
        dag_run_id -> BigInt,
        dag_id -> Text,
        task_id -> Text,
        state -> Text,
        try_number -> Integer,
        tries_before_clear -> Integer,
        max_tries -> Integer,
        follow -> Nullable<Text>,
        priority_weight -> Integer,
        pool -> Text,
        executor -> Text,
        executor_handle -> Nullable<Text>,
        queued_date -> Nullable<BigInt>,
        start_date -> Nullable<BigInt>,
        end_date -> Nullable<BigInt>,
        duration_ms -> Nullable<BigInt>,
        next_retry_date -> Nullable<BigInt>,
        exit_code -> Nullable<Integer>,
        peak_memory_bytes -> Nullable<BigInt>,
        cpu_user_ms -> Nullable<BigInt>,
        cpu_system_ms -> Nullable<BigInt>,
        cpu_request_millis -> Nullable<BigInt>,
        memory_request_bytes -> Nullable<BigInt>,
        cpu_limit_millis -> Nullable<BigInt>,
        memory_limit_bytes -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        claimed_by -> Nullable<Text>,
        heartbeat_date -> Nullable<BigInt>,
        last_updated_date -> BigInt,
        lost_tries -> Integer,
        stop_requested -> Nullable<Text>,
    }
}

diesel::table! {
    task_tries (id) {
        id -> BigInt,
        dag_run_id -> BigInt,
        dag_id -> Text,
        task_id -> Text,
        try_number -> Integer,
        state -> Text,
        queued_date -> Nullable<BigInt>,
        start_date -> Nullable<BigInt>,
        end_date -> Nullable<BigInt>,
        duration_ms -> Nullable<BigInt>,
        exit_code -> Nullable<Integer>,
        peak_memory_bytes -> Nullable<BigInt>,
        cpu_user_ms -> Nullable<BigInt>,
        cpu_system_ms -> Nullable<BigInt>,
        cpu_request_millis -> Nullable<BigInt>,
        memory_request_bytes -> Nullable<BigInt>,
        cpu_limit_millis -> Nullable<BigInt>,
        memory_limit_bytes -> Nullable<BigInt>,
        executor_handle -> Nullable<Text>,
        error -> Nullable<Text>,
        executor -> Nullable<Text>,
    }
}

diesel::table! {
    task_outputs (dag_run_id, task_id) {
        dag_run_id -> BigInt,
        task_id -> Text,
        value -> Text,
    }
}

diesel::table! {
    task_logs (id) {
        id -> BigInt,
        dag_run_id -> BigInt,
        task_id -> Text,
        try_number -> Integer,
        timestamp -> BigInt,
        stream -> Text,
        line -> Text,
        level -> Nullable<Text>,
    }
}

diesel::table! {
    schedulers (id) {
        id -> Text,
        hostname -> Text,
        pid -> Integer,
        started_date -> BigInt,
        heartbeat_date -> BigInt,
    }
}

diesel::table! {
    pools (name) {
        name -> Text,
        slots -> Integer,
        description -> Text,
    }
}

diesel::table! {
    web_settings (key) {
        key -> Text,
        value -> Text,
        created_date -> BigInt,
    }
}

diesel::table! {
    web_sessions (id) {
        id -> Text,
        csrf_token -> Text,
        username -> Text,
        created_date -> BigInt,
        expires_date -> BigInt,
    }
}

diesel::table! {
    alerts (id) {
        id -> BigInt,
        dedupe_key -> Text,
        channel -> Text,
        kind -> Text,
        dag_id -> Text,
        run_id -> Nullable<Text>,
        task_id -> Nullable<Text>,
        try_number -> Nullable<Integer>,
        payload -> Text,
        status -> Text,
        attempts -> Integer,
        next_attempt_date -> BigInt,
        lease_owner -> Nullable<Text>,
        lease_until -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        created_date -> BigInt,
        sent_date -> Nullable<BigInt>,
        last_updated_date -> BigInt,
    }
}

diesel::table! {
    cursors (name) {
        name -> Text,
        value -> BigInt,
        last_updated_date -> BigInt,
    }
}

// A task instance's claim reads its run's id in a subquery.
diesel::allow_tables_to_appear_in_same_query!(dag_runs, task_instances);
