//! Chaos: a wide DAG (1 → 100 → 1; tasks sleep 5–50 ms, five of the
//! hundred 0.4–0.9 s so that a try outlasts a scheduler restart; `retries
//! = 2`, lost tries capped at 1000, the cap is not under test) runs while
//! its scheduler process is killed with SIGKILL every 0.3–1.5 s and
//! restarted with the same `--id`, on SQLite and PostgreSQL, with the
//! in-process and the local-process executor. Checked at the end:
//!
//! 1. every run succeeded, and no kill made a run fail (a kill must not
//!    use a task's `retries`: lost tries have a cap of their own);
//! 2. no task instance is left queued, running, scheduled, up for retry or
//!    pending;
//! 3. no try failed for any reason but a kill (the task body never fails);
//! 4. at least once: each (run, task) has a completed execution, among them
//!    the try the store records as its success;
//! 5. never concurrently: no two executions of one (run, task) overlap in
//!    time, and no execution of a run is still alive after the run ended.
//!
//! Short form (CI): 3 kills per combination. Long form, see
//! `docs/operations.md`:
//! `GOFLOW_CHAOS_KILLS=40 cargo test --release -p goflow-runtime --all-features --test chaos -- --nocapture`.
//! Knobs: `GOFLOW_CHAOS_KILLS` (kills per combination), `GOFLOW_CHAOS_RUNS`
//! (runs triggered up front, default 4 = 408 task instances; more are
//! triggered while kills remain so that every kill lands on work),
//! `GOFLOW_CHAOS_SEED` (the kill timing), `GOFLOW_CHAOS_DEADLINE_SECS`,
//! `GOFLOW_CHAOS_UNBOUND_WORKERS=1` (local-process workers ignore their
//! scheduler's death, as on a system without a parent-death signal: only
//! the restarted scheduler's adoption then keeps tries apart).
//!
//! # Processes
//!
//! The scheduler is a real child process, as in `crash.rs`: this test
//! binary re-executes itself with `GOFLOW_TEST_WORKER=1`.
//! - in_process: `<test binary> --exact chaos_scheduler_entry --nocapture
//!   -- --database-url ... scheduler --id chaos --executor in_process`,
//!   i.e. the real CLI `scheduler` command (see `support`);
//! - local_process: the CLI's local-process executor re-runs
//!   `current_exe() tasks run ...`, which a libtest binary cannot parse, so
//!   [`chaos_local_scheduler_entry`] wires the same `Scheduler` by hand with
//!   a `LocalProcessExecutor` whose workers are
//!   `<test binary> --exact chaos_worker_entry --nocapture -- tasks run ...`.
//!   The scheduler itself (recovery, adoption, retries) is the library's.
//!
//! # The execution log, and why overlaps of killed executions are caught
//!
//! Every execution of a task body appends lines to the file named by
//! `GOFLOW_CHAOS_LOG`, each with one `write` on an `O_APPEND` file:
//!
//! ```text
//! <run_id> <task> <try> <exec> <incarnation> start <unix ns>
//! <run_id> <task> <try> <exec> <incarnation> alive <unix ns>   (every 5 ms)
//! <run_id> <task> <try> <exec> <incarnation> end   <unix ns>
//! ```
//!
//! `<exec>` is unique per execution (pid, counter, random), so even the
//! same try launched twice shows as two executions. `<incarnation>` is the
//! number of the scheduler process that launched it (from the environment
//! the test gives each scheduler; workers inherit it). The test records,
//! for each incarnation `i`, `kill[i].before` (just before SIGKILL) and
//! `kill[i].after` (the process reaped); the last incarnation's "kill" is
//! the final stop, after every run ended.
//!
//! An execution with an `end` line ran during `[start, end]`. One without
//! (it was interrupted) ran during `[start, last stamp]` for sure; and
//! since nothing stops a task body but the death of its scheduler (no
//! timeouts, no cancels; a worker that its live scheduler saw die would
//! fail its try with a non-"lost" error, which check 3 rejects), it lived
//! at least until its scheduler was killed: `[start, max(last stamp,
//! kill[i].before)]`. Under these lower bounds of the real intervals, two
//! executions of the same (run, task) that overlap truly ran at the same
//! time: the check has no false positives. It misses nothing that matters
//! either: an execution that outlives its scheduler keeps writing `alive`
//! lines and an `end`, so it is caught beside its retry. (The simpler rule
//! "at most one start without end per (run, task)" would be wrong: one kill
//! per try can interrupt try 1 and try 2 in turn without any overlap.)
//!
//! Also reported: executions that outlived the scheduler that launched
//! them (a stamp after `kill[i].after`) — impossible in process, the sign
//! of orphaned workers with the local-process executor.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use goflow_core::{
    Dag, DagBuilder, DataInterval, ExecutorKind, Inputs, RunState, RunType, TaskContext, TaskError,
    TaskFuture, TaskOptions, TaskOutput, TaskSpec, TaskState,
};
use goflow_runtime::executor::LocalProcessExecutor;
use goflow_runtime::scheduler::{Scheduler, SchedulerConfig};
use goflow_runtime::{db, Registry};
use goflow_store::testing::{postgres, postgres_base_url, sqlite, TestDb};
use goflow_store::Store;

use support::WORKER_ENV;

// ---------------------------------------------------------------------------
// Knobs
// ---------------------------------------------------------------------------

/// The execution log's path, in the environment of schedulers and workers.
const LOG_ENV: &str = "GOFLOW_CHAOS_LOG";
/// The number of the scheduler process (0, 1, ...), likewise.
const INCARNATION_ENV: &str = "GOFLOW_CHAOS_INCARNATION";
/// Kills per combination.
const KILLS_ENV: &str = "GOFLOW_CHAOS_KILLS";
/// Runs triggered up front.
const RUNS_ENV: &str = "GOFLOW_CHAOS_RUNS";
/// The seed of the kill timing.
const SEED_ENV: &str = "GOFLOW_CHAOS_SEED";
/// Set: local-process workers do not stop when their scheduler dies.
const UNBOUND_ENV: &str = "GOFLOW_CHAOS_UNBOUND_WORKERS";
/// How long the kills may take, in seconds.
const DEADLINE_ENV: &str = "GOFLOW_CHAOS_DEADLINE_SECS";

const DAG_ID: &str = "chaos";
const SCHEDULER_ID: &str = "chaos";
/// Tasks between the first and the last.
const WIDTH: usize = 100;
const RETRIES: u32 = 2;
/// A task body sleeps this long, at random, in ticks of `TICK_MS`.
const SLEEP_MS: (u64, u64) = (5, 50);
const TICK_MS: u64 = 5;
/// The first few of the wide tasks sleep 0.4–0.9 s instead (see [`slow_work`]).
const SLOW_TASKS: usize = 5;
const SLOW_MS: (u64, u64) = (400, 900);
/// Lost tries allowed per task instance.
const LOST_CAP: u32 = 1000;
/// While kills remain, more runs are triggered to keep this many active.
const BACKLOG: usize = 6;
/// A scheduler lives this long, at random, before it is killed.
const LIFE_MS: (u64, u64) = (300, 1500);

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// SplitMix64: enough randomness for sleeps and kill moments, without a
/// dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi]`.
    fn between(&mut self, (lo, hi): (u64, u64)) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------
// The DAG
// ---------------------------------------------------------------------------

/// A fresh random number per call, different across processes.
fn task_random() -> u64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let step = STATE.fetch_add(1, Ordering::Relaxed);
    let seed = (now_ns() as u64) ^ (u64::from(std::process::id()) << 32) ^ step;
    Rng(seed).next()
}

fn append(path: &Path, line: &str) -> Result<(), TaskError> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TaskError::msg(format!("open {}: {e}", path.display())))?;
    // One write per line: appends of whole lines do not interleave.
    file.write_all(line.as_bytes())
        .map_err(|e| TaskError::msg(format!("write {}: {e}", path.display())))
}

/// Logs its start, sleeps 5–50 ms saying it is alive every 5 ms, logs its
/// end. Never fails by itself.
fn work(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    execute(ctx, SLEEP_MS)
}

/// Like [`work`], for 0.4–0.9 s: longer than a scheduler's restart (0.1–0.5
/// s in debug builds), so that a try that outlives its killed scheduler is
/// still running when its retry starts; short enough to end between kills.
fn slow_work(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    execute(ctx, SLOW_MS)
}

fn execute(ctx: TaskContext, sleep_ms: (u64, u64)) -> TaskFuture {
    Box::pin(async move {
        static EXECUTIONS: AtomicU64 = AtomicU64::new(0);
        let path = PathBuf::from(
            std::env::var_os(LOG_ENV).ok_or_else(|| TaskError::msg("GOFLOW_CHAOS_LOG unset"))?,
        );
        let incarnation = std::env::var(INCARNATION_ENV).unwrap_or_else(|_| "?".into());
        let exec = format!(
            "{}.{}.{:x}",
            std::process::id(),
            EXECUTIONS.fetch_add(1, Ordering::Relaxed),
            task_random() & 0xffff_ffff
        );
        let prefix = format!(
            "{} {} {} {exec} {incarnation}",
            ctx.run_id(),
            ctx.task_id(),
            ctx.try_number()
        );
        append(&path, &format!("{prefix} start {}\n", now_ns()))?;
        let mut left = sleep_ms.0 + task_random() % (sleep_ms.1 - sleep_ms.0 + 1);
        while left > 0 {
            let tick = left.min(TICK_MS);
            tokio::time::sleep(Duration::from_millis(tick)).await;
            left -= tick;
            if left > 0 {
                append(&path, &format!("{prefix} alive {}\n", now_ns()))?;
            }
        }
        append(&path, &format!("{prefix} end {}\n", now_ns()))?;
        Ok(TaskOutput {
            value: serde_json::json!(exec),
            follow: None,
        })
    })
}

fn spec(id: &str) -> TaskSpec {
    let slow = id < mid(SLOW_TASKS).as_str() && id.starts_with("mid_");
    TaskSpec {
        id: id.into(),
        function: if slow { "slow_work" } else { "work" },
        options: TaskOptions {
            retries: Some(RETRIES),
            retry_delay: Some(Duration::from_millis(50)),
            // The cap on lost tries is not under test: a slow task may be
            // lost at nearly every kill of a long form.
            max_lost_tries: Some(LOST_CAP),
            ..Default::default()
        },
        data_upstream: Vec::new(),
        run: if slow { slow_work } else { work },
    }
}

fn mid(i: usize) -> String {
    format!("mid_{i:03}")
}

fn dag() -> Dag {
    let mut b = DagBuilder::new(DAG_ID)
        .max_active_runs(4)
        .max_active_tasks(32)
        .task(spec("first"))
        .task(spec("last"));
    for i in 0..WIDTH {
        b = b
            .task(spec(&mid(i)))
            .order("first", mid(i))
            .order(mid(i), "last");
    }
    b.build().unwrap()
}

fn registry() -> Registry {
    Registry::from_dags(vec![dag()]).unwrap()
}

// ---------------------------------------------------------------------------
// The child processes' `main`s
// ---------------------------------------------------------------------------

/// The in-process combinations' scheduler: the CLI's `scheduler`.
#[test]
fn chaos_scheduler_entry() {
    support::act_as_goflow_binary(registry);
}

/// The local-process combinations' workers: the CLI's `tasks run`.
#[test]
fn chaos_worker_entry() {
    if std::env::var_os(WORKER_ENV).is_some() && std::env::var_os(UNBOUND_ENV).is_some() {
        // A worker that does not watch its scheduler: only the restarted
        // scheduler's adoption keeps it from running beside its retry.
        std::env::remove_var(goflow_runtime::worker::PARENT_PID_ENV);
    }
    support::act_as_goflow_binary(registry);
}

/// The local-process combinations' scheduler: `-- --database-url <url>
/// --id <id>`; the CLI's wiring but for the workers' command line.
#[test]
fn chaos_local_scheduler_entry() {
    if std::env::var_os(WORKER_ENV).is_none() {
        return;
    }
    let args: Vec<String> = std::env::args().skip_while(|a| a != "--").skip(1).collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    let (url, id) = (arg("--database-url"), arg("--id"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runtime.block_on(async move {
        let store = db::open(&url).await.expect("open the store");
        let mut config = SchedulerConfig::default();
        config.id = id;
        config.default_executor = ExecutorKind::LocalProcess;
        let local = LocalProcessExecutor::with_program(
            std::env::current_exe().unwrap(),
            support::entry_args("chaos_worker_entry"),
        )
        .env(WORKER_ENV, "1");
        Scheduler::new(store, Arc::new(registry()), config)
            .with_executor(Arc::new(local))
            .run(std::future::pending::<()>())
            .await
    });
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    std::process::exit(0);
}

// ---------------------------------------------------------------------------
// The combinations
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Db {
    Sqlite,
    Postgres,
}

#[test]
fn chaos_sqlite_in_process() {
    combination(Db::Sqlite, ExecutorKind::InProcess);
}

#[test]
fn chaos_sqlite_local_process() {
    combination(Db::Sqlite, ExecutorKind::LocalProcess);
}

#[test]
fn chaos_postgres_in_process() {
    combination(Db::Postgres, ExecutorKind::InProcess);
}

#[test]
fn chaos_postgres_local_process() {
    combination(Db::Postgres, ExecutorKind::LocalProcess);
}

fn combination(which: Db, executor: ExecutorKind) {
    if std::env::var_os(WORKER_ENV).is_some() {
        return;
    }
    let base = postgres_base_url();
    if which == Db::Postgres && base.is_none() {
        eprintln!("chaos postgres/{executor}: skipped, GOFLOW_TEST_DATABASE_URL is not set");
        return;
    }
    // One combination at a time: the kill timing means something only if
    // the machine is not also running three other chaos tests.
    static SERIAL: Mutex<()> = Mutex::new(());
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let db = match (which, base) {
            (Db::Postgres, Some(base)) => postgres(&base, true).await,
            _ => sqlite(true).await,
        };
        let name = format!("{}/{executor}", db.backend());
        chaos(&name, &db, executor).await;
    });
}

struct Kill {
    before: i64,
    after: i64,
}

struct Chaos<'a> {
    url: &'a str,
    executor: ExecutorKind,
    dir: &'a Path,
    log: PathBuf,
    stderr: PathBuf,
}

impl Chaos<'_> {
    fn spawn(&self, incarnation: usize) -> tokio::process::Child {
        let mut command = tokio::process::Command::new(std::env::current_exe().unwrap());
        match self.executor {
            ExecutorKind::LocalProcess => {
                command
                    .args(support::entry_args("chaos_local_scheduler_entry"))
                    .args(["--database-url", self.url, "--id", SCHEDULER_ID]);
            }
            _ => {
                command
                    .args(support::entry_args("chaos_scheduler_entry"))
                    .args([
                        "--database-url",
                        self.url,
                        "scheduler",
                        "--id",
                        SCHEDULER_ID,
                    ])
                    .args(["--executor", "in_process", "--bind", "127.0.0.1:0"]);
            }
        }
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.stderr)
            .unwrap();
        command
            .env(WORKER_ENV, "1")
            .env(LOG_ENV, &self.log)
            .env(INCARNATION_ENV, incarnation.to_string())
            .env("RUST_LOG", "warn")
            .env_remove("GOFLOW_EXECUTOR")
            .current_dir(self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the scheduler")
    }
}

/// SIGKILL, reaped; the moments around it.
async fn kill(child: &mut tokio::process::Child) -> Kill {
    let before = now_ns();
    child.kill().await.expect("SIGKILL the scheduler");
    Kill {
        before,
        after: now_ns(),
    }
}

async fn trigger(store: &Store, dag: &Dag, version: i32, date: &mut DateTime<Utc>) -> i64 {
    *date += chrono::Duration::seconds(1);
    let new = db::new_run(
        dag,
        version,
        RunType::Manual,
        DataInterval::at(*date),
        serde_json::json!({}),
    );
    store.create_run(&new, Utc::now()).await.unwrap().id
}

async fn active(store: &Store) -> usize {
    store.active_runs(Some(DAG_ID)).await.unwrap().len()
}

/// Waits until the log has not grown for `quiet`, at most `limit`: workers
/// that outlived their scheduler finish writing.
async fn settle(log: &Path, quiet: Duration, limit: Duration) {
    let size = || std::fs::metadata(log).map_or(0, |m| m.len());
    let end = Instant::now() + limit;
    let mut last = size();
    let mut since = Instant::now();
    while Instant::now() < end && since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = size();
        if now != last {
            last = now;
            since = Instant::now();
        }
    }
}

async fn chaos(name: &str, db: &TestDb, executor: ExecutorKind) {
    let began = Instant::now();
    let kills_wanted = env_number(KILLS_ENV, 3) as usize;
    let runs_up_front = env_number(RUNS_ENV, 4).max(1);
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| now_ns() as u64);
    let deadline =
        began + Duration::from_secs(env_number(DEADLINE_ENV, 90 + 5 * kills_wanted as u64));
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let chaos = Chaos {
        url: &db.url,
        executor,
        dir: dir.path(),
        log: dir.path().join("executions.log"),
        stderr: dir.path().join("scheduler.stderr"),
    };
    std::fs::write(&chaos.log, "").unwrap();

    let store = db.store.clone();
    let registry = registry();
    let rows = db::sync_registry(&store, &registry, Utc::now())
        .await
        .unwrap();
    let dag = registry.get(DAG_ID).unwrap();
    let version = rows[DAG_ID].version;
    let mut date = Utc::now();
    for _ in 0..runs_up_front {
        trigger(&store, dag, version, &mut date).await;
    }

    // Kill at random moments while there is work; trigger more runs while
    // kills remain, so that every kill lands on work in progress.
    let mut kills: Vec<Kill> = Vec::new();
    let mut child = chaos.spawn(0);
    let mut chaos_failures = Vec::new();
    while kills.len() < kills_wanted {
        if Instant::now() >= deadline {
            chaos_failures.push(format!(
                "the deadline passed after {} of {kills_wanted} kills",
                kills.len()
            ));
            break;
        }
        // A backlog beyond the 4 runs the DAG runs at once.
        for _ in active(&store).await..BACKLOG {
            trigger(&store, dag, version, &mut date).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.between(LIFE_MS))).await;
        if let Ok(Some(status)) = child.try_wait() {
            chaos_failures.push(format!(
                "scheduler {} exited by itself ({status}) before its kill",
                kills.len()
            ));
        }
        kills.push(kill(&mut child).await);
        child = chaos.spawn(kills.len());
    }
    let kills_done = kills.len();

    // The last scheduler finishes everything.
    let finish_by = Instant::now() + Duration::from_secs(60 + 2 * kills_done as u64);
    let mut finished = true;
    while active(&store).await > 0 {
        if Instant::now() >= finish_by {
            finished = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !finished {
        chaos_failures.push(format!(
            "runs still active {} s after the last kill",
            finish_by.duration_since(began).as_secs()
        ));
    }
    kills.push(kill(&mut child).await); // the final stop
    settle(
        &chaos.log,
        Duration::from_millis(1000),
        Duration::from_secs(10),
    )
    .await;

    let report = check(&store, &chaos.log, &kills, kills_done).await;
    let mut failures = chaos_failures;
    failures.extend(report.failures);
    let summary = format!(
        "chaos {name}: kills {kills_done}/{kills_wanted}, runs {}, task instances {}, \
         executions {} (completed {}, interrupted {}, outlived their scheduler {} by up to {:.1} ms), \
         tries {} (lost {}, max lost per task instance {}, task instances lost more than {RETRIES} times {}), max try {}, overlapping pairs {}, \
         kill to the next scheduler's first execution {} ms (min/median/max), \
         seed {seed}, {:.1} s",
        report.runs,
        report.task_instances,
        report.executions,
        report.completed,
        report.interrupted,
        report.outlived,
        ms(report.outlived_ns),
        report.tries,
        report.lost,
        report.max_lost,
        report.lost_beyond_retries,
        report.max_try,
        report.overlaps,
        {
            let r = &report.restart_ns;
            [r.first(), r.get(r.len() / 2), r.last()]
                .iter()
                .map(|ns| ns.map_or_else(|| "-".to_owned(), |&ns| format!("{:.0}", ms(ns))))
                .collect::<Vec<_>>()
                .join("/")
        },
        began.elapsed().as_secs_f64(),
    );
    println!("{summary}");
    if !failures.is_empty() {
        let stderr = std::fs::read_to_string(&chaos.stderr).unwrap_or_default();
        let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
        let mut message = format!("{summary}\n{} failed check(s):\n", failures.len());
        for f in &failures {
            let _ = writeln!(message, "- {f}");
        }
        if !tail.is_empty() {
            let _ = writeln!(message, "last lines of the schedulers' stderr:");
            for line in tail.iter().rev() {
                let _ = writeln!(message, "  {line}");
            }
        }
        panic!("{message}");
    }
}

// ---------------------------------------------------------------------------
// The checks
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Execution {
    run: String,
    task: String,
    try_number: u32,
    incarnation: Option<usize>,
    start: Option<i64>,
    end: Option<i64>,
    /// The last stamp of any kind.
    last: i64,
}

impl Execution {
    /// A lower bound of the interval it ran in (see the module docs).
    fn interval(&self, kills: &[Kill]) -> (i64, i64) {
        let start = self.start.unwrap_or(self.last);
        let end = match self.end {
            Some(end) => end,
            None => match self.incarnation.and_then(|i| kills.get(i)) {
                Some(k) if start <= k.before => self.last.max(k.before),
                _ => self.last,
            },
        };
        (start, end)
    }

    /// How long it was seen alive after its scheduler was reaped, if it was.
    fn outlived_by(&self, kills: &[Kill]) -> Option<i64> {
        self.incarnation
            .and_then(|i| kills.get(i))
            .filter(|k| self.last > k.after)
            .map(|k| self.last - k.after)
    }
}

fn parse_log(text: &str) -> (BTreeMap<String, Execution>, Vec<String>) {
    let mut executions = BTreeMap::new();
    let mut malformed = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        // From the right: a run id may contain anything but a newline.
        let fields: Vec<&str> = line.rsplitn(7, ' ').collect();
        let parsed = (fields.len() == 7)
            .then(|| {
                let ns: i64 = fields[0].parse().ok()?;
                let try_number: u32 = fields[4].parse().ok()?;
                Some((
                    ns, fields[1], fields[2], fields[3], try_number, fields[5], fields[6],
                ))
            })
            .flatten();
        let Some((ns, kind, incarnation, exec, try_number, task, run)) = parsed else {
            malformed.push(line.to_owned());
            continue;
        };
        let e = executions
            .entry(exec.to_owned())
            .or_insert_with(|| Execution {
                run: run.to_owned(),
                task: task.to_owned(),
                try_number,
                incarnation: incarnation.parse().ok(),
                start: None,
                end: None,
                last: ns,
            });
        e.last = e.last.max(ns);
        match kind {
            "start" => e.start = Some(ns),
            "end" => e.end = Some(ns),
            "alive" => {}
            _ => malformed.push(line.to_owned()),
        }
    }
    (executions, malformed)
}

#[derive(Default)]
struct Report {
    failures: Vec<String>,
    runs: usize,
    task_instances: usize,
    tries: usize,
    lost: usize,
    max_lost: usize,
    /// Task instances that lost more tries than `retries` allows: they
    /// fail if lost tries use the retries.
    lost_beyond_retries: usize,
    max_try: u32,
    executions: usize,
    completed: usize,
    interrupted: usize,
    outlived: usize,
    /// The longest an execution was seen alive after its scheduler was reaped.
    outlived_ns: i64,
    overlaps: usize,
    /// From each kill to the first execution the next scheduler started.
    restart_ns: Vec<i64>,
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// Lists at most a few examples after a count.
fn examples(what: &str, items: &[String]) -> String {
    let shown: Vec<&str> = items.iter().take(5).map(String::as_str).collect();
    let more = if items.len() > shown.len() {
        format!("; and {} more", items.len() - shown.len())
    } else {
        String::new()
    };
    format!("{} {what}: {}{more}", items.len(), shown.join("; "))
}

type ByTask<'a> = BTreeMap<(&'a str, &'a str), Vec<&'a Execution>>;

fn by_task(executions: &BTreeMap<String, Execution>) -> ByTask<'_> {
    let mut by_task: ByTask = BTreeMap::new();
    for e in executions.values() {
        by_task.entry((&e.run, &e.task)).or_default().push(e);
    }
    by_task
}

/// The pairs of executions of one (run, task) that ran at the same time
/// (described), and in how many (run, task)s.
fn overlaps(by_task: &ByTask, kills: &[Kill]) -> (Vec<String>, usize) {
    let describe = |e: &Execution| {
        format!(
            "try {} ({}, scheduler {})",
            e.try_number,
            if e.end.is_some() {
                "completed"
            } else {
                "interrupted"
            },
            e.incarnation
                .map_or_else(|| "?".to_owned(), |i| i.to_string())
        )
    };
    let mut overlapping = Vec::new();
    let mut tasks = 0;
    for ((run, task), list) in by_task {
        let before = overlapping.len();
        for (i, a) in list.iter().enumerate() {
            for b in &list[i + 1..] {
                let (a0, a1) = a.interval(kills);
                let (b0, b1) = b.interval(kills);
                if a0 < b1 && b0 < a1 {
                    overlapping.push(format!(
                        "{run}/{task}: {} and {} overlap {:.1} ms",
                        describe(a),
                        describe(b),
                        ms(a1.min(b1) - a0.max(b0))
                    ));
                }
            }
        }
        tasks += usize::from(overlapping.len() > before);
    }
    (overlapping, tasks)
}

async fn check(store: &Store, log: &Path, kills: &[Kill], kills_done: usize) -> Report {
    let mut r = Report::default();
    let runs = store.list_runs(DAG_ID, 1_000_000, 0).await.unwrap();
    r.runs = runs.len();

    // The store's side.
    let mut failed_runs = Vec::new();
    let mut stuck = Vec::new();
    let mut not_success = Vec::new();
    let mut other_failures = Vec::new();
    let mut run_end: HashMap<String, Option<i64>> = HashMap::new();
    // (run, task) -> the try the store records as the success.
    let mut success_try: HashMap<(String, String), u32> = HashMap::new();
    for run in &runs {
        run_end.insert(
            run.run_id.clone(),
            run.end_date.and_then(|d| d.timestamp_nanos_opt()),
        );
        let instances = store.task_instances(run.id).await.unwrap();
        let tries = store.task_tries(run.id, None).await.unwrap();
        r.task_instances += instances.len();
        r.tries += tries.len();
        let mut lost_by_task: HashMap<&str, usize> = HashMap::new();
        for t in &tries {
            let error = t.error.as_deref().unwrap_or("");
            if error.contains("lost") {
                r.lost += 1;
                *lost_by_task.entry(t.task_id.as_str()).or_default() += 1;
            } else if matches!(t.state, TaskState::Failed | TaskState::UpForRetry)
                || !error.is_empty()
            {
                other_failures.push(format!(
                    "{}/{} try {} {}: {error}",
                    run.run_id, t.task_id, t.try_number, t.state
                ));
            }
        }
        r.max_lost = r
            .max_lost
            .max(lost_by_task.values().copied().max().unwrap_or(0));
        r.lost_beyond_retries += lost_by_task
            .values()
            .filter(|&&n| n > RETRIES as usize)
            .count();
        for ti in &instances {
            r.max_try = r.max_try.max(ti.try_number);
            if matches!(
                ti.state,
                TaskState::Queued
                    | TaskState::Running
                    | TaskState::Scheduled
                    | TaskState::UpForRetry
                    | TaskState::Pending
            ) {
                stuck.push(format!("{}/{} {}", run.run_id, ti.task_id, ti.state));
            } else if ti.state != TaskState::Success {
                not_success.push(format!(
                    "{}/{} {} after {} tries ({} lost to kills): {}",
                    run.run_id,
                    ti.task_id,
                    ti.state,
                    ti.try_number,
                    lost_by_task.get(ti.task_id.as_str()).copied().unwrap_or(0),
                    ti.last_error.as_deref().unwrap_or("")
                ));
            } else {
                success_try.insert((run.run_id.clone(), ti.task_id.clone()), ti.try_number);
            }
        }
        if run.state != RunState::Success {
            failed_runs.push(format!("{} {}", run.run_id, run.state));
        }
    }
    if !failed_runs.is_empty() {
        r.failures
            .push(examples("runs did not succeed", &failed_runs));
    }
    if !not_success.is_empty() {
        r.failures.push(examples(
            "task instances did not succeed (a kill must not use the retries)",
            &not_success,
        ));
    }
    if !stuck.is_empty() {
        r.failures.push(examples(
            "task instances left queued/running/scheduled/up_for_retry/pending",
            &stuck,
        ));
    }
    if !other_failures.is_empty() {
        r.failures.push(examples(
            "tries failed for another reason than a kill (the body never fails)",
            &other_failures,
        ));
    }

    // The executions' side.
    let text = std::fs::read_to_string(log).unwrap();
    let (executions, malformed) = parse_log(&text);
    if !malformed.is_empty() {
        r.failures
            .push(examples("malformed lines in the execution log", &malformed));
    }
    r.executions = executions.len();
    let by_task = by_task(&executions);
    let mut unexplained = Vec::new();
    let mut after_run = Vec::new();
    let mut unknown_run = Vec::new();
    for (id, e) in &executions {
        if e.end.is_some() {
            r.completed += 1;
        } else {
            r.interrupted += 1;
            // Nothing but the kill of its scheduler interrupts a body, and
            // the final stop comes after every run ended: nothing of them
            // may be running then. (A local-process worker may start its
            // body after its scheduler was killed, and be stopped then.)
            if e.incarnation.is_none_or(|i| i >= kills_done) {
                unexplained.push(format!(
                    "{}/{} try {} (exec {id}, scheduler {:?})",
                    e.run, e.task, e.try_number, e.incarnation
                ));
            }
        }
        if let Some(by) = e.outlived_by(kills) {
            r.outlived += 1;
            r.outlived_ns = r.outlived_ns.max(by);
        }
        match run_end.get(&e.run) {
            None => unknown_run.push(format!("{} (exec {id})", e.run)),
            Some(Some(end)) if e.last > *end => after_run.push(format!(
                "{}/{} try {} (exec {id}) alive {:.1} ms after its run ended",
                e.run,
                e.task,
                e.try_number,
                ms(e.last - end)
            )),
            Some(_) => {}
        }
    }
    if !unknown_run.is_empty() {
        r.failures.push(examples(
            "executions of runs not in the store",
            &unknown_run,
        ));
    }
    if !unexplained.is_empty() {
        r.failures.push(examples(
            "executions interrupted but not by a kill of their scheduler (by the final stop, after every run ended)",
            &unexplained,
        ));
    }
    if !after_run.is_empty() {
        r.failures.push(examples(
            "executions alive after their run ended",
            &after_run,
        ));
    }

    for (i, k) in kills.iter().enumerate().take(kills_done) {
        let first = executions
            .values()
            .filter(|e| e.incarnation == Some(i + 1))
            .filter_map(|e| e.start)
            .min();
        if let Some(first) = first {
            r.restart_ns.push(first - k.after);
        }
    }
    r.restart_ns.sort_unstable();

    // Never concurrently.
    let (overlapping, tasks_overlapping) = overlaps(&by_task, kills);
    r.overlaps = overlapping.len();
    if !overlapping.is_empty() {
        r.failures.push(examples(
            &format!(
                "pairs of executions of one (run, task) overlap in time, in {tasks_overlapping} (run, task)s"
            ),
            &overlapping,
        ));
    }

    // At least once, and the recorded success is a real one.
    let mut never_completed = Vec::new();
    let mut success_unseen = Vec::new();
    for ((run, task), try_number) in &success_try {
        let list = by_task
            .get(&(run.as_str(), task.as_str()))
            .map_or(&[][..], Vec::as_slice);
        if !list.iter().any(|e| e.end.is_some()) {
            never_completed.push(format!("{run}/{task}"));
        } else if !list
            .iter()
            .any(|e| e.end.is_some() && e.try_number == *try_number)
        {
            success_unseen.push(format!("{run}/{task} try {try_number}"));
        }
    }
    if !never_completed.is_empty() {
        r.failures.push(examples(
            "successful task instances with no completed execution",
            &never_completed,
        ));
    }
    if !success_unseen.is_empty() {
        r.failures.push(examples(
            "successful tries with no completed execution of that try",
            &success_unseen,
        ));
    }

    if kills_done > 0 && r.lost == 0 && r.interrupted == 0 {
        r.failures
            .push("no kill interrupted a try or an execution: the test proved nothing".to_owned());
    }
    if r.task_instances < 400 {
        r.failures.push(format!(
            "only {} task instances ran (at least 400 wanted)",
            r.task_instances
        ));
    }
    r
}

/// The overlap rule on made-up logs: an execution that outlived its
/// killed scheduler is caught beside its retry, an interrupted one counts
/// as alive until its scheduler's kill, and executions one after the other
/// pass.
#[test]
fn chaos_checker_catches_concurrent_executions() {
    // Scheduler 0 killed at 1000 (reaped at 1010), scheduler 1 at 5000.
    let kills = [
        Kill {
            before: 1000,
            after: 1010,
        },
        Kill {
            before: 5000,
            after: 5010,
        },
    ];
    let case = |log: &str| {
        let (executions, malformed) = parse_log(log);
        assert!(malformed.is_empty(), "{malformed:?}");
        overlaps(&by_task(&executions), &kills).0.len()
    };
    // An orphaned worker of scheduler 0 finishes while its retry runs.
    let orphan = "r a 1 x1 0 start 900\nr a 1 x1 0 alive 1100\nr a 1 x1 0 end 1300\n\
                  r a 2 x2 1 start 1200\nr a 2 x2 1 end 1250\n";
    assert_eq!(case(orphan), 1);
    // Try 1 interrupted by the kill (last stamp 950, but alive until
    // 1000); try 2 started at 990 by... a second launch: caught.
    let relaunched = "r a 1 x1 0 start 900\nr a 1 x1 0 alive 950\n\
                      r a 2 x2 0 start 990\nr a 2 x2 0 end 1200\n";
    assert_eq!(case(relaunched), 1);
    // Interrupted by the kill, retried after the restart: fine; so are
    // two interrupted tries in a row and a run id with spaces.
    let sequential = "r a 1 x1 0 start 900\nr a 1 x1 0 alive 950\n\
                      r a 2 x2 1 start 1500\nr a 2 x2 1 alive 1505\n\
                      r a 3 x3 2 start 5100\nr a 3 x3 2 end 5200\n\
                      run with spaces b 1 y1 0 start 10\nrun with spaces b 1 y1 0 end 20\n\
                      run with spaces b 2 y2 0 start 20\nrun with spaces b 2 y2 0 end 30\n";
    assert_eq!(case(sequential), 0);
    // Different tasks and runs never conflict.
    let apart = "r a 1 x1 0 start 900\nr a 1 x1 0 end 1300\n\
                 r b 1 x2 0 start 900\nr b 1 x2 0 end 1300\n\
                 q a 1 x3 0 start 900\nq a 1 x3 0 end 1300\n";
    assert_eq!(case(apart), 0);
}
