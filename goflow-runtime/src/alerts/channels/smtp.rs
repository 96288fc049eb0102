//! The email channel (feature `alerts-smtp`): SMTP with lettre and rustls.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use goflow_core::Alert;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{error_chain, CaCertificates, Channel, ChannelError};
use crate::alerts::{SmtpConfig, SmtpTls};

/// The email of an alert: `[goflow] <title>` as subject, [`Alert::text`]
/// as a plain-text body.
pub fn email_message(alert: &Alert, from: &Mailbox, to: &[Mailbox]) -> Result<Message, String> {
    let mut builder = Message::builder()
        .from(from.clone())
        .subject(format!("[goflow] {}", alert.title()))
        .header(lettre::message::header::ContentType::TEXT_PLAIN);
    for t in to {
        builder = builder.to(t.clone());
    }
    builder
        .body(alert.text())
        .map_err(|e| format!("cannot build the email: {e}"))
}

fn lettre_certificate(ca: &CaCertificates) -> Result<Certificate, String> {
    // One `Certificate` of PEM text is the whole bundle to lettre.
    Certificate::from_pem(ca.pem()).map_err(|e| error_chain(&e))
}

/// Checks that lettre's TLS can trust `ca`: adding it to a root store
/// (with no built-in roots: just these) checks the certificates.
pub(super) fn check_ca(ca: &CaCertificates) -> Result<(), String> {
    TlsParameters::builder("localhost".into())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(lettre_certificate(ca)?)
        .build()
        .map(drop)
        .map_err(|e| format!("not a usable CA certificate: {}", error_chain(&e)))
}

/// Email over SMTP (lettre, rustls).
pub struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl fmt::Debug for EmailChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailChannel")
            .field("from", &self.from.to_string())
            .field("to", &self.to.len())
            .finish_non_exhaustive()
    }
}

impl EmailChannel {
    /// An SMTP channel for `config`, giving up on a message after
    /// `timeout`; with TLS, trusting `ca` besides the built-in roots.
    /// Errors name the setting that is wrong.
    pub fn new(
        config: &SmtpConfig,
        timeout: Duration,
        ca: Option<&CaCertificates>,
    ) -> Result<Self, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("invalid sender address {:?}: {e}", config.from))?;
        let to = config
            .to
            .iter()
            .map(|t| {
                t.parse::<Mailbox>()
                    .map_err(|e| format!("invalid recipient address {t:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err("no recipient: set GOFLOW_ALERT_EMAIL_TO".into());
        }
        let tls_params = || {
            let mut tls = TlsParameters::builder(config.host.clone());
            if let Some(ca) = ca {
                tls = tls.add_root_certificate(lettre_certificate(ca)?);
            }
            tls.build()
                .map_err(|e| format!("TLS set-up for {}: {}", config.host, error_chain(&e)))
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.clone());
        builder = match config.tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Starttls => builder.tls(Tls::Required(tls_params()?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls_params()?)),
        };
        let port = config.port.unwrap_or(match config.tls {
            SmtpTls::None => 25,
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
        });
        builder = builder.port(port).timeout(Some(timeout));
        if let Some(user) = &config.username {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                config.password.clone().unwrap_or_default(),
            ));
        }
        Ok(EmailChannel {
            transport: builder.build(),
            from,
            to,
        })
    }
}

impl Channel for EmailChannel {
    fn name(&self) -> &str {
        "email"
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), ChannelError>> {
        Box::pin(async move {
            let message =
                email_message(alert, &self.from, &self.to).map_err(ChannelError::permanent)?;
            match self.transport.send(message).await {
                Ok(_) => Ok(()),
                Err(e) if e.is_permanent() => Err(ChannelError::permanent(format!(
                    "SMTP: {}",
                    error_chain(&e)
                ))),
                Err(e) => Err(ChannelError::retryable(format!(
                    "SMTP: {}",
                    error_chain(&e)
                ))),
            }
        })
    }
}
