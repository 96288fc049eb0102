//! Task log shipping to Elasticsearch (cargo feature `elasticsearch`).
//!
//! Task log lines stay in goflow's own store (`task_logs`); a
//! [`LogShipper`] follows that table by id from a cursor kept in the store
//! and sends the lines to Elasticsearch's [bulk API] as NDJSON, one
//! document per line, into a daily index: `{prefix}-YYYY.MM.DD` (by the
//! line's UTC date), e.g. `goflow-logs-2026.11.27`. Each document:
//!
//! ```json
//! {"@timestamp": "2026-11-27T06:00:01.5Z", "dag_id": "daily-sales",
//!  "run_id": "scheduled__2026-11-26T06:00:00+00:00", "task_id": "extract",
//!  "try_number": 1, "stream": "stdout", "level": "INFO", "system": false,
//!  "message": "INFO extract: loaded 120 rows", "log_id": 42}
//! ```
//!
//! `level` is the line's level when it has one (a `tracing` event of the
//! task, goflow's own lines), else absent; `system` is true for goflow's
//! own lines about the try (started, retried, stopped...).
//!
//! - The document `_id` is `goflow-<log id>`, so a batch sent twice (a
//!   crash after Elasticsearch accepted it, before the cursor moved)
//!   overwrites itself instead of duplicating.
//! - The cursor moves only after Elasticsearch accepted the batch; while
//!   it is slow or down, the shipper retries the same batch with
//!   exponential backoff and reads nothing more: memory stays bounded by
//!   the batch size, and nothing is lost.
//! - A line Elasticsearch rejects for good (HTTP 400 for that document,
//!   e.g. a mapping conflict) is logged with its id and skipped, so one bad
//!   document does not stop shipping; rejections for load (429, 5xx) retry
//!   the batch.
//!
//! ```no_run
//! # async fn demo(store: goflow_store::Store) -> Result<(), Box<dyn std::error::Error>> {
//! use goflow_runtime::logship::{LogShipConfig, LogShipper};
//!
//! // GOFLOW_ES_URL=https://user:password@es.example.com:9200
//! if let Some(config) = LogShipConfig::from_env()? {
//!     tokio::spawn(LogShipper::new(store, config)?.run(std::future::pending()));
//! }
//! # Ok(())
//! # }
//! ```
//!
//! [bulk API]: https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-bulk.html

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use goflow_store::{ShippedLogLine, Store, StoreError};
use serde_json::{json, Value};

use crate::alerts::cursor::GapCursor;

/// The environment variable of the Elasticsearch URL.
pub const ES_URL_ENV: &str = "GOFLOW_ES_URL";
/// The environment variable of the index prefix.
pub const ES_INDEX_PREFIX_ENV: &str = "GOFLOW_ES_INDEX_PREFIX";
/// The environment variable of an API key (sent as `Authorization: ApiKey`).
pub const ES_API_KEY_ENV: &str = "GOFLOW_ES_API_KEY";
/// The index prefix when none is set.
pub const DEFAULT_INDEX_PREFIX: &str = "goflow-logs";
/// The store cursor of the Elasticsearch shipper: the last log id shipped.
pub const CURSOR: &str = "logship.elasticsearch";

/// Where and how log lines are shipped.
#[derive(Clone)]
pub struct LogShipConfig {
    /// Elasticsearch's base URL; user and password in it are sent as
    /// basic authentication.
    pub url: reqwest::Url,
    /// Indices are `{index_prefix}-YYYY.MM.DD`.
    pub index_prefix: String,
    /// An API key, instead of basic authentication.
    pub api_key: Option<String>,
    /// Most lines per bulk request (and in memory).
    pub batch_size: usize,
    /// How often the store is read when there was nothing to ship.
    pub poll_interval: Duration,
    /// How long one bulk request may take.
    pub request_timeout: Duration,
    /// Delay before the first retry; doubled at each retry.
    pub retry_base: Duration,
    /// Longest delay between retries.
    pub retry_max: Duration,
    /// How long a missing log id is waited for before it is passed (see
    /// the alerts' cursor: PostgreSQL commits out of id order).
    pub gap_timeout: Duration,
}

impl std::fmt::Debug for LogShipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.url.clone();
        let _ = shown.set_password(None);
        f.debug_struct("LogShipConfig")
            .field("url", &shown.as_str())
            .field("index_prefix", &self.index_prefix)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("batch_size", &self.batch_size)
            .finish_non_exhaustive()
    }
}

/// A setting that is not usable.
#[derive(Debug, thiserror::Error)]
#[error("invalid log shipping setting {setting}: {reason}")]
pub struct LogShipConfigError {
    /// The setting.
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl LogShipConfig {
    /// Shipping to `url` with the defaults: prefix `goflow-logs`, batches
    /// of 500 lines, 30 s requests, retries from 1 s up to 1 min apart.
    pub fn new(url: &str) -> Result<Self, LogShipConfigError> {
        let parsed = reqwest::Url::parse(url).map_err(|e| LogShipConfigError {
            setting: ES_URL_ENV,
            reason: format!("not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(LogShipConfigError {
                setting: ES_URL_ENV,
                reason: format!("a {} URL; expected http or https", parsed.scheme()),
            });
        }
        Ok(LogShipConfig {
            url: parsed,
            index_prefix: DEFAULT_INDEX_PREFIX.to_owned(),
            api_key: None,
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            gap_timeout: Duration::from_secs(30),
        })
    }

    /// The index of a line written at `t`: `{prefix}-YYYY.MM.DD` (UTC).
    pub fn index_for(&self, t: chrono::DateTime<Utc>) -> String {
        format!("{}-{}", self.index_prefix, t.format("%Y.%m.%d"))
    }

    /// The shipping configured by the environment, or `None` when
    /// `GOFLOW_ES_URL` is unset: `GOFLOW_ES_URL`,
    /// `GOFLOW_ES_INDEX_PREFIX`, `GOFLOW_ES_API_KEY`.
    pub fn from_env() -> Result<Option<Self>, LogShipConfigError> {
        #[derive(Parser)]
        struct FromEnv {
            #[command(flatten)]
            args: LogShipArgs,
        }
        let parsed = FromEnv::try_parse_from(["goflow"]).map_err(|e| LogShipConfigError {
            setting: "environment",
            reason: e.to_string(),
        })?;
        parsed.args.into_config()
    }
}

/// Log shipping as CLI options, each also read from its environment
/// variable: `#[command(flatten)]` it into a command.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LogShipArgs {
    /// Elasticsearch URL to ship task logs to (user:password@ for basic auth).
    #[arg(long = "es-url", env = ES_URL_ENV)]
    pub url: Option<String>,
    /// Prefix of the daily log indices.
    #[arg(long = "es-index-prefix", env = ES_INDEX_PREFIX_ENV, default_value = DEFAULT_INDEX_PREFIX)]
    pub index_prefix: String,
    /// Elasticsearch API key.
    #[arg(long = "es-api-key", env = ES_API_KEY_ENV, hide_env_values = true)]
    pub api_key: Option<String>,
}

impl LogShipArgs {
    /// The configuration, or `None` when no URL is given.
    pub fn into_config(self) -> Result<Option<LogShipConfig>, LogShipConfigError> {
        let Some(url) = self.url.filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let mut config = LogShipConfig::new(url.trim())?;
        let prefix = self.index_prefix.trim();
        // Elasticsearch index names: lowercase, no spaces or \/*?"<>|,#:
        if prefix.is_empty()
            || prefix.starts_with(['-', '_', '+'])
            || prefix
                .chars()
                .any(|c| c.is_uppercase() || c.is_whitespace() || "\\/*?\"<>|,#:".contains(c))
        {
            return Err(LogShipConfigError {
                setting: ES_INDEX_PREFIX_ENV,
                reason: format!("{prefix:?} is not a valid Elasticsearch index name prefix (lowercase, without spaces or \\/*?\"<>|,#:)"),
            });
        }
        config.index_prefix = prefix.to_owned();
        config.api_key = self.api_key.filter(|k| !k.is_empty());
        Ok(Some(config))
    }
}

/// Why a bulk request did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShipError {
    /// The store could not be read or the cursor not written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Elasticsearch did not take the batch (down, slow, overloaded).
    #[error("Elasticsearch bulk request failed: {0}")]
    Bulk(String),
}

/// Ships task log lines to Elasticsearch. See the module docs.
pub struct LogShipper {
    store: Store,
    config: LogShipConfig,
    client: reqwest::Client,
    gaps: GapCursor,
}

impl std::fmt::Debug for LogShipper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogShipper")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl LogShipper {
    /// A shipper from `store` to the Elasticsearch of `config`.
    pub fn new(store: Store, config: LogShipConfig) -> Result<Self, LogShipConfigError> {
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .user_agent(concat!("goflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| LogShipConfigError {
                setting: ES_URL_ENV,
                reason: format!("cannot build an HTTP client: {e}"),
            })?;
        let gap = match store.backend() {
            goflow_store::Backend::Sqlite => Duration::ZERO,
            _ => config.gap_timeout,
        };
        Ok(LogShipper {
            store,
            config,
            client,
            gaps: GapCursor::new(gap),
        })
    }

    /// Ships until `shutdown` completes: a batch as soon as lines are
    /// there, a pause of `poll_interval` when none are, and exponential
    /// backoff while Elasticsearch (or the store) fails.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut failures = 0u32;
        loop {
            let pause = match self.ship_once().await {
                Ok(n) => {
                    failures = 0;
                    if n == self.config.batch_size {
                        Duration::ZERO
                    } else {
                        self.config.poll_interval
                    }
                }
                Err(e) => {
                    failures += 1;
                    let delay = backoff(&self.config, failures);
                    tracing::warn!(error = %e, ?delay, "log shipping failed; retrying");
                    delay
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = &mut shutdown => break,
            }
        }
    }

    /// Ships the next batch after the cursor, and moves the cursor past it
    /// once Elasticsearch took it. Returns how many lines it shipped.
    pub async fn ship_once(&mut self) -> Result<usize, ShipError> {
        let pos = self.store.cursor(CURSOR).await?;
        let lines = self
            .store
            .logs_after(pos.unwrap_or(0), self.config.batch_size as i64)
            .await?;
        let ids: Vec<i64> = lines.iter().map(|l| l.line.id).collect();
        let n = self.gaps.consumable(pos.unwrap_or(0), &ids, Instant::now());
        if n == 0 {
            return Ok(0);
        }
        let lines = &lines[..n];
        self.send(lines).await?;
        let last = lines[n - 1].line.id;
        if !self.store.set_cursor(CURSOR, pos, last, Utc::now()).await? {
            tracing::warn!("another process moved the log shipping cursor; following it");
        }
        Ok(n)
    }

    /// The NDJSON body of a bulk request for `lines`.
    pub fn bulk_body(&self, lines: &[ShippedLogLine]) -> String {
        let mut body = String::new();
        for l in lines {
            let action = json!({"index": {"_index": self.config.index_for(l.line.timestamp), "_id": format!("goflow-{}", l.line.id)}});
            let doc = json!({
                "@timestamp": l.line.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "dag_id": l.dag_id,
                "run_id": l.run_id,
                "task_id": l.line.task_id,
                "try_number": l.line.try_number,
                "stream": l.line.stream.as_str(),
                "level": l.line.level.map(|v| v.as_str()),
                "system": l.line.stream == goflow_store::LogStream::System,
                "message": l.line.line,
                "log_id": l.line.id,
            });
            let _ = writeln!(body, "{action}");
            let _ = writeln!(body, "{doc}");
        }
        body
    }

    async fn send(&self, lines: &[ShippedLogLine]) -> Result<(), ShipError> {
        let mut url = self.config.url.clone();
        url.set_path(&format!("{}/_bulk", url.path().trim_end_matches('/')));
        let (user, password) = (
            self.config.url.username().to_owned(),
            self.config.url.password().map(str::to_owned),
        );
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut request = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
            .body(self.bulk_body(lines));
        if let Some(key) = &self.config.api_key {
            request = request.header(reqwest::header::AUTHORIZATION, format!("ApiKey {key}"));
        } else if !user.is_empty() {
            request = request.basic_auth(user, password);
        }
        let response = request.send().await.map_err(|e| {
            ShipError::Bulk(if e.is_timeout() {
                format!("timed out: {e}")
            } else {
                e.to_string()
            })
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            let excerpt: String = text.chars().take(300).collect();
            return Err(ShipError::Bulk(format!("HTTP {status}: {excerpt}")));
        }
        let parsed: Value = serde_json::from_str(&text)
            .map_err(|e| ShipError::Bulk(format!("unreadable response ({e})")))?;
        if parsed["errors"].as_bool() != Some(true) {
            return Ok(());
        }
        // Some documents failed: retry the batch if any may succeed later;
        // skip documents rejected for good.
        let items = parsed["items"].as_array().cloned().unwrap_or_default();
        let mut retry = None;
        for item in &items {
            let result = item.get("index").or_else(|| item.get("create"));
            let Some(result) = result else { continue };
            let status = result["status"].as_u64().unwrap_or(0);
            if (200..300).contains(&status) {
                continue;
            }
            let reason = result["error"].to_string();
            if status == 429 || status >= 500 || status == 0 {
                retry.get_or_insert(format!(
                    "document {}: HTTP {status} {reason}",
                    result["_id"]
                ));
            } else {
                tracing::error!(
                    id = %result["_id"], status, %reason,
                    "Elasticsearch rejected a log line; skipping it (it stays in goflow's store)"
                );
            }
        }
        match retry {
            Some(reason) => Err(ShipError::Bulk(reason)),
            None => Ok(()),
        }
    }
}

fn backoff(config: &LogShipConfig, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
    config
        .retry_base
        .saturating_mul(factor)
        .min(config.retry_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_args() {
        assert!(LogShipArgs::default().into_config().unwrap().is_none());
        let c = LogShipArgs {
            url: Some("http://elastic:secret@127.0.0.1:9200".into()),
            index_prefix: "team-logs".into(),
            api_key: None,
        }
        .into_config()
        .unwrap()
        .unwrap();
        assert_eq!(c.index_prefix, "team-logs");
        let t = chrono::DateTime::parse_from_rfc3339("2026-11-27T23:59:59+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(c.index_for(t), "team-logs-2026.11.27");
        assert!(!format!("{c:?}").contains("secret"));
        let err = LogShipArgs {
            url: Some("http://127.0.0.1:9200".into()),
            index_prefix: "Bad Prefix".into(),
            api_key: None,
        }
        .into_config()
        .unwrap_err();
        assert!(err.to_string().contains("GOFLOW_ES_INDEX_PREFIX"), "{err}");
        assert!(LogShipConfig::new("ftp://x").is_err());
    }

    #[test]
    fn backoff_doubles_to_the_maximum() {
        let c = LogShipConfig::new("http://127.0.0.1:9200").unwrap();
        let d: Vec<u64> = (1..=8).map(|f| backoff(&c, f).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
