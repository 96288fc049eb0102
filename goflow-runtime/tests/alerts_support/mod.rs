//! Shared by the alert tests: a local HTTP (or HTTPS) server that records
//! what it receives and answers as told, a scheduler running in the
//! background, and an alert service configured for fast tests.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use goflow_core::{Dag, DataInterval, RunType};
use goflow_runtime::alerts::{AlertConfig, AlertService};
use goflow_runtime::db;
use goflow_runtime::scheduler::{RunFinished, Scheduler, SchedulerConfig};
use goflow_runtime::Registry;
use goflow_store::Store;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// How the server answers the next request.
#[derive(Clone, Copy, Debug)]
pub enum Reply {
    /// This status, at once.
    Status(u16),
    /// Never: the request hangs until the client gives up.
    Hang,
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: String,
    /// The status it was answered with (`None`: it hung).
    pub status: Option<u16>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// Builds the body of a successful answer from the request's body.
type Answer = Box<dyn Fn(&str) -> String + Send>;

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    received: Vec<Received>,
    /// Answers with this body on success (e.g. a bulk response).
    body: Option<Answer>,
}

/// A local HTTP server on 127.0.0.1:0.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`, or `https://localhost:<port>` over TLS.
    origin: String,
    inner: Arc<Mutex<Inner>>,
}

/// Hands axum the connections whose TLS handshake succeeded. Handshakes run
/// on their own tasks, so a client that stalls or gives up mid-handshake
/// (one that does not trust the certificate) holds up no other.
struct TlsListener {
    addr: SocketAddr,
    ready: mpsc::UnboundedReceiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    fn start(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> Self {
        let addr = listener.local_addr().unwrap();
        let (tx, ready) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, peer)) = listener.accept().await {
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(30), acceptor.accept(socket));
                    if let Ok(Ok(tls)) = handshake.await {
                        let _ = tx.send((tls, peer));
                    }
                });
            }
        });
        TlsListener { addr, ready }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.addr)
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let body = String::from_utf8_lossy(&body).into_owned();
    let (reply, answer) = {
        let mut i = inner.lock().unwrap();
        let reply = i
            .script
            .pop_front()
            .or(i.default)
            .unwrap_or(Reply::Status(200));
        let answer = match (&i.body, reply) {
            (Some(f), Reply::Status(s)) if (200..300).contains(&s) => f(&body),
            _ => "{}".to_owned(),
        };
        i.received.push(Received {
            path: uri.path().to_owned(),
            headers,
            body,
            status: match reply {
                Reply::Status(s) => Some(s),
                Reply::Hang => None,
            },
        });
        (reply, answer)
    };
    match reply {
        Reply::Status(s) => (StatusCode::from_u16(s).unwrap(), answer),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (StatusCode::OK, answer)
        }
    }
}

impl Server {
    /// Starts a server answering every request at any path with `replies`
    /// in turn, then with 200.
    pub async fn start(replies: impl IntoIterator<Item = Reply>) -> Server {
        let (inner, app) = Self::app(replies);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            addr,
            origin: format!("http://{addr}"),
            inner,
        }
    }

    /// Like [`Server::start`], over TLS with `tls` (a certificate for
    /// `localhost`): its URLs are `https://localhost:<port>/...`, so
    /// clients check the certificate's name for real.
    pub async fn start_tls(
        replies: impl IntoIterator<Item = Reply>,
        tls: Arc<tokio_rustls::rustls::ServerConfig>,
    ) -> Server {
        let (inner, app) = Self::app(replies);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TlsListener::start(listener, tokio_rustls::TlsAcceptor::from(tls));
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server {
            addr,
            origin: format!("https://localhost:{}", addr.port()),
            inner,
        }
    }

    fn app(replies: impl IntoIterator<Item = Reply>) -> (Arc<Mutex<Inner>>, Router) {
        let inner = Arc::new(Mutex::new(Inner {
            script: replies.into_iter().collect(),
            ..Inner::default()
        }));
        let app = Router::new()
            .route("/{*path}", post(handle))
            .with_state(Arc::clone(&inner));
        (inner, app)
    }

    /// Answers every request not scripted with `reply`.
    pub fn always(&self, reply: Reply) {
        self.inner.lock().unwrap().default = Some(reply);
    }

    /// Answers successful requests with `f(request body)`.
    pub fn answer_with(&self, f: impl Fn(&str) -> String + Send + 'static) {
        self.inner.lock().unwrap().body = Some(Box::new(f));
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.lock().unwrap().received.clone()
    }

    /// The JSON bodies received with a 2xx answer.
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        self.received()
            .into_iter()
            .filter(|r| r.status.is_some_and(|s| (200..300).contains(&s)))
            .map(|r| r.json())
            .collect()
    }

    /// Waits until `check` holds for what was received (30 s at most).
    pub async fn wait_for(&self, what: &str, check: impl Fn(&[Received]) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if check(&self.received()) {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; received: {:#?}",
                    self.received()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Alert settings for fast tests: polls every 100 ms, short timeouts,
/// retries 100 ms apart.
pub fn fast_config(owner: &str) -> AlertConfig {
    let mut config = AlertConfig::default();
    config.base_url = "http://goflow.test".into();
    config.poll_interval = Duration::from_millis(100);
    config.request_timeout = Duration::from_millis(1500);
    config.max_attempts = 3;
    config.retry_base = Duration::from_millis(100);
    config.retry_max = Duration::from_millis(400);
    config.lease = Duration::from_secs(5);
    config.gap_timeout = Duration::from_millis(500);
    config.owner = owner.into();
    config
}

/// Something running in the background until stopped or dropped.
pub struct Background {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Background {
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Starts an alert service in the background.
pub fn start_alerts(store: &Store, dags: Vec<Dag>, config: AlertConfig) -> Background {
    let registry = Arc::new(Registry::from_dags(dags).unwrap());
    let service = AlertService::new(store.clone(), registry, config).unwrap();
    let (stop, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(service.run(async {
        let _ = rx.await;
    }));
    Background {
        stop: Some(stop),
        task: Some(task),
    }
}

/// A scheduler running in the background.
pub struct RunningScheduler {
    pub background: Background,
    pub finished: mpsc::UnboundedReceiver<RunFinished>,
}

impl RunningScheduler {
    pub fn start(store: &Store, dags: Vec<Dag>, id: &str) -> Self {
        Self::start_with(store, dags, id, |s| s)
    }

    pub fn start_with(
        store: &Store,
        dags: Vec<Dag>,
        id: &str,
        f: impl FnOnce(Scheduler) -> Scheduler,
    ) -> Self {
        let registry = Arc::new(Registry::from_dags(dags).unwrap());
        let mut config = SchedulerConfig::default();
        config.id = id.into();
        config.heartbeat_interval = Duration::from_millis(200);
        config.stale_after = Duration::from_secs(2);
        config.poll_interval = Duration::from_millis(100);
        let mut scheduler = f(Scheduler::new(store.clone(), registry, config));
        let finished = scheduler.finished_runs();
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            scheduler
                .run(async {
                    let _ = rx.await;
                })
                .await
                .expect("scheduler runs");
        });
        RunningScheduler {
            background: Background {
                stop: Some(stop),
                task: Some(task),
            },
            finished,
        }
    }

    pub async fn next_finished(&mut self) -> RunFinished {
        tokio::time::timeout(Duration::from_secs(30), self.finished.recv())
            .await
            .expect("a run finishes within 30s")
            .expect("the scheduler is running")
    }

    pub async fn stop(self) {
        self.background.stop().await
    }
}

/// Creates a manual run of `dag` with `conf`; returns its row id and run id.
pub async fn trigger(store: &Store, dag: &Dag, conf: serde_json::Value) -> (i64, String) {
    let rows = db::sync_registry(
        store,
        &Registry::from_dags([dag.clone()]).unwrap(),
        Utc::now(),
    )
    .await
    .unwrap();
    let version = rows[dag.id().as_str()].version;
    let new = db::new_run(
        dag,
        version,
        RunType::Manual,
        DataInterval::at(Utc::now()),
        conf,
    );
    let row = store.create_run(&new, Utc::now()).await.unwrap();
    (row.id, row.run_id)
}

/// The alerts of `kind` among `bodies`.
pub fn of_kind<'a>(bodies: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    bodies.iter().filter(|b| b["kind"] == kind).collect()
}
