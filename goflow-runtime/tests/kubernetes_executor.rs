//! The Kubernetes executor against a mocked API server, request by
//! request (kube-rs's "ApiServerVerifier" pattern on a `tower_test::mock`
//! client). No test contacts a cluster.
//!
//! [`ApiServer`] answers the executor's requests like a small API server
//! would (objects with resource versions, lists, watch streams that replay
//! from a resource version, label selectors) and records every request, so
//! that each test plays Kubernetes' part (the kubelet's and the Job
//! controller's status changes) and asserts what the executor asked for.
//! In [`a_job_runs_the_worker_end_to_end`], a fake kubelet runs the Job's
//! container spec for real: this test binary as the worker, talking to
//! the task API over HTTP.
#![cfg(feature = "kubernetes")]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use chrono::Utc;
use futures::channel::mpsc as fmpsc;
use goflow_core::{
    Dag, DagBuilder, DataInterval, ExecutorKind, Inputs, KubernetesOptions, RunId, RunType,
    TaskContext, TaskError, TaskErrorKind, TaskFn, TaskFuture, TaskOptions, TaskOutput, TaskSpec,
};
use goflow_runtime::executor::kubernetes::k8s_openapi::api::batch::v1::Job;
use goflow_runtime::executor::kubernetes::kube::client::Body;
use goflow_runtime::executor::kubernetes::{
    job_name, KubernetesConfig, KubernetesExecutor, Propagation,
};
use goflow_runtime::executor::{Adoption, Executor, ExecutorEvent, Launch, TryKey, TryMetrics};
use goflow_runtime::task_api::{self, TaskApi, TryRef};
use goflow_runtime::worker::{WorkerOutcome, WorkerResult};
use goflow_runtime::Registry;
use goflow_store::{LogStream, Store};
use http::{Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tower::{BoxError, ServiceExt};

const NS: &str = "jobs";
use support::WORKER_ENV;
const WAIT: Duration = Duration::from_secs(20);

type MockBody = UnsyncBoxBody<Bytes, BoxError>;
/// The sending end of an open watch's response body.
type WatchSender = fmpsc::UnboundedSender<Result<Frame<Bytes>, BoxError>>;

// ---------------------------------------------------------------------------
// The mocked API server
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Jobs,
    Pods,
}

/// One request the executor made.
#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    query: String,
    body: Option<Value>,
}

impl Recorded {
    fn is(&self, method: &Method, path_end: &str) -> bool {
        self.method == *method && self.path.ends_with(path_end)
    }
    fn watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true")
    }
    fn follows(&self) -> bool {
        self.query.split('&').any(|p| p == "follow=true")
    }
}

#[derive(Default)]
struct State {
    rv: u64,
    /// (kind, namespace, name) -> object
    objects: BTreeMap<(u8, String, String), Value>,
    logs: HashMap<String, String>,
    /// Open `follow=true` log streams: pod, bytes sent, the body's sender.
    log_follows: Vec<(String, usize, WatchSender)>,
    /// Every change, for watches that resume from a resource version.
    history: Vec<(u64, Kind, String, &'static str, Value)>,
    watchers: Vec<(Kind, String, WatchSender)>,
    requests: Vec<Recorded>,
    /// Answers for the next `POST jobs`, instead of creating it.
    create_failures: Vec<(u16, &'static str, String)>,
    /// Answers for the next `DELETE jobs/...`, instead of deleting it.
    delete_failures: Vec<(u16, &'static str, String)>,
    /// Tells the test (or its kubelet) about each Job created.
    created: Option<mpsc::UnboundedSender<Value>>,
}

fn kind_id(kind: Kind) -> u8 {
    kind as u8
}

/// The API server's side of the mock.
#[derive(Clone, Default)]
struct ApiServer {
    state: Arc<Mutex<State>>,
}

impl ApiServer {
    /// A client whose requests this server answers.
    fn start() -> (
        goflow_runtime::executor::kubernetes::kube::Client,
        ApiServer,
    ) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
        let server = ApiServer::default();
        let serving = server.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let response = serving.serve(request).await;
                send.send_response(response);
            }
        });
        (
            goflow_runtime::executor::kubernetes::kube::Client::new(service, "default"),
            server,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Sets an object (`ADDED` or `MODIFIED` to watchers).
    fn put(&self, kind: Kind, mut object: Value) {
        let mut st = self.lock();
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        if object["metadata"]["creationTimestamp"].is_null() {
            object["metadata"]["creationTimestamp"] = json!(Utc::now().to_rfc3339());
        }
        let ns = object["metadata"]["namespace"]
            .as_str()
            .unwrap_or(NS)
            .to_owned();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let key = (kind_id(kind), ns.clone(), name);
        let event = if st.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        let task_ended = kind == Kind::Pods
            && object["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == "task" && !c["state"]["terminated"].is_null());
        if task_ended {
            // The kubelet ends a follow when the container exits.
            let pod = object["metadata"]["name"].as_str().unwrap_or_default();
            st.log_follows.retain(|(p, ..)| p != pod);
        }
        st.objects.insert(key, object.clone());
        emit(&mut st, rv, kind, &ns, event, object);
    }

    /// Removes an object (`DELETED` to watchers).
    fn remove(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        let mut st = self.lock();
        let mut object = st
            .objects
            .remove(&(kind_id(kind), ns.to_owned(), name.to_owned()))?;
        st.rv += 1;
        let rv = st.rv;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        emit(&mut st, rv, kind, ns, "DELETED", object.clone());
        Some(object)
    }

    /// Sets an object without telling watchers (as if it changed while a
    /// watch was down).
    fn put_quietly(&self, kind: Kind, mut object: Value) {
        let mut st = self.lock();
        st.rv += 1;
        object["metadata"]["resourceVersion"] = json!(st.rv.to_string());
        object["metadata"]["creationTimestamp"] = json!(Utc::now().to_rfc3339());
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        st.objects
            .insert((kind_id(kind), NS.to_owned(), name), object);
    }

    /// Removes an object without telling watchers (as if it went while a
    /// watch was down).
    fn remove_quietly(&self, kind: Kind, ns: &str, name: &str) {
        self.lock()
            .objects
            .remove(&(kind_id(kind), ns.to_owned(), name.to_owned()));
    }

    fn get(&self, kind: Kind, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .objects
            .get(&(kind_id(kind), ns.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Ends the open watches of `kind` with `410 Gone`: the watcher must
    /// re-list.
    fn expire_watches(&self, kind: Kind) {
        let mut st = self.lock();
        let gone = json!({"type": "ERROR", "object": {
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "code": 410, "reason": "Expired", "message": "too old resource version"}});
        let mut line = serde_json::to_vec(&gone).unwrap();
        line.push(b'\n');
        st.watchers.retain(|(k, _, tx)| {
            if *k == kind {
                let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from(line.clone()))));
                false
            } else {
                true
            }
        });
        // Resuming from an old version is refused from now on.
        st.history.retain(|(_, k, ..)| *k != kind);
    }

    /// Sets a pod's whole log; open follows get what was added.
    fn set_log(&self, pod: &str, text: &str) {
        let mut st = self.lock();
        st.logs.insert(pod.to_owned(), text.to_owned());
        for (p, sent, tx) in &mut st.log_follows {
            if p == pod && text.len() > *sent {
                let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from(
                    text.as_bytes()[*sent..].to_vec(),
                ))));
                *sent = text.len();
            }
        }
    }

    /// Ends the open follows of a pod's log, as the API server does when
    /// the container exits or a connection drops.
    fn end_log_follows(&self, pod: &str) {
        self.lock().log_follows.retain(|(p, ..)| p != pod);
    }

    /// The log follows opened so far for `pod`.
    fn log_follows_opened(&self, pod: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.path.ends_with(&format!("/pods/{pod}/log")) && r.follows())
            .count()
    }

    fn fail_next_create(&self, code: u16, reason: &'static str, message: &str) {
        self.lock()
            .create_failures
            .push((code, reason, message.to_owned()));
    }

    fn fail_next_delete(&self, code: u16, reason: &'static str, message: &str) {
        self.lock()
            .delete_failures
            .push((code, reason, message.to_owned()));
    }

    /// The resource version at which a Job was `event` (`ADDED`,
    /// `DELETED`...), first.
    fn job_event_at(&self, name: &str, event: &str) -> Option<u64> {
        self.lock()
            .history
            .iter()
            .find(|(_, k, _, e, o)| {
                *k == Kind::Jobs && *e == event && o["metadata"]["name"] == json!(name)
            })
            .map(|(rv, ..)| *rv)
    }

    /// Waits until an object is gone.
    async fn wait_gone(&self, kind: Kind, name: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.get(kind, NS, name).is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{kind:?} {name} is still there"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Deletes a Job's pods, then the Job (the garbage collector's work).
    fn collect(&self, ns: &str, name: &str) -> Option<Value> {
        let pods: Vec<String> = self
            .lock()
            .objects
            .iter()
            .filter(|((k, n, _), v)| {
                *k == kind_id(Kind::Pods)
                    && n == ns
                    && v["metadata"]["labels"]["goflow.rs/job"] == json!(name)
            })
            .map(|((_, _, p), _)| p.clone())
            .collect();
        for pod in pods {
            self.remove(Kind::Pods, ns, &pod);
        }
        self.remove(Kind::Jobs, ns, name)
    }

    fn on_create(&self) -> mpsc::UnboundedReceiver<Value> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().created = Some(tx);
        rx
    }

    /// Waits until a request matching `pred` was made; returns it.
    async fn wait_for(&self, what: &str, pred: impl Fn(&Recorded) -> bool) -> Recorded {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(r) = self.requests().into_iter().find(|r| pred(r)) {
                return r;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no request {what}; requests were:\n{:#?}",
                self.requests()
                    .iter()
                    .map(|r| format!("{} {}?{}", r.method, r.path, r.query))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn serve(&self, request: Request<Body>) -> Response<MockBody> {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let body: Option<Value> = serde_json::from_slice(&bytes).ok();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let recorded = Recorded {
            method: parts.method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
        };
        self.lock().requests.push(recorded.clone());
        let params: HashMap<String, String> = query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), decode(v)))
            .collect();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (kind, ns, name, sub) = match segments.as_slice() {
            ["apis", "batch", "v1", "namespaces", ns, "jobs"] => (Kind::Jobs, *ns, None, None),
            ["apis", "batch", "v1", "namespaces", ns, "jobs", name] => {
                (Kind::Jobs, *ns, Some(*name), None)
            }
            ["api", "v1", "namespaces", ns, "pods"] => (Kind::Pods, *ns, None, None),
            ["api", "v1", "namespaces", ns, "pods", name] => (Kind::Pods, *ns, Some(*name), None),
            ["api", "v1", "namespaces", ns, "pods", name, sub] => {
                (Kind::Pods, *ns, Some(*name), Some(*sub))
            }
            _ => panic!("unexpected request {} {path}", parts.method),
        };
        let mut st = self.lock();
        match (parts.method.clone(), name, sub) {
            (Method::GET, None, None) if recorded.watch() => {
                let from: u64 = params
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let (tx, rx) = fmpsc::unbounded();
                for (rv, k, n, event, object) in &st.history {
                    if *rv > from && *k == kind && n == ns {
                        let _ = tx.unbounded_send(Ok(Frame::data(event_line(event, object))));
                    }
                }
                st.watchers.push((kind, ns.to_owned(), tx));
                let body = StreamBody::new(rx).boxed_unsync();
                Response::new(body)
            }
            (Method::GET, None, None) => {
                let selector = params.get("labelSelector").cloned().unwrap_or_default();
                let items: Vec<&Value> = st
                    .objects
                    .iter()
                    .filter(|((k, n, _), v)| {
                        *k == kind_id(kind) && n == ns && matches_selector(v, &selector)
                    })
                    .map(|(_, v)| v)
                    .collect();
                let list_kind = if kind == Kind::Jobs {
                    "JobList"
                } else {
                    "PodList"
                };
                json_response(
                    StatusCode::OK,
                    &json!({"apiVersion": "v1", "kind": list_kind,
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                )
            }
            (Method::POST, None, None) if kind == Kind::Jobs => {
                if !st.create_failures.is_empty() {
                    let (code, reason, message) = st.create_failures.remove(0);
                    return status(code, reason, &message);
                }
                let job = body.expect("a Job");
                let name = job["metadata"]["name"].as_str().unwrap().to_owned();
                if st
                    .objects
                    .contains_key(&(kind_id(Kind::Jobs), ns.to_owned(), name.clone()))
                {
                    return status(
                        409,
                        "AlreadyExists",
                        &format!("jobs.batch \"{name}\" already exists"),
                    );
                }
                let created = st.created.clone();
                drop(st);
                self.put(Kind::Jobs, job);
                let stored = self.get(Kind::Jobs, ns, &name).unwrap();
                if let Some(tx) = created {
                    let _ = tx.send(stored.clone());
                }
                json_response(StatusCode::CREATED, &stored)
            }
            (Method::GET, Some(name), None) => {
                match st
                    .objects
                    .get(&(kind_id(kind), ns.to_owned(), name.to_owned()))
                {
                    Some(v) => json_response(StatusCode::OK, v),
                    None => status(404, "NotFound", &format!("\"{name}\" not found")),
                }
            }
            (Method::GET, Some(pod), Some("log")) if recorded.follows() => {
                let text = st.logs.get(pod).cloned().unwrap_or_default();
                let (tx, rx) = fmpsc::unbounded();
                let _ = tx.unbounded_send(Ok(Frame::data(Bytes::from(text.clone().into_bytes()))));
                st.log_follows.push((pod.to_owned(), text.len(), tx));
                Response::new(StreamBody::new(rx).boxed_unsync())
            }
            (Method::GET, Some(pod), Some("log")) => {
                let text = st.logs.get(pod).cloned();
                match text {
                    Some(text) => Response::new(full(text.into_bytes())),
                    None => status(404, "NotFound", &format!("pods \"{pod}\" not found")),
                }
            }
            (Method::DELETE, Some(name), None) if kind == Kind::Jobs => {
                if !st.delete_failures.is_empty() {
                    let (code, reason, message) = st.delete_failures.remove(0);
                    return status(code, reason, &message);
                }
                let name = name.to_owned();
                let foreground = body
                    .as_ref()
                    .is_some_and(|b| b["propagationPolicy"] == "Foreground");
                let exists = st
                    .objects
                    .get(&(kind_id(Kind::Jobs), ns.to_owned(), name.clone()))
                    .cloned();
                drop(st);
                if let (true, Some(mut job)) = (foreground, exists) {
                    // Foreground: the Job stays, marked, until the garbage
                    // collector has deleted its pods (once their containers
                    // stopped).
                    job["metadata"]["deletionTimestamp"] = json!(Utc::now().to_rfc3339());
                    job["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
                    self.put(Kind::Jobs, job.clone());
                    let (server, ns) = (self.clone(), ns.to_owned());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        server.collect(&ns, &name);
                    });
                    return json_response(StatusCode::OK, &job);
                }
                match self.collect(ns, &name) {
                    Some(_) => json_response(
                        StatusCode::OK,
                        &json!({"apiVersion": "v1", "kind": "Status", "status": "Success",
                                    "details": {"name": name, "kind": "jobs"}}),
                    ),
                    None => status(404, "NotFound", &format!("jobs.batch \"{name}\" not found")),
                }
            }
            (method, _, _) => panic!("unexpected request {method} {path}"),
        }
    }
}

fn emit(st: &mut State, rv: u64, kind: Kind, ns: &str, event: &'static str, object: Value) {
    let line = event_line(event, &object);
    st.watchers.retain(|(k, n, tx)| {
        if *k == kind && n == ns {
            tx.unbounded_send(Ok(Frame::data(line.clone()))).is_ok()
        } else {
            true
        }
    });
    st.history.push((rv, kind, ns.to_owned(), event, object));
}

fn event_line(event: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": event, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn matches_selector(object: &Value, selector: &str) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').expect("equality selectors only");
        object["metadata"]["labels"][k] == json!(v)
    })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else if bytes[i] == b'+' {
            out.push(b' ');
            i += 1;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn full(bytes: Vec<u8>) -> MockBody {
    Full::new(Bytes::from(bytes))
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn json_response(code: StatusCode, value: &Value) -> Response<MockBody> {
    let mut r = Response::new(full(serde_json::to_vec(value).unwrap()));
    *r.status_mut() = code;
    r
}

fn status(code: u16, reason: &str, message: &str) -> Response<MockBody> {
    json_response(
        StatusCode::from_u16(code).unwrap(),
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                "code": code, "reason": reason, "message": message}),
    )
}

// ---------------------------------------------------------------------------
// Kubernetes' part: pods and Job statuses
// ---------------------------------------------------------------------------

fn pod_name(job: &str) -> String {
    format!("{job}-x7k2p")
}

/// The pod of Job `job` with the task container in `state` (and a sidecar
/// that keeps running).
fn pod(job: &str, phase: &str, task_state: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": pod_name(job), "namespace": NS,
            "labels": {"goflow.rs/job": job, "app.kubernetes.io/managed-by": "goflow",
                       "goflow.rs/instance": "goflow", "batch.kubernetes.io/job-name": job},
        },
        // As admitted: a LimitRange filled in the task's resources and a
        // mesh injected a sidecar with its own.
        "spec": {"nodeName": "node-a", "containers": [
            {"name": "task", "image": "x", "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"memory": "512Mi"}}},
            {"name": "proxy", "image": "y", "resources": {
                "requests": {"cpu": "10m", "memory": "32Mi"},
                "limits": {"cpu": "200m", "memory": "64Mi"}}},
        ]},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"name": "task", "image": "x", "imageID": "", "ready": false, "restartCount": 0, "state": task_state},
                {"name": "proxy", "image": "y", "imageID": "", "ready": true, "restartCount": 0,
                 "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}},
            ],
        },
    })
}

fn running() -> Value {
    json!({"running": {"startedAt": "2026-01-01T00:00:00Z"}})
}

fn terminated(code: i32, reason: &str, message: &str) -> Value {
    json!({"terminated": {"exitCode": code, "reason": reason, "message": message,
                          "startedAt": "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:05Z"}})
}

fn waiting(reason: &str, message: &str) -> Value {
    json!({"waiting": {"reason": reason, "message": message}})
}

/// Sets a condition on a stored Job, as the Job controller does.
fn set_job_condition(api: &ApiServer, job: &str, kind: &str, reason: &str, message: &str) {
    let mut j = api.get(Kind::Jobs, NS, job).expect("the Job exists");
    j["status"] = json!({"conditions": [{"type": kind, "status": "True", "reason": reason, "message": message}]});
    api.put(Kind::Jobs, j);
}

// ---------------------------------------------------------------------------
// The DAG and the executor
// ---------------------------------------------------------------------------

fn out(value: Value) -> Result<TaskOutput, TaskError> {
    Ok(TaskOutput {
        value,
        follow: None,
    })
}

fn source(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { out(json!(21)) })
}

fn double(ctx: TaskContext, inputs: &Inputs) -> TaskFuture {
    let n = inputs.read::<u64>("source");
    Box::pin(async move {
        let n = n?;
        println!("doubling {n} in try {}", ctx.try_number());
        out(json!(n * 2))
    })
}

fn fail(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async { Err(TaskError::fatal("the warehouse is gone")) })
}

fn spec(id: &str, data: &[&str], options: TaskOptions, run: TaskFn) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "test",
        options,
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

fn k8s(image: Option<&str>) -> TaskOptions {
    TaskOptions {
        executor: Some(ExecutorKind::Kubernetes),
        kubernetes: KubernetesOptions {
            image: image.map(str::to_owned),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn dag() -> Dag {
    DagBuilder::new("k8s-test")
        .namespace(NS)
        .task(spec("source", &[], k8s(None), source))
        .task(spec("double", &["source"], k8s(None), double))
        .task(spec("fail", &[], k8s(None), fail))
        .task(spec(
            "slow",
            &[],
            TaskOptions {
                timeout: Some(Duration::from_secs(30)),
                ..k8s(None)
            },
            source,
        ))
        .task(spec("no-image", &[], k8s(Some("")), source))
        .build()
        .unwrap()
}

const RUN_ID: &str = "manual__2026-01-01T00:00:00+00:00";

fn launch_of(dag: &Arc<Dag>, task: &str, try_number: u32, inputs: Inputs) -> Launch {
    let index = dag.index_of(task).unwrap();
    Launch {
        key: TryKey {
            run: 7,
            task: index,
            try_number,
        },
        ctx: TaskContext::builder(
            dag.id().clone(),
            RunId::new(RUN_ID).unwrap(),
            dag.tasks()[index].id.clone(),
        )
        .try_number(try_number)
        .max_tries(3)
        .run_type(RunType::Manual)
        .data_interval(DataInterval::at(Utc::now()))
        .conf(json!({}))
        .build(),
        dag: Arc::clone(dag),
        inputs,
    }
}

fn config() -> KubernetesConfig {
    let mut config = KubernetesConfig::default();
    config.namespace = "default".into();
    config.image = Some("registry.example.com/dags:1".into());
    config.binary = "/usr/local/bin/dags".into();
    config.advertise_url = "http://goflow.goflow.svc:8080".into();
    config.pending_deadline = Duration::from_secs(3600);
    config
}

fn name_of(task: &str, try_number: u32) -> String {
    job_name("goflow", "k8s-test", RUN_ID, task, try_number)
}

struct Events {
    rx: goflow_runtime::executor::EventReceiver,
    logs: Vec<(LogStream, String)>,
    started: Vec<Option<String>>,
}

impl Events {
    fn new() -> (goflow_runtime::executor::EventSender, Events) {
        let (tx, rx) =
            goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY);
        (
            tx,
            Events {
                rx,
                logs: Vec::new(),
                started: Vec::new(),
            },
        )
    }

    /// Waits for the try's end.
    async fn finished(&mut self) -> (Result<Value, TaskError>, TryMetrics) {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.rx.recv().await.expect("a Finished event") {
                    ExecutorEvent::Finished {
                        result, metrics, ..
                    } => return (result.map(|o| o.value), metrics),
                    ExecutorEvent::Log { stream, line, .. } => self.logs.push((stream, line)),
                    ExecutorEvent::Started { handle, .. } => self.started.push(handle),
                }
            }
        })
        .await
        .expect("the try finishes in time")
    }

    /// Waits for `Started`.
    async fn started(&mut self) -> Option<String> {
        tokio::time::timeout(WAIT, async {
            loop {
                match self.rx.recv().await.expect("a Started event") {
                    ExecutorEvent::Started { handle, .. } => {
                        self.started.push(handle.clone());
                        return handle;
                    }
                    ExecutorEvent::Log { stream, line, .. } => self.logs.push((stream, line)),
                    ExecutorEvent::Finished { result, .. } => {
                        panic!("finished before starting: {result:?}")
                    }
                }
            }
        })
        .await
        .expect("the try starts in time")
    }

    /// Waits for a line of the task's output, before the try ends.
    async fn output(&mut self, want: &str) {
        let seen = |logs: &[(LogStream, String)]| {
            logs.iter()
                .any(|(s, l)| *s == LogStream::Stdout && l == want)
        };
        tokio::time::timeout(WAIT, async {
            while !seen(&self.logs) {
                match self.rx.recv().await.expect("an event") {
                    ExecutorEvent::Log { stream, line, .. } => self.logs.push((stream, line)),
                    ExecutorEvent::Started { handle, .. } => self.started.push(handle),
                    ExecutorEvent::Finished { result, .. } => {
                        panic!("finished before {want:?} was logged: {result:?}")
                    }
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{want:?} was not logged while running"));
    }

    fn stdout(&self) -> Vec<&str> {
        self.logs
            .iter()
            .filter(|(s, _)| *s == LogStream::Stdout)
            .map(|(_, l)| l.as_str())
            .collect()
    }

    /// Takes the events sent so far (after a moment).
    async fn drain(&mut self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        while let Ok(event) = self.rx.try_recv() {
            match event {
                ExecutorEvent::Log { stream, line, .. } => self.logs.push((stream, line)),
                ExecutorEvent::Started { handle, .. } => self.started.push(handle),
                ExecutorEvent::Finished { result, .. } => panic!("finished: {result:?}"),
            }
        }
    }

    fn log_text(&self) -> String {
        self.logs
            .iter()
            .map(|(s, l)| format!("[{s}] {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Posts a result as the try's worker would, through the task API router.
async fn post_result(api: &TaskApi, try_ref: &TryRef, result: &WorkerResult) -> StatusCode {
    let request = Request::post(try_ref.path("result"))
        .header(
            "authorization",
            format!("Bearer {}", api.token_for(try_ref)),
        )
        .header("content-type", "application/json")
        .body(axum::body::Body::from(serde_json::to_vec(result).unwrap()))
        .unwrap();
    task_api::router(api.clone())
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

fn ok_result(value: Value) -> WorkerResult {
    WorkerResult {
        outcome: WorkerOutcome::Ok {
            value,
            follow: None,
        },
        metrics: Some(goflow_runtime::worker::WorkerMetrics {
            peak_memory_bytes: Some(12 << 20),
            cpu_user_ms: Some(40),
            cpu_system_ms: Some(5),
        }),
    }
}

fn adoption(handle: &str, logged_lines: u64) -> Adoption {
    let mut adoption = Adoption::default();
    adoption.handle = handle.to_owned();
    adoption.logged_lines = logged_lines;
    adoption
}

fn try_ref(task: &str, try_number: u32) -> TryRef {
    TryRef {
        dag_id: "k8s-test".into(),
        run_id: RUN_ID.into(),
        task_id: task.into(),
        try_number,
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test]
async fn creates_the_job_and_watches_it_to_success() {
    let (client, api) = ApiServer::start();
    let task_api = TaskApi::with_secret(b"test");
    let executor = KubernetesExecutor::new(client, config(), task_api.clone());
    let dag = Arc::new(dag());
    let mut inputs = Inputs::new();
    inputs.insert("source", json!(21));
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "double", 2, inputs), tx);

    let name = name_of("double", 2);
    assert_eq!(events.started().await, Some(format!("{NS}/{name}")));
    let create = api
        .wait_for("POST jobs", |r| {
            r.is(&Method::POST, "/namespaces/jobs/jobs")
        })
        .await;
    let job: Job = serde_json::from_value(create.body.clone().unwrap()).unwrap();
    assert_eq!(job.metadata.name.as_deref(), Some(name.as_str()));
    let labels = job.metadata.labels.clone().unwrap();
    assert_eq!(labels["goflow.rs/dag"], "k8s-test");
    assert_eq!(labels["goflow.rs/task"], "double");
    assert_eq!(labels["goflow.rs/try"], "2");
    let args = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    assert_eq!(
        args,
        ["tasks", "run", "k8s-test", RUN_ID, "double", "--try", "2"]
    );
    assert_eq!(executor.watched_namespaces(), [NS]);
    assert_eq!(executor.tracked(), 1);
    // Both watches are label-selected to this deployment's Jobs.
    for kind in ["/jobs", "/pods"] {
        let watch = api
            .wait_for("a watch", |r| r.path.ends_with(kind) && r.watch())
            .await;
        assert!(
            decode(&watch.query).contains(
                "labelSelector=app.kubernetes.io/managed-by=goflow,goflow.rs/instance=goflow"
            ),
            "{}",
            watch.query
        );
    }

    // The payload is served to the worker, with the upstream's output.
    let payload = task_api::router(task_api.clone())
        .oneshot(
            Request::get(try_ref("double", 2).path("payload"))
                .header(
                    "authorization",
                    format!("Bearer {}", task_api.token_for(&try_ref("double", 2))),
                )
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(payload.status(), StatusCode::OK);
    let payload: Value =
        serde_json::from_slice(&payload.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(payload["inputs"], json!({"source": 21}));
    assert_eq!(payload["context"]["try_number"], json!(2));

    // Kubernetes: the pod starts, the worker reports, the task container
    // exits 0 while a sidecar keeps running.
    api.put(Kind::Pods, pod(&name, "Running", running()));
    api.set_log(&pod_name(&name), "doubling 21 in try 2\nbye\n");
    assert_eq!(
        post_result(&task_api, &try_ref("double", 2), &ok_result(json!(42))).await,
        StatusCode::NO_CONTENT
    );
    api.put(
        Kind::Pods,
        pod(&name, "Running", terminated(0, "Completed", "")),
    );

    let (result, metrics) = events.finished().await;
    assert_eq!(result.unwrap(), json!(42));
    assert_eq!(metrics.exit_code, Some(0));
    assert_eq!(metrics.peak_memory_bytes, Some(12 << 20));
    assert_eq!(metrics.cpu_user_ms, Some(40));
    // What the pod reserved, read off the admitted pod: both containers.
    assert_eq!(
        (
            metrics.cpu_request_millis,
            metrics.memory_request_bytes,
            metrics.cpu_limit_millis,
            metrics.memory_limit_bytes,
        ),
        (Some(110), Some(160 << 20), None, Some(576 << 20)),
        "the task container has no CPU limit, so the pod has none"
    );
    let stdout: Vec<&str> = events
        .logs
        .iter()
        .filter(|(s, _)| *s == LogStream::Stdout)
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(stdout, ["doubling 21 in try 2", "bye"]);
    // Where the try ran, once, in the try's own log.
    let placed: Vec<&str> = events
        .logs
        .iter()
        .filter(|(s, l)| *s == LogStream::System && l.contains("running on node"))
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(
        placed,
        [format!(
            "INFO pod {} of Job {name} running on node node-a",
            pod_name(&name)
        )]
    );

    // The log was copied before the Job was deleted, with propagation.
    let requests = api.requests();
    let log_at = requests
        .iter()
        .position(|r| r.path.ends_with(&format!("/pods/{}/log", pod_name(&name))))
        .expect("the log was read");
    let delete_at = requests
        .iter()
        .position(|r| r.is(&Method::DELETE, &format!("/jobs/{name}")))
        .expect("the Job was deleted");
    assert!(log_at < delete_at);
    assert!(decode(&requests[log_at].query).contains("container=task"));
    assert_eq!(
        requests[delete_at].body.as_ref().unwrap()["propagationPolicy"],
        "Background"
    );
    assert_eq!(executor.tracked(), 0);
    assert!(task_api.is_empty(), "the try's token is revoked");
}

#[tokio::test]
async fn a_nonzero_exit_code_fails_the_try() {
    let (client, api) = ApiServer::start();
    let task_api = TaskApi::with_secret(b"test");
    let executor = KubernetesExecutor::new(client, config(), task_api.clone());
    let dag = Arc::new(dag());

    // Without a result: the exit code, its reason and the log's tail.
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    let name = name_of("source", 1);
    events.started().await;
    api.set_log(&pod_name(&name), "starting\n");
    api.put(
        Kind::Pods,
        pod(
            &name,
            "Failed",
            terminated(137, "OOMKilled", "allocating 2GiB"),
        ),
    );
    let (result, metrics) = events.finished().await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Failed);
    let message = err.to_string();
    assert!(message.contains("exited with code 137"), "{message}");
    assert!(
        message.contains("OOMKilled") && message.contains("memory_limit"),
        "{message}"
    );
    assert!(message.contains("allocating 2GiB"), "{message}");
    assert_eq!(metrics.exit_code, Some(137));

    // With the worker's result: its error, kind kept (fatal: no retries).
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "fail", 1, Inputs::new()), tx);
    let name = name_of("fail", 1);
    events.started().await;
    api.set_log(&pod_name(&name), "");
    let report = WorkerResult {
        outcome: WorkerOutcome::Err {
            kind: TaskErrorKind::Fatal,
            message: "the warehouse is gone".into(),
        },
        metrics: None,
    };
    assert_eq!(
        post_result(&task_api, &try_ref("fail", 1), &report).await,
        StatusCode::NO_CONTENT
    );
    api.put(Kind::Pods, pod(&name, "Failed", terminated(1, "Error", "")));
    let (result, metrics) = events.finished().await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Fatal);
    assert_eq!(err.message(), "the warehouse is gone");
    assert_eq!(metrics.exit_code, Some(1));

    // Exit 0 without any result is not a success.
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 2, Inputs::new()), tx);
    let name = name_of("source", 2);
    events.started().await;
    api.set_log(&pod_name(&name), "no result here\n");
    api.put(
        Kind::Pods,
        pod(&name, "Succeeded", terminated(0, "Completed", "")),
    );
    let err = events.finished().await.0.unwrap_err();
    assert!(
        err.to_string().contains("without reporting a result"),
        "{err}"
    );
}

#[tokio::test]
async fn a_pod_that_cannot_start_fails_after_the_pending_deadline() {
    let (client, api) = ApiServer::start();
    let mut config = config();
    config.pending_deadline = Duration::from_millis(400);
    let executor = KubernetesExecutor::new(client, config, TaskApi::with_secret(b"test"));
    let dag = Arc::new(dag());

    let (tx, mut pull) = Events::new();
    executor.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    let (tx, mut unschedulable) = Events::new();
    executor.launch(launch_of(&dag, "double", 1, Inputs::new()), tx);
    let (tx, mut no_pod) = Events::new();
    executor.launch(launch_of(&dag, "fail", 1, Inputs::new()), tx);
    pull.started().await;
    unschedulable.started().await;
    no_pod.started().await;

    let pulling = name_of("source", 1);
    api.put(
        Kind::Pods,
        pod(
            &pulling,
            "Pending",
            waiting(
                "ImagePullBackOff",
                "Back-off pulling image \"registry.example.com/dags:1\"",
            ),
        ),
    );
    let pending = name_of("double", 1);
    let mut p = pod(&pending, "Pending", Value::Null);
    p["status"] = json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]});
    api.put(Kind::Pods, p);

    let err = pull.finished().await.0.unwrap_err().to_string();
    assert!(err.contains("did not start within"), "{err}");
    assert!(
        err.contains("ImagePullBackOff: Back-off pulling image"),
        "{err}"
    );
    assert!(
        pull.log_text().contains("never started"),
        "{}",
        pull.log_text()
    );
    let err = unschedulable.finished().await.0.unwrap_err().to_string();
    assert!(
        err.contains("Unschedulable: 0/3 nodes are available"),
        "{err}"
    );
    let err = no_pod.finished().await.0.unwrap_err().to_string();
    assert!(err.contains("no pod was created"), "{err}");

    // The Jobs are deleted, so that their pods stop trying.
    for name in [&pulling, &pending, &name_of("fail", 1)] {
        api.wait_for("DELETE job", |r| {
            r.is(&Method::DELETE, &format!("/jobs/{name}"))
        })
        .await;
        api.wait_gone(Kind::Jobs, name).await;
    }

    // An invalid image name fails at once.
    let (tx, mut invalid) = Events::new();
    executor.launch(launch_of(&dag, "source", 2, Inputs::new()), tx);
    invalid.started().await;
    api.put(
        Kind::Pods,
        pod(
            &name_of("source", 2),
            "Pending",
            waiting("InvalidImageName", "couldn't parse image name"),
        ),
    );
    let err = invalid.finished().await.0.unwrap_err().to_string();
    assert!(err.contains("cannot start: InvalidImageName"), "{err}");
}

#[tokio::test]
async fn a_job_deleted_by_someone_else_fails_the_try() {
    let (client, api) = ApiServer::start();
    let executor = KubernetesExecutor::new(client, config(), TaskApi::with_secret(b"test"));
    let dag = Arc::new(dag());
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    events.started().await;
    let name = name_of("source", 1);
    api.put(Kind::Pods, pod(&name, "Running", running()));
    api.wait_for("the pod watch", |r| r.path.ends_with("/pods") && r.watch())
        .await;
    // `kubectl delete job ...`
    api.remove(Kind::Pods, NS, &pod_name(&name));
    api.remove(Kind::Jobs, NS, &name);
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(
        err.contains(&format!("Job {NS}/{name} was deleted by someone else")),
        "{err}"
    );
    assert!(
        !api.requests().iter().any(|r| r.method == Method::DELETE),
        "goflow deleted nothing"
    );
}

#[tokio::test]
async fn a_watch_expired_with_410_is_listed_again() {
    let (client, api) = ApiServer::start();
    let task_api = TaskApi::with_secret(b"test");
    let executor = KubernetesExecutor::new(client, config(), task_api.clone());
    let dag = Arc::new(dag());
    let (tx, mut ok) = Events::new();
    executor.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    let (tx, mut gone) = Events::new();
    executor.launch(launch_of(&dag, "fail", 1, Inputs::new()), tx);
    ok.started().await;
    gone.started().await;
    let finished = name_of("source", 1);
    let deleted = name_of("fail", 1);
    api.put(Kind::Pods, pod(&finished, "Running", running()));
    for kind in ["/jobs", "/pods"] {
        api.wait_for("a watch", |r| r.path.ends_with(kind) && r.watch())
            .await;
    }
    let lists = |kind: &str| {
        api.requests()
            .iter()
            .filter(|r| {
                r.is(&Method::GET, kind) && !r.watch() && !r.query.contains("goflow.rs%2Fjob")
            })
            .count()
    };
    let (job_lists, pod_lists) = (lists("/jobs"), lists("/pods"));

    // While the watches are down, one pod ends and one Job is deleted;
    // the watches learn of neither, and expire with 410 Gone.
    api.set_log(&pod_name(&finished), "done\n");
    post_result(&task_api, &try_ref("source", 1), &ok_result(json!(21))).await;
    api.put_quietly(
        Kind::Pods,
        pod(&finished, "Succeeded", terminated(0, "Completed", "")),
    );
    api.remove_quietly(Kind::Jobs, NS, &deleted);
    api.expire_watches(Kind::Pods);
    api.expire_watches(Kind::Jobs);

    assert_eq!(ok.finished().await.0.unwrap(), json!(21));
    let err = gone.finished().await.0.unwrap_err().to_string();
    assert!(err.contains("deleted by someone else"), "{err}");
    assert!(lists("/jobs") > job_lists, "the Jobs were listed again");
    assert!(lists("/pods") > pod_lists, "the pods were listed again");
}

#[tokio::test]
async fn a_restarted_scheduler_adopts_jobs_that_still_exist() {
    let (client, api) = ApiServer::start();
    let dag = Arc::new(dag());
    // The previous scheduler process created these Jobs (same secret: the
    // running pod's token keeps working).
    let previous = KubernetesExecutor::new(
        ApiServer::start().0,
        config(),
        TaskApi::with_secret(b"shared"),
    );
    let job_of = |task: &str| -> Value {
        let token = previous.task_api().token_for(&try_ref(task, 1));
        let job = goflow_runtime::executor::kubernetes::job_manifest(
            &launch_of(&dag, task, 1, Inputs::new()),
            goflow_runtime::executor::kubernetes::JobParams {
                config: previous.config(),
                token: &token,
            },
        )
        .unwrap();
        serde_json::to_value(&job).unwrap()
    };
    let running_job = name_of("source", 1);
    api.put(Kind::Jobs, job_of("source"));
    api.put(Kind::Pods, pod(&running_job, "Running", running()));
    // The previous process stored the first two lines of its output.
    api.set_log(&pod_name(&running_job), "one\ntwo\n");
    let done_job = name_of("double", 1);
    api.put(Kind::Jobs, job_of("double"));
    api.put(
        Kind::Pods,
        pod(&done_job, "Succeeded", terminated(0, "Completed", "")),
    );
    set_job_condition(&api, &done_job, "Complete", "CompletionsReached", "");
    api.set_log(
        &pod_name(&done_job),
        &format!(
            "{}\n",
            serde_json::to_string(&ok_result(json!(42))).unwrap()
        ),
    );

    let task_api = TaskApi::with_secret(b"shared");
    let executor = KubernetesExecutor::new(client, config(), task_api.clone());

    // Still running: followed to its end.
    let (tx, mut running_events) = Events::new();
    assert!(executor.adopt(
        launch_of(&dag, "source", 1, Inputs::new()),
        &adoption(&format!("{NS}/{running_job}"), 2),
        tx
    ));
    // Finished while no scheduler watched: reported (its result from the
    // last line of its log, where a worker prints it when the API is down).
    let (tx, mut done_events) = Events::new();
    assert!(executor.adopt(
        launch_of(&dag, "double", 1, Inputs::new()),
        &adoption("", 0),
        tx
    ));
    // Gone: lost, retried by policy.
    let (tx, mut gone_events) = Events::new();
    assert!(executor.adopt(
        launch_of(&dag, "fail", 1, Inputs::new()),
        &adoption(&format!("{NS}/{}", name_of("fail", 1)), 0),
        tx
    ));

    assert_eq!(done_events.finished().await.0.unwrap(), json!(42));
    let err = gone_events.finished().await.0.unwrap_err().to_string();
    assert!(
        err.contains("lost") && err.contains("no longer exists"),
        "{err}"
    );

    running_events.started().await;
    api.set_log(&pod_name(&running_job), "one\ntwo\nstill here\n");
    assert_eq!(
        post_result(&task_api, &try_ref("source", 1), &ok_result(json!(21))).await,
        StatusCode::NO_CONTENT,
        "the old pod's token is accepted by the new process"
    );
    api.put(
        Kind::Pods,
        pod(&running_job, "Succeeded", terminated(0, "Completed", "")),
    );
    assert_eq!(running_events.finished().await.0.unwrap(), json!(21));
    assert_eq!(
        running_events.stdout(),
        ["still here"],
        "the lines stored before the restart are not stored again"
    );
    assert!(
        !api.requests().iter().any(|r| r.method == Method::POST),
        "no Job was created again"
    );
}

#[tokio::test]
async fn a_running_pods_log_is_followed_live_and_each_line_kept_once() {
    let (client, api) = ApiServer::start();
    let task_api = TaskApi::with_secret(b"test");
    let executor = KubernetesExecutor::new(client, config(), task_api.clone());
    let dag = Arc::new(dag());
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    events.started().await;
    let name = name_of("source", 1);
    let pod = pod_name(&name);
    api.put(Kind::Pods, self::pod(&name, "Running", running()));

    // Lines reach goflow's log while the task runs.
    let follow = api
        .wait_for("a log follow", |r| {
            r.path.ends_with(&format!("/pods/{pod}/log")) && r.follows()
        })
        .await;
    assert!(
        decode(&follow.query).contains("container=task"),
        "{}",
        follow.query
    );
    api.set_log(&pod, "step 1\n");
    events.output("step 1").await;
    api.set_log(&pod, "step 1\nstep 2\n");
    events.output("step 2").await;

    // The API server drops the stream: it is opened again, and what was
    // read is not sent twice.
    api.end_log_follows(&pod);
    api.set_log(&pod, "step 1\nstep 2\nstep 3\n");
    events.output("step 3").await;
    assert_eq!(api.log_follows_opened(&pod), 2);

    // The last line, written without a newline as the task exits, comes
    // with the final copy.
    post_result(&task_api, &try_ref("source", 1), &ok_result(json!(21))).await;
    api.set_log(&pod, "step 1\nstep 2\nstep 3\nbye");
    api.put(
        Kind::Pods,
        self::pod(&name, "Succeeded", terminated(0, "Completed", "")),
    );
    assert_eq!(events.finished().await.0.unwrap(), json!(21));
    assert_eq!(events.stdout(), ["step 1", "step 2", "step 3", "bye"]);
}

#[tokio::test]
async fn without_following_the_log_is_copied_when_the_try_ends() {
    let (client, api) = ApiServer::start();
    let task_api = TaskApi::with_secret(b"test");
    let mut config = config();
    config.follow_logs = false;
    let executor = KubernetesExecutor::new(client, config, task_api.clone());
    let dag = Arc::new(dag());
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    events.started().await;
    let name = name_of("source", 1);
    let pod = pod_name(&name);
    api.put(Kind::Pods, self::pod(&name, "Running", running()));
    api.set_log(&pod, "step 1\n");
    api.wait_for("the pod watch", |r| r.path.ends_with("/pods") && r.watch())
        .await;
    post_result(&task_api, &try_ref("source", 1), &ok_result(json!(21))).await;
    api.put(
        Kind::Pods,
        self::pod(&name, "Succeeded", terminated(0, "Completed", "")),
    );
    assert_eq!(events.finished().await.0.unwrap(), json!(21));
    assert_eq!(events.stdout(), ["step 1"]);
    assert_eq!(api.log_follows_opened(&pod), 0, "never followed");
}

#[tokio::test]
async fn cancelling_deletes_the_job_with_propagation() {
    let (client, api) = ApiServer::start();
    let mut config = config();
    config.propagation = Propagation::Foreground;
    let executor = KubernetesExecutor::new(client, config, TaskApi::with_secret(b"test"));
    let dag = Arc::new(dag());
    let launch = launch_of(&dag, "slow", 1, Inputs::new());
    let key = launch.key.clone();
    let (tx, mut events) = Events::new();
    executor.launch(launch, tx);
    events.started().await;
    let name = name_of("slow", 1);
    let job = api.get(Kind::Jobs, NS, &name).unwrap();
    assert_eq!(job["spec"]["activeDeadlineSeconds"], json!(30));
    api.put(Kind::Pods, pod(&name, "Running", running()));
    api.set_log(&pod_name(&name), "working...\n");
    // Let the watch see the pod running.
    api.wait_for("the pod watch", |r| r.path.ends_with("/pods") && r.watch())
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    executor.cancel(&key);
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(err.contains("cancelled"), "{err}");
    let delete = api
        .wait_for("DELETE job", |r| {
            r.is(&Method::DELETE, &format!("/jobs/{name}"))
        })
        .await;
    assert_eq!(delete.body.unwrap()["propagationPolicy"], "Foreground");
    assert!(
        events.log_text().contains("working..."),
        "the log so far was kept"
    );
    api.wait_gone(Kind::Pods, &pod_name(&name)).await;
    api.wait_gone(Kind::Jobs, &name).await;
}

#[tokio::test]
async fn a_job_past_its_deadline_times_out() {
    let (client, api) = ApiServer::start();
    let executor = KubernetesExecutor::new(client, config(), TaskApi::with_secret(b"test"));
    let dag = Arc::new(dag());
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "slow", 1, Inputs::new()), tx);
    events.started().await;
    let name = name_of("slow", 1);
    api.put(Kind::Pods, pod(&name, "Running", running()));
    api.set_log(&pod_name(&name), "");
    // The Job controller: activeDeadlineSeconds passed, the pod is killed.
    set_job_condition(
        &api,
        &name,
        "FailureTarget",
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    );
    api.put(
        Kind::Pods,
        pod(&name, "Failed", terminated(137, "Error", "")),
    );
    let err = events.finished().await.0.unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::TimedOut, "{err}");
}

#[tokio::test]
async fn mistakes_fail_the_try_with_a_clear_message() {
    let (client, api) = ApiServer::start();
    let executor = KubernetesExecutor::new(client, config(), TaskApi::with_secret(b"test"));
    let dag = Arc::new(dag());

    api.fail_next_create(403, "Forbidden", "jobs.batch is forbidden: User \"system:serviceaccount:goflow:goflow\" cannot create resource \"jobs\"");
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(
        err.contains("forbidden by RBAC") && err.contains("namespace \"jobs\""),
        "{err}"
    );

    api.fail_next_create(404, "NotFound", "namespaces \"jobs\" not found");
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 2, Inputs::new()), tx);
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(err.contains("namespace \"jobs\" does not exist"), "{err}");

    // An image that is not one: no request at all, and no retry.
    let mut bad_config = config();
    bad_config.image = Some("Registry/UPPER CASE".into());
    let bad_image = KubernetesExecutor::new(
        ApiServer::start().0,
        bad_config,
        TaskApi::with_secret(b"test"),
    );
    let (tx, mut events) = Events::new();
    bad_image.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    let err = events.finished().await.0.unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Fatal);
    assert!(err.to_string().contains("invalid image reference"), "{err}");
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "no-image", 1, Inputs::new()), tx);
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(
        err.contains("has no container image") && err.contains("GOFLOW_IMAGE"),
        "{err}"
    );

    // A Job of this try that exists already is followed, not created twice.
    let (tx, mut first) = Events::new();
    executor.launch(launch_of(&dag, "double", 1, Inputs::new()), tx);
    first.started().await;
    let name = name_of("double", 1);
    api.put(Kind::Pods, pod(&name, "Running", running()));
    let other = KubernetesExecutor::new(
        {
            // A second replica sharing the same API server.
            let (service, mut handle) =
                tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
            let serving = api.clone();
            tokio::spawn(async move {
                while let Some((request, send)) = handle.next_request().await {
                    send.send_response(serving.serve(request).await);
                }
            });
            goflow_runtime::executor::kubernetes::kube::Client::new(service, "default")
        },
        config(),
        TaskApi::with_secret(b"test"),
    );
    let (tx, mut second) = Events::new();
    other.launch(launch_of(&dag, "double", 1, Inputs::new()), tx);
    second.started().await;
    second.drain().await;
    assert!(
        second.log_text().contains("existed already"),
        "{}",
        second.log_text()
    );
    let creates = api
        .requests()
        .iter()
        .filter(|r| r.method == Method::POST && r.path.ends_with(&format!("/{NS}/jobs")))
        .count();
    assert!(api.get(Kind::Jobs, NS, &name).is_some());
    assert!(creates >= 2);
}

#[tokio::test]
async fn without_a_cluster_each_try_fails_with_the_reason() {
    // No kubeconfig and not in a pod (this test binary's environment).
    std::env::set_var("KUBECONFIG", "/nonexistent/kubeconfig");
    std::env::remove_var("KUBERNETES_SERVICE_HOST");
    let err = KubernetesExecutor::try_connect(config(), TaskApi::with_secret(b"test"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("no Kubernetes configuration"), "{err}");
    let unavailable = KubernetesExecutor::connect(config(), TaskApi::with_secret(b"test")).await;
    let dag = Arc::new(dag());
    let (tx, mut events) = Events::new();
    unavailable.launch(launch_of(&dag, "source", 1, Inputs::new()), tx);
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(
        err.contains("cannot run tasks") && err.contains("kubeconfig"),
        "{err}"
    );
    assert!(!unavailable.adopt(
        launch_of(&dag, "source", 1, Inputs::new()),
        &adoption("", 0),
        goflow_runtime::executor::event_channel(goflow_runtime::executor::EVENT_CAPACITY).0
    ));
}

// ---------------------------------------------------------------------------
// End to end: the Job's container spec, run for real
// ---------------------------------------------------------------------------

/// Returns at once in a normal test run; in a process started by the
/// fake kubelet, runs `tasks run ...` like a goflow binary and exits.
#[test]
fn worker_entry() {
    support::act_as_goflow_binary(|| Registry::from_dags([dag()]).unwrap());
}

/// Plays the kubelet and the Job controller: for each Job created, a pod
/// that runs the Job's container spec (command, args, env) as a process.
fn kubelet(api: ApiServer) {
    let mut created = api.on_create();
    tokio::spawn(async move {
        while let Some(job) = created.recv().await {
            let api = api.clone();
            tokio::spawn(async move {
                let job: Job = serde_json::from_value(job).unwrap();
                let name = job.metadata.name.clone().unwrap();
                let pod = pod_name(&name);
                api.put(
                    Kind::Pods,
                    self::pod(&name, "Pending", waiting("ContainerCreating", "")),
                );
                let container = job.spec.unwrap().template.spec.unwrap().containers[0].clone();
                let mut command =
                    tokio::process::Command::new(container.command.unwrap()[0].clone());
                command.args(container.args.unwrap_or_default());
                command.env_clear();
                for var in container.env.unwrap_or_default() {
                    let value = match (var.value, var.value_from) {
                        (Some(v), _) => v,
                        (None, Some(_)) => pod.clone(),
                        (None, None) => String::new(),
                    };
                    command.env(var.name, value);
                }
                api.put(Kind::Pods, self::pod(&name, "Running", running()));
                let output = command.output().await.unwrap();
                let mut log = String::from_utf8_lossy(&output.stdout).into_owned();
                log.push_str(&String::from_utf8_lossy(&output.stderr));
                api.set_log(&pod, &log);
                let code = output.status.code().unwrap_or(137);
                let (phase, reason) = if code == 0 {
                    ("Succeeded", "Completed")
                } else {
                    ("Failed", "Error")
                };
                api.put(
                    Kind::Pods,
                    self::pod(&name, phase, terminated(code, reason, "")),
                );
            });
        }
    });
}

#[tokio::test]
async fn a_job_runs_the_worker_end_to_end() {
    // The scheduler's web server, with the task API mounted.
    let task_api = TaskApi::with_secret(b"e2e");
    let app = axum::Router::new().nest(task_api::MOUNT_PATH, task_api::router(task_api.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (client, api) = ApiServer::start();
    kubelet(api.clone());
    let mut config = config();
    config.binary = std::env::current_exe().unwrap().display().to_string();
    config.args_prefix = support::entry_args("worker_entry");
    config.advertise_url = format!("http://{addr}");
    config.env = vec![(WORKER_ENV.into(), "1".into())];
    let executor = KubernetesExecutor::new(client, config, task_api.clone());
    let dag = Arc::new(dag());

    let mut inputs = Inputs::new();
    inputs.insert("source", json!(21));
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "double", 3, inputs), tx);
    let (result, metrics) = events.finished().await;
    assert_eq!(result.unwrap(), json!(42), "{}", events.log_text());
    assert_eq!(metrics.exit_code, Some(0));
    assert!(
        metrics.peak_memory_bytes.unwrap() > 0,
        "the worker's own metrics"
    );
    assert!(
        events.log_text().contains("[stdout] doubling 21 in try 3"),
        "{}",
        events.log_text()
    );

    // A task failing in the pod: its error, through the task API.
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "fail", 1, Inputs::new()), tx);
    let (result, metrics) = events.finished().await;
    let err = result.unwrap_err();
    assert_eq!(
        (err.kind(), err.message()),
        (TaskErrorKind::Fatal, "the warehouse is gone")
    );
    assert_eq!(metrics.exit_code, Some(1));
    assert!(task_api.is_empty());
}

// ---------------------------------------------------------------------------
// The scheduler's recovery offers lost tries to the executor
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_restarted_scheduler_adopts_the_job_of_its_running_try() {
    use goflow_core::TaskState;
    use goflow_runtime::scheduler::{Scheduler, SchedulerConfig};

    let db = goflow_store::testing::sqlite(true).await;
    let store = db.store.clone();
    let (client, api) = ApiServer::start();
    let task_api = TaskApi::with_secret(b"shared");
    // As the quickstart's tasks under `scheduler --executor kubernetes`:
    // they name no executor; the scheduler's default is Kubernetes.
    let dag = DagBuilder::new("k8s-test")
        .namespace(NS)
        .task(spec("source", &[], TaskOptions::default(), source))
        .build()
        .unwrap();
    let registry = Arc::new(Registry::from_dags([dag.clone()]).unwrap());
    let mut config = SchedulerConfig::default();
    config.id = "k8s-sched".into();
    config.heartbeat_interval = Duration::from_millis(200);
    config.stale_after = Duration::from_secs(2);
    config.poll_interval = Duration::from_millis(100);
    config.default_executor = ExecutorKind::Kubernetes;
    config.create_scheduled_runs = false;
    let start = |client| {
        let mut scheduler = Scheduler::new(store.clone(), Arc::clone(&registry), config.clone())
            .with_executor(Arc::new(KubernetesExecutor::new(
                client,
                self::config(),
                task_api.clone(),
            )));
        let finished = scheduler.finished_runs();
        let task = tokio::spawn(async move {
            scheduler.run(std::future::pending()).await.unwrap();
        });
        (task, finished)
    };
    let (first, _) = start(client);

    // A run of the DAG; its task `source` is followed here.
    let rows = goflow_runtime::db::sync_registry(&store, &registry, Utc::now())
        .await
        .unwrap();
    let run = store
        .create_run(
            &goflow_runtime::db::new_run(
                &dag,
                rows["k8s-test"].version,
                RunType::Manual,
                DataInterval::at(Utc::now()),
                json!({}),
            ),
            Utc::now(),
        )
        .await
        .unwrap();
    let name = job_name("goflow", "k8s-test", &run.run_id, "source", 1);
    // The Job exists and its pod runs; the scheduler crashes.
    let handle = format!("{NS}/{name}");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ti = store
            .task_instance(run.id, "source")
            .await
            .unwrap()
            .unwrap();
        if ti.state == TaskState::Running && ti.executor_handle.as_deref() == Some(handle.as_str())
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "source runs: {ti:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.put(Kind::Pods, pod(&name, "Running", running()));
    // Its output so far is in the store before the crash.
    api.set_log(&pod_name(&name), "before the restart\n");
    let output = |store: Store| async move {
        store
            .read_logs(run.id, "source", Some(1), 0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.stream == LogStream::Stdout)
            .map(|l| l.line)
            .collect::<Vec<_>>()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while output(store.clone()).await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the log is followed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.abort();
    let _ = first.await;

    // The same scheduler id starts again, with a new executor.
    let (client, server) = {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<MockBody>>();
        let serving = api.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                send.send_response(serving.serve(request).await);
            }
        });
        (
            goflow_runtime::executor::kubernetes::kube::Client::new(service, "default"),
            api.clone(),
        )
    };
    let (second, _finished) = start(client);
    server
        .wait_for("the adoption's GET", |r| {
            r.is(&Method::GET, &format!("/jobs/{name}"))
        })
        .await;
    // The task ends in its pod and reports through the new process.
    let try_ref = TryRef {
        dag_id: "k8s-test".into(),
        run_id: run.run_id.clone(),
        task_id: "source".into(),
        try_number: 1,
    };
    server.set_log(
        &pod_name(&name),
        "before the restart\n2026-05-02T06:00:01.5Z  WARN source: careful\ndone\n",
    );
    // (Posted once the new executor registered the try again.)
    let deadline = tokio::time::Instant::now() + WAIT;
    while post_result(&task_api, &try_ref, &ok_result(json!(21))).await != StatusCode::NO_CONTENT {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the try is registered again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.put(
        Kind::Pods,
        pod(&name, "Succeeded", terminated(0, "Completed", "")),
    );

    let ti = tokio::time::timeout(WAIT, async {
        loop {
            let ti = store
                .task_instance(run.id, "source")
                .await
                .unwrap()
                .unwrap();
            if ti.state == TaskState::Success {
                return ti;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("source succeeds");
    assert_eq!(ti.try_number, 1, "adopted, not retried");
    assert_eq!(
        ti.executor,
        ExecutorKind::Kubernetes,
        "the executor stored with the try"
    );
    let tries = store.task_tries(run.id, Some("source")).await.unwrap();
    assert_eq!(tries.len(), 1, "{tries:?}");
    assert_eq!(tries[0].executor, Some(ExecutorKind::Kubernetes));
    assert_eq!(
        output(store.clone()).await,
        [
            "before the restart",
            "2026-05-02T06:00:01.5Z  WARN source: careful",
            "done"
        ],
        "the new process stores the rest of the output, not all of it again"
    );
    // The worker's `tracing` line keeps its level; goflow's own lines say
    // where the try ran and that it was adopted.
    let all = store
        .read_logs(run.id, "source", Some(1), 0, 100)
        .await
        .unwrap();
    let warned = all.iter().find(|l| l.line.contains("careful")).unwrap();
    assert_eq!(warned.level, Some(goflow_store::LogLevel::Warn));
    let system: Vec<&str> = all
        .iter()
        .filter(|l| l.stream == LogStream::System)
        .map(|l| l.line.as_str())
        .collect();
    assert!(
        system
            .iter()
            .any(|l| l.starts_with("INFO try 1 started on kubernetes (Job ")),
        "{system:#?}"
    );
    assert!(
        system
            .iter()
            .any(|l| l.starts_with("INFO try 1 adopted by scheduler k8s-sched")),
        "{system:#?}"
    );
    assert!(
        system.iter().any(|l| l.starts_with("INFO try 1 succeeded")),
        "{system:#?}"
    );
    assert_eq!(
        store.get_output(run.id, "source").await.unwrap(),
        Some(json!(21))
    );
    let creates = server
        .requests()
        .iter()
        .filter(|r| {
            r.method == Method::POST
                && r.path.ends_with(&format!("/{NS}/jobs"))
                && r.body
                    .as_ref()
                    .is_some_and(|b| b["metadata"]["name"] == json!(name))
        })
        .count();
    assert_eq!(creates, 1, "the Job was created once");
    second.abort();
}

// ---------------------------------------------------------------------------
// At most one live Job per task instance; cancel; silent workers
// ---------------------------------------------------------------------------

/// The Job an earlier scheduler process created for a try.
fn previous_job(dag: &Arc<Dag>, task: &str, try_number: u32) -> Value {
    let token = TaskApi::with_secret(b"shared").token_for(&try_ref(task, try_number));
    let job = goflow_runtime::executor::kubernetes::job_manifest(
        &launch_of(dag, task, try_number, Inputs::new()),
        goflow_runtime::executor::kubernetes::JobParams {
            config: &config(),
            token: &token,
        },
    )
    .unwrap();
    serde_json::to_value(&job).unwrap()
}

/// Sends a heartbeat as the try's worker would.
async fn heartbeat(api: &TaskApi, try_ref: &TryRef) -> StatusCode {
    let request = Request::post(try_ref.path("heartbeat"))
        .header(
            "authorization",
            format!("Bearer {}", api.token_for(try_ref)),
        )
        .body(axum::body::Body::empty())
        .unwrap();
    task_api::router(api.clone())
        .oneshot(request)
        .await
        .unwrap()
        .status()
}

/// Waits until the executor follows the log of the pod of Job `job` (it
/// saw the task container run).
async fn wait_followed(api: &ApiServer, job: &str) {
    let pod = pod_name(job);
    api.wait_for("a log follow", |r| {
        r.path.ends_with(&format!("/pods/{pod}/log")) && r.follows()
    })
    .await;
}

#[tokio::test]
async fn a_leftover_job_of_an_older_try_is_deleted_before_the_new_try_starts() {
    let (client, api) = ApiServer::start();
    let dag = Arc::new(dag());
    // A scheduler that stopped left try 2 of `source` running; try 1
    // finished (its Job kept until its TTL); another task's Job runs.
    let finished = name_of("source", 1);
    api.put(Kind::Jobs, previous_job(&dag, "source", 1));
    set_job_condition(&api, &finished, "Complete", "CompletionsReached", "");
    let leftover = name_of("source", 2);
    api.put(Kind::Jobs, previous_job(&dag, "source", 2));
    api.put(Kind::Pods, pod(&leftover, "Running", running()));
    let other = name_of("double", 1);
    api.put(Kind::Jobs, previous_job(&dag, "double", 1));

    let executor = KubernetesExecutor::new(client, config(), TaskApi::with_secret(b"test"));
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 3, Inputs::new()), tx);
    events.started().await;
    let new = name_of("source", 3);

    let requests = api.requests();
    let at = |pred: &dyn Fn(&Recorded) -> bool| requests.iter().position(pred);
    let delete = at(&|r| r.is(&Method::DELETE, &format!("/jobs/{leftover}")))
        .expect("the leftover Job was deleted");
    let create = at(&|r| r.is(&Method::POST, "/namespaces/jobs/jobs")).expect("a Job was created");
    assert!(delete < create, "deleted before the new Job was created");
    assert_eq!(
        requests[delete].body.as_ref().unwrap()["propagationPolicy"],
        "Foreground",
        "its pods go with it"
    );
    // The older tries were found by the task instance's labels.
    let list = at(&|r| {
        r.is(&Method::GET, "/namespaces/jobs/jobs")
            && !r.watch()
            && decode(&r.query).contains("goflow.rs/task=")
    })
    .expect("the Jobs of the task instance were listed");
    assert!(list < delete);
    let selector = decode(&requests[list].query);
    assert!(
        selector.contains("goflow.rs/dag=k8s-test")
            && selector.contains("goflow.rs/task=source")
            && selector.contains("goflow.rs/instance=goflow"),
        "{selector}"
    );
    // The new Job was created once the old one (and its pod) was gone.
    let gone = api
        .job_event_at(&leftover, "DELETED")
        .expect("the leftover Job is gone");
    let added = api.job_event_at(&new, "ADDED").expect("the new Job exists");
    assert!(gone < added, "the old Job was gone before the new one came");
    assert!(api.get(Kind::Pods, NS, &pod_name(&leftover)).is_none());
    // A finished Job and other tasks' Jobs are left alone.
    for kept in [&finished, &other] {
        assert!(
            !requests
                .iter()
                .any(|r| r.is(&Method::DELETE, &format!("/jobs/{kept}"))),
            "{kept} was not deleted"
        );
        assert!(api.get(Kind::Jobs, NS, kept).is_some());
    }
    assert!(
        events
            .log_text()
            .contains(&format!("deleted Job {NS}/{leftover} of try 2")),
        "{}",
        events.log_text()
    );
    assert_eq!(executor.tracked(), 1);
}

#[tokio::test]
async fn a_try_does_not_start_while_an_older_try_cannot_be_deleted() {
    let (client, api) = ApiServer::start();
    let dag = Arc::new(dag());
    let leftover = name_of("source", 1);
    api.put(Kind::Jobs, previous_job(&dag, "source", 1));
    api.fail_next_delete(403, "Forbidden", "jobs.batch is forbidden: cannot delete");
    let executor = KubernetesExecutor::new(client, config(), TaskApi::with_secret(b"test"));
    let (tx, mut events) = Events::new();
    executor.launch(launch_of(&dag, "source", 2, Inputs::new()), tx);
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(
        err.contains("forbidden by RBAC") && err.contains(&format!("delete Job {NS}/{leftover}")),
        "{err}"
    );
    assert!(err.contains("try 2 is not started"), "{err}");
    assert!(
        !api.requests().iter().any(|r| r.method == Method::POST),
        "no Job was created"
    );
    assert!(events.started.is_empty());
    assert_eq!(executor.tracked(), 0);
}

#[tokio::test]
async fn cancel_deletes_the_job_in_the_foreground_and_ends_the_try_once() {
    let (client, api) = ApiServer::start();
    let dag = Arc::new(dag());
    // Background is the configured propagation: a cancel still takes the
    // pods first.
    let executor = KubernetesExecutor::new(client, config(), TaskApi::with_secret(b"shared"));
    let launch = launch_of(&dag, "slow", 1, Inputs::new());
    let key = launch.key.clone();
    let (tx, mut events) = Events::new();
    executor.launch(launch, tx);
    events.started().await;
    let name = name_of("slow", 1);
    api.put(Kind::Pods, pod(&name, "Running", running()));
    api.set_log(&pod_name(&name), "working...\n");
    wait_followed(&api, &name).await;
    events.output("working...").await;
    api.set_log(&pod_name(&name), "working...\nstill working\n");

    executor.cancel(&key);
    let err = events.finished().await.0.unwrap_err();
    assert_eq!(err.kind(), TaskErrorKind::Failed);
    let err = err.to_string();
    assert!(err.contains("cancelled"), "{err}");
    let delete = api
        .wait_for("DELETE job", |r| {
            r.is(&Method::DELETE, &format!("/jobs/{name}"))
        })
        .await;
    assert_eq!(delete.body.unwrap()["propagationPolicy"], "Foreground");
    assert_eq!(
        events.stdout(),
        ["working...", "still working"],
        "the log as far as it got"
    );
    api.wait_gone(Kind::Pods, &pod_name(&name)).await;
    api.wait_gone(Kind::Jobs, &name).await;

    // Again, and a try it never ran: nothing.
    executor.cancel(&key);
    executor.cancel(&TryKey {
        run: 99,
        task: 0,
        try_number: 1,
    });
    events.drain().await;
    let deletes = api
        .requests()
        .iter()
        .filter(|r| r.method == Method::DELETE)
        .count();
    assert_eq!(deletes, 1);
    assert_eq!(executor.tracked(), 0);

    // An adopted try is cancelled the same way.
    let adopted = name_of("source", 1);
    api.put(Kind::Jobs, previous_job(&dag, "source", 1));
    api.put(Kind::Pods, pod(&adopted, "Running", running()));
    let launch = launch_of(&dag, "source", 1, Inputs::new());
    let key = launch.key.clone();
    let (tx, mut events) = Events::new();
    assert!(executor.adopt(launch, &adoption(&format!("{NS}/{adopted}"), 0), tx));
    events.started().await;
    executor.cancel(&key);
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(err.contains("cancelled"), "{err}");
    let delete = api
        .wait_for("DELETE the adopted Job", |r| {
            r.is(&Method::DELETE, &format!("/jobs/{adopted}"))
        })
        .await;
    assert_eq!(delete.body.unwrap()["propagationPolicy"], "Foreground");
    api.wait_gone(Kind::Jobs, &adopted).await;
    events.drain().await;
}

#[tokio::test]
async fn a_silent_worker_whose_pod_is_gone_is_lost() {
    let (client, api) = ApiServer::start();
    let task_api = TaskApi::with_secret(b"shared");
    let timeout = Duration::from_millis(300);
    let mut config = config();
    config.heartbeat_timeout = timeout;
    let executor = KubernetesExecutor::new(client, config, task_api.clone());
    let dag = Arc::new(dag());
    // `source`: silent, its pod gone (and the Job controller, down, never
    // marks the Job failed). `double`: silent, its pod runs. `fail`: its
    // pod gone, its worker heartbeating.
    let mut tries = Vec::new();
    for task in ["source", "double", "fail"] {
        let (tx, mut events) = Events::new();
        executor.launch(launch_of(&dag, task, 1, Inputs::new()), tx);
        events.started().await;
        let name = name_of(task, 1);
        api.put(Kind::Pods, pod(&name, "Running", running()));
        api.set_log(&pod_name(&name), "started\n");
        wait_followed(&api, &name).await;
        tries.push(events);
    }
    let [mut gone, mut running_pod, mut beating] = <[Events; 3]>::try_from(tries).ok().unwrap();
    let beats = {
        let (task_api, try_ref) = (task_api.clone(), try_ref("fail", 1));
        tokio::spawn(async move {
            loop {
                assert_eq!(heartbeat(&task_api, &try_ref).await, StatusCode::NO_CONTENT);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let began = tokio::time::Instant::now();
    api.remove(Kind::Pods, NS, &pod_name(&name_of("source", 1)));
    api.remove(Kind::Pods, NS, &pod_name(&name_of("fail", 1)));

    let err = gone.finished().await.0.unwrap_err().to_string();
    assert!(began.elapsed() >= timeout / 2, "not before the deadline");
    assert!(
        err.contains("lost") && err.contains("stopped heartbeating") && err.contains("pod"),
        "{err}"
    );
    assert!(err.contains("was gone"), "{err}");
    assert!(
        gone.logs
            .iter()
            .any(|(s, l)| *s == LogStream::System && l.contains("stopped heartbeating")),
        "{}",
        gone.log_text()
    );
    let name = name_of("source", 1);
    let delete = api
        .wait_for("DELETE the lost try's Job", |r| {
            r.is(&Method::DELETE, &format!("/jobs/{name}"))
        })
        .await;
    assert_eq!(delete.body.unwrap()["propagationPolicy"], "Foreground");

    // Well past the deadline, the others still run.
    tokio::time::sleep(timeout * 4).await;
    running_pod.drain().await;
    beating.drain().await;
    assert_eq!(executor.tracked(), 2);
    beats.abort();

    // An adopted try whose Job exists but whose pod is gone, and whose
    // worker never calls: lost too.
    let adopted = name_of("slow", 1);
    api.put(Kind::Jobs, previous_job(&dag, "slow", 1));
    let (tx, mut events) = Events::new();
    assert!(executor.adopt(
        launch_of(&dag, "slow", 1, Inputs::new()),
        &adoption(&format!("{NS}/{adopted}"), 0),
        tx
    ));
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(err.contains("stopped heartbeating"), "{err}");
}

#[tokio::test]
async fn an_adopted_try_whose_job_is_gone_is_lost() {
    let (client, _api) = ApiServer::start();
    let task_api = TaskApi::with_secret(b"shared");
    let executor = KubernetesExecutor::new(client, config(), task_api.clone());
    let dag = Arc::new(dag());
    let (tx, mut events) = Events::new();
    let name = name_of("source", 1);
    assert!(executor.adopt(
        launch_of(&dag, "source", 1, Inputs::new()),
        &adoption(&format!("{NS}/{name}"), 0),
        tx
    ));
    let err = events.finished().await.0.unwrap_err().to_string();
    assert!(
        err.starts_with("lost:") && err.contains(&format!("Job {NS}/{name} no longer exists")),
        "{err}"
    );
    assert!(err.contains("reported no result"), "{err}");
    assert!(
        events.log_text().contains("[system] lost:"),
        "{}",
        events.log_text()
    );
    assert!(task_api.is_empty());
}
