//! Logs and traces: the `tracing` layers behind a goflow binary's log and,
//! with the `otel` feature, its OpenTelemetry traces.
//!
//! The scheduler opens a `run` span (`dag`, `run` fields) for each DAG run
//! it drives and a `try` span (`task`, `try`) inside it for each task try.
//! So:
//!
//! - a JSON log line ([`LogFormat::Json`]) emitted inside them carries the
//!   current span and the whole span list, hence the `dag`, `run`, `task`
//!   and `try` it belongs to;
//! - with the `otel` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) set, [`otlp_from_env`] gives a
//!   layer that exports each run as one trace, its tries as child spans,
//!   over OTLP HTTP/protobuf. `OTEL_SERVICE_NAME` names the service
//!   (default: the binary's name); `OTEL_SDK_DISABLED=true` or
//!   `OTEL_TRACES_EXPORTER=none` turn the export off.
//!
//! [`crate::cli::main`] installs these layers; a program that embeds the
//! scheduler can compose them into its own subscriber:
//!
//! ```no_run
//! use goflow_runtime::telemetry::{self, LogFormat};
//! use tracing_subscriber::prelude::*;
//!
//! let (traces, _guard) = telemetry::otlp_from_env().unwrap_or_default();
//! tracing_subscriber::registry()
//!     .with(telemetry::log_layer(LogFormat::Json, std::io::stderr))
//!     .with(traces)
//!     .init();
//! // ... run the scheduler; `_guard` flushes the traces when dropped.
//! ```

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A `tracing` layer, boxed so that differently built ones stack alike.
pub type BoxLayer<S> = Box<dyn Layer<S> + Send + Sync + 'static>;

/// How log lines are written: `--log-format` (`GOFLOW_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: time, level, span context, message, fields.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields` (with the
    /// `message`), `target`, the current `span` and the list of `spans`
    /// it is in (each with its fields, e.g. `dag`, `run`, `task`, `try`).
    Json,
}

/// The log layer in `format`, writing to `writer` (`std::io::stderr` for
/// a binary). Filter it with `Layer::with_filter`.
pub fn log_layer<S, W>(format: LogFormat, writer: W) -> BoxLayer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let layer = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        // Colours only for a person at a terminal: a pipe (a worker's
        // stderr is its try's log) or a log collector gets plain text.
        LogFormat::Text => layer
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .boxed(),
        LogFormat::Json => layer
            .json()
            .with_ansi(false)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    }
}

/// Why traces are not exported although the environment asks for them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// An OTLP endpoint is set but the `otel` feature is not compiled in.
    #[error(
        "{0} is set, but this binary was built without goflow's `otel` feature: \
         no traces are exported"
    )]
    NotCompiled(&'static str),
    /// `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` asks for a protocol other
    /// than the one built in.
    #[error(
        "{var}={value:?}: only the http/protobuf OTLP protocol is built in \
         (unset it, or set it to \"http/protobuf\"); no traces are exported"
    )]
    UnsupportedProtocol {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// The OTLP exporter could not be built (e.g. an invalid endpoint).
    #[cfg(feature = "otel")]
    #[error("cannot build the OTLP span exporter; no traces are exported")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

/// The variables that turn the OTLP trace export on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// The endpoint variable that is set (non-empty), unless the export is
/// turned off by `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
fn endpoint_var() -> Option<&'static str> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let disabled = var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    if disabled {
        return None;
    }
    ENDPOINT_VARS.into_iter().find(|name| var(name).is_some())
}

/// The trace export the environment asks for: a layer exporting the
/// spans over OTLP and the guard that flushes them, or no layer when no
/// OTLP endpoint variable is set (or the export is turned off).
///
/// Without the `otel` feature there is never a layer; an endpoint
/// variable that is set is then reported as [`TelemetryError::NotCompiled`].
pub fn otlp_from_env<S>() -> Result<(Option<BoxLayer<S>>, TelemetryGuard), TelemetryError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let Some(var) = endpoint_var() else {
        return Ok((None, TelemetryGuard::default()));
    };
    #[cfg(feature = "otel")]
    {
        let _ = var;
        let provider = otel::provider_from_env()?;
        let layer = trace_layer(&provider).boxed();
        Ok((Some(layer), TelemetryGuard::new(provider)))
    }
    #[cfg(not(feature = "otel"))]
    Err(TelemetryError::NotCompiled(var))
}

/// Keeps the trace export alive; dropping it flushes the spans not yet
/// sent and shuts the exporter down. Hold it for as long as the program
/// runs (a no-op without the `otel` feature or without an endpoint).
#[derive(Debug, Default)]
#[must_use = "dropping the guard shuts the trace export down"]
pub struct TelemetryGuard {
    #[cfg(feature = "otel")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

#[cfg(feature = "otel")]
pub use otel::trace_layer;

#[cfg(feature = "otel")]
impl TelemetryGuard {
    /// A guard that shuts `provider` down (flushing it) when dropped.
    pub fn new(provider: opentelemetry_sdk::trace::SdkTracerProvider) -> TelemetryGuard {
        TelemetryGuard {
            provider: Some(provider),
        }
    }
}

#[cfg(feature = "otel")]
impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                tracing::warn!("traces may not all have been exported: {e}");
            }
        }
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry::InstrumentationScope;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::Resource;
    use tracing::level_filters::LevelFilter;
    use tracing::Subscriber;
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::registry::LookupSpan;
    use tracing_subscriber::Layer;

    use super::TelemetryError;

    /// The layer that turns `tracing` spans into OpenTelemetry spans of
    /// `provider`'s tracer: spans (and their events, as span events) at
    /// `INFO` or above, whatever `RUST_LOG` lets through to the log, but
    /// none of the exporter's own HTTP stack.
    pub fn trace_layer<S>(provider: &SdkTracerProvider) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let scope = InstrumentationScope::builder("goflow")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let filter = Targets::new().with_default(LevelFilter::INFO).with_targets(
            ["opentelemetry", "hyper", "h2", "reqwest", "tower", "rustls"]
                .map(|target| (target, LevelFilter::OFF)),
        );
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer_with_scope(scope))
            .with_filter(filter)
    }

    /// A provider exporting in batches over OTLP HTTP/protobuf to the
    /// endpoint of the standard `OTEL_EXPORTER_OTLP_*` variables.
    pub(super) fn provider_from_env() -> Result<SdkTracerProvider, TelemetryError> {
        for var in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(value) = std::env::var(var).ok().filter(|v| !v.trim().is_empty()) {
                if value.trim() != "http/protobuf" {
                    return Err(TelemetryError::UnsupportedProtocol { var, value });
                }
                break;
            }
        }
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(TelemetryError::Exporter)?;
        Ok(SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build())
    }

    /// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`),
    /// named after the binary when those do not name the service.
    fn resource() -> Resource {
        let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.trim().is_empty())
            || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attrs| {
                attrs
                    .split(',')
                    .any(|kv| kv.trim_start().starts_with("service.name="))
            });
        let builder = Resource::builder();
        if named {
            return builder.build();
        }
        let binary = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "goflow".to_owned());
        builder.with_service_name(binary).build()
    }
}
