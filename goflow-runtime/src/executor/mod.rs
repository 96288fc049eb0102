//! Executors run task tries: in this process, in a child process, or (with
//! the `kubernetes` feature) as Kubernetes Jobs. The scheduler hands
//! each a [`Launch`] and learns what happened through [`ExecutorEvent`]s.
//!
//! An executor owns timeouts (it knows how to stop what it started) and
//! must always end a launched try with exactly one
//! [`ExecutorEvent::Finished`], also when the try is cancelled.

pub(crate) mod body;
mod capture;
pub mod in_process;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod local_process;

use std::sync::Arc;

use goflow_core::{Dag, ExecutorKind, Inputs, TaskContext, TaskError, TaskOutput};
use goflow_store::LogStream;
use tokio::sync::mpsc;

pub use in_process::InProcessExecutor;
#[cfg(feature = "kubernetes")]
pub use kubernetes::KubernetesExecutor;
pub use local_process::LocalProcessExecutor;

/// One try of one task instance.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TryKey {
    /// The run's row id in the store.
    pub run: i64,
    /// Index of the task in [`Dag::tasks`].
    pub task: usize,
    /// The try number, from 1.
    pub try_number: u32,
}

/// Everything an executor needs to run a try.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Which try.
    pub key: TryKey,
    /// The DAG the task belongs to.
    pub dag: Arc<Dag>,
    /// The task's context.
    pub ctx: TaskContext,
    /// The outputs of its data upstreams.
    pub inputs: Inputs,
}

/// What a try measured about itself. Fields are `None` when the executor
/// cannot know them (an in-process task has no exit code).
///
/// Non-exhaustive: start from [`TryMetrics::default`] and set what your
/// executor measures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TryMetrics {
    /// The process's exit code.
    pub exit_code: Option<i32>,
    /// Peak resident memory, in bytes.
    pub peak_memory_bytes: Option<u64>,
    /// User CPU time, in milliseconds.
    pub cpu_user_ms: Option<u64>,
    /// System CPU time, in milliseconds.
    pub cpu_system_ms: Option<u64>,
    /// CPU the try's pod requested, in millicores (Kubernetes only).
    pub cpu_request_millis: Option<u64>,
    /// Memory the try's pod requested, in bytes (Kubernetes only).
    pub memory_request_bytes: Option<u64>,
    /// The try's pod's CPU limit, in millicores (Kubernetes only).
    pub cpu_limit_millis: Option<u64>,
    /// The try's pod's memory limit, in bytes (Kubernetes only).
    pub memory_limit_bytes: Option<u64>,
}

/// What the store knows of a try that an earlier scheduler process
/// launched, for [`Executor::adopt`].
///
/// Non-exhaustive: the store may learn more about a try; in tests, start
/// from [`Adoption::default`] and set the fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Adoption {
    /// The executor handle stored for it (a Job name, a pid); empty when
    /// none was recorded.
    pub handle: String,
    /// Lines of the try's output (`stdout` and `stderr`) in goflow's log
    /// already: an executor that replays the output from its start skips
    /// them, so no line is stored twice.
    pub logged_lines: u64,
}

/// What an executor reports about a try.
#[derive(Debug)]
pub enum ExecutorEvent {
    /// The try is running; `handle` names it for the executor (a pid, a
    /// Job name).
    Started {
        /// Which try.
        key: TryKey,
        /// The executor's handle on it.
        handle: Option<String>,
    },
    /// The try wrote a line.
    Log {
        /// Which try.
        key: TryKey,
        /// Its stream.
        stream: LogStream,
        /// The line, without its newline.
        line: String,
    },
    /// The try ended. Sent exactly once per launch.
    Finished {
        /// Which try.
        key: TryKey,
        /// Its output, or why it did not succeed.
        result: Result<TaskOutput, TaskError>,
        /// What it measured.
        metrics: TryMetrics,
    },
}

/// How many events the scheduler's channel holds before senders wait.
pub const EVENT_CAPACITY: usize = 8192;

/// The receiving end of [`event_channel`].
pub type EventReceiver = mpsc::Receiver<ExecutorEvent>;

/// A bounded channel of executor events: a try that prints faster than the
/// scheduler stores its lines makes its executor wait
/// ([`EventSender::send`]) instead of growing the scheduler's memory.
pub fn event_channel(capacity: usize) -> (EventSender, EventReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (EventSender(tx), rx)
}

/// The sending end executors report on (see [`event_channel`]).
#[derive(Clone, Debug)]
pub struct EventSender(mpsc::Sender<ExecutorEvent>);

impl EventSender {
    /// Sends `event`, waiting while the channel is full. Fails (giving the
    /// event back) only when the scheduler is gone.
    pub async fn send(&self, event: ExecutorEvent) -> Result<(), ExecutorEvent> {
        self.0.send(event).await.map_err(|e| e.0)
    }

    /// Sends `event` from code that cannot wait (an executor's `launch`,
    /// code holding a lock): at once while there is room, else from a task
    /// of its own that waits for room. Events that go the second way may
    /// arrive after later ones; the scheduler takes a try's events in any
    /// order. Needs a tokio runtime when the channel is full.
    pub fn send_now(&self, event: ExecutorEvent) {
        match self.0.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                let tx = self.0.clone();
                tokio::spawn(async move {
                    let _ = tx.send(event).await;
                });
            }
        }
    }

    /// Waits until the channel has room (or the scheduler is gone), so
    /// that a loop sending with [`EventSender::send_now`] from under a lock
    /// follows the scheduler's pace.
    pub async fn room(&self) {
        let _ = self.0.reserve().await;
    }
}

/// Runs task tries.
pub trait Executor: Send + Sync + 'static {
    /// Which kind of executor this is.
    fn kind(&self) -> ExecutorKind;

    /// Starts a try in the background and returns at once; the try's
    /// events go to `events`. The try's timeout
    /// (`launch.dag.tasks()[key.task].options.timeout`) is the executor's
    /// to enforce.
    fn launch(&self, launch: Launch, events: EventSender);

    /// Stops a running try. It still ends with a `Finished` event (with a
    /// failed result) unless it had already finished.
    fn cancel(&self, key: &TryKey);

    /// Offers the executor a try that an earlier scheduler process launched
    /// and did not see finish (found `queued` or `running` on recovery),
    /// with what the store knows of it. Returns `true` when the executor
    /// takes the try over: it then reports its events to `events` and ends
    /// it with exactly one [`ExecutorEvent::Finished`], as if it had
    /// launched it. Returns `false` (the default) when it cannot follow
    /// work it did not start; the scheduler then counts the try as lost.
    fn adopt(&self, launch: Launch, previous: &Adoption, events: EventSender) -> bool {
        let _ = (launch, previous, events);
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn log(n: u32) -> ExecutorEvent {
        ExecutorEvent::Log {
            key: TryKey {
                run: 1,
                task: 0,
                try_number: 1,
            },
            stream: LogStream::Stdout,
            line: n.to_string(),
        }
    }

    fn line(e: ExecutorEvent) -> String {
        match e {
            ExecutorEvent::Log { line, .. } => line,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_channel_makes_senders_wait_instead_of_growing() {
        let (tx, mut rx) = event_channel(2);
        tx.send(log(1)).await.unwrap();
        tx.send(log(2)).await.unwrap();
        let third = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(log(3)).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(
            !third.is_finished(),
            "the sender waits while the channel is full"
        );
        assert_eq!(line(rx.recv().await.unwrap()), "1");
        third.await.unwrap().unwrap();
        assert_eq!(line(rx.recv().await.unwrap()), "2");
        assert_eq!(line(rx.recv().await.unwrap()), "3");
    }

    #[tokio::test]
    async fn send_now_never_loses_an_event_when_full() {
        let (tx, mut rx) = event_channel(1);
        for n in 0..5 {
            tx.send_now(log(n));
        }
        let mut got: Vec<String> = Vec::new();
        for _ in 0..5 {
            got.push(line(rx.recv().await.unwrap()));
        }
        got.sort();
        assert_eq!(got, ["0", "1", "2", "3", "4"]);
        drop(rx);
        // The scheduler gone: sending is a no-op, not a panic.
        tx.send_now(log(9));
        assert!(tx.send(log(9)).await.is_err());
    }
}
