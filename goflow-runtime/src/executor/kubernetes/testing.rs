//! A fake Kubernetes API server in memory, for benchmarks and for trying
//! the executor without a cluster: Jobs can be created, read, listed and
//! deleted; pods are never created (so tries stay pending); watches are
//! accepted and never answered. It is not a test double of Kubernetes'
//! behaviour (the request-level tests script the API server per request
//! instead); it measures the executor's own cost.
//!
//! ```no_run
//! # async fn doc() {
//! use goflow_runtime::executor::kubernetes::{testing::FakeApiServer, KubernetesConfig, KubernetesExecutor};
//! let (client, server) = FakeApiServer::start();
//! let executor = KubernetesExecutor::new(client, KubernetesConfig::default(), Default::default());
//! // ... launch tries ...
//! assert_eq!(server.jobs_created(), 0);
//! # }
//! ```

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::batch::v1::Job;
use kube::client::Body;

/// The handle on a fake API server: what it was asked to do.
#[derive(Clone, Debug, Default)]
pub struct FakeApiServer {
    state: Arc<Mutex<FakeState>>,
}

#[derive(Debug, Default)]
struct FakeState {
    jobs: BTreeMap<(String, String), Job>,
    created: u64,
    deleted: u64,
    requests: u64,
    resource_version: u64,
    /// Keep only the metadata of created Jobs.
    lean: bool,
}

impl FakeApiServer {
    /// A client of a new fake server, and the server's handle.
    pub fn start() -> (kube::Client, FakeApiServer) {
        Self::start_with(false)
    }

    /// Like [`start`](Self::start), but the server keeps only the metadata
    /// of the Jobs it is sent (enough to answer reads, lists and
    /// conflicts), so that it weighs little next to the executor it serves
    /// in a memory measurement.
    pub fn start_lean() -> (kube::Client, FakeApiServer) {
        Self::start_with(true)
    }

    fn start_with(lean: bool) -> (kube::Client, FakeApiServer) {
        let server = FakeApiServer::default();
        server.lock().lean = lean;
        let handle = server.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let server = server.clone();
            async move { Ok::<_, Infallible>(server.serve(request).await) }
        });
        (kube::Client::new(service, "default"), handle)
    }

    /// Jobs created so far.
    pub fn jobs_created(&self) -> u64 {
        self.lock().created
    }

    /// Jobs deleted so far.
    pub fn jobs_deleted(&self) -> u64 {
        self.lock().deleted
    }

    /// Requests served so far (watches included).
    pub fn requests(&self) -> u64 {
        self.lock().requests
    }

    /// Forgets every Job (as if deleted, without telling anyone).
    pub fn forget_jobs(&self) {
        self.lock().jobs = BTreeMap::new();
    }

    /// The Jobs that exist.
    pub fn jobs(&self) -> Vec<Job> {
        self.lock().jobs.values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn serve(&self, request: Request<Body>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let query = parts.uri.query().unwrap_or_default().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.lock().requests += 1;
        if query.split('&').any(|p| p == "watch=true") {
            // Nothing ever changes: the watch waits forever.
            return std::future::pending().await;
        }
        match (parts.method, segments.as_slice()) {
            (Method::POST, ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
                let bytes = match body.collect_bytes().await {
                    Ok(b) => b,
                    Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
                };
                let mut job: Job = match serde_json::from_slice(&bytes) {
                    Ok(job) => job,
                    Err(e) => {
                        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string())
                    }
                };
                let name = job.metadata.name.clone().unwrap_or_default();
                let mut st = self.lock();
                if st.jobs.contains_key(&(ns.to_string(), name.clone())) {
                    return status(
                        StatusCode::CONFLICT,
                        "AlreadyExists",
                        &format!("jobs.batch {name:?} already exists"),
                    );
                }
                st.resource_version += 1;
                job.metadata.resource_version = Some(st.resource_version.to_string());
                job.metadata.uid = Some(format!("uid-{}", st.resource_version));
                st.created += 1;
                let response = json(StatusCode::CREATED, &job);
                if st.lean {
                    job.spec = None;
                    job.metadata.labels = None;
                }
                st.jobs.insert((ns.to_string(), name), job);
                response
            }
            (Method::GET, ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
                match self.lock().jobs.get(&(ns.to_string(), name.to_string())) {
                    Some(job) => json(StatusCode::OK, job),
                    None => not_found(name),
                }
            }
            (Method::DELETE, ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
                let mut st = self.lock();
                match st.jobs.remove(&(ns.to_string(), name.to_string())) {
                    Some(job) => {
                        st.deleted += 1;
                        json(StatusCode::OK, &job)
                    }
                    None => not_found(name),
                }
            }
            (Method::GET, ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
                let st = self.lock();
                let items: Vec<&Job> = st
                    .jobs
                    .iter()
                    .filter(|((n, _), _)| n == ns)
                    .map(|(_, j)| j)
                    .collect();
                json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "apiVersion": "batch/v1", "kind": "JobList",
                        "metadata": {"resourceVersion": st.resource_version.to_string()},
                        "items": items,
                    }),
                )
            }
            (Method::GET, ["api", "v1", "namespaces", _, "pods"]) => json(
                StatusCode::OK,
                &serde_json::json!({
                    "apiVersion": "v1", "kind": "PodList",
                    "metadata": {"resourceVersion": self.lock().resource_version.to_string()},
                    "items": [],
                }),
            ),
            (Method::GET, ["api", "v1", "namespaces", _, "pods", _, "log"]) => {
                Response::new(Body::empty())
            }
            _ => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no route for {path}"),
            ),
        }
    }
}

fn json(code: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let mut response = Response::new(Body::from(serde_json::to_vec(value).unwrap_or_default()));
    *response.status_mut() = code;
    response
}

fn not_found(name: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("jobs.batch {name:?} not found"),
    )
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json(
        code,
        &serde_json::json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "code": code.as_u16(), "reason": reason, "message": message,
        }),
    )
}
