//! Alert channels: a generic JSON webhook and a Slack-compatible incoming
//! webhook (feature `alerts-http`), and email over SMTP (feature
//! `alerts-smtp`). A channel delivers one [`Alert`] and says whether a
//! failure is worth retrying.
//!
//! The payloads ([`webhook_payload`], [`slack_payload`]) are built whatever
//! the features, for channels of your own.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use goflow_core::alerts::MissReason;
use goflow_core::Alert;
use serde_json::{json, Value};

#[cfg(feature = "alerts-http")]
mod http;
#[cfg(feature = "alerts-smtp")]
mod smtp;

#[cfg(feature = "alerts-http")]
pub use http::{SlackChannel, WebhookChannel};
#[cfg(feature = "alerts-smtp")]
pub use smtp::{email_message, EmailChannel};

/// Why a delivery failed, and whether trying again may help.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelError {
    /// What went wrong, for the outbox's `last_error`.
    pub message: String,
    /// `true` for timeouts, connection errors, HTTP 408, 429 and 5xx,
    /// transient SMTP errors; `false` for errors that will not go away
    /// (HTTP 4xx, a rejected address).
    pub retryable: bool,
}

impl ChannelError {
    /// A failure worth retrying.
    pub fn retryable(message: impl Into<String>) -> Self {
        ChannelError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying will not fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        ChannelError {
            message: message.into(),
            retryable: false,
        }
    }
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ChannelError {}

/// Somewhere alerts go. Implement it to add a channel of your own
/// ([`super::AlertService::with_channel`]).
pub trait Channel: Send + Sync + 'static {
    /// The channel's name, as stored in the outbox and named in
    /// [`goflow_core::AlertSettings::channels`].
    fn name(&self) -> &str;

    /// Delivers one alert. The sender bounds it with its request timeout.
    fn send<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), ChannelError>>;
}

/// The JSON body of the generic webhook: the alert's fields, plus a
/// `title`, a plain-text `text` and the `dedupe_key`.
pub fn webhook_payload(alert: &Alert) -> Value {
    let mut body = serde_json::to_value(alert).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("title".into(), Value::String(alert.title()));
        map.insert("text".into(), Value::String(alert.text()));
        map.insert("dedupe_key".into(), Value::String(alert.dedupe_key()));
    }
    body
}

/// Escapes `&`, `<` and `>` as Slack's mrkdwn requires.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters of `s` (Slack rejects blocks over 3000).
pub(super) fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The body of a Slack-compatible incoming webhook: a `text` fallback
/// (what Mattermost, Rocket.Chat and notifications show) and Block Kit
/// `blocks`: the title, the details as fields, the error and log tail as
/// code, and the link.
pub fn slack_payload(alert: &Alert) -> Value {
    let icon = if alert.kind.is_good_news() {
        ":white_check_mark:"
    } else {
        ":rotating_light:"
    };
    let title = format!("{icon} {}", slack_escape(&alert.title()));
    let text = match &alert.url {
        Some(url) => format!("{title} <{url}|Open in goflow>"),
        None => title.clone(),
    };
    let mut fields =
        vec![json!({"type": "mrkdwn", "text": format!("*DAG*\n{}", slack_escape(&alert.dag_id))})];
    let mut field = |k: &str, v: String| {
        fields.push(json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", slack_escape(&v))}));
    };
    if let Some(r) = &alert.run_id {
        field("Run", r.clone());
    }
    if let Some(d) = alert.execution_date {
        field("Execution date", d.to_rfc3339());
    }
    if let Some(t) = &alert.task_id {
        field("Task", t.clone());
    }
    if let Some(t) = alert.try_number {
        field("Try", t.to_string());
    }
    if let Some(s) = &alert.state {
        field("State", s.clone());
    }
    if let Some(d) = alert.deadline {
        field("Deadline", d.to_rfc3339());
    }
    fields.truncate(10); // Slack's limit per section
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": title}}),
        json!({"type": "section", "fields": fields}),
    ];
    if !alert.missed.is_empty() {
        let mut lines: Vec<String> = alert
            .missed
            .iter()
            .take(10)
            .map(|m| {
                let why = match m.reason {
                    MissReason::NoRun => "no run",
                    MissReason::NotStarted => "not started",
                    MissReason::StartedLate { .. } => "started late",
                };
                format!("• {} ({why})", m.interval.start.to_rfc3339())
            })
            .collect();
        if alert.missed.len() > 10 {
            lines.push(format!("… and {} more", alert.missed.len() - 10));
        }
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(&lines.join("\n"), 2900)}}));
    }
    let mut code = String::new();
    if let Some(e) = &alert.error {
        code.push_str(e);
    }
    if !alert.log_tail.is_empty() {
        if !code.is_empty() {
            code.push_str("\n--- last log lines ---\n");
        }
        code.push_str(&alert.log_tail.join("\n"));
    }
    if !code.is_empty() {
        // Keep the end: that is where the error is.
        let chars: Vec<char> = code.chars().collect();
        let tail: String = chars[chars.len().saturating_sub(2800)..].iter().collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("```{}```", slack_escape(&tail))}}));
    }
    if let Some(url) = &alert.url {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("<{url}|Open in goflow>")}]
        }));
    }
    json!({"text": text, "blocks": blocks})
}

/// `e` and its sources, `: `-separated. reqwest's own message is only
/// "error sending request for url (...)": the cause a user can act on
/// ("invalid peer certificate: UnknownIssuer") is further down the chain.
#[cfg_attr(
    not(any(feature = "alerts-http", feature = "alerts-smtp")),
    allow(dead_code)
)]
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        // Some errors (lettre's) already print their source.
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = s.source();
    }
    // lettre nests its errors: "Connection error: Connection error: ...".
    let mut parts: Vec<&str> = message.split(": ").collect();
    parts.dedup();
    parts.join(": ")
}

/// Root certificates the channels trust in addition to the built-in ones
/// (Mozilla's, via webpki-roots): a private CA's, for an SMTP relay or a
/// webhook receiver with a certificate from a company CA. Read once, from
/// a PEM file that may hold several certificates (a bundle).
#[derive(Clone)]
pub struct CaCertificates {
    source: PathBuf,
    pem: Arc<[u8]>,
    count: usize,
}

impl fmt::Debug for CaCertificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaCertificates")
            .field("source", &self.source)
            .field("count", &self.count)
            .finish()
    }
}

impl CaCertificates {
    /// Reads the certificates of the PEM file at `path`. The error names
    /// the file and says what is wrong: unreadable, no certificate in it,
    /// a certificate that cannot be parsed.
    pub fn from_pem_file(path: impl AsRef<Path>) -> Result<Self, String> {
        let path = path.as_ref();
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(path.to_path_buf(), &pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The certificates of PEM text (`-----BEGIN CERTIFICATE-----`
    /// blocks; anything else in it is ignored).
    pub fn from_pem(pem: &[u8]) -> Result<Self, String> {
        Self::parse(PathBuf::from("<PEM>"), pem)
    }

    fn parse(source: PathBuf, pem: &[u8]) -> Result<Self, String> {
        let count = String::from_utf8_lossy(pem)
            .lines()
            .filter(|l| l.trim() == "-----BEGIN CERTIFICATE-----")
            .count();
        if count == 0 {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
        }
        let certificates = CaCertificates {
            source,
            pem: pem.into(),
            count,
        };
        // Decoding the base64 does not check the certificate itself: adding
        // it to a TLS root store does, so a broken file fails at start-up
        // rather than at the first alert, with each TLS library compiled in.
        #[cfg(feature = "alerts-http")]
        http::check_ca(&certificates)?;
        #[cfg(feature = "alerts-smtp")]
        smtp::check_ca(&certificates)?;
        Ok(certificates)
    }

    /// How many certificates there are.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The file they were read from (`<PEM>` when given as text).
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The PEM text, every certificate of it.
    #[cfg_attr(
        not(any(feature = "alerts-http", feature = "alerts-smtp")),
        allow(dead_code)
    )]
    fn pem(&self) -> &[u8] {
        &self.pem
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use goflow_core::AlertKind;

    fn alert() -> Alert {
        let at = Utc.with_ymd_and_hms(2026, 11, 27, 6, 5, 0).unwrap();
        let mut a = Alert::new(AlertKind::TaskFailed, "daily-sales", at);
        a.run_id = Some("scheduled__2026-11-26T06:00:00+00:00".into());
        a.execution_date = Some(Utc.with_ymd_and_hms(2026, 11, 26, 6, 0, 0).unwrap());
        a.task_id = Some("extract".into());
        a.try_number = Some(3);
        a.state = Some("failed".into());
        a.error = Some("connection refused <db>".into());
        a.log_tail = vec!["loading".into(), "retrying".into()];
        a.url = Some("http://ui/dags/daily-sales/runs/x".into());
        a
    }

    #[test]
    fn the_webhook_body_is_the_alert_with_a_title_and_text() {
        let body = webhook_payload(&alert());
        assert_eq!(body["kind"], "task_failed");
        assert_eq!(body["dag_id"], "daily-sales");
        assert_eq!(body["try_number"], 3);
        assert_eq!(body["url"], "http://ui/dags/daily-sales/runs/x");
        assert!(body["title"]
            .as_str()
            .unwrap()
            .starts_with("Task extract failed"));
        assert!(body["text"]
            .as_str()
            .unwrap()
            .contains("connection refused"));
        assert_eq!(
            body["dedupe_key"],
            "task_failed:daily-sales:scheduled__2026-11-26T06:00:00+00:00:extract:3"
        );
    }

    #[test]
    fn the_slack_body_has_text_blocks_fields_code_and_link() {
        let body = slack_payload(&alert());
        let text = body["text"].as_str().unwrap();
        assert!(
            text.contains("Task extract failed (try 3) in daily-sales"),
            "{text}"
        );
        assert!(text.contains("<http://ui/dags/daily-sales/runs/x|Open in goflow>"));
        let blocks = body["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "section");
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"*Task*\nextract"), "{fields:?}");
        assert!(fields.contains(&"*Try*\n3"), "{fields:?}");
        let code = blocks[2]["text"]["text"].as_str().unwrap();
        assert!(
            code.starts_with("```connection refused &lt;db&gt;"),
            "{code}"
        );
        assert!(code.contains("retrying```"), "{code}");
        assert_eq!(blocks[3]["type"], "context");
    }

    #[cfg(feature = "alerts-smtp")]
    #[test]
    fn the_email_has_a_subject_recipients_and_the_text() {
        use lettre::message::Mailbox;
        let from: Mailbox = "goflow <goflow@example.com>".parse().unwrap();
        let to: Vec<Mailbox> = vec!["ops@example.com".parse().unwrap()];
        let m = email_message(&alert(), &from, &to).unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(
            raw.contains("Subject: [goflow] Task extract failed (try 3)"),
            "{raw}"
        );
        assert!(raw.contains("To: ops@example.com"), "{raw}");
        assert!(raw.contains("connection refused <db>"), "{raw}");
        assert!(
            raw.contains("Link: http://ui/dags/daily-sales/runs/x"),
            "{raw}"
        );
    }

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn an_error_message_has_its_causes_once() {
        let e = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer(
                    "invalid peer certificate: UnknownIssuer",
                    None,
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "error sending request: client error (Connect): invalid peer certificate: UnknownIssuer"
        );
        // A source its parent already printed, and lettre's nesting.
        let e = Layer(
            "Connection error: Connection error: refused",
            Some(Box::new(Layer("refused", None))),
        );
        assert_eq!(error_chain(&e), "Connection error: refused");
    }

    #[test]
    fn ca_certificates_are_read_from_a_pem_bundle() {
        let pem = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.self_signed(&key).unwrap().pem()
        };
        let bundle = format!("one\n{}two\n{}", pem("a"), pem("b"));
        let ca = CaCertificates::from_pem(bundle.as_bytes()).unwrap();
        assert_eq!(ca.count(), 2);
        #[cfg(feature = "alerts-http")]
        assert!(http::http_client(std::time::Duration::from_secs(1), Some(&ca)).is_ok());
        #[cfg(feature = "alerts-smtp")]
        assert!(smtp::check_ca(&ca).is_ok());

        let err = CaCertificates::from_pem(b"not PEM at all").unwrap_err();
        assert!(err.contains("no PEM certificate"), "{err}");
        // Each TLS library compiled in checks the certificates themselves.
        #[cfg(any(feature = "alerts-http", feature = "alerts-smtp"))]
        {
            let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
            let err = CaCertificates::from_pem(garbage.as_bytes()).unwrap_err();
            assert!(err.contains("not a usable CA certificate"), "{err}");
        }
    }

    #[test]
    fn long_text_is_clipped() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }
}
