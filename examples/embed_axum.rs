//! goflow inside an existing axum service: the service keeps its own
//! routes (and its own `/healthz`), goflow's UI and API live under
//! `/goflow`, and the scheduler runs as tasks of the service's runtime.
//!
//! ```text
//! cargo run --example embed_axum
//! # the service:  http://127.0.0.1:3000/
//! # goflow's UI:  http://127.0.0.1:3000/goflow/  (user admin, password: the printed token)
//! ```
//!
//! Tasks that run in a child process or a Kubernetes pod re-execute this
//! binary as a worker: `main` hands such a process to goflow first thing,
//! with `goflow::worker_main_if_requested()`.

use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use goflow::prelude::*;
use goflow::tracing::info;

/// Orders of the last hour (a stand-in for the service's own database).
#[task(retries = 2, retry_delay = "5s")]
fn fetch_orders(ctx: &TaskContext) -> Vec<u32> {
    info!(hour = %ctx.logical_date(), "fetching the hour's orders");
    vec![120, 80, 45]
}

#[task]
fn total(orders: Vec<u32>) -> u32 {
    let total = orders.iter().sum();
    info!(total, "orders totalled");
    total
}

#[dag(schedule = "@hourly", start = "2026-01-01", catchup = false)]
fn orders_rollup() {
    let orders = fetch_orders();
    let sum = total(orders);
}

/// The host service's router, with goflow merged in under `/goflow`, and
/// the running goflow server (shut it down when the service stops).
pub async fn app(database_url: &str) -> Result<(Router, goflow::Server), goflow::ServerError> {
    let goflow = goflow::Server::builder()
        .database_url(database_url)
        .base_path("/goflow")
        .build()
        .await?;
    let app = Router::new()
        .route("/", get(|| async { "the orders service" }))
        .route("/healthz", get(|| async { "orders service ok" }))
        .merge(goflow.router())
        .fallback(|| async { (StatusCode::NOT_FOUND, "no such page in the orders service") });
    Ok((app, goflow))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A worker process (local_process or Kubernetes tries) runs its try
    // and exits here; the service itself goes on.
    goflow::worker_main_if_requested();
    tracing_subscriber_init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let url =
            std::env::var("GOFLOW_DATABASE_URL").unwrap_or_else(|_| "sqlite://embed.db".to_owned());
        let (app, goflow) = app(&url).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
        println!("the service: http://{}/", listener.local_addr()?);
        println!(
            "goflow's UI: http://{}/goflow/ (user {})",
            listener.local_addr()?,
            goflow.web_config().ui_username
        );
        if goflow.api_token().origin == goflow::web::TokenOrigin::Generated {
            println!(
                "API token (also the UI password): {}",
                goflow.api_token().token
            );
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
        goflow.shutdown().await?;
        Ok(())
    })
}

/// The service's log set-up, which goflow's lines join (`RUST_LOG` to
/// filter).
fn tracing_subscriber_init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
}
