//! Capturing an in-process task's `tracing` events into its try's log.
//!
//! A task that runs in the scheduler's own process cannot be told apart by
//! its stdout (`println!` goes to the process's stdout, shared by every
//! task). What it logs with `tracing` can: while its future is polled, the
//! default subscriber is a [`Capture`] that turns each event at `INFO` or
//! above into a log line of the try (`INFO target: message key=value`) and
//! hands every call on to the subscriber that was the default before, so
//! the scheduler's own log still has the event, in the try's span.

use std::fmt::Write as _;

use goflow_store::LogStream;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Level, Metadata, Subscriber};

use super::{EventSender, ExecutorEvent, TryKey};

/// The least severe level captured into a try's log.
const CAPTURED: Level = Level::INFO;

/// The subscriber an in-process try's future runs under (see the module
/// docs).
pub(crate) struct Capture {
    inner: Dispatch,
    key: TryKey,
    events: EventSender,
}

impl Capture {
    /// A subscriber that captures into the log of try `key` and passes
    /// everything on to the current default subscriber.
    pub(crate) fn around_current(key: TryKey, events: EventSender) -> Dispatch {
        let inner = tracing::dispatcher::get_default(Dispatch::clone);
        Dispatch::new(Capture { inner, key, events })
    }

    fn captures(metadata: &Metadata<'_>) -> bool {
        metadata.is_event() && *metadata.level() <= CAPTURED
    }
}

impl Subscriber for Capture {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        let inner = self.inner.register_callsite(metadata);
        if Self::captures(metadata) && !inner.is_always() {
            Interest::sometimes()
        } else {
            inner
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        Self::captures(metadata) || self.inner.enabled(metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        // What every subscriber asked for so far, and what is captured.
        Some(LevelFilter::current().max(LevelFilter::from_level(CAPTURED)))
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        self.inner.new_span(span)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        self.inner.record(span, values);
    }

    fn record_follows_from(&self, span: &Id, follows: &Id) {
        self.inner.record_follows_from(span, follows);
    }

    fn event(&self, event: &Event<'_>) {
        let metadata = event.metadata();
        if Self::captures(metadata) {
            self.events.send_now(ExecutorEvent::Log {
                key: self.key.clone(),
                stream: LogStream::Stdout,
                line: line_of(event),
            });
        }
        if self.inner.enabled(metadata) {
            self.inner.event(event);
        }
    }

    fn enter(&self, span: &Id) {
        self.inner.enter(span);
    }

    fn exit(&self, span: &Id) {
        self.inner.exit(span);
    }

    fn clone_span(&self, id: &Id) -> Id {
        self.inner.clone_span(id)
    }

    fn try_close(&self, id: Id) -> bool {
        self.inner.try_close(id)
    }

    fn current_span(&self) -> tracing_core::span::Current {
        self.inner.current_span()
    }
}

/// `LEVEL target: message key=value ...`, the form
/// [`goflow_store::LogLevel::of_line`] reads the level from.
fn line_of(event: &Event<'_>) -> String {
    let metadata = event.metadata();
    let mut visitor = Line::default();
    event.record(&mut visitor);
    let mut line = format!(
        "{} {}: {}",
        metadata.level(),
        metadata.target(),
        visitor.message
    );
    if !visitor.fields.is_empty() {
        line.push(' ');
        line.push_str(&visitor.fields);
    }
    line
}

#[derive(Default)]
struct Line {
    message: String,
    fields: String,
}

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.field(field, format_args!("{value:?}"));
        }
    }
}

impl Line {
    fn field(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={}", field.name(), value);
    }
}

#[cfg(test)]
mod tests {
    use tracing::instrument::WithSubscriber;

    use super::*;
    use crate::executor::event_channel;

    #[tokio::test]
    async fn events_at_info_and_above_become_the_tries_log_lines() {
        let (tx, mut rx) = event_channel(16);
        let key = TryKey {
            run: 1,
            task: 0,
            try_number: 1,
        };
        async {
            tracing::debug!("too fine to keep");
            tracing::info!(rows = 120, region = "north", "read the file");
            tokio::task::yield_now().await;
            tracing::warn!("slow disk");
            tracing::error!(code = 7, "gave up");
        }
        .with_subscriber(Capture::around_current(key.clone(), tx))
        .await;
        let mut lines = Vec::new();
        while let Ok(ExecutorEvent::Log { key: k, line, .. }) = rx.try_recv() {
            assert_eq!(k, key);
            lines.push(line);
        }
        let target = module_path!();
        assert_eq!(
            lines,
            [
                format!("INFO {target}: read the file rows=120 region=\"north\""),
                format!("WARN {target}: slow disk"),
                format!("ERROR {target}: gave up code=7"),
            ]
        );
        assert_eq!(
            goflow_store::LogLevel::of_line(&lines[1]),
            Some(goflow_store::LogLevel::Warn)
        );
    }
}
