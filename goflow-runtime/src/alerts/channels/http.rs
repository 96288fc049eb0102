//! The webhook channels (feature `alerts-http`): reqwest with rustls.

use std::time::Duration;

use futures::future::BoxFuture;
use goflow_core::Alert;

use super::{
    clip, error_chain, slack_payload, webhook_payload, CaCertificates, Channel, ChannelError,
};

/// Sends a channel's request and classifies the answer.
async fn deliver(request: reqwest::RequestBuilder) -> Result<(), ChannelError> {
    let response = request.send().await.map_err(request_error)?;
    check_response(response).await
}

/// Classifies an HTTP response: 2xx is delivered; 408, 429 and 5xx are
/// worth retrying; other statuses are not.
async fn check_response(response: reqwest::Response) -> Result<(), ChannelError> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    let message = format!("HTTP {status}: {}", clip(body.trim(), 300));
    if status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
    {
        Err(ChannelError::retryable(message))
    } else {
        Err(ChannelError::permanent(message))
    }
}

/// A failed request is worth retrying whatever the cause, TLS failures
/// included: they are connection errors, and a server's certificate may
/// be fixed while the alert waits; the message says which it was. The URL
/// is left out: a Slack webhook's URL is its secret, and the message is
/// stored and logged.
fn request_error(e: reqwest::Error) -> ChannelError {
    let e = e.without_url();
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    ChannelError::retryable(format!("{what}: {}", error_chain(&e)))
}

/// The HTTP client of the webhook channels: rustls, the built-in roots and
/// `ca` if given, and a timeout on every request.
pub(crate) fn http_client(
    timeout: Duration,
    ca: Option<&CaCertificates>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(concat!("goflow/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca {
        // One `Certificate` of PEM text is the whole bundle to reqwest.
        let certificate = reqwest::Certificate::from_pem(ca.pem()).map_err(|e| error_chain(&e))?;
        builder = builder.add_root_certificate(certificate);
    }
    // No fallback to a default client: it would drop the timeout and the
    // private CA without a word.
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))
}

/// The generic JSON webhook: `POST` of [`webhook_payload`], with the
/// alert's dedupe key as `Idempotency-Key`.
#[derive(Clone, Debug)]
pub struct WebhookChannel {
    url: String,
    client: reqwest::Client,
}

impl WebhookChannel {
    /// A webhook posting to `url`, giving up on a request after `timeout`,
    /// trusting `ca` besides the built-in roots.
    pub fn new(
        url: impl Into<String>,
        timeout: Duration,
        ca: Option<&CaCertificates>,
    ) -> Result<Self, String> {
        Ok(WebhookChannel {
            url: url.into(),
            client: http_client(timeout, ca)?,
        })
    }
}

impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        "webhook"
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let request = self
                .client
                .post(&self.url)
                .header("Idempotency-Key", alert.dedupe_key())
                .json(&webhook_payload(alert));
            deliver(request).await
        })
    }
}

/// A Slack-compatible incoming webhook: `POST` of [`slack_payload`].
#[derive(Clone, Debug)]
pub struct SlackChannel {
    url: String,
    client: reqwest::Client,
}

impl SlackChannel {
    /// A Slack webhook posting to `url`, giving up on a request after
    /// `timeout`, trusting `ca` besides the built-in roots.
    pub fn new(
        url: impl Into<String>,
        timeout: Duration,
        ca: Option<&CaCertificates>,
    ) -> Result<Self, String> {
        Ok(SlackChannel {
            url: url.into(),
            client: http_client(timeout, ca)?,
        })
    }
}

impl Channel for SlackChannel {
    fn name(&self) -> &str {
        "slack"
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(
            async move { deliver(self.client.post(&self.url).json(&slack_payload(alert))).await },
        )
    }
}

/// Checks that reqwest's TLS can trust `ca`: decoding the PEM does not
/// check the certificates, adding them to a root store does.
pub(super) fn check_ca(ca: &CaCertificates) -> Result<(), String> {
    reqwest::Certificate::from_pem_bundle(ca.pem()).map_err(|e| error_chain(&e))?;
    http_client(Duration::from_secs(1), Some(ca))
        .map(drop)
        .map_err(|e| format!("not a usable CA certificate: {e}"))
}
