//! Logs and traces of a real scheduler run: JSON log lines carry the run's
//! and the try's span fields; with the `otel` feature, the run is one
//! trace whose tries are child spans.
//!
//! Each test runs on a current-thread runtime with its subscriber as the
//! thread's default (`set_default`), so the scheduler, the executor and
//! the task bodies all create their spans and events under it, and the
//! tests of this binary do not see each other's.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goflow_core::{
    Dag, DagBuilder, Inputs, RunState, TaskContext, TaskFuture, TaskOptions, TaskOutput, TaskSpec,
};
use goflow_runtime::scheduler::{Scheduler, SchedulerConfig};
use goflow_runtime::telemetry::{self, LogFormat};
use goflow_runtime::Registry;
use goflow_store::testing::sqlite;
use tokio::sync::oneshot;
use tracing_subscriber::prelude::*;

use running::trigger;

mod running;

fn numbers(_: TaskContext, _: &Inputs) -> TaskFuture {
    Box::pin(async {
        tracing::info!(count = 3, "numbers extracted");
        Ok(TaskOutput {
            value: serde_json::json!([1, 2, 3]),
            follow: None,
        })
    })
}

fn sum(_: TaskContext, inputs: &Inputs) -> TaskFuture {
    let v: Result<Vec<u32>, _> = inputs.read("numbers");
    Box::pin(async move {
        Ok(TaskOutput {
            value: serde_json::json!(v?.iter().sum::<u32>()),
            follow: None,
        })
    })
}

fn double(_: TaskContext, inputs: &Inputs) -> TaskFuture {
    let v: Result<u32, _> = inputs.read("sum");
    Box::pin(async move {
        Ok(TaskOutput {
            value: serde_json::json!(v? * 2),
            follow: None,
        })
    })
}

fn spec(id: &str, data: &[&str], run: fn(TaskContext, &Inputs) -> TaskFuture) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        function: "f",
        options: TaskOptions::default(),
        data_upstream: data.iter().map(|s| s.to_string()).collect(),
        run,
    }
}

/// `numbers -> sum -> double`.
fn chain() -> Dag {
    DagBuilder::new("chain")
        .task(spec("numbers", &[], numbers))
        .task(spec("sum", &["numbers"], sum))
        .task(spec("double", &["sum"], double))
        .build()
        .unwrap()
}

/// Triggers a run of `dag`, runs a scheduler until it finishes
/// successfully, stops the scheduler and gives the run's `run_id`.
async fn run_to_success(dag: Dag) -> String {
    let db = sqlite(true).await;
    let store = db.store.clone();
    let run = trigger(&store, &dag).await;
    let registry = Arc::new(Registry::from_dags([dag]).unwrap());
    let mut config = SchedulerConfig::default();
    config.id = "telemetry".into();
    config.heartbeat_interval = Duration::from_millis(200);
    config.stale_after = Duration::from_secs(2);
    config.poll_interval = Duration::from_millis(100);
    let mut scheduler = Scheduler::new(store.clone(), registry, config);
    let mut finished = scheduler.finished_runs();
    let (stop, stopped) = oneshot::channel::<()>();
    let scheduler = tokio::spawn(async move {
        scheduler
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("the scheduler runs");
    });
    let done = tokio::time::timeout(Duration::from_secs(30), finished.recv())
        .await
        .expect("the run finishes within 30s")
        .expect("the scheduler is running");
    assert_eq!((done.run, done.state), (run, RunState::Success));
    let _ = stop.send(());
    scheduler.await.unwrap();
    store.get_run(run).await.unwrap().unwrap().run_id
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"))
            })
            .collect()
    }
}

#[tokio::test]
async fn json_log_lines_carry_the_run_and_the_try() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::registry()
        .with(telemetry::log_layer(LogFormat::Json, move || {
            writer.clone()
        }))
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    let _default = tracing::subscriber::set_default(subscriber);

    let run_id = run_to_success(chain()).await;

    let lines = buffer.lines();
    let line = lines
        .iter()
        .find(|l| l["fields"]["message"] == "numbers extracted")
        .unwrap_or_else(|| panic!("the task's line is in the log: {lines:#?}"));
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["count"], 3);
    // The current span is the try...
    assert_eq!(line["span"]["name"], "try", "{line}");
    assert_eq!(line["span"]["task"], "numbers", "{line}");
    assert_eq!(line["span"]["try"], 1, "{line}");
    // ...inside the run.
    let spans = line["spans"].as_array().expect("a span list");
    let run = spans
        .iter()
        .find(|s| s["name"] == "run")
        .unwrap_or_else(|| panic!("the run's span is in the list: {line}"));
    assert_eq!(run["dag"], "chain", "{line}");
    assert_eq!(run["run"], run_id.as_str(), "{line}");
    assert_eq!(spans.last(), Some(&line["span"]), "the try is innermost");
}

#[test]
fn text_and_json_formats_are_the_cli_values() {
    use clap::ValueEnum as _;
    assert_eq!(LogFormat::default(), LogFormat::Text);
    assert_eq!(LogFormat::from_str("json", false), Ok(LogFormat::Json));
    assert!(LogFormat::from_str("yaml", false).is_err());
}

#[test]
fn log_format_is_a_global_option() {
    use clap::Parser as _;
    use goflow_runtime::cli::Cli;
    // Given after the subcommand, as a global option may be.
    let cli = Cli::try_parse_from(["goflow", "dags", "list", "--log-format", "json"]).unwrap();
    assert_eq!(cli.log_format, LogFormat::Json);
    let e = Cli::try_parse_from(["goflow", "--log-format", "yaml", "dags", "list"]).unwrap_err();
    assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
    assert_eq!(e.exit_code(), 2);
}

#[cfg(feature = "otel")]
mod otel {
    use std::collections::HashSet;

    use opentelemetry::trace::{SpanId, TraceId};
    use opentelemetry::Value;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

    use super::*;

    fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| &kv.value)
    }

    fn attr_str(span: &SpanData, key: &str) -> Option<String> {
        attr(span, key).map(|v| v.as_str().into_owned())
    }

    #[tokio::test]
    async fn a_run_is_one_trace_with_a_child_span_per_try() {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(telemetry::trace_layer(&provider));
        let _default = tracing::subscriber::set_default(subscriber);

        let run_id = run_to_success(chain()).await;

        provider.force_flush().unwrap();
        let spans = exporter.get_finished_spans().unwrap();
        let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();

        let runs: Vec<_> = spans.iter().filter(|s| s.name == "run").collect();
        assert_eq!(runs.len(), 1, "one run span: {names:?}");
        let run = runs[0];
        assert_eq!(attr_str(run, "dag").as_deref(), Some("chain"));
        assert_eq!(attr_str(run, "run").as_deref(), Some(run_id.as_str()));
        assert_eq!(
            run.parent_span_id,
            SpanId::INVALID,
            "the run is the root of its trace"
        );
        let trace = run.span_context.trace_id();
        assert_ne!(trace, TraceId::INVALID);

        let tries: Vec<_> = spans.iter().filter(|s| s.name == "try").collect();
        assert_eq!(tries.len(), 3, "one try span per try: {names:?}");
        let mut tasks = HashSet::new();
        for t in &tries {
            assert_eq!(
                t.span_context.trace_id(),
                trace,
                "the try is in the run's trace"
            );
            assert_eq!(
                t.parent_span_id,
                run.span_context.span_id(),
                "the try's parent is the run"
            );
            // A number, as OpenTelemetry's integers are.
            assert_eq!(attr(t, "try"), Some(&Value::I64(1)), "{:?}", t.attributes);
            tasks.insert(attr_str(t, "task").expect("a `task` attribute"));
        }
        assert_eq!(
            tasks,
            HashSet::from(["numbers", "sum", "double"].map(String::from))
        );

        // The task's own line is an event of its try's span.
        let numbers = tries
            .iter()
            .find(|t| attr_str(t, "task").as_deref() == Some("numbers"))
            .unwrap();
        assert!(
            numbers.events.iter().any(|e| e.name == "numbers extracted"),
            "{:?}",
            numbers.events
        );

        // Everything else exported in the run's trace descends from it.
        let in_trace: HashSet<_> = spans
            .iter()
            .filter(|s| s.span_context.trace_id() == trace)
            .map(|s| s.span_context.span_id())
            .collect();
        for s in spans.iter().filter(|s| s.span_context.trace_id() == trace) {
            assert!(
                s.parent_span_id == SpanId::INVALID && s.name == "run"
                    || in_trace.contains(&s.parent_span_id),
                "{} is attached to the run's trace",
                s.name
            );
        }
        provider.shutdown().unwrap();
    }

    #[test]
    fn no_endpoint_no_export() {
        // The variables are read, never set: this binary's other tests
        // do not depend on them.
        if [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ]
        .iter()
        .any(|v| std::env::var_os(v).is_some())
        {
            return;
        }
        let (layer, _guard) = telemetry::otlp_from_env::<tracing_subscriber::Registry>().unwrap();
        assert!(layer.is_none());
    }
}
