//! `examples/embed_axum.rs` as a user runs it: the host service with
//! goflow merged under `/goflow`, served on a socket. A user logs into the
//! UI under the prefix, triggers a run through the API and sees it
//! succeed, while the host's own routes stay the host's.

#[allow(dead_code)]
#[path = "../examples/embed_axum.rs"]
mod embed_axum;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A bare HTTP/1.1 exchange (no client crate: what goes over the wire is
/// what is checked).
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn set_cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }
}

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect::<Vec<_>>();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_owned()
    };
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html.find(&marker).expect("a form field");
    let rest = &html[at + marker.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_serves_goflow_under_a_prefix_and_a_triggered_run_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("embed.db").display());
    let (app, goflow) = embed_axum::app(&url).await.expect("goflow starts");
    let token = goflow.api_token().token.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });

    // The host's routes stay the host's; goflow's probe is under the prefix.
    let host = http(addr, "GET", "/healthz", &[], "").await;
    assert_eq!(
        (host.status, host.body.as_str()),
        (200, "orders service ok")
    );
    let probe = http(addr, "GET", "/goflow/healthz", &[], "").await;
    assert_eq!((probe.status, probe.body.as_str()), (200, "ok"));
    let unknown = http(addr, "GET", "/nope", &[], "").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, "no such page in the orders service");

    // The UI under the prefix: a login redirect, form and cookie there.
    let page = http(addr, "GET", "/goflow/dags", &[], "").await;
    assert_eq!(page.status, 303, "{}", page.body);
    let location = page.header("location").unwrap().to_owned();
    assert!(location.starts_with("/goflow/login"), "{location}");
    let login = http(addr, "GET", &location, &[], "").await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        login.body.contains("action=\"/goflow/login\""),
        "{}",
        login.body
    );
    let login_cookie = cookie_pair(login.set_cookie("goflow_login").unwrap());
    let form = format!(
        "username=admin&password={token}&csrf={}&next={}",
        field(&login.body, "csrf"),
        field(&login.body, "next").replace('/', "%2F"),
    );
    let logged_in = http(
        addr,
        "POST",
        "/goflow/login",
        &[
            ("Cookie", &login_cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        &form,
    )
    .await;
    assert_eq!(logged_in.status, 303, "{}", logged_in.body);
    assert_eq!(logged_in.header("location"), Some("/goflow/dags"));
    let session = logged_in.set_cookie("goflow_session").unwrap();
    assert!(session.contains("Path=/goflow"), "{session}");
    let dags = http(
        addr,
        "GET",
        "/goflow/dags",
        &[("Cookie", &cookie_pair(session))],
        "",
    )
    .await;
    assert_eq!(dags.status, 200);
    assert!(dags.body.contains("orders-rollup"), "{}", dags.body);
    assert!(
        dags.body.contains("href=\"/goflow/dags/orders-rollup\""),
        "links carry the prefix"
    );
    assert!(
        !dags.body.contains("href=\"/dags"),
        "no link escapes the prefix"
    );

    // A run triggered through the API under the prefix succeeds.
    let bearer = format!("Bearer {token}");
    let created = http(
        addr,
        "POST",
        "/goflow/api/v1/dags/orders-rollup/runs",
        &[
            ("Authorization", &bearer),
            ("Content-Type", "application/json"),
        ],
        "{}",
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let run: serde_json::Value = serde_json::from_str(&created.body).unwrap();
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    let path = format!(
        "/goflow/api/v1/dags/orders-rollup/runs/{}",
        run_id.replace(':', "%3A").replace('+', "%2B")
    );
    let mut state = String::new();
    for _ in 0..200 {
        let detail = http(addr, "GET", &path, &[("Authorization", &bearer)], "").await;
        assert_eq!(detail.status, 200, "{}", detail.body);
        let detail: serde_json::Value = serde_json::from_str(&detail.body).unwrap();
        state = detail["state"].as_str().unwrap_or_default().to_owned();
        if state == "success" || state == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "success");

    // And from host code.
    let triggered = goflow
        .trigger(
            "orders-rollup",
            serde_json::json!({"source": "host"}),
            Some("2026-03-01T10:00:00Z".parse().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(triggered.run_id, "manual__2026-03-01T10:00:00Z");
    let unknown = goflow
        .trigger("no-such-dag", serde_json::json!({}), None)
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("orders-rollup"), "{unknown}");

    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    goflow.shutdown().await.unwrap();
}

/// The example's binary, built (with this test's features) beside this
/// test's: `cargo test` builds examples only when it runs every target.
fn example_binary() -> std::path::PathBuf {
    let features: Vec<&str> = [
        ("sqlite", cfg!(feature = "sqlite")),
        ("postgres", cfg!(feature = "postgres")),
        ("kubernetes", cfg!(feature = "kubernetes")),
        ("elasticsearch", cfg!(feature = "elasticsearch")),
        ("otel", cfg!(feature = "otel")),
        ("alerts-http", cfg!(feature = "alerts-http")),
        ("alerts-smtp", cfg!(feature = "alerts-smtp")),
        ("testing", cfg!(feature = "testing")),
    ]
    .into_iter()
    .filter_map(|(name, on)| on.then_some(name))
    .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--example",
            "embed_axum",
            "--no-default-features",
        ])
        .args(["--features", &features.join(",")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo runs");
    assert!(status.success(), "the example builds");
    let deps = std::env::current_exe().unwrap();
    let debug = deps.parent().unwrap().parent().unwrap();
    debug.join("examples").join("embed_axum")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_binary_is_its_own_local_process_worker() {
    let binary = example_binary();
    assert!(binary.exists(), "{} was built", binary.display());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("workers.db").display());
    // The host re-executed as `tasks run ...`: `worker_main_if_requested`
    // at the top of its `main` runs the try and exits.
    let local = goflow::executor::LocalProcessExecutor::with_program(binary, Vec::new());
    let goflow = goflow::Server::builder()
        .database_url(url)
        .executor(goflow::ExecutorKind::LocalProcess)
        .with_executor(std::sync::Arc::new(local))
        .build()
        .await
        .unwrap();
    let run = goflow
        .trigger("orders-rollup", serde_json::json!({}), None)
        .await
        .unwrap();
    let mut state = None;
    for _ in 0..300 {
        state = goflow
            .run_state("orders-rollup", &run.run_id)
            .await
            .unwrap();
        if state.is_some_and(|s| s.is_terminal()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, Some(goflow::RunState::Success));
    goflow.shutdown().await.unwrap();
}
