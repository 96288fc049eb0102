//! What the facade offers users: authoring, inspection types, and the
//! embedding API.

use goflow::prelude::*;
use goflow::{Dag, DagId, ExecutorKind, RunState, Schedule, TaskState, TriggerRule};
use goflow::{Server, ServerBuilder, ServerError, TriggeredRun};

#[task]
fn one() -> u32 {
    1
}

#[dag]
fn tiny() {
    let value = one();
}

#[allow(dead_code)]
async fn embed() -> Result<(), ServerError> {
    let builder: ServerBuilder = Server::builder()
        .database_url("sqlite::memory:")
        .executor(ExecutorKind::InProcess)
        .base_path("/goflow");
    let server = builder.build().await?;
    let _router = server.router();
    let run: TriggeredRun = server.trigger("tiny", serde_json::json!({}), None).await?;
    let _ = (run.state == RunState::Queued, TaskState::Success, TriggerRule::AllSuccess);
    let _: Option<&Dag> = None;
    let _: Option<&DagId> = None;
    let _: Option<&Schedule> = None;
    server.shutdown().await
}

fn main() {
    goflow::worker_main_if_requested();
}
