//! A try's pod log in goflow's log: followed while the task container runs,
//! so that the UI shows it live, and completed when the try ends.
//!
//! Lines are numbered from the start of the container's log. The follower
//! sends each complete line the first time it reads it; when the try ends,
//! the driver's `finish` stops the follower and reads the whole log once
//! more, sending only the lines after those already read. A stream the
//! API server drops is opened again (and read past what was read), so
//! nothing is lost and no line is sent twice. An adopted try starts after
//! the lines an earlier scheduler process stored.

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use futures::{AsyncBufReadExt, AsyncReadExt};
use goflow_store::LogStream;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};

use super::driver::Shared;
use super::manifest::CONTAINER;
use crate::executor::{EventSender, ExecutorEvent, TryKey};

/// How long the follower waits before opening a dropped stream again;
/// doubled while streams bring nothing new (or cannot be opened, e.g.
/// without RBAC for `pods/log`), up to [`REOPEN_AT_MOST`].
const REOPEN_AFTER: Duration = Duration::from_secs(2);
const REOPEN_AT_MOST: Duration = Duration::from_secs(60);

/// How far a try's log has been read.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Lines read so far: sent, or skipped as stored by an earlier process.
    read: u64,
    /// Lines an earlier process stored; read but not sent.
    skip: u64,
}

impl Progress {
    /// Nothing read yet; the first `skip` lines are in goflow's log already.
    pub(crate) fn after(skip: u64) -> Arc<Mutex<Progress>> {
        Arc::new(Mutex::new(Progress { read: 0, skip }))
    }
}

/// Line `number` (from 1) of the log, read: sends it unless it was read
/// before or was stored by an earlier process.
fn deliver(
    progress: &Mutex<Progress>,
    number: u64,
    line: &str,
    key: &TryKey,
    events: &EventSender,
) {
    // Sent under the lock: once `finish` holds it, no line is in flight.
    let mut p = progress.lock().unwrap_or_else(PoisonError::into_inner);
    if number <= p.read {
        return;
    }
    p.read = number;
    if number > p.skip {
        events.send_now(ExecutorEvent::Log {
            key: key.clone(),
            stream: LogStream::Stdout,
            line: line.to_owned(),
        });
    }
}

/// Sends the lines of `text` (the whole log) not read yet, and stops
/// counting: the try is over.
pub(crate) fn complete(progress: &Mutex<Progress>, text: &str, key: &TryKey, events: &EventSender) {
    for (i, line) in text.lines().enumerate() {
        deliver(progress, i as u64 + 1, line, key, events);
    }
}

/// Follows the task container's log of a pod.
pub(crate) struct Follower {
    /// The executor: the follower stops when it no longer tracks `job`.
    pub shared: Weak<Shared>,
    /// The try's Job.
    pub job: Arc<str>,
    /// The pods of the Job's namespace.
    pub pods: Api<Pod>,
    /// The pod.
    pub pod: String,
    /// The most bytes of the log kept.
    pub limit_bytes: i64,
    /// How far the try's log has been read.
    pub progress: Arc<Mutex<Progress>>,
    /// The try.
    pub key: TryKey,
    /// Where its lines go.
    pub events: EventSender,
}

impl Follower {
    /// Follows until aborted, until the try is no longer tracked, or until
    /// the log passes its limit.
    pub(crate) async fn run(self) {
        let Follower {
            shared,
            job,
            pods,
            pod,
            limit_bytes,
            progress,
            key,
            events,
        } = self;
        let params = LogParams {
            container: Some(CONTAINER.to_owned()),
            follow: true,
            limit_bytes: Some(limit_bytes),
            ..LogParams::default()
        };
        let limit = u64::try_from(limit_bytes).unwrap_or(0);
        let mut line = Vec::new();
        let mut wait = REOPEN_AFTER;
        loop {
            let read_before = progress.lock().unwrap_or_else(PoisonError::into_inner).read;
            if let Ok(stream) = pods.log_stream(&pod, &params).await {
                // At most the limit, as the final copy reads.
                let mut stream = std::pin::pin!(stream.take(limit));
                let (mut number, mut bytes) = (0, 0);
                loop {
                    line.clear();
                    match stream.read_until(b'\n', &mut line).await {
                        // A line without its newline may still be written to:
                        // the final copy reads it whole.
                        Ok(n) if n > 0 && line.ends_with(b"\n") => {
                            number += 1;
                            bytes += n as u64;
                            let text = String::from_utf8_lossy(&line);
                            let text = text.trim_end_matches('\n').trim_end_matches('\r');
                            // At the scheduler's pace: the pod's log waits.
                            events.room().await;
                            deliver(&progress, number, text, &key, &events);
                        }
                        _ => break,
                    }
                }
                if bytes + line.len() as u64 >= limit {
                    // The log is past what is kept: reading it again from the
                    // start would only find the same lines.
                    return;
                }
            }
            // The container ended (and `finish` is about to stop this task),
            // or the stream was dropped: follow again while the try runs.
            let read = progress.lock().unwrap_or_else(PoisonError::into_inner).read;
            wait = if read > read_before {
                REOPEN_AFTER
            } else {
                (wait * 2).min(REOPEN_AT_MOST)
            };
            tokio::time::sleep(wait).await;
            match shared.upgrade() {
                Some(shared) if shared.is_tracked(&job) => {}
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TryKey {
        TryKey {
            run: 1,
            task: 0,
            try_number: 1,
        }
    }

    fn sent(rx: &mut crate::executor::EventReceiver) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(event) = rx.try_recv() {
            if let ExecutorEvent::Log { line, .. } = event {
                lines.push(line);
            }
        }
        lines
    }

    #[test]
    fn each_line_is_sent_once_from_a_stream_reopened_or_the_final_copy() {
        let (tx, mut rx) = crate::executor::event_channel(64);
        let progress = Progress::after(0);
        deliver(&progress, 1, "a", &key(), &tx);
        deliver(&progress, 2, "b", &key(), &tx);
        // A reopened stream starts from the beginning again.
        deliver(&progress, 1, "a", &key(), &tx);
        deliver(&progress, 2, "b", &key(), &tx);
        deliver(&progress, 3, "c", &key(), &tx);
        complete(&progress, "a\nb\nc\nd\r\ne", &key(), &tx);
        assert_eq!(sent(&mut rx), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn lines_an_earlier_process_stored_are_not_sent_again() {
        let (tx, mut rx) = crate::executor::event_channel(64);
        let progress = Progress::after(2);
        deliver(&progress, 1, "a", &key(), &tx);
        complete(&progress, "a\nb\nc\n", &key(), &tx);
        assert_eq!(sent(&mut rx), ["c"]);
    }
}
