//! `scheduler` (run forever) and `dags backfill` (run a range of
//! intervals to their end with a scheduler of its own).

use std::collections::{BTreeSet, HashSet};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use goflow_core::schedule::parse_datetime;
use goflow_core::{ExecutorKind, RunState, RunType, Schedule};
use goflow_store::StoreError;
use tokio::sync::oneshot;

use super::{dags::parse_conf, BackfillArgs, CliError, SchedulerArgs};
use crate::scheduler::{Scheduler, SchedulerConfig};
use crate::server::Server;
use crate::web::{TokenOrigin, WebConfig};
use crate::Registry;

/// Builds a scheduler with both local executors.
fn scheduler(
    store: goflow_store::Store,
    registry: &Registry,
    config: SchedulerConfig,
) -> Scheduler {
    crate::server::with_local_process(Scheduler::new(store, Arc::new(registry.clone()), config))
}

/// Completes on Ctrl-C or SIGTERM.
async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// `scheduler`: creates due runs and runs them until stopped, and serves
/// the web UI and API next to it: a [`Server`] on a port of its own.
pub(super) async fn serve(
    registry: &Registry,
    url: &str,
    args: &SchedulerArgs,
    out: &mut dyn Write,
) -> Result<ExitCode, CliError> {
    let store = crate::db::open(url).await?;
    refuse_missing_pools(&store, registry, None).await?;
    let mut config = SchedulerConfig {
        default_executor: args.executor,
        max_output_bytes: args.max_output_bytes,
        max_log_bytes_per_try: args.max_log_bytes,
        ..SchedulerConfig::default()
    };
    if let Some(id) = &args.scheduler_id {
        config.id = id.clone();
    }
    let alerts = args
        .alerts
        .clone()
        .into_config()
        .map_err(|e| CliError::InvalidSetting(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .map_err(|source| CliError::Bind {
            addr: args.bind,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| CliError::Bind {
        addr: args.bind,
        source,
    })?;
    let web_config = WebConfig::from_env();
    let mut builder = Server::builder()
        .store(store.clone())
        .registry(registry.clone())
        .scheduler_config(config)
        .alerts(alerts);
    if args.alerts.base_url.is_none() {
        // Links in alerts point at this server unless told otherwise.
        builder = builder.public_url(format!("http://{addr}{}", web_config.base_path));
    }
    builder = builder.web_config(web_config);
    if let Some(keep) = args.retention {
        builder = builder.retention(keep);
    }
    #[cfg(feature = "elasticsearch")]
    if let Some(config) = args
        .logship
        .clone()
        .into_config()
        .map_err(|e| CliError::InvalidSetting(e.to_string()))?
    {
        builder = builder.logship(config);
    }
    #[cfg(feature = "kubernetes")]
    {
        builder = builder.kubernetes(args.kubernetes.to_config());
    }
    let server = builder.build().await.map_err(CliError::from)?;

    writeln!(
        out,
        "goflow scheduler {} on {} with {} DAG{} ({}); default executor {}.",
        server.scheduler_id(),
        store.url(),
        registry.len(),
        if registry.len() == 1 { "" } else { "s" },
        registry
            .dags()
            .map(|d| d.id().as_str())
            .collect::<Vec<_>>()
            .join(", "),
        server.default_executor(),
    )?;
    writeln!(
        out,
        "UI and API: http://{addr}{}/ (user {})",
        server.base_path(),
        server.web_config().ui_username
    )?;
    match server.api_token().origin {
        TokenOrigin::Generated => writeln!(
            out,
            "API token (also the UI password), generated and stored in the database: {}",
            server.api_token().token
        )?,
        TokenOrigin::Stored => writeln!(
            out,
            "API token: the one stored in the database on first start (set GOFLOW_API_TOKEN to choose one)"
        )?,
        TokenOrigin::Configured => writeln!(out, "API token: from GOFLOW_API_TOKEN")?,
    }
    #[cfg(feature = "kubernetes")]
    if server.runs_kubernetes() {
        writeln!(
            out,
            "Kubernetes executor on; workers report to {}{}",
            server.base_path(),
            crate::task_api::MOUNT_PATH
        )?;
    }
    if let Some(keep) = args.retention {
        writeln!(
            out,
            "retention: finished runs that ended more than {} ago are deleted, every hour",
            goflow_core::duration::format(keep)
        )?;
    }
    #[cfg(feature = "elasticsearch")]
    if let Some(url) = server.logship_url() {
        writeln!(out, "shipping task logs to {url}")?;
    }
    writeln!(out, "Ctrl-C stops it.")?;
    out.flush()?;
    server.serve(listener, stop_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// `dags backfill`: creates a run for every interval whose logical date is
/// in `[from, to]`, runs them with a scheduler of its own (runs another
/// scheduler already owns are waited for), and reports each as it ends.
pub(super) async fn backfill(
    registry: &Registry,
    url: &str,
    args: &BackfillArgs,
    out: &mut dyn Write,
    now: DateTime<Utc>,
) -> Result<ExitCode, CliError> {
    let dag = Arc::clone(registry.get(&args.dag_id)?);
    let conf = parse_conf(args.conf.as_deref())?;
    let from = parse_datetime(&args.from, dag.tz()).map_err(CliError::InvalidDate)?;
    let mut to = parse_datetime(&args.to, dag.tz()).map_err(CliError::InvalidDate)?;
    if chrono::NaiveDate::parse_from_str(args.to.trim(), "%Y-%m-%d").is_ok() {
        // A bare date includes the whole day.
        to += chrono::Duration::days(1) - chrono::Duration::microseconds(1);
    }
    if to < from {
        return Err(CliError::InvalidRange {
            from: args.from.clone(),
            to: args.to.clone(),
        });
    }
    if matches!(dag.schedule(), Schedule::Manual | Schedule::Once) {
        return Err(CliError::NotScheduled {
            dag: dag.id().to_string(),
        });
    }
    let mut intervals = Vec::new();
    let mut next = super::dags::first_interval_from(&dag, from);
    while let Some(interval) = next.filter(|i| i.start <= to) {
        intervals.push(interval);
        next = dag
            .schedule()
            .next_interval(dag.start_date(), Some(interval.start));
    }
    if intervals.is_empty() {
        writeln!(
            out,
            "no interval of {} starts between {} and {}",
            dag.id(),
            args.from,
            args.to
        )?;
        return Ok(ExitCode::SUCCESS);
    }

    let (store, dags) = super::db::open(url, registry, now).await?;
    refuse_missing_pools(&store, registry, Some(dag.id().as_str())).await?;
    let version = dags.get(dag.id().as_str()).map_or(1, |d| d.version);
    let mut runs: BTreeSet<i64> = BTreeSet::new();
    let (mut created, mut existing) = (0, 0);
    for interval in &intervals {
        let new = crate::db::new_run(&dag, version, RunType::Backfill, *interval, conf.clone());
        match store.create_run(&new, now).await {
            Ok(run) => {
                created += 1;
                runs.insert(run.id);
            }
            Err(StoreError::RunExists { .. }) => {
                // A run for this logical date exists (scheduled or an
                // earlier backfill): wait for it if it is still going.
                existing += 1;
                if let Some(run) = store
                    .list_runs(dag.id().as_str(), i64::MAX / 2, 0)
                    .await?
                    .into_iter()
                    .find(|r| r.execution_date() == interval.start)
                {
                    if !run.state.is_terminal() {
                        runs.insert(run.id);
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let total = runs.len();
    writeln!(
        out,
        "backfill of {}: {} interval{} from {} to {} ({} new run{}, {} already there)",
        dag.id(),
        intervals.len(),
        if intervals.len() == 1 { "" } else { "s" },
        intervals[0].start.to_rfc3339(),
        intervals[intervals.len() - 1].start.to_rfc3339(),
        created,
        if created == 1 { "" } else { "s" },
        existing
    )?;
    out.flush()?;

    let config = SchedulerConfig {
        id: format!("backfill-{}", crate::scheduler::default_id()),
        create_scheduled_runs: false,
        only_dags: Some(HashSet::from([dag.id().to_string()])),
        default_executor: args.executor,
        ..SchedulerConfig::default()
    };
    let mut scheduler = scheduler(store.clone(), registry, config);
    let mut finished = scheduler.finished_runs();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(scheduler.run(async {
        let _ = stopped.await;
    }));

    let mut failed = 0;
    let mut done = 0;
    let mut poll = tokio::time::interval(std::time::Duration::from_secs(1));
    while !runs.is_empty() {
        let ended: Vec<(i64, String, RunState)> = tokio::select! {
            Some(f) = finished.recv() => vec![(f.run, f.run_id, f.state)],
            _ = poll.tick() => {
                // Runs another scheduler finishes are only seen in the store.
                let mut ended = Vec::new();
                for id in runs.clone() {
                    if let Some(r) = store.get_run(id).await? {
                        if r.state.is_terminal() {
                            ended.push((id, r.run_id, r.state));
                        }
                    }
                }
                ended
            }
        };
        for (id, run_id, state) in ended {
            if runs.remove(&id) {
                done += 1;
                if state == RunState::Failed {
                    failed += 1;
                }
                writeln!(out, "[{done}/{total}] {run_id} {state}")?;
                out.flush()?;
            }
        }
    }
    let _ = stop.send(());
    if let Ok(Err(e)) = handle.await {
        tracing::warn!(error = %e, "backfill scheduler stopped with an error");
    }
    writeln!(
        out,
        "backfill of {} done: {} run{} succeeded, {failed} failed",
        dag.id(),
        total - failed,
        if total - failed == 1 { "" } else { "s" }
    )?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Refuses to schedule tasks (of the DAG `only`, if given) that name a
/// pool the store does not have: they would run without any limit.
async fn refuse_missing_pools(
    store: &goflow_store::Store,
    registry: &Registry,
    only: Option<&str>,
) -> Result<(), CliError> {
    let missing = crate::db::missing_pools(store, registry, only).await?;
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CliError::UnknownPools(missing))
    }
}

/// The executor names `--executor` accepts.
pub(super) fn parse_executor(s: &str) -> Result<ExecutorKind, String> {
    s.parse::<ExecutorKind>().map_err(|e| e.to_string())
}
