//! Alerts: told when a task fails, a run fails or recovers, a run misses
//! its schedule or its deadline — through a JSON webhook, a Slack-compatible
//! webhook or email — durably, once per event.
//!
//! Detection, the outbox and the UI's list of alerts are always built; the
//! channels are features: `alerts-http` (webhook, Slack) and `alerts-smtp`
//! (email), both in `alerts`. Configuring a channel this binary was built
//! without (its environment variable, or a DAG's `alerts(channels = [..])`)
//! is an [`AlertConfigError`] from [`AlertService::new`] naming the feature.
//!
//! ```no_run
//! # async fn demo(store: goflow_store::Store, registry: std::sync::Arc<goflow_runtime::Registry>)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use goflow_runtime::alerts::{AlertConfig, AlertService};
//!
//! // GOFLOW_ALERT_WEBHOOK_URL, GOFLOW_ALERT_SLACK_URL, GOFLOW_SMTP_*,
//! // GOFLOW_ALERT_CA_FILE, GOFLOW_BASE_URL
//! let config = AlertConfig::from_env()?;
//! let service = AlertService::new(store, registry, config)?;
//! tokio::spawn(service.run(async { let _ = tokio::signal::ctrl_c().await; }));
//! # Ok(())
//! # }
//! ```
//!
//! # How it works
//!
//! The service is its own tokio task, next to the scheduler; the scheduler
//! never waits for it. It reads what happened from the store — so nothing
//! is lost if the process dies between a state change and its alert:
//!
//! 1. **Detect.** Every `poll_interval` it reads finished task tries after
//!    a cursor (failures after the last try, tries to be retried), runs
//!    that ended after a cursor (failures, recoveries, late finishes),
//!    active runs (deadlines), and each scheduled DAG's intervals since a
//!    watermark (missed schedules, also those of the time the scheduler was
//!    down). Cursors live in the store (`cursors` table).
//! 2. **Record.** Each alert is written to the outbox (`alerts` table),
//!    one row per channel, `pending`, in the same transaction that moves
//!    the cursor. `(dedupe_key, channel)` is unique — the key is
//!    `kind:dag:run:task:try` — so an event is recorded once, whichever
//!    replica or restart sees it.
//! 3. **Send.** A sender claims due rows with a lease (`FOR UPDATE SKIP
//!    LOCKED` on PostgreSQL, an immediate transaction on SQLite), delivers
//!    each with a timeout, and records the outcome: `sent`; `pending` again
//!    with exponential backoff after a retryable failure (timeout, refused
//!    connection, HTTP 5xx/429); `failed` with the reason after a permanent
//!    one (HTTP 4xx) or `max_attempts`. A sender that dies mid-send leaves
//!    its rows to be taken over when the lease runs out.
//!
//! Delivery is at least once at one point only: a sender that dies after
//! the channel accepted an alert but before it recorded `sent` sends it
//! again after the lease. Webhook receivers can drop such a repeat by its
//! `Idempotency-Key` header (the dedupe key).

mod channels;
pub(crate) mod cursor;
mod detector;
mod sender;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use goflow_store::{FinishedTry, Store};
use tokio::sync::Notify;

use crate::Registry;

#[cfg(feature = "alerts-smtp")]
#[cfg_attr(docsrs, doc(cfg(feature = "alerts-smtp")))]
pub use channels::{email_message, EmailChannel};
pub use channels::{slack_payload, webhook_payload, CaCertificates, Channel, ChannelError};
#[cfg(feature = "alerts-http")]
#[cfg_attr(docsrs, doc(cfg(feature = "alerts-http")))]
pub use channels::{SlackChannel, WebhookChannel};

/// The environment variable of the generic JSON webhook's URL.
pub const WEBHOOK_URL_ENV: &str = "GOFLOW_ALERT_WEBHOOK_URL";
/// The environment variable of the Slack-compatible incoming webhook's URL.
pub const SLACK_URL_ENV: &str = "GOFLOW_ALERT_SLACK_URL";
/// The environment variable of the UI's base URL, for links in alerts.
pub const BASE_URL_ENV: &str = "GOFLOW_BASE_URL";
/// The environment variable of a PEM file of CA certificates the channels
/// trust besides the built-in roots (a private CA).
pub const CA_FILE_ENV: &str = "GOFLOW_ALERT_CA_FILE";
/// The UI's base URL when none is set.
pub const DEFAULT_BASE_URL: &str = "http://localhost:8080";

/// How SMTP connections are secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SmtpTls {
    /// Plain text (a local relay only).
    None,
    /// STARTTLS, required (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465 by default).
    Tls,
}

/// The SMTP server and addresses of the email channel.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    /// The server's host name.
    pub host: String,
    /// Its port; by default 25, 587 or 465 after `tls`.
    pub port: Option<u16>,
    /// Transport security.
    pub tls: SmtpTls,
    /// User name, when the server wants one.
    pub username: Option<String>,
    /// Password.
    pub password: Option<String>,
    /// Sender address, e.g. `goflow <goflow@example.com>`.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

impl std::fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .field("to", &self.to)
            .finish()
    }
}

/// How alerts are sent: the channels (from the environment or the CLI,
/// see [`AlertArgs`]) and the delivery policy.
///
/// Non-exhaustive: start from [`AlertConfig::default`] (or
/// [`AlertArgs::into_config`]) and set the fields you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AlertConfig {
    /// The generic JSON webhook (`GOFLOW_ALERT_WEBHOOK_URL`).
    pub webhook_url: Option<String>,
    /// The Slack-compatible incoming webhook (`GOFLOW_ALERT_SLACK_URL`).
    pub slack_url: Option<String>,
    /// Email over SMTP (`GOFLOW_SMTP_HOST` and friends).
    pub smtp: Option<SmtpConfig>,
    /// CA certificates trusted by the webhook, Slack and email channels in
    /// addition to the built-in roots (`GOFLOW_ALERT_CA_FILE`).
    pub ca_certificates: Option<CaCertificates>,
    /// The UI's base URL, for links (`GOFLOW_BASE_URL`).
    pub base_url: String,
    /// How often the store is read for new events and due alerts.
    pub poll_interval: Duration,
    /// How long one delivery may take (HTTP request, SMTP session).
    pub request_timeout: Duration,
    /// Attempts per alert and channel before it is marked failed.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled at each attempt.
    pub retry_base: Duration,
    /// Longest delay between attempts.
    pub retry_max: Duration,
    /// How long a claimed alert is held by its sender before another may
    /// take it over; at least twice `request_timeout`.
    pub lease: Duration,
    /// Alerts delivered at once.
    pub concurrency: usize,
    /// Events older than this when first seen are not alerted (e.g. when
    /// alerting is turned on for the first time).
    pub max_age: Duration,
    /// How far back finished runs are re-read each pass (runs are found by
    /// their end date, which another replica may write late).
    pub run_lookback: Duration,
    /// How long the detector waits for an id that is missing in a table it
    /// follows (PostgreSQL commits out of id order) before passing it.
    pub gap_timeout: Duration,
    /// Lines of a try's log in an alert.
    pub log_tail_lines: usize,
    /// Lines of an error message in an alert (its end).
    pub error_lines: usize,
    /// This sender's id, to hold leases. Distinct per process.
    pub owner: String,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            webhook_url: None,
            slack_url: None,
            smtp: None,
            ca_certificates: None,
            base_url: DEFAULT_BASE_URL.to_owned(),
            poll_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            max_attempts: 6,
            retry_base: Duration::from_secs(5),
            retry_max: Duration::from_secs(600),
            lease: Duration::from_secs(120),
            concurrency: 8,
            max_age: Duration::from_secs(24 * 3600),
            run_lookback: Duration::from_secs(300),
            gap_timeout: Duration::from_secs(30),
            log_tail_lines: 20,
            error_lines: 20,
            owner: crate::scheduler::default_id(),
        }
    }
}

/// A setting that is not usable.
#[derive(Debug, thiserror::Error)]
#[error("invalid alert setting {setting}: {reason}")]
#[non_exhaustive]
pub struct AlertConfigError {
    /// The setting (environment variable or option).
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Alert channels as CLI options, each also read from its environment
/// variable: `#[command(flatten)]` it into a command, then call
/// [`AlertArgs::into_config`].
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AlertArgs {
    /// Generic JSON webhook for alerts.
    #[arg(long = "alert-webhook-url", env = WEBHOOK_URL_ENV)]
    pub webhook_url: Option<String>,
    /// Slack-compatible incoming webhook for alerts.
    #[arg(long = "alert-slack-url", env = SLACK_URL_ENV)]
    pub slack_url: Option<String>,
    /// SMTP server for alert emails.
    #[arg(long = "alert-smtp-host", env = "GOFLOW_SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port (default: 25, 587 or 465 after --alert-smtp-tls).
    #[arg(long = "alert-smtp-port", env = "GOFLOW_SMTP_PORT")]
    pub smtp_port: Option<u16>,
    /// SMTP transport security.
    #[arg(long = "alert-smtp-tls", env = "GOFLOW_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,
    /// SMTP user name.
    #[arg(long = "alert-smtp-username", env = "GOFLOW_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// SMTP password.
    #[arg(
        long = "alert-smtp-password",
        env = "GOFLOW_SMTP_PASSWORD",
        hide_env_values = true
    )]
    pub smtp_password: Option<String>,
    /// Sender of alert emails.
    #[arg(long = "alert-email-from", env = "GOFLOW_ALERT_EMAIL_FROM")]
    pub email_from: Option<String>,
    /// Recipients of alert emails, comma-separated.
    #[arg(
        long = "alert-email-to",
        env = "GOFLOW_ALERT_EMAIL_TO",
        value_delimiter = ','
    )]
    pub email_to: Vec<String>,
    /// PEM file of CA certificates (one or several) that the webhook, Slack
    /// and SMTP TLS connections trust besides the built-in roots.
    #[arg(long = "alert-ca-file", env = CA_FILE_ENV, value_name = "PEM_FILE")]
    pub ca_file: Option<PathBuf>,
    /// The UI's base URL, for links in alerts.
    #[arg(long = "alert-base-url", env = BASE_URL_ENV)]
    pub base_url: Option<String>,
}

/// Checks that `url` is an absolute `http` or `https` URL with a host.
fn check_http_url(setting: &'static str, url: &str) -> Result<(), AlertConfigError> {
    let invalid = |reason: String| AlertConfigError { setting, reason };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(invalid(format!(
            "{url:?} is not a URL; expected http://host/... or https://host/..."
        )));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(invalid(format!(
            "{url:?} is a {scheme} URL; expected http or https"
        )));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if host.is_empty() || host.starts_with(':') || url.chars().any(char::is_whitespace) {
        return Err(invalid(format!(
            "{url:?} is not a URL: it has no host or has spaces"
        )));
    }
    Ok(())
}

/// Which channel features this binary was built with.
#[derive(Clone, Copy, Debug)]
struct Built {
    http: bool,
    smtp: bool,
}

impl Built {
    const THIS: Built = Built {
        http: cfg!(feature = "alerts-http"),
        smtp: cfg!(feature = "alerts-smtp"),
    };

    /// The Cargo feature that builds the channel named `channel` in, and
    /// whether this binary has it.
    fn channel(self, channel: &str) -> Option<(&'static str, bool)> {
        match channel {
            "webhook" | "slack" => Some(("alerts-http", self.http)),
            "email" => Some(("alerts-smtp", self.smtp)),
            _ => None,
        }
    }
}

/// `setting` configures `what`, which this binary was built without.
fn feature_off(setting: &'static str, what: &str, feature: &str) -> AlertConfigError {
    AlertConfigError {
        setting,
        reason: format!(
            "{what}, but this binary was built without it: enable goflow's \
             {feature} feature (or `alerts`, every channel)"
        ),
    }
}

/// Refuses what configures a channel whose feature is off: its settings,
/// a CA file with no channel built in, and a DAG that names it.
fn check_features(
    registry: &Registry,
    config: &AlertConfig,
    built: Built,
) -> Result<(), AlertConfigError> {
    let configured = [
        (WEBHOOK_URL_ENV, "webhook", config.webhook_url.is_some()),
        (SLACK_URL_ENV, "slack", config.slack_url.is_some()),
        ("GOFLOW_SMTP_HOST", "email", config.smtp.is_some()),
    ];
    for (setting, channel, set) in configured {
        if let Some((feature, false)) = built.channel(channel).filter(|_| set) {
            return Err(feature_off(
                setting,
                &format!("it configures the {channel} alert channel"),
                &format!("`{feature}`"),
            ));
        }
    }
    if config.ca_certificates.is_some() && !built.http && !built.smtp {
        return Err(feature_off(
            CA_FILE_ENV,
            "it is for the alert channels' TLS",
            "`alerts-http` or `alerts-smtp`",
        ));
    }
    for dag in registry.dags() {
        for channel in dag.alerts().channels.iter().flatten() {
            if let Some((feature, false)) = built.channel(channel) {
                return Err(feature_off(
                    "#[dag(alerts(channels))]",
                    &format!("DAG {} sends its alerts to the {channel} channel", dag.id()),
                    &format!("`{feature}`"),
                ));
            }
        }
    }
    Ok(())
}

impl AlertArgs {
    /// The [`AlertConfig`] these options describe (the rest default).
    pub fn into_config(self) -> Result<AlertConfig, AlertConfigError> {
        let some = |v: Option<String>| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty());
        let webhook_url = some(self.webhook_url);
        if let Some(u) = &webhook_url {
            check_http_url(WEBHOOK_URL_ENV, u)?;
        }
        let slack_url = some(self.slack_url);
        if let Some(u) = &slack_url {
            check_http_url(SLACK_URL_ENV, u)?;
        }
        let base_url = some(self.base_url).unwrap_or_else(|| DEFAULT_BASE_URL.to_owned());
        check_http_url(BASE_URL_ENV, &base_url)?;
        let to: Vec<String> = self
            .email_to
            .into_iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        let smtp = match some(self.smtp_host) {
            None => None,
            Some(host) => {
                let from = some(self.email_from).ok_or(AlertConfigError {
                    setting: "GOFLOW_ALERT_EMAIL_FROM",
                    reason: "email alerts need a sender address".into(),
                })?;
                if to.is_empty() {
                    return Err(AlertConfigError {
                        setting: "GOFLOW_ALERT_EMAIL_TO",
                        reason: "email alerts need at least one recipient".into(),
                    });
                }
                Some(SmtpConfig {
                    host,
                    port: self.smtp_port,
                    tls: self.smtp_tls,
                    username: some(self.smtp_username),
                    password: self.smtp_password,
                    from,
                    to,
                })
            }
        };
        // Read once, here: a missing or broken file stops the start with
        // its name, rather than failing every alert later.
        let ca_certificates = self
            .ca_file
            .filter(|p| !p.as_os_str().to_string_lossy().trim().is_empty())
            .map(|path| {
                CaCertificates::from_pem_file(&path).map_err(|reason| AlertConfigError {
                    setting: CA_FILE_ENV,
                    reason,
                })
            })
            .transpose()?;
        Ok(AlertConfig {
            webhook_url,
            slack_url,
            smtp,
            ca_certificates,
            base_url,
            ..AlertConfig::default()
        })
    }
}

#[derive(Parser)]
struct FromEnv {
    #[command(flatten)]
    alerts: AlertArgs,
}

impl AlertConfig {
    /// The channels from the environment: `GOFLOW_ALERT_WEBHOOK_URL`,
    /// `GOFLOW_ALERT_SLACK_URL`, `GOFLOW_SMTP_HOST`, `GOFLOW_SMTP_PORT`,
    /// `GOFLOW_SMTP_TLS` (`none`, `starttls`, `tls`),
    /// `GOFLOW_SMTP_USERNAME`, `GOFLOW_SMTP_PASSWORD`,
    /// `GOFLOW_ALERT_EMAIL_FROM`, `GOFLOW_ALERT_EMAIL_TO` (comma-separated),
    /// `GOFLOW_ALERT_CA_FILE` and `GOFLOW_BASE_URL`.
    pub fn from_env() -> Result<Self, AlertConfigError> {
        let parsed = FromEnv::try_parse_from(["goflow"]).map_err(|e| AlertConfigError {
            setting: "environment",
            reason: e.to_string(),
        })?;
        parsed.alerts.into_config()
    }

    /// Whether any channel is configured.
    pub fn has_channels(&self) -> bool {
        self.webhook_url.is_some() || self.slack_url.is_some() || self.smtp.is_some()
    }

    /// The delay after failed attempt number `attempt` (from 1):
    /// `retry_base * 2^(attempt-1)`, at most `retry_max`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// Sees every finished task try once (per deployment, not per replica),
/// with its stored duration, CPU and memory: a hook for exporting job
/// performance elsewhere. (This process's Prometheus metrics are recorded
/// by the scheduler itself.) Register with [`AlertService::observe_tries`].
pub trait TryObserver: Send + Sync + 'static {
    /// Called once for each finished try, in the order they finished,
    /// after the detector has recorded its alerts.
    fn observe_try(&self, finished: &FinishedTry);
}

/// The alerting service: detects alert conditions in the store, records
/// alerts in the outbox, and delivers them. See the module docs.
pub struct AlertService {
    store: Store,
    registry: Arc<Registry>,
    config: AlertConfig,
    channels: BTreeMap<String, Arc<dyn Channel>>,
    observers: Vec<Arc<dyn TryObserver>>,
}

impl std::fmt::Debug for AlertService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertService")
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AlertService {
    /// A service over `store` for the DAGs of `registry` (their alert
    /// settings), with the channels of `config`. A channel that cannot be
    /// set up (an unusable SMTP setting, a TLS set-up failure), or that this
    /// binary was built without (its feature, `alerts-http` or
    /// `alerts-smtp`, is off) while `config` or a DAG names it, is an error
    /// naming its setting.
    pub fn new(
        store: Store,
        registry: Arc<Registry>,
        config: AlertConfig,
    ) -> Result<Self, AlertConfigError> {
        check_features(&registry, &config, Built::THIS)?;
        #[allow(unused_mut)]
        let mut channels: BTreeMap<String, Arc<dyn Channel>> = BTreeMap::new();
        #[cfg(any(feature = "alerts-http", feature = "alerts-smtp"))]
        {
            let ca = config.ca_certificates.as_ref();
            let timeout = config.request_timeout;
            let invalid = |setting| move |reason| AlertConfigError { setting, reason };
            #[cfg(feature = "alerts-http")]
            if let Some(url) = &config.webhook_url {
                let webhook = WebhookChannel::new(url.clone(), timeout, ca)
                    .map_err(invalid(WEBHOOK_URL_ENV))?;
                channels.insert("webhook".into(), Arc::new(webhook));
            }
            #[cfg(feature = "alerts-http")]
            if let Some(url) = &config.slack_url {
                let slack =
                    SlackChannel::new(url.clone(), timeout, ca).map_err(invalid(SLACK_URL_ENV))?;
                channels.insert("slack".into(), Arc::new(slack));
            }
            #[cfg(feature = "alerts-smtp")]
            if let Some(smtp) = &config.smtp {
                let email =
                    EmailChannel::new(smtp, timeout, ca).map_err(invalid("GOFLOW_SMTP_*"))?;
                channels.insert("email".into(), Arc::new(email));
            }
        }
        Ok(AlertService {
            store,
            registry,
            config,
            channels,
            observers: Vec::new(),
        })
    }

    /// Adds (or replaces) a channel, under its [`Channel::name`].
    pub fn with_channel(mut self, channel: Arc<dyn Channel>) -> Self {
        self.channels.insert(channel.name().to_owned(), channel);
        self
    }

    /// Calls `observer` for every finished task try (e.g.
    /// [`crate::metrics::Metrics`] for Prometheus).
    pub fn observe_tries(mut self, observer: Arc<dyn TryObserver>) -> Self {
        self.observers.push(observer);
        self
    }

    /// The names of the configured channels.
    pub fn channel_names(&self) -> Vec<String> {
        self.channels.keys().cloned().collect()
    }

    /// Runs until `shutdown` completes: one detection pass at once (so
    /// what was missed while nothing ran is reported at start-up), then
    /// every `poll_interval`; deliveries run alongside. Store errors are
    /// logged and retried; they never stop the service.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        if self.channels.is_empty() {
            tracing::info!("no alert channel configured: alerts are detected but not sent");
        } else {
            tracing::info!(channels = ?self.channel_names(), "alerting started");
        }
        let wake = Arc::new(Notify::new());
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let detector = detector::Detector::new(
            self.store.clone(),
            self.registry,
            self.config.clone(),
            self.channels.keys().cloned().collect(),
            self.observers,
        );
        let sender = sender::Sender::new(self.store, self.config, self.channels);
        let detect = detector.run(Arc::clone(&wake), stop.clone());
        let send = sender.run(wake, stop);
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        tokio::join!(detect, send, signal);
        tracing::info!("alerting stopped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let c = AlertConfig {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
            ..AlertConfig::default()
        };
        let delays: Vec<u64> = (1..=7).map(|a| c.backoff(a).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(c.backoff(1000), Duration::from_secs(60));
    }

    fn dag_with_channels(channels: &[&str]) -> goflow_core::Dag {
        fn noop(_: goflow_core::TaskContext, _: &goflow_core::Inputs) -> goflow_core::TaskFuture {
            Box::pin(async { Err(goflow_core::TaskError::msg("not run")) })
        }
        goflow_core::DagBuilder::new("etl")
            .alerts(goflow_core::AlertSettings {
                channels: Some(channels.iter().map(|c| c.to_string()).collect()),
                ..goflow_core::AlertSettings::default()
            })
            .task(goflow_core::TaskSpec {
                id: "load".into(),
                function: "load",
                options: Default::default(),
                data_upstream: Vec::new(),
                run: noop,
            })
            .build()
            .unwrap()
    }

    #[test]
    fn a_channel_built_without_its_feature_is_refused_naming_it() {
        let none = Built {
            http: false,
            smtp: false,
        };
        let only_http = Built {
            http: true,
            smtp: false,
        };
        let no_dags = Registry::from_dags([]).unwrap();
        let webhook = AlertConfig {
            webhook_url: Some("https://hooks.example.com/x".into()),
            ..AlertConfig::default()
        };
        let err = check_features(&no_dags, &webhook, none).unwrap_err();
        assert_eq!(err.setting, WEBHOOK_URL_ENV);
        assert!(err.to_string().contains("`alerts-http` feature"), "{err}");
        assert!(check_features(&no_dags, &webhook, only_http).is_ok());

        let smtp = AlertConfig {
            smtp: Some(SmtpConfig {
                host: "mail".into(),
                port: None,
                tls: SmtpTls::Starttls,
                username: None,
                password: None,
                from: "goflow@example.com".into(),
                to: vec!["ops@example.com".into()],
            }),
            ..AlertConfig::default()
        };
        let err = check_features(&no_dags, &smtp, only_http).unwrap_err();
        assert_eq!(err.setting, "GOFLOW_SMTP_HOST");
        assert!(err.to_string().contains("`alerts-smtp` feature"), "{err}");

        // A DAG naming a channel that is not built in, even with nothing
        // configured: its alerts would silently go nowhere.
        let emails = Registry::from_dags([dag_with_channels(&["slack", "email"])]).unwrap();
        let err = check_features(&emails, &AlertConfig::default(), only_http).unwrap_err();
        assert!(
            err.to_string()
                .contains("DAG etl sends its alerts to the email channel"),
            "{err}"
        );
        assert!(err.to_string().contains("`alerts-smtp`"), "{err}");
        let both = Built {
            http: true,
            smtp: true,
        };
        assert!(check_features(&emails, &AlertConfig::default(), both).is_ok());
        // Nothing configured and no DAG naming a channel: fine without any.
        assert!(check_features(&no_dags, &AlertConfig::default(), none).is_ok());
    }

    /// What a user of a build without channels sees: `AlertService::new`
    /// refuses to start.
    #[cfg(not(feature = "alerts-http"))]
    #[tokio::test]
    async fn the_service_refuses_a_webhook_without_alerts_http() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let config = AlertArgs {
            webhook_url: Some("https://hooks.example.com/goflow".into()),
            ..AlertArgs::default()
        }
        .into_config()
        .unwrap();
        let registry = Arc::new(Registry::from_dags([]).unwrap());
        let err = AlertService::new(store, registry, config).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid alert setting GOFLOW_ALERT_WEBHOOK_URL: it configures the webhook alert \
             channel, but this binary was built without it: enable goflow's `alerts-http` \
             feature (or `alerts`, every channel)"
        );
    }

    #[test]
    fn args_become_a_config_and_bad_ones_are_named() {
        let c = AlertArgs {
            webhook_url: Some("http://127.0.0.1:9/hook".into()),
            base_url: Some("https://goflow.example.com/".into()),
            ..AlertArgs::default()
        }
        .into_config()
        .unwrap();
        assert!(c.has_channels());
        assert_eq!(c.base_url, "https://goflow.example.com/");
        assert!(c.smtp.is_none());

        let err = AlertArgs {
            slack_url: Some("ftp://x".into()),
            ..AlertArgs::default()
        }
        .into_config()
        .unwrap_err();
        assert!(err.to_string().contains("GOFLOW_ALERT_SLACK_URL"), "{err}");

        let err = AlertArgs {
            smtp_host: Some("mail".into()),
            email_from: Some("goflow@example.com".into()),
            ..AlertArgs::default()
        }
        .into_config()
        .unwrap_err();
        assert!(err.to_string().contains("GOFLOW_ALERT_EMAIL_TO"), "{err}");

        let c = AlertArgs {
            smtp_host: Some("mail".into()),
            smtp_password: Some("secret".into()),
            email_from: Some("goflow@example.com".into()),
            email_to: vec!["a@example.com".into(), " ".into()],
            ..AlertArgs::default()
        }
        .into_config()
        .unwrap();
        let smtp = c.smtp.unwrap();
        assert_eq!(smtp.to, ["a@example.com"]);
        assert!(!format!("{smtp:?}").contains("secret"));
    }
}
