//! The in-process executor: a try is a tokio task of the scheduler's own
//! runtime (started by `body.rs`, as every executor's tries are). The
//! fastest, and what `dags test` and the quickstart use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use goflow_core::ExecutorKind;
use tokio::task::AbortHandle;

use super::{EventSender, Executor, ExecutorEvent, Launch, TryKey, TryMetrics};

/// Runs tries on the current tokio runtime.
#[derive(Clone, Debug, Default)]
pub struct InProcessExecutor {
    running: Arc<Mutex<HashMap<TryKey, AbortHandle>>>,
}

impl InProcessExecutor {
    /// A new executor with nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tries currently running.
    pub fn running(&self) -> usize {
        self.running.lock().map(|m| m.len()).unwrap_or(0)
    }
}

impl Executor for InProcessExecutor {
    fn kind(&self) -> ExecutorKind {
        ExecutorKind::InProcess
    }

    fn launch(&self, launch: Launch, events: EventSender) {
        let Launch {
            key,
            dag,
            ctx,
            inputs,
        } = launch;
        let node = &dag.tasks()[key.task];
        events.send_now(ExecutorEvent::Started {
            key: key.clone(),
            handle: None,
        });
        // The body runs in the try's span (the scheduler's, current here),
        // and what it logs with `tracing` goes to the try's log too.
        let capture = super::capture::Capture::around_current(key.clone(), events.clone());
        let body = super::body::spawn_body(
            node.run,
            ctx,
            inputs,
            node.options.timeout,
            tracing::Span::current(),
            Some(capture),
        );
        if let Ok(mut running) = self.running.lock() {
            running.insert(key.clone(), body.abort_handle());
        }
        let running = Arc::clone(&self.running);
        tokio::spawn(async move {
            let result = body.await;
            if let Ok(mut running) = running.lock() {
                running.remove(&key);
            }
            let _ = events
                .send(ExecutorEvent::Finished {
                    key,
                    result,
                    metrics: TryMetrics::default(),
                })
                .await;
        });
    }

    fn cancel(&self, key: &TryKey) {
        if let Some(handle) = self.running.lock().ok().and_then(|m| m.get(key).cloned()) {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use goflow_core::{
        DagBuilder, DataInterval, Inputs, RunId, RunType, TaskContext, TaskError, TaskFuture,
        TaskOptions, TaskOutput, TaskSpec,
    };

    use super::*;

    fn ok(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async {
            Ok(TaskOutput {
                value: serde_json::json!(7),
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
    fn boom(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async { panic!("kaboom") })
    }

    fn launch(run: fn(TaskContext, &Inputs) -> TaskFuture, timeout: Option<Duration>) -> Launch {
        let dag = DagBuilder::new("d")
            .task(TaskSpec {
                id: "t".into(),
                function: "t",
                options: TaskOptions {
                    timeout,
                    ..Default::default()
                },
                data_upstream: vec![],
                run,
            })
            .build()
            .unwrap();
        Launch {
            key: TryKey {
                run: 1,
                task: 0,
                try_number: 1,
            },
            ctx: TaskContext::builder(
                dag.id().clone(),
                RunId::new("r").unwrap(),
                dag.tasks()[0].id.clone(),
            )
            .try_number(1)
            .max_tries(1)
            .run_type(RunType::Manual)
            .data_interval(DataInterval::at(chrono::Utc::now()))
            .conf(serde_json::json!({}))
            .build(),
            dag: Arc::new(dag),
            inputs: Inputs::new(),
        }
    }

    async fn finished(
        rx: &mut crate::executor::EventReceiver,
    ) -> Result<serde_json::Value, TaskError> {
        loop {
            match rx.recv().await.expect("a Finished event") {
                ExecutorEvent::Finished { result, .. } => return result.map(|o| o.value),
                _ => continue,
            }
        }
    }

    #[tokio::test]
    async fn reports_start_and_output() {
        let (tx, mut rx) = crate::executor::event_channel(64);
        InProcessExecutor::new().launch(launch(ok, None), tx);
        assert!(matches!(
            rx.recv().await,
            Some(ExecutorEvent::Started { .. })
        ));
        assert_eq!(finished(&mut rx).await.unwrap(), serde_json::json!(7));
    }

    #[tokio::test(start_paused = true)]
    async fn times_out() {
        let (tx, mut rx) = crate::executor::event_channel(64);
        InProcessExecutor::new().launch(launch(slow, Some(Duration::from_secs(5))), tx);
        let err = finished(&mut rx).await.unwrap_err();
        assert_eq!(err.kind(), goflow_core::TaskErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn a_panic_is_a_failure() {
        let (tx, mut rx) = crate::executor::event_channel(64);
        InProcessExecutor::new().launch(launch(boom, None), tx);
        let err = finished(&mut rx).await.unwrap_err();
        assert!(err.to_string().contains("kaboom"), "{err}");
    }

    #[tokio::test]
    async fn cancel_ends_the_try() {
        let (tx, mut rx) = crate::executor::event_channel(64);
        let exec = InProcessExecutor::new();
        let l = launch(slow, None);
        let key = l.key.clone();
        exec.launch(l, tx);
        assert!(matches!(
            rx.recv().await,
            Some(ExecutorEvent::Started { .. })
        ));
        exec.cancel(&key);
        let err = finished(&mut rx).await.unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
        assert_eq!(exec.running(), 0);
    }
}
