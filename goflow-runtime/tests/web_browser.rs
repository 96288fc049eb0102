//! The UI in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven through chromedriver with fantoccini, against
//! the web server on 127.0.0.1:0 and an embedded scheduler running a DAG
//! of a few in-process tasks.
//!
//! A user logs in, sees the DAG, is refused an invalid conf, triggers a
//! run, follows a task's log while it runs, watches the run succeed in the
//! grid, clears a task and sees it run again, stops a hung task by
//! marking it failed and sees its run fail. Screenshots of the main pages
//! are written to `target/screenshots/` for a reviewer.
//!
//! The same user, in a host application that serves goflow under
//! `/goflow`, logs in, opens a DAG, triggers a run and follows a task's
//! log live: every link, form, asset, cookie and event stream of the UI
//! carries the base path.
//!
//! Chromium missing is a failure with a message, not a skip: CI installs
//! it (`.ci/run`).

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use goflow_core::{
    Dag, DagBuilder, Inputs, RunState, Schedule, TaskContext, TaskError, TaskFuture, TaskOptions,
    TaskOutput, TaskSpec, TaskState,
};
use goflow_runtime::metrics::Metrics;
use goflow_runtime::scheduler::{Scheduler, SchedulerConfig};
use goflow_runtime::web::{self, WebConfig, WebState};
use goflow_runtime::Registry;
use goflow_store::{LogStream, NewLogLine, RunRow, Store};
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const SCHEDULER_ID: &str = "browser-test";

/// The store each DAG's tasks write their log lines to (one DAG, and one
/// database, per test). The in-process executor does not capture output,
/// so the tasks log as a worker's log shipper would: lines in the store,
/// for the UI to stream.
static STORES: Mutex<Option<HashMap<String, Store>>> = Mutex::new(None);
/// The DAGs whose `extract` may go on: it holds its first try open until
/// the test has seen its log.
static GATES_OPEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
/// One browser test at a time: two Chromiums and schedulers on a small
/// machine would make the timings of both flaky.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn store_of(dag: &str) -> Option<Store> {
    STORES.lock().unwrap().as_ref()?.get(dag).cloned()
}

fn gate_open(dag: &str) -> bool {
    GATES_OPEN
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|g| g.contains(dag))
}

fn open_gate(dag: &str) {
    GATES_OPEN
        .lock()
        .unwrap()
        .get_or_insert_with(HashSet::new)
        .insert(dag.to_owned());
}

async fn log(ctx: &TaskContext, line: &str) -> Result<(), TaskError> {
    let store = store_of(ctx.dag_id().as_str()).ok_or_else(|| TaskError::msg("no store"))?;
    let run = store
        .find_run(ctx.dag_id().as_str(), ctx.run_id().as_str())
        .await
        .map_err(|e| TaskError::msg(e.to_string()))?
        .ok_or_else(|| TaskError::msg("no run"))?;
    store
        .append_logs(vec![NewLogLine {
            run: run.id,
            task_id: ctx.task_id().as_str().to_owned(),
            try_number: ctx.try_number(),
            timestamp: Utc::now(),
            stream: LogStream::Stdout,
            line: line.to_owned(),
        }])
        .await
        .map_err(|e| TaskError::msg(e.to_string()))
}

fn output(value: serde_json::Value) -> Result<TaskOutput, TaskError> {
    Ok(TaskOutput {
        value,
        follow: None,
    })
}

fn extract(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        if ctx.conf()["hang"] == serde_json::json!(true) {
            // Hangs until someone stops it.
            log(&ctx, "waiting for a file that never comes").await?;
            std::future::pending::<()>().await;
        }
        log(&ctx, "reading sales.csv").await?;
        while !gate_open(ctx.dag_id().as_str()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        log(&ctx, "read 3 rows").await?;
        output(serde_json::json!([12.5, 7.0, 3.5]))
    })
}

fn total(ctx: TaskContext, inputs: &Inputs) -> TaskFuture {
    let rows: Result<Vec<f64>, _> = inputs.read("extract");
    Box::pin(async move {
        let rows = rows?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        log(&ctx, &format!("{} rows", rows.len())).await?;
        output(serde_json::json!(rows.iter().sum::<f64>()))
    })
}

fn merge(ctx: TaskContext, inputs: &Inputs) -> TaskFuture {
    let a: Result<f64, _> = inputs.read("north");
    let b: Result<f64, _> = inputs.read("south");
    Box::pin(async move {
        let sum = a? + b?;
        log(&ctx, &format!("total {sum}")).await?;
        output(serde_json::json!(sum))
    })
}

fn notify(ctx: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async move {
        log(&ctx, "report sent").await?;
        output(serde_json::Value::Null)
    })
}

fn spec(id: &str, data: &[&str], run: fn(TaskContext, &Inputs) -> TaskFuture) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "f",
        options: TaskOptions::default(),
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

fn shop(id: &str) -> Dag {
    DagBuilder::new(id)
        .description("Daily sales by region")
        .schedule(
            Schedule::parse("0 6 * * *", "Europe/Paris").unwrap(),
            goflow_core::Tz::Europe__Paris,
        )
        // Due in the future only: the test triggers its runs.
        .start_date(Utc::now() + chrono::Duration::days(2))
        .tags(["sales"])
        .task(spec("extract", &[], extract))
        .task(spec("north", &["extract"], total))
        .task(spec("south", &["extract"], total))
        .task(spec("merge", &["north", "south"], merge))
        .task(spec("notify", &[], notify))
        .order("merge", "notify")
        .source(file!(), line!())
        .build()
        .unwrap()
}

fn screenshots_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("screenshots")
}

async fn shot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let dir = screenshots_dir();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a free port, killed when dropped.
async fn chromedriver() -> (Child, u16) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start chromedriver");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not listen on {port} within 20s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, port)
}

async fn browser(port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--window-size=1400,1200",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a Chromium session through chromedriver")
}

/// Waits until `check` holds, reloading the page between looks when
/// `reload`.
async fn eventually<F, Fut>(client: &Client, what: &str, reload: bool, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if check().await {
            return;
        }
        if Instant::now() > deadline {
            shot(client, "zz-failure").await;
            panic!("timed out waiting until {what} (see target/screenshots/zz-failure.png)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        if reload {
            let _ = client.refresh().await;
        }
    }
}

async fn text(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn exists(client: &Client, css: &str) -> bool {
    client
        .find_all(Locator::Css(css))
        .await
        .is_ok_and(|v| !v.is_empty())
}

/// Clicks `css` and waits for the page it leads to (a link or a form).
async fn click_to_page(client: &Client, css: &str) {
    client
        .execute("window.goflowOldPage = true;", vec![])
        .await
        .unwrap();
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let loaded = client
            .execute(
                "return !window.goflowOldPage && document.readyState === 'complete';",
                vec![],
            )
            .await
            .is_ok_and(|v| v == serde_json::json!(true));
        if loaded {
            return;
        }
        assert!(Instant::now() < deadline, "clicking {css} led to no page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn path(client: &Client) -> String {
    client.current_url().await.unwrap().path().to_owned()
}

/// A scheduler and a web server over a fresh database holding the DAG
/// `shop(dag)`, and a Chromium to drive them.
struct Env {
    store: Store,
    token: String,
    /// `http://127.0.0.1:<port>`.
    origin: String,
    client: Client,
    stop_server: oneshot::Sender<()>,
    server: JoinHandle<Result<(), web::WebError>>,
    stop_scheduler: oneshot::Sender<()>,
    scheduler: JoinHandle<Result<(), goflow_runtime::scheduler::SchedulerError>>,
    _driver: Child,
    _profile: tempfile::TempDir,
    _db: goflow_store::testing::TestDb,
}

impl Env {
    /// Starts everything for the DAG `dag`, serving `app(state)`.
    async fn start(dag: &str, config: WebConfig, app: impl FnOnce(WebState) -> Router) -> Env {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: the browser tests need Debian's Chromium \
                 (`apt-get install -y chromium chromium-driver`; .ci/run installs them)"
            );
        }
        let db = goflow_store::testing::sqlite(true).await;
        let store = db.store.clone();
        STORES
            .lock()
            .unwrap()
            .get_or_insert_with(HashMap::new)
            .insert(dag.to_owned(), store.clone());
        let registry = Arc::new(Registry::from_dags([shop(dag)]).unwrap());

        let (stop_scheduler, scheduler_stop) = oneshot::channel::<()>();
        let mut scheduler_config = SchedulerConfig::default();
        scheduler_config.id = SCHEDULER_ID.into();
        scheduler_config.heartbeat_interval = Duration::from_millis(500);
        scheduler_config.poll_interval = Duration::from_millis(100);
        let scheduler = Scheduler::new(store.clone(), registry.clone(), scheduler_config);
        let scheduler = tokio::spawn(async move {
            scheduler
                .run(async {
                    let _ = scheduler_stop.await;
                })
                .await
        });
        // The scheduler syncs the DAG into the store first.
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.get_dag(dag).await.unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "the scheduler did not sync the DAG"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        let state = WebState::new(
            store.clone(),
            registry,
            Metrics::new(),
            config.with_scheduler_id(SCHEDULER_ID),
        )
        .await
        .unwrap();
        let token = state.api_token().token.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let (stop_server, server_stop) = oneshot::channel::<()>();
        let server = tokio::spawn(web::serve_app(listener, app(state), async {
            let _ = server_stop.await;
        }));

        let (driver, driver_port) = chromedriver().await;
        let profile = tempfile::tempdir().unwrap();
        let client = browser(driver_port, profile.path()).await;
        Env {
            store,
            token,
            origin: format!("http://{addr}"),
            client,
            stop_server,
            server,
            stop_scheduler,
            scheduler,
            _driver: driver,
            _profile: profile,
            _db: db,
        }
    }

    /// Closes the browser, stops the server and the scheduler.
    async fn stop(self) {
        self.client.close().await.unwrap();
        let _ = self.stop_server.send(());
        self.server.await.unwrap().unwrap();
        let _ = self.stop_scheduler.send(());
        self.scheduler.await.unwrap().unwrap();
    }
}

/// Logs in through the form that the DAG list under `base` redirects
/// to: a wrong password first, then the token. `shots` prefixes the
/// screenshots' names.
async fn log_in(env: &Env, base: &str, shots: &str) {
    let client = &env.client;
    client
        .goto(&format!("{}{base}/dags", env.origin))
        .await
        .unwrap();
    assert_eq!(path(client).await, format!("{base}/login"));
    shot(client, &format!("{shots}01-login")).await;
    let password = client.find(Locator::Css("#password")).await.unwrap();
    password.send_keys("not the token").await.unwrap();
    click_to_page(client, "#login").await;
    assert!(text(client, ".flash.error")
        .await
        .contains("Wrong user name or password"));
    let password = client.find(Locator::Css("#password")).await.unwrap();
    password.send_keys(&env.token).await.unwrap();
    click_to_page(client, "#login").await;
    assert_eq!(path(client).await, format!("{base}/dags"));
}

/// Follows `extract`'s log live on its page, below the run's page
/// `run_page` (a path, under the base path): the lines come through the
/// event stream, the state turns to success without a reload, and the
/// page stops following.
async fn follow_the_live_log(env: &Env, run_page: &str, run: &RunRow, shots: &str) {
    let (client, store) = (&env.client, &env.store);
    eventually(client, "extract runs", false, || async {
        store
            .task_instance(run.id, "extract")
            .await
            .unwrap()
            .is_some_and(|t| t.state == TaskState::Running)
    })
    .await;
    let logs_url = format!("{}{run_page}/tasks/extract/logs", env.origin);
    client.goto(&logs_url).await.unwrap();
    assert!(text(client, "#log").await.contains("reading sales.csv"));
    assert!(text(client, "#log-status").await.contains("Following"));
    // The page follows the log through the server's event stream.
    eventually(client, "the log follows by EventSource", false, || async {
        client
            .execute("return window.goflowLogSource || '';", vec![])
            .await
            .unwrap()
            == serde_json::json!("sse")
    })
    .await;
    // A try selector, and the try's raw log to download.
    assert!(exists(client, "#log-tries [data-try=\"1\"]").await);
    let download = client
        .find(Locator::Css("a#log-download"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap_or_default();
    let base = run_page.split("/dags/").next().unwrap_or("");
    assert!(
        download.starts_with(&format!("{base}/api/v1/dags/"))
            && download.ends_with("/tasks/extract/logs/raw?try=1"),
        "{download}"
    );
    assert!(exists(client, "input#hide-system[type=\"checkbox\"]").await);
    shot(client, &format!("{shots}04-logs-running")).await;
    // A mark on the page: it must still be there once the line arrived.
    client
        .execute("window.goflowMark = 42;", vec![])
        .await
        .unwrap();
    open_gate(run.dag_id.as_str());
    eventually(client, "the log streams its next line", false, || async {
        text(client, "#log").await.contains("read 3 rows")
            && text(client, "#log-state").await == "success"
    })
    .await;
    let mark = client
        .execute("return window.goflowMark || 0;", vec![])
        .await
        .unwrap();
    assert_eq!(
        mark,
        serde_json::json!(42),
        "the line came without a page reload"
    );
    // It stopped following once the try ended, without falling back to
    // polling on the way.
    eventually(client, "the page stops following", false, || async {
        text(client, "#log-status")
            .await
            .contains("Finished: success")
    })
    .await;
    let follow = client
        .execute(
            "const p = document.getElementById('log'); \
             return [p.dataset.follow, window.goflowLogSource];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(follow, serde_json::json!(["done", "sse"]));
    shot(client, &format!("{shots}05-logs-finished")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_triggers_follows_and_reruns_a_dag_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
    let env = Env::start("shop", WebConfig::default(), |state| {
        web::standalone(web::router(state), "")
    })
    .await;
    let (client, store, base) = (env.client.clone(), &env.store, env.origin.as_str());

    // Log in: the DAG list redirects to the login form.
    log_in(&env, "", "").await;

    // The DAG is listed; open it.
    let row = client
        .find(Locator::Css("tr[data-dag=\"shop\"]"))
        .await
        .unwrap();
    assert!(row.text().await.unwrap().contains("Daily sales by region"));
    shot(&client, "02-dag-list").await;
    click_to_page(&client, "tr[data-dag=\"shop\"] a.dag-link").await;
    assert_eq!(path(&client).await, "/dags/shop");
    assert_eq!(
        client
            .find_all(Locator::Css("svg.graph g.node"))
            .await
            .unwrap()
            .len(),
        5
    );

    // The conf editor refuses invalid JSON before anything is sent.
    let conf = client.find(Locator::Css("#conf")).await.unwrap();
    conf.clear().await.unwrap();
    conf.send_keys("{\"region\": ").await.unwrap();
    let trigger = client.find(Locator::Css("#trigger")).await.unwrap();
    assert!(text(&client, "#conf-status")
        .await
        .contains("Not valid JSON"));
    assert!(
        !trigger.is_enabled().await.unwrap(),
        "no trigger with invalid JSON"
    );
    shot(&client, "03-dag-invalid-conf").await;
    conf.send_keys("\"north\"}").await.unwrap();
    assert_eq!(text(&client, "#conf-status").await, "Valid JSON object.");
    click_to_page(&client, "#trigger").await;
    let run_page = path(&client).await;
    assert!(
        run_page.starts_with("/dags/shop/runs/manual__"),
        "{run_page}"
    );
    let run_id = store.list_runs("shop", 1, 0).await.unwrap()[0].clone();
    assert_eq!(run_id.conf, serde_json::json!({"region": "north"}));

    // Follow extract's log while it runs.
    follow_the_live_log(&env, &run_page, &run_id, "").await;
    // The raw download serves the same lines to the session.
    let raw = client
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             fetch(document.getElementById('log-download').href, {credentials: 'same-origin'}) \
               .then(r => r.text().then(t => done([r.status, r.headers.get('content-disposition'), t]))) \
               .catch(e => done([0, '', String(e)]));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(raw[0], serde_json::json!(200), "{raw}");
    assert!(
        raw[1]
            .as_str()
            .is_some_and(|d| d.starts_with("attachment; filename=\"shop_manual__")
                && d.ends_with("_extract_try1.log\"")),
        "{raw}"
    );
    // The task's lines in order, goflow's own marked as such.
    let raw_text = raw[2].as_str().unwrap_or_default();
    let task_lines: Vec<&str> = raw_text
        .lines()
        .filter(|l| !l.starts_with("[system] "))
        .collect();
    assert_eq!(task_lines, ["reading sales.csv", "read 3 rows"], "{raw}");
    // goflow's own lines can be hidden.
    let system_lines = client
        .find_all(Locator::Css("#log .line.system"))
        .await
        .unwrap()
        .len();
    assert_eq!(
        system_lines,
        raw_text
            .lines()
            .filter(|l| l.starts_with("[system] "))
            .count(),
        "{raw}"
    );
    if system_lines > 0 {
        client
            .find(Locator::Css("#hide-system"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let hidden = client
            .execute(
                "return Array.from(document.querySelectorAll('#log .line.system')) \
                 .every(l => getComputedStyle(l).display === 'none');",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(hidden, serde_json::json!(true));
        assert!(text(&client, "#log").await.contains("read 3 rows"));
        shot(&client, "05b-logs-system-hidden").await;
        client
            .find(Locator::Css("#hide-system"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    // The run succeeds in the grid.
    client.goto(&format!("{base}/dags/shop")).await.unwrap();
    eventually(&client, "the run succeeds in the grid", true, || async {
        exists(&client, "a.runbar[data-state=\"success\"]").await
    })
    .await;
    assert_eq!(
        client
            .find_all(Locator::Css("a.cell[data-state=\"success\"]"))
            .await
            .unwrap()
            .len(),
        5
    );
    shot(&client, "06-dag-grid").await;

    // The run's page: a Gantt bar per task; clear `merge` and see it re-run.
    client.goto(&format!("{base}{run_page}")).await.unwrap();
    assert_eq!(
        client
            .find_all(Locator::Css("svg.gantt rect.bar"))
            .await
            .unwrap()
            .len(),
        5
    );
    shot(&client, "07-run-gantt").await;
    click_to_page(&client, "tr[data-task=\"merge\"] button.clear-task").await;
    eventually(
        &client,
        "merge runs again and the run succeeds",
        true,
        || async {
            exists(&client, "tr[data-task=\"merge\"][data-state=\"success\"]").await
                && text(&client, "#run-state").await == "success"
                && text(&client, "tr[data-task=\"merge\"] td:nth-child(3)")
                    .await
                    .starts_with('2')
        },
    )
    .await;
    let merge = store
        .task_instance(run_id.id, "merge")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((merge.state, merge.try_number), (TaskState::Success, 2));
    assert_eq!(
        store.get_run(run_id.id).await.unwrap().unwrap().state,
        RunState::Success
    );
    assert_eq!(
        client
            .find_all(Locator::Css("svg.gantt rect.bar"))
            .await
            .unwrap()
            .len(),
        6,
        "both tries of merge"
    );
    shot(&client, "08-run-after-clear").await;

    // A hung task is stopped from its run's page: marked failed, its try
    // is killed and the run fails, within seconds.
    client.goto(&format!("{base}/dags/shop")).await.unwrap();
    let conf = client.find(Locator::Css("#conf")).await.unwrap();
    conf.clear().await.unwrap();
    conf.send_keys("{\"hang\": true}").await.unwrap();
    click_to_page(&client, "#trigger").await;
    let hung_page = path(&client).await;
    let hung = store.list_runs("shop", 1, 0).await.unwrap()[0].clone();
    assert_eq!(hung.conf, serde_json::json!({"hang": true}));
    eventually(&client, "the hung task shows as running", true, || async {
        exists(
            &client,
            "tr[data-task=\"extract\"][data-state=\"running\"] button.mark-failed",
        )
        .await
    })
    .await;
    shot(&client, "09-run-hung").await;
    let asked = Instant::now();
    click_to_page(&client, "tr[data-task=\"extract\"] button.mark-failed").await;
    assert_eq!(path(&client).await, hung_page);
    eventually(&client, "the stopped task fails its run", true, || async {
        exists(&client, "tr[data-task=\"extract\"][data-state=\"failed\"]").await
            && text(&client, "#run-state").await == "failed"
    })
    .await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "stopped within seconds, took {:?}",
        asked.elapsed()
    );
    let extract = store
        .task_instance(hung.id, "extract")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((extract.state, extract.try_number), (TaskState::Failed, 1));
    assert!(
        extract
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("marked failed by admin")),
        "{:?}",
        extract.last_error
    );
    shot(&client, "10-run-stopped").await;

    // Performance over runs, and the scheduler's health.
    client
        .goto(&format!("{base}/dags/shop/tasks/merge"))
        .await
        .unwrap();
    assert_eq!(
        client
            .find_all(Locator::Css("svg.chart"))
            .await
            .unwrap()
            .len(),
        3
    );
    shot(&client, "11-performance").await;
    client.goto(&format!("{base}/health")).await.unwrap();
    assert_eq!(text(&client, "#overall").await, "healthy");
    assert!(text(&client, "#schedulers").await.contains(SCHEDULER_ID));
    shot(&client, "12-health").await;

    // Pause from the list, and unpause.
    client.goto(&format!("{base}/dags")).await.unwrap();
    click_to_page(&client, "tr[data-dag=\"shop\"] button.switch").await;
    assert_eq!(
        text(&client, "tr[data-dag=\"shop\"] button.switch").await,
        "paused"
    );
    shot(&client, "13-dag-list-paused").await;
    assert!(store.get_dag("shop").await.unwrap().unwrap().is_paused);
    click_to_page(&client, "tr[data-dag=\"shop\"] button.switch").await;
    assert_eq!(
        text(&client, "tr[data-dag=\"shop\"] button.switch").await,
        "active"
    );
    assert!(!store.get_dag("shop").await.unwrap().unwrap().is_paused);

    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_a_base_path_in_a_host_application_the_ui_works_in_chromium() {
    let _one = ONE_AT_A_TIME.lock().await;
    const DAG: &str = "shop-under-base";
    let config = WebConfig::default().with_base_path("/goflow").unwrap();
    // The host keeps its own home page, `/healthz` and fallback.
    let env = Env::start(DAG, config, |state| {
        Router::new()
            .route("/", get(|| async { "the host's home" }))
            .route("/healthz", get(|| async { "host ok" }))
            .merge(web::router(state))
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "the host's 404") })
    })
    .await;
    let (client, store) = (&env.client, &env.store);

    log_in(&env, "/goflow", "b").await;
    let cookies = client.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "goflow_session")
        .expect("a session cookie");
    assert_eq!(session.path(), Some("/goflow"));
    // The stylesheet, under the base, applies.
    let styled = client
        .execute(
            "return Array.from(document.styleSheets).some(s => s.href \
             && s.href.endsWith('/goflow/static/app.css') && s.cssRules.length > 0);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(styled, serde_json::json!(true));
    shot(client, "b02-dag-list").await;

    click_to_page(client, &format!("tr[data-dag=\"{DAG}\"] a.dag-link")).await;
    assert_eq!(path(client).await, format!("/goflow/dags/{DAG}"));
    assert_eq!(
        client
            .find_all(Locator::Css("svg.graph g.node"))
            .await
            .unwrap()
            .len(),
        5
    );
    let conf = client.find(Locator::Css("#conf")).await.unwrap();
    conf.clear().await.unwrap();
    conf.send_keys("{\"region\": \"south\"}").await.unwrap();
    click_to_page(client, "#trigger").await;
    let run_page = path(client).await;
    assert!(
        run_page.starts_with(&format!("/goflow/dags/{DAG}/runs/manual__")),
        "{run_page}"
    );
    let run = store.list_runs(DAG, 1, 0).await.unwrap()[0].clone();
    assert_eq!(run.conf, serde_json::json!({"region": "south"}));
    follow_the_live_log(&env, &run_page, &run, "b").await;

    // The log page's links lead under the base: back to the run.
    click_to_page(client, "main p a[href*=\"/runs/\"]").await;
    assert_eq!(path(client).await, run_page);
    // Outside the base, the host answers.
    client
        .goto(&format!("{}/healthz", env.origin))
        .await
        .unwrap();
    assert_eq!(text(client, "body").await, "host ok");
    // Logging out leads to the login page under the base.
    client
        .goto(&format!("{}/goflow/health", env.origin))
        .await
        .unwrap();
    click_to_page(client, "form.logout button").await;
    assert_eq!(path(client).await, "/goflow/login");

    env.stop().await;
}
