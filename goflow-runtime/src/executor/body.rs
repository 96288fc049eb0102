//! Running a task's body: the one place that does it, for every executor
//! (the in-process executor, and the worker that the local-process and
//! Kubernetes executors start).
//!
//! The body runs in a tokio task of its own, so that a panic (in the
//! function or in its future) or an abort is seen by whoever awaits the
//! [`BodyHandle`] as a failed try instead of tearing it down; its timeout
//! is applied inside that task; it runs in the span it is given, and under
//! the given subscriber when there is one (the in-process executor's log
//! capture, see `capture.rs`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use goflow_core::{Inputs, TaskContext, TaskError, TaskFn, TaskOutput};
use tokio::task::{AbortHandle, JoinError, JoinHandle};
use tracing::instrument::{Instrument, WithSubscriber};

/// What a cancelled try ends with.
const CANCELLED: &str = "the try was cancelled";

/// A body running in its own task: await it for the try's result, or stop
/// it through [`BodyHandle::abort_handle`].
#[derive(Debug)]
pub(crate) struct BodyHandle {
    task: JoinHandle<Result<TaskOutput, TaskError>>,
}

impl BodyHandle {
    /// Stops the body when aborted; the handle then resolves to a
    /// [`TaskError::stopped`].
    pub(crate) fn abort_handle(&self) -> AbortHandle {
        self.task.abort_handle()
    }
}

impl Future for BodyHandle {
    type Output = Result<TaskOutput, TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.task)
            .poll(cx)
            .map(|joined| match joined {
                Ok(result) => result,
                Err(e) => Err(join_error(e)),
            })
    }
}

/// The try's error for a body task that did not return: a panic's
/// message, or a cancellation.
fn join_error(e: JoinError) -> TaskError {
    if e.is_panic() {
        TaskError::panicked(crate::panic_message(&*e.into_panic()))
    } else {
        TaskError::stopped(CANCELLED)
    }
}

/// Starts `body` with `ctx` and `inputs` on the current tokio runtime, cut
/// off after `timeout` ([`TaskError::timed_out`]), in `span`, and under
/// `subscriber` when given (else the default one).
pub(crate) fn spawn_body(
    body: TaskFn,
    ctx: TaskContext,
    inputs: Inputs,
    timeout: Option<Duration>,
    span: tracing::Span,
    subscriber: Option<tracing::Dispatch>,
) -> BodyHandle {
    // The function is called inside the task: a body that panics before
    // returning its future fails the try like one whose future panics.
    let run = async move {
        let fut = body(ctx, &inputs);
        match timeout {
            Some(limit) => tokio::time::timeout(limit, fut)
                .await
                .unwrap_or_else(|_| Err(TaskError::timed_out(limit))),
            None => fut.await,
        }
    };
    let task = match subscriber {
        Some(subscriber) => tokio::spawn(run.with_subscriber(subscriber).instrument(span)),
        None => tokio::spawn(run.instrument(span)),
    };
    BodyHandle { task }
}

#[cfg(test)]
mod tests {
    use goflow_core::{DataInterval, RunId, RunType, TaskErrorKind, TaskFuture};

    use super::*;

    fn ctx() -> TaskContext {
        TaskContext::builder(
            "d".parse().unwrap(),
            RunId::new("r").unwrap(),
            "t".parse().unwrap(),
        )
        .try_number(1)
        .max_tries(1)
        .run_type(RunType::Test)
        .data_interval(DataInterval::at(chrono::Utc::now()))
        .conf(serde_json::json!({}))
        .build()
    }

    fn spawn(body: TaskFn, timeout: Option<Duration>) -> BodyHandle {
        let mut inputs = Inputs::new();
        inputs.insert("up", serde_json::json!(20));
        spawn_body(body, ctx(), inputs, timeout, tracing::Span::none(), None)
    }

    fn add_one(_: TaskContext, inputs: &Inputs) -> TaskFuture {
        let up = inputs.read::<i64>("up");
        Box::pin(async move {
            Ok(TaskOutput {
                value: serde_json::json!(up? + 1),
                follow: None,
            })
        })
    }
    fn slow(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(TaskOutput {
                value: serde_json::Value::Null,
                follow: None,
            })
        })
    }
    fn panics_in_future(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async { panic!("boom in the future") })
    }
    fn panics_in_body(_: TaskContext, _: &Inputs) -> TaskFuture {
        panic!("boom in the body")
    }

    #[tokio::test]
    async fn returns_the_output_of_its_inputs() {
        let out = spawn(add_one, None).await.unwrap();
        assert_eq!(out.value, serde_json::json!(21));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_past_its_timeout_times_out() {
        let started = tokio::time::Instant::now();
        let err = spawn(slow, Some(Duration::from_secs(5))).await.unwrap_err();
        assert_eq!(err.kind(), TaskErrorKind::TimedOut);
        assert_eq!(err.message(), "timed out after 5.00s");
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test]
    async fn panics_in_the_function_and_in_its_future_fail_the_try() {
        for (body, message) in [
            (panics_in_future as TaskFn, "panicked: boom in the future"),
            (panics_in_body as TaskFn, "panicked: boom in the body"),
        ] {
            let err = spawn(body, None).await.unwrap_err();
            assert_eq!(
                (err.kind(), err.message()),
                (TaskErrorKind::Panicked, message)
            );
        }
    }

    #[tokio::test]
    async fn an_aborted_body_is_stopped() {
        let handle = spawn(slow, None);
        handle.abort_handle().abort();
        let err = handle.await.unwrap_err();
        assert_eq!(
            (err.kind(), err.message()),
            (TaskErrorKind::Stopped, CANCELLED)
        );
    }
}
