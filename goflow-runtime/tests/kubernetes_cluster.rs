//! The Kubernetes executor against a real cluster: a real API server, Job
//! controller, kubelets and pods on any node. Ignored by default; see
//! docs/kubernetes.md ("Cluster tests") for the set-up. In short:
//!
//! ```text
//! docker build -f goflow-runtime/tests/kubernetes_cluster.Dockerfile -t goflow-cluster-test:dev .
//! kind load docker-image goflow-cluster-test:dev        # or: k3d image import ...
//! export GOFLOW_TEST_IMAGE=goflow-cluster-test:dev
//! export GOFLOW_TEST_ADVERTISE_URL=http://172.18.0.1:8471   # this host, as pods reach it
//! cargo test -p goflow-runtime --features kubernetes --test kubernetes_cluster -- --ignored --test-threads=1
//! ```
//!
//! The test process is the scheduler: it serves the task API on
//! `GOFLOW_TEST_BIND` (default `0.0.0.0:8471`) and creates Jobs whose pods
//! run the image's copy of this very test binary as the worker (the
//! `worker_entry` test, like the local-process tests), which fetch their
//! payload from and post their result to `GOFLOW_TEST_ADVERTISE_URL`.
#![cfg(feature = "kubernetes")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use goflow_core::{
    Dag, DagBuilder, DataInterval, ExecutorKind, Inputs, RunState, RunType, TaskContext, TaskError,
    TaskFuture, TaskOptions, TaskOutput, TaskSpec, TaskState,
};
use goflow_runtime::executor::kubernetes::k8s_openapi::api::batch::v1::Job;
use goflow_runtime::executor::kubernetes::k8s_openapi::api::core::v1::{Namespace, Pod};
use goflow_runtime::executor::kubernetes::kube::api::{Api, ListParams, PostParams};
use goflow_runtime::executor::kubernetes::kube::runtime::watcher;
use goflow_runtime::executor::kubernetes::kube::Client;
use goflow_runtime::executor::kubernetes::manifest::is_label_value;
use goflow_runtime::executor::kubernetes::{KubernetesConfig, KubernetesExecutor};
use goflow_runtime::executor::{Executor, ExecutorEvent, Launch, TryKey};
use goflow_runtime::scheduler::{RunFinished, Scheduler, SchedulerConfig};
use goflow_runtime::task_api::{self, TaskApi};
use goflow_runtime::{db, Registry};
use goflow_store::Store;
use serde_json::json;
use tokio::sync::mpsc;
use tower::ServiceExt;

use support::WORKER_ENV;
/// Where the test image has this test binary.
const DEFAULT_BINARY: &str = "/usr/local/bin/goflow-cluster-test";

// ---------------------------------------------------------------------------
// The DAGs (the worker in the pod has the same ones)
// ---------------------------------------------------------------------------

fn out(value: serde_json::Value) -> Result<TaskOutput, TaskError> {
    Ok(TaskOutput {
        value,
        follow: None,
    })
}

fn extract(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        println!("extracting 3 rows");
        out(json!([1, 2, 3]))
    })
}

/// Fails its first try, succeeds on the next.
fn flaky(ctx: TaskContext, inputs: &Inputs) -> TaskFuture {
    let rows = inputs.read::<Vec<u64>>("extract");
    Box::pin(async move {
        let rows = rows?;
        if ctx.try_number() == 1 {
            eprintln!("try 1 fails on purpose");
            return Err(TaskError::msg("flaky on purpose"));
        }
        out(json!(rows.iter().sum::<u64>()))
    })
}

fn report(_: TaskContext, inputs: &Inputs) -> TaskFuture {
    let total = inputs.read::<u64>("flaky");
    Box::pin(async move {
        let total = total?;
        println!("the total is {total}");
        out(json!(format!("total={total}")))
    })
}

fn sleepy(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        println!("sleeping");
        tokio::time::sleep(Duration::from_secs(25)).await;
        println!("woke up");
        out(json!(7))
    })
}

/// Runs for five minutes, unless stopped.
fn long(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        println!("long task started");
        tokio::time::sleep(Duration::from_secs(300)).await;
        println!("long task done");
        out(json!(300))
    })
}

fn spec(id: &str, data: &[&str], retries: u32, run: goflow_core::TaskFn) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "cluster",
        options: TaskOptions {
            executor: Some(ExecutorKind::Kubernetes),
            retries: Some(retries),
            retry_delay: Some(Duration::from_secs(1)),
            ..Default::default()
        },
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

/// `spec` with a pod that requests and is limited to a little, for the
/// reservation a try records.
fn reserving(mut spec: TaskSpec) -> TaskSpec {
    let k8s = &mut spec.options.kubernetes;
    k8s.cpu_request = Some("50m".into());
    k8s.memory_request = Some("32Mi".into());
    k8s.memory_limit = Some("512Mi".into());
    spec
}

fn namespace() -> String {
    std::env::var("GOFLOW_TEST_NAMESPACE").unwrap_or_else(|_| "goflow-test".to_owned())
}

fn dags() -> Vec<Dag> {
    vec![
        DagBuilder::new("cluster-etl")
            .namespace(namespace())
            .task(reserving(spec("extract", &[], 0, extract)))
            .task(spec("flaky", &["extract"], 1, flaky))
            .task(spec("report", &["flaky"], 0, report))
            .build()
            .unwrap(),
        DagBuilder::new("cluster-adopt")
            .namespace(namespace())
            .task(spec("sleepy", &[], 0, sleepy))
            .build()
            .unwrap(),
        // Its task names no executor: the scheduler's default runs it.
        DagBuilder::new("cluster-default")
            .namespace(namespace())
            .task(TaskSpec {
                options: TaskOptions {
                    retries: Some(0),
                    ..TaskOptions::default()
                },
                ..spec("sleepy", &[], 0, sleepy)
            })
            .build()
            .unwrap(),
        DagBuilder::new("cluster-ops")
            .namespace(namespace())
            .task(spec("long", &[], 2, long))
            .build()
            .unwrap(),
    ]
}

/// In a pod (`GOFLOW_TEST_WORKER` set): runs `tasks run ...` like a goflow
/// binary's `main` and exits. Otherwise returns at once.
#[test]
fn worker_entry() {
    support::act_as_goflow_binary(|| Registry::from_dags(dags()).unwrap());
}

// ---------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------

struct Env {
    client: Client,
    image: String,
    binary: String,
    advertise_url: String,
    bind: SocketAddr,
    namespace: String,
}

fn required(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not set. The cluster tests need: KUBECONFIG pointing at a cluster; \
             GOFLOW_TEST_IMAGE, an image with this test binary (see \
             goflow-runtime/tests/kubernetes_cluster.Dockerfile) loaded into the cluster; \
             GOFLOW_TEST_ADVERTISE_URL, the URL at which pods reach this machine's port \
             GOFLOW_TEST_BIND (default 0.0.0.0:8471). See docs/kubernetes.md."
            )
        })
}

async fn env() -> Env {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
    let image = required("GOFLOW_TEST_IMAGE");
    let advertise_url = required("GOFLOW_TEST_ADVERTISE_URL");
    let client = Client::try_default()
        .await
        .expect("a cluster: KUBECONFIG (or ~/.kube/config) must point at one");
    let namespace = namespace();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(&namespace).await.unwrap().is_none() {
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": namespace}})).unwrap();
        namespaces
            .create(&PostParams::default(), &ns)
            .await
            .unwrap();
    }
    Env {
        client,
        image,
        binary: std::env::var("GOFLOW_TEST_BINARY").unwrap_or_else(|_| DEFAULT_BINARY.into()),
        advertise_url,
        bind: std::env::var("GOFLOW_TEST_BIND")
            .unwrap_or_else(|_| "0.0.0.0:8471".into())
            .parse()
            .expect("GOFLOW_TEST_BIND is host:port"),
        namespace,
    }
}

impl Env {
    fn config(&self, instance: &str) -> KubernetesConfig {
        let mut config = KubernetesConfig::default();
        config.namespace = self.namespace.clone();
        config.image = Some(self.image.clone());
        config.binary = self.binary.clone();
        config.args_prefix = support::entry_args("worker_entry");
        config.advertise_url = self.advertise_url.clone();
        config.instance = instance.to_owned();
        config.env = vec![
            (WORKER_ENV.into(), "1".into()),
            ("GOFLOW_TEST_NAMESPACE".into(), self.namespace.clone()),
            ("RUST_LOG".into(), "info".into()),
        ];
        config.image_pull_policy = Some("IfNotPresent".into());
        config.pending_deadline = Duration::from_secs(120);
        config
    }

    /// The labels of every Job of `instance` that appears, by name.
    fn record_jobs(
        &self,
        instance: &str,
    ) -> Arc<Mutex<BTreeMap<String, BTreeMap<String, String>>>> {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("goflow.rs/instance={instance}");
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut stream = watcher(jobs, watcher::Config::default().labels(&selector)).boxed();
            while let Some(event) = stream.next().await {
                if let Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) = event {
                    record.lock().unwrap().insert(
                        job.metadata.name.clone().unwrap_or_default(),
                        job.metadata.labels.clone().unwrap_or_default(),
                    );
                }
            }
        });
        seen
    }

    /// Every change to the Jobs of `instance`, in the order the API server
    /// made them: `(job, what)`, `what` being `applied`, `deleting
    /// <finalizers>` (marked for deletion, still there) or `deleted`.
    fn record_job_changes(&self, instance: &str) -> Arc<Mutex<Vec<(String, String)>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let selector = format!("goflow.rs/instance={instance}");
        let record = Arc::clone(&seen);
        tokio::spawn(async move {
            let mut stream = watcher(jobs, watcher::Config::default().labels(&selector)).boxed();
            while let Some(event) = stream.next().await {
                let change = match event {
                    Ok(watcher::Event::Apply(job) | watcher::Event::InitApply(job)) => {
                        let what = match job.metadata.deletion_timestamp {
                            Some(_) => format!(
                                "deleting {}",
                                job.metadata
                                    .finalizers
                                    .clone()
                                    .unwrap_or_default()
                                    .join(",")
                            ),
                            None => "applied".to_owned(),
                        };
                        (job.metadata.name.clone().unwrap_or_default(), what)
                    }
                    Ok(watcher::Event::Delete(job)) => (
                        job.metadata.name.clone().unwrap_or_default(),
                        "deleted".to_owned(),
                    ),
                    _ => continue,
                };
                record.lock().unwrap().push(change);
            }
        });
        seen
    }

    /// Waits until a pod of Job `job` runs.
    async fn wait_pod_running(&self, job: &str) {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let lp = ListParams::default().labels(&format!("goflow.rs/job={job}"));
        for _ in 0..180 {
            let running = pods
                .list(&lp)
                .await
                .unwrap()
                .items
                .iter()
                .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
            if running {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("no pod of Job {job} runs");
    }

    /// The pods of Job `job` that exist.
    async fn pods_of(&self, job: &str) -> usize {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let lp = ListParams::default().labels(&format!("goflow.rs/job={job}"));
        pods.list(&lp).await.unwrap().items.len()
    }

    /// Waits until no Job and no pod of `instance` is left.
    async fn assert_cleaned_up(&self, instance: &str) {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), &self.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let lp = ListParams::default().labels(&format!("goflow.rs/instance={instance}"));
        for _ in 0..120 {
            let j = jobs.list(&lp).await.unwrap().items.len();
            let p = pods.list(&lp).await.unwrap().items.len();
            if j == 0 && p == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!(
            "Jobs or pods of instance {instance} are left in namespace {}",
            self.namespace
        );
    }
}

/// A name no other run of these tests uses.
fn instance(test: &str) -> String {
    format!(
        "{test}-{}-{}",
        std::process::id(),
        Utc::now().timestamp() % 100_000
    )
}

/// The task API on `bind`, served from whichever [`TaskApi`] the returned
/// handle holds: swapping it plays a scheduler process restarting (a new
/// `TaskApi` with the same secret) behind the same address.
async fn serve_task_api(api: TaskApi, bind: SocketAddr) -> Arc<Mutex<TaskApi>> {
    let current = Arc::new(Mutex::new(api));
    let serving = Arc::clone(&current);
    let service = tower::service_fn(move |request: axum::extract::Request| {
        let api = serving.lock().unwrap().clone();
        async move { task_api::router(api).oneshot(request).await }
    });
    let app = axum::Router::new().nest_service(task_api::MOUNT_PATH, service);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {bind} (GOFLOW_TEST_BIND): {e}"));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    current
}

struct Running {
    task: tokio::task::JoinHandle<()>,
    finished: mpsc::UnboundedReceiver<RunFinished>,
}

fn start_scheduler(store: &Store, executor: KubernetesExecutor, id: &str) -> Running {
    let registry = Arc::new(Registry::from_dags(dags()).unwrap());
    let mut config = SchedulerConfig::default();
    config.id = id.into();
    config.heartbeat_interval = Duration::from_millis(500);
    config.stale_after = Duration::from_secs(5);
    config.poll_interval = Duration::from_millis(200);
    config.default_executor = ExecutorKind::Kubernetes;
    config.create_scheduled_runs = false;
    let mut scheduler =
        Scheduler::new(store.clone(), registry, config).with_executor(Arc::new(executor));
    let finished = scheduler.finished_runs();
    let task = tokio::spawn(async move {
        scheduler
            .run(std::future::pending())
            .await
            .expect("the scheduler runs");
    });
    Running { task, finished }
}

async fn trigger(store: &Store, dag_id: &str) -> i64 {
    let registry = Registry::from_dags(dags()).unwrap();
    let dag = registry.get(dag_id).unwrap().clone();
    let rows = db::sync_registry(store, &registry, Utc::now())
        .await
        .unwrap();
    let new = db::new_run(
        &dag,
        rows[dag_id].version,
        RunType::Manual,
        DataInterval::at(Utc::now()),
        json!({}),
    );
    store.create_run(&new, Utc::now()).await.unwrap().id
}

async fn wait_finished(running: &mut Running, run: i64, limit: Duration) -> RunFinished {
    tokio::time::timeout(limit, async {
        loop {
            let f = running.finished.recv().await.expect("the scheduler runs");
            if f.run == run {
                return f;
            }
        }
    })
    .await
    .expect("the run finishes in time")
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_dag_runs_as_jobs_with_a_retry() {
    let env = env().await;
    let instance = instance("etl");
    let seen = env.record_jobs(&instance);
    let task_api = TaskApi::with_secret(b"cluster-test");
    let _server = serve_task_api(task_api.clone(), env.bind).await;
    let db = goflow_store::testing::sqlite(true).await;
    let executor = KubernetesExecutor::new(env.client.clone(), env.config(&instance), task_api);
    let mut scheduler = start_scheduler(&db.store, executor, "cluster-etl");
    let run = trigger(&db.store, "cluster-etl").await;

    let finished = wait_finished(&mut scheduler, run, Duration::from_secs(300)).await;
    let instances = db.store.task_instances(run).await.unwrap();
    let states: HashMap<_, _> = instances
        .iter()
        .map(|ti| {
            (
                ti.task_id.as_str(),
                (ti.state, ti.try_number, ti.last_error.clone()),
            )
        })
        .collect();
    assert_eq!(finished.state, RunState::Success, "{states:#?}");
    assert_eq!(states["extract"].0, TaskState::Success);
    assert_eq!(states["report"].0, TaskState::Success);
    assert_eq!(
        (states["flaky"].0, states["flaky"].1),
        (TaskState::Success, 2)
    );
    let tries = db.store.task_tries(run, Some("flaky")).await.unwrap();
    assert_eq!(tries.len(), 2, "{tries:#?}");
    assert_eq!(tries[0].state, TaskState::UpForRetry);
    assert!(
        tries[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("flaky on purpose"),
        "{tries:#?}"
    );
    assert_eq!(tries[0].measurements.exit_code, Some(1));
    assert_eq!(tries[1].measurements.exit_code, Some(0));
    // What the try used, measured by the worker in its pod, beside what
    // its pod reserved, read off the pod the API server admitted.
    let extract = db.store.task_tries(run, Some("extract")).await.unwrap();
    let e = &extract[0];
    assert_eq!(
        (
            e.measurements.cpu_request_millis,
            e.measurements.memory_request_bytes,
            e.measurements.memory_limit_bytes
        ),
        (Some(50), Some(32 << 20), Some(512 << 20)),
        "{e:#?}"
    );
    let peak = e
        .measurements
        .peak_memory_bytes
        .expect("peak memory measured in the pod");
    assert!(peak > 0 && peak <= 512 << 20, "{e:#?}");
    assert!(e.measurements.cpu_user_ms.is_some(), "{e:#?}");
    for ti in &instances {
        let handle = ti.executor_handle.clone().unwrap_or_default();
        assert!(
            handle.starts_with(&format!("{}/", env.namespace)),
            "{handle}"
        );
    }
    assert_eq!(
        db.store.get_output(run, "report").await.unwrap(),
        Some(json!("total=6"))
    );
    // The pods' logs were copied before their Jobs went.
    let logs = db
        .store
        .read_logs(run, "report", None, 0, 1000)
        .await
        .unwrap();
    assert!(
        logs.iter().any(|l| l.line.contains("the total is 6")),
        "{:#?}",
        logs.iter().map(|l| &l.line).collect::<Vec<_>>()
    );

    // One Job per try, labelled for dag, run, task and try.
    let seen = seen.lock().unwrap().clone();
    let mut tries: Vec<(String, String)> = seen
        .values()
        .map(|l| (l["goflow.rs/task"].clone(), l["goflow.rs/try"].clone()))
        .collect();
    tries.sort();
    assert_eq!(
        tries,
        [
            ("extract", "1"),
            ("flaky", "1"),
            ("flaky", "2"),
            ("report", "1")
        ]
        .map(|(t, n)| (t.to_owned(), n.to_owned()))
    );
    let run_id = db.store.get_run(run).await.unwrap().unwrap().run_id;
    for (name, labels) in &seen {
        assert!(name.len() <= 63, "{name}");
        assert_eq!(labels["goflow.rs/dag"], "cluster-etl");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "goflow");
        assert!(is_label_value(&labels["goflow.rs/run"]), "{labels:?}");
        assert_eq!(
            labels["goflow.rs/run"],
            goflow_runtime::executor::kubernetes::label_value(&run_id)
        );
    }
    env.assert_cleaned_up(&instance).await;
    scheduler.task.abort();
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_pod_that_cannot_pull_its_image_fails_after_the_pending_deadline() {
    let env = env().await;
    let instance = instance("pull");
    let mut config = env.config(&instance);
    config.image = Some("registry.invalid/goflow/does-not-exist:1".into());
    config.pending_deadline = Duration::from_secs(30);
    let executor = KubernetesExecutor::new(env.client.clone(), config, TaskApi::new());
    let dag = Arc::new(dags().remove(0));
    let (tx, mut rx) =
        goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
    executor.launch(launch(&dag, "extract"), tx);
    let error = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            if let ExecutorEvent::Finished { result, .. } = rx.recv().await.unwrap() {
                return result.unwrap_err().to_string();
            }
        }
    })
    .await
    .expect("the try fails within the deadline");
    assert!(error.contains("did not start within 30s"), "{error}");
    assert!(
        error.contains("ErrImagePull") || error.contains("ImagePullBackOff"),
        "{error}"
    );
    env.assert_cleaned_up(&instance).await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_restarted_scheduler_adopts_its_running_job() {
    let env = env().await;
    let instance = instance("adopt");
    let seen = env.record_jobs(&instance);
    let db = goflow_store::testing::sqlite(true).await;

    let first_api = TaskApi::with_secret(b"shared-secret");
    let server = serve_task_api(first_api.clone(), env.bind).await;
    let executor = KubernetesExecutor::new(env.client.clone(), env.config(&instance), first_api);
    let first = start_scheduler(&db.store, executor, "cluster-adopt");
    let run = trigger(&db.store, "cluster-adopt").await;

    // Wait for the task's container to run, then crash the scheduler.
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    let lp = ListParams::default().labels(&format!("goflow.rs/instance={instance}"));
    let mut running = false;
    for _ in 0..120 {
        running = pods
            .list(&lp)
            .await
            .unwrap()
            .items
            .iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"));
        if running {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(running, "the task's pod runs");
    // Its output reaches goflow's log while it runs (the task sleeps 25 s
    // after its first line).
    let output = |store: goflow_store::Store| async move {
        store
            .read_logs(run, "sleepy", Some(1), 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.stream == goflow_store::LogStream::Stdout)
            .map(|l| l.line)
            .collect::<Vec<_>>()
    };
    let mut live = false;
    for _ in 0..40 {
        live = output(db.store.clone())
            .await
            .iter()
            .any(|l| l == "sleeping");
        if live {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(live, "the log is followed while the task runs");
    first.task.abort();
    let _ = first.task.await;

    // The same scheduler id starts again, with the same token secret: the
    // pod's token stays valid.
    let second_api = TaskApi::with_secret(b"shared-secret");
    *server.lock().unwrap() = second_api.clone();
    let executor = KubernetesExecutor::new(env.client.clone(), env.config(&instance), second_api);
    let mut second = start_scheduler(&db.store, executor, "cluster-adopt");
    let finished = wait_finished(&mut second, run, Duration::from_secs(180)).await;
    assert_eq!(finished.state, RunState::Success);
    let tries = db.store.task_tries(run, Some("sleepy")).await.unwrap();
    assert_eq!(tries.len(), 1, "adopted, not retried: {tries:#?}");
    assert_eq!(
        db.store.get_output(run, "sleepy").await.unwrap(),
        Some(json!(7))
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "one Job, never created twice"
    );
    // The adopting process stored the rest of the output, not all of it
    // again.
    let lines = output(db.store.clone()).await;
    let count = |want: &str| lines.iter().filter(|l| *l == want).count();
    assert_eq!((count("sleeping"), count("woke up")), (1, 1), "{lines:#?}");
    env.assert_cleaned_up(&instance).await;
    second.task.abort();
}

fn launch(dag: &Arc<Dag>, task: &str) -> Launch {
    launch_try(
        dag,
        task,
        &format!("manual__{}", Utc::now().to_rfc3339()),
        1,
    )
}

/// Try `try_number` of `task` in run `run_id`.
fn launch_try(dag: &Arc<Dag>, task: &str, run_id: &str, try_number: u32) -> Launch {
    let index = dag.index_of(task).unwrap();
    Launch {
        key: TryKey {
            run: 1,
            task: index,
            try_number,
        },
        ctx: TaskContext::builder(
            dag.id().clone(),
            goflow_core::RunId::new(run_id).unwrap(),
            dag.tasks()[index].id.clone(),
        )
        .try_number(try_number)
        .max_tries(3)
        .run_type(RunType::Manual)
        .data_interval(DataInterval::at(Utc::now()))
        .conf(json!({}))
        .build(),
        dag: Arc::clone(dag),
        inputs: Inputs::new(),
    }
}

/// Waits for a try's `Finished`; returns its result and the stdout lines
/// it logged. Panics if it does not come within `limit`.
async fn finished(
    rx: &mut goflow_runtime::executor::EventReceiver,
    limit: Duration,
) -> (Result<serde_json::Value, TaskError>, Vec<String>) {
    let mut stdout = Vec::new();
    tokio::time::timeout(limit, async {
        loop {
            match rx.recv().await.expect("the executor runs") {
                ExecutorEvent::Finished { result, .. } => {
                    return (result.map(|o| o.value), stdout);
                }
                ExecutorEvent::Log { stream, line, .. } => {
                    if stream == goflow_store::LogStream::Stdout {
                        stdout.push(line);
                    }
                }
                ExecutorEvent::Started { .. } => {}
            }
        }
    })
    .await
    .expect("the try finishes in time")
}

/// Waits for a try's `Started` (its Job exists).
async fn started(rx: &mut goflow_runtime::executor::EventReceiver, limit: Duration) {
    tokio::time::timeout(limit, async {
        loop {
            match rx.recv().await.expect("the executor runs") {
                ExecutorEvent::Started { .. } => return,
                ExecutorEvent::Finished { result, .. } => {
                    panic!("finished before starting: {result:?}")
                }
                ExecutorEvent::Log { .. } => {}
            }
        }
    })
    .await
    .expect("the try starts in time")
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_restarted_scheduler_whose_default_is_kubernetes_adopts_tasks_that_name_no_executor() {
    let env = env().await;
    let instance = instance("default");
    let seen = env.record_jobs(&instance);
    let db = goflow_store::testing::sqlite(true).await;

    // `scheduler --executor kubernetes`: the default executor is
    // Kubernetes (see `start_scheduler`), and the task names none.
    let first_api = TaskApi::with_secret(b"shared-secret");
    let server = serve_task_api(first_api.clone(), env.bind).await;
    let executor = KubernetesExecutor::new(env.client.clone(), env.config(&instance), first_api);
    let first = start_scheduler(&db.store, executor, "cluster-default");
    let run = trigger(&db.store, "cluster-default").await;
    let run_id = db.store.get_run(run).await.unwrap().unwrap().run_id;
    let job = goflow_runtime::executor::kubernetes::job_name(
        &instance,
        "cluster-default",
        &run_id,
        "sleepy",
        1,
    );

    // The task runs in its pod and its first line is stored; the
    // scheduler crashes.
    env.wait_pod_running(&job).await;
    let output = |store: goflow_store::Store| async move {
        store
            .read_logs(run, "sleepy", Some(1), 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.stream == goflow_store::LogStream::Stdout)
            .map(|l| l.line)
            .collect::<Vec<_>>()
    };
    let mut live = false;
    for _ in 0..40 {
        live = output(db.store.clone())
            .await
            .iter()
            .any(|l| l == "sleeping");
        if live {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(live, "the log is followed while the task runs");
    let ti = db
        .store
        .task_instance(run, "sleepy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ti.executor,
        ExecutorKind::Kubernetes,
        "the executor that runs the try is stored with it"
    );
    first.task.abort();
    let _ = first.task.await;

    // The same scheduler starts again: the stored executor (Kubernetes)
    // adopts the running Job.
    let second_api = TaskApi::with_secret(b"shared-secret");
    *server.lock().unwrap() = second_api.clone();
    let executor = KubernetesExecutor::new(env.client.clone(), env.config(&instance), second_api);
    let mut second = start_scheduler(&db.store, executor, "cluster-default");
    let finished = wait_finished(&mut second, run, Duration::from_secs(180)).await;
    let tries = db.store.task_tries(run, Some("sleepy")).await.unwrap();
    assert_eq!(finished.state, RunState::Success, "{tries:#?}");
    assert_eq!(tries.len(), 1, "adopted, not retried: {tries:#?}");
    assert_eq!(tries[0].try_number, 1);
    assert_eq!(
        db.store.get_output(run, "sleepy").await.unwrap(),
        Some(json!(7))
    );
    // One Job, for try 1, never created twice.
    let jobs = seen.lock().unwrap().clone();
    assert_eq!(jobs.keys().collect::<Vec<_>>(), [&job], "{jobs:#?}");
    assert_eq!(jobs[&job]["goflow.rs/try"], "1");
    // Its log, stored once.
    let lines = output(db.store.clone()).await;
    let count = |want: &str| lines.iter().filter(|l| *l == want).count();
    assert_eq!((count("sleeping"), count("woke up")), (1, 1), "{lines:#?}");

    // The task instance and the REST API say which executor ran it.
    let ti = db
        .store
        .task_instance(run, "sleepy")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ti.executor, ExecutorKind::Kubernetes);
    assert_eq!(ti.try_number, 1);
    assert_eq!(
        ti.executor_handle.as_deref(),
        Some(format!("{}/{job}", env.namespace).as_str())
    );
    let token = "cluster-test-api-token-0123456789";
    let registry = Arc::new(Registry::from_dags(dags()).unwrap());
    let mut web_config = goflow_runtime::web::WebConfig::default();
    web_config.api_token = Some(token.into());
    let web = goflow_runtime::web::WebState::new(
        db.store.clone(),
        registry,
        goflow_runtime::metrics::Metrics::new(),
        web_config,
    )
    .await
    .unwrap();
    let response = goflow_runtime::web::router(web)
        .oneshot(
            axum::http::Request::get(format!(
                "/api/v1/dags/cluster-default/runs/{}",
                // One path segment (escaping more than needed is still the same id).
                percent_encoding::utf8_percent_encode(&run_id, percent_encoding::NON_ALPHANUMERIC)
            ))
            .header("authorization", format!("Bearer {token}"))
            .body(axum::body::Body::empty())
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let detail: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let task = &detail["tasks"][0];
    assert_eq!(task["task_id"], "sleepy", "{detail:#}");
    assert_eq!(task["executor"], "kubernetes", "{detail:#}");
    assert_eq!(task["try_number"], 1, "{detail:#}");
    assert_eq!(task["state"], "success", "{detail:#}");

    env.assert_cleaned_up(&instance).await;
    second.task.abort();
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn a_leftover_job_of_an_older_try_is_deleted_before_the_next_try_starts() {
    let env = env().await;
    let instance = instance("leftover");
    let changes = env.record_job_changes(&instance);
    let dag = Arc::new(dags().remove(3));
    let run_id = format!("manual__{}", Utc::now().to_rfc3339());
    let job_of = |try_number| {
        goflow_runtime::executor::kubernetes::job_name(
            &instance,
            "cluster-ops",
            &run_id,
            "long",
            try_number,
        )
    };

    // A scheduler starts try 1, whose pod runs, and dies (its executor
    // goes; the Job stays).
    let first_api = TaskApi::with_secret(b"shared-secret");
    let server = serve_task_api(first_api.clone(), env.bind).await;
    let first = KubernetesExecutor::new(env.client.clone(), env.config(&instance), first_api);
    let (tx, mut first_events) =
        goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
    first.launch(launch_try(&dag, "long", &run_id, 1), tx);
    started(&mut first_events, Duration::from_secs(60)).await;
    env.wait_pod_running(&job_of(1)).await;
    drop(first);
    drop(first_events);

    // Another process starts try 2 of the same task instance.
    let second_api = TaskApi::with_secret(b"shared-secret");
    *server.lock().unwrap() = second_api.clone();
    let second = KubernetesExecutor::new(env.client.clone(), env.config(&instance), second_api);
    let launch = launch_try(&dag, "long", &run_id, 2);
    let key = launch.key.clone();
    let (tx, mut events) =
        goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
    second.launch(launch, tx);
    started(&mut events, Duration::from_secs(180)).await;

    // Try 1's Job and pod were gone before try 2's Job was created.
    let jobs: Api<Job> = Api::namespaced(env.client.clone(), &env.namespace);
    assert!(jobs.get_opt(&job_of(1)).await.unwrap().is_none());
    assert_eq!(env.pods_of(&job_of(1)).await, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changes = changes.lock().unwrap().clone();
    let at = |job: &str, what: &str| {
        changes
            .iter()
            .position(|(j, w)| j == job && w.starts_with(what))
            .unwrap_or_else(|| panic!("{job} was never {what}: {changes:#?}"))
    };
    let (old, new) = (job_of(1), job_of(2));
    assert!(
        changes.iter().any(|(j, w)| *j == old
            && w.starts_with("deleting")
            && w.contains("foregroundDeletion")),
        "deleted in the foreground: {changes:#?}"
    );
    assert!(
        at(&old, "deleted") < at(&new, "applied"),
        "try 1's Job was gone before try 2's came: {changes:#?}"
    );
    let jobs_seen: std::collections::BTreeSet<&String> = changes.iter().map(|(j, _)| j).collect();
    assert_eq!(jobs_seen.len(), 2, "{changes:#?}");

    // Clean up: stop try 2.
    second.cancel(&key);
    let (result, _) = finished(&mut events, Duration::from_secs(120)).await;
    assert!(
        result.unwrap_err().to_string().contains("cancelled"),
        "try 2 was cancelled"
    );
    env.assert_cleaned_up(&instance).await;
}

#[tokio::test]
#[ignore = "needs cluster"]
async fn cancel_deletes_the_job_and_its_pod() {
    let env = env().await;
    let instance = instance("cancel");
    let changes = env.record_job_changes(&instance);
    let task_api = TaskApi::with_secret(b"cluster-test");
    let _server = serve_task_api(task_api.clone(), env.bind).await;
    let executor = KubernetesExecutor::new(env.client.clone(), env.config(&instance), task_api);
    let dag = Arc::new(dags().remove(3));
    let launch = launch(&dag, "long");
    let key = launch.key.clone();
    let job = goflow_runtime::executor::kubernetes::job_name(
        &instance,
        "cluster-ops",
        launch.ctx.run_id().as_str(),
        "long",
        1,
    );
    let (tx, mut events) =
        goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
    executor.launch(launch, tx);
    started(&mut events, Duration::from_secs(60)).await;
    env.wait_pod_running(&job).await;
    // Let the worker print its first line.
    tokio::time::sleep(Duration::from_secs(5)).await;

    executor.cancel(&key);
    let (result, stdout) = finished(&mut events, Duration::from_secs(120)).await;
    let error = result.unwrap_err().to_string();
    assert!(error.contains("cancelled"), "{error}");
    assert!(
        stdout.iter().any(|l| l == "long task started"),
        "the log as far as it got: {stdout:#?}"
    );
    // The Job goes in the foreground, with its pod; the try ended once.
    env.assert_cleaned_up(&instance).await;
    assert!(
        changes.lock().unwrap().iter().any(|(j, w)| *j == job
            && w.starts_with("deleting")
            && w.contains("foregroundDeletion")),
        "{:#?}",
        changes.lock().unwrap()
    );
    executor.cancel(&key);
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, ExecutorEvent::Finished { .. }),
            "one Finished per try"
        );
    }
    assert_eq!(executor.tracked(), 0);
}
