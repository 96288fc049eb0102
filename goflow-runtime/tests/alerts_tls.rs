//! Alert channels over real TLS: HTTPS webhook and Slack receivers and
//! SMTP servers (STARTTLS, implicit TLS, AUTH) on 127.0.0.1, with a
//! certificate for `localhost` from a test CA made at run time. The
//! channels trust that CA only through the private-CA setting
//! (`GOFLOW_ALERT_CA_FILE`, `--alert-ca-file`); the clients connect to
//! `localhost`, so the certificate's name is checked too.

mod alerts_support;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use alerts_support::*;
use base64::Engine;
use chrono::Utc;
use clap::Parser;
use goflow_core::{Alert, AlertKind};
use goflow_runtime::alerts::{
    AlertArgs, CaCertificates, Channel, ChannelError, EmailChannel, SlackChannel, SmtpConfig,
    SmtpTls, WebhookChannel, CA_FILE_ENV,
};
use goflow_store::{AlertStatus, NewAlert, Store};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// An upper bound for anything a test waits for; none should come close.
const PATIENCE: Duration = Duration::from_secs(30);
/// The channels' own timeout per delivery.
const TIMEOUT: Duration = Duration::from_secs(10);

/// A test CA, a server certificate for `localhost` signed by it, and the
/// CA's certificate in a PEM file (after an unrelated CA's, so that the
/// file is a bundle and only its second certificate makes the server
/// trusted).
struct Pki {
    server: Arc<ServerConfig>,
    ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.self_signed(&key).unwrap(), key)
}

fn pki() -> Pki {
    let (other_ca, _) = ca("another CA");
    let (test_ca, test_ca_key) = ca("goflow test CA");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &test_ca, &test_ca_key).unwrap();

    let server = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(cert.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("company-ca.pem");
    std::fs::write(
        &ca_file,
        format!("# the company's CAs\n{}\n{}", other_ca.pem(), test_ca.pem()),
    )
    .unwrap();
    Pki {
        server: Arc::new(server),
        ca_file,
        _dir: dir,
    }
}

impl Pki {
    fn ca(&self) -> CaCertificates {
        CaCertificates::from_pem_file(&self.ca_file).unwrap()
    }
}

fn sample_alert() -> Alert {
    let mut a = Alert::new(AlertKind::TaskFailed, "d", Utc::now());
    a.run_id = Some("manual__1".into());
    a.task_id = Some("load".into());
    a.try_number = Some(1);
    a.state = Some("failed".into());
    a.error = Some("boom".into());
    a.url = Some("http://goflow.test/dags/d/runs/manual__1".into());
    a
}

async fn send(channel: &dyn Channel, alert: &Alert) -> Result<(), ChannelError> {
    tokio::time::timeout(PATIENCE, channel.send(alert))
        .await
        .expect("the channel gives up within its timeout")
}

async fn enqueue(store: &Store, channel: &str, alert: Alert) {
    let new = NewAlert {
        channel: channel.into(),
        alert,
    };
    assert_eq!(
        store.enqueue_alerts(vec![new], Utc::now()).await.unwrap(),
        1
    );
}

// ---------------------------------------------------------------------------
// HTTPS webhooks
// ---------------------------------------------------------------------------

/// From the command line to the receiver: `--alert-ca-file` is read by
/// `AlertArgs::into_config`, and the service's webhook channel trusts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_gets_the_alert_when_the_ca_file_is_set() {
    let pki = pki();
    let hook = Server::start_tls([], Arc::clone(&pki.server)).await;
    let url = hook.url("/hook");
    assert!(url.starts_with("https://localhost:"), "{url}");

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        alerts: AlertArgs,
    }
    let cli = Cli::try_parse_from([
        "goflow",
        "--alert-webhook-url",
        url.as_str(),
        "--alert-ca-file",
        pki.ca_file.to_str().unwrap(),
    ])
    .unwrap();
    let parsed = cli.alerts.into_config().unwrap();
    let ca = parsed
        .ca_certificates
        .as_ref()
        .expect("the CA file is read");
    assert_eq!(ca.count(), 2, "{ca:?}");
    assert_eq!(ca.source(), pki.ca_file);

    let db = goflow_store::testing::sqlite(true).await;
    let alert = sample_alert();
    enqueue(&db.store, "webhook", alert.clone()).await;
    let mut config = fast_config("a1");
    config.webhook_url = parsed.webhook_url;
    config.ca_certificates = parsed.ca_certificates;
    let service = start_alerts(&db.store, vec![], config);
    hook.wait_for("the alert", |r| !r.is_empty()).await;

    let got = &hook.received()[0];
    assert_eq!(got.path, "/hook");
    assert_eq!(got.headers["idempotency-key"], alert.dedupe_key().as_str());
    assert_eq!(got.headers["content-type"], "application/json");
    let body = got.json();
    assert_eq!(body["kind"], "task_failed");
    assert_eq!(body["dag_id"], "d");
    assert_eq!(body["task_id"], "load");
    assert_eq!(body["error"], "boom");
    assert_eq!(body["dedupe_key"], alert.dedupe_key().as_str());

    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let row = &db.store.list_alerts(None, 1).await.unwrap()[0];
        if row.status == AlertStatus::Sent {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{row:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_webhook_without_the_ca_file_fails_naming_the_certificate() {
    let pki = pki();
    let hook = Server::start_tls([], Arc::clone(&pki.server)).await;
    let channel = WebhookChannel::new(hook.url("/hook"), TIMEOUT, None).unwrap();
    let err = send(&channel, &sample_alert())
        .await
        .expect_err("an unknown CA is not trusted");
    assert!(
        err.message
            .contains("invalid peer certificate: UnknownIssuer"),
        "{err:?}"
    );
    // A connection error, retried like one: the receiver's certificate may
    // be fixed while the alert waits.
    assert!(err.retryable, "{err:?}");
    // The URL stays out of the stored message: a Slack webhook's URL is
    // its secret.
    assert!(!err.message.contains("/hook"), "{err:?}");
    assert!(hook.received().is_empty(), "{:#?}", hook.received());

    // The same channel with the CA: the name and the chain check out.
    let channel = WebhookChannel::new(hook.url("/hook"), TIMEOUT, Some(&pki.ca())).unwrap();
    send(&channel, &sample_alert()).await.unwrap();
    assert_eq!(hook.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_even_from_the_ca() {
    let pki = pki();
    let hook = Server::start_tls([], Arc::clone(&pki.server)).await;
    // The server's certificate is for `localhost`, not this address.
    let url = format!("https://127.0.0.1:{}/hook", hook.addr.port());
    let channel = WebhookChannel::new(url, TIMEOUT, Some(&pki.ca())).unwrap();
    let err = send(&channel, &sample_alert()).await.unwrap_err();
    assert!(err.message.contains("invalid peer certificate"), "{err:?}");
    assert!(err.message.contains("not valid for name"), "{err:?}");
    assert!(hook.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slack_webhook_over_https() {
    let pki = pki();
    let slack = Server::start_tls([], Arc::clone(&pki.server)).await;
    let channel = SlackChannel::new(
        slack.url("/services/T000/B000/XXX"),
        TIMEOUT,
        Some(&pki.ca()),
    )
    .unwrap();
    send(&channel, &sample_alert()).await.unwrap();
    let got = &slack.received()[0];
    assert_eq!(got.path, "/services/T000/B000/XXX");
    let body = got.json();
    let text = body["text"].as_str().unwrap();
    assert!(
        text.contains("Task load failed (try 1) in d, run manual__1"),
        "{text}"
    );
    assert!(body["blocks"].as_array().is_some_and(|b| !b.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_error_status_is_still_classified() {
    let pki = pki();
    let hook =
        Server::start_tls([Reply::Status(503), Reply::Status(404)], pki.server.clone()).await;
    let channel = WebhookChannel::new(hook.url("/hook"), TIMEOUT, Some(&pki.ca())).unwrap();
    let err = send(&channel, &sample_alert()).await.unwrap_err();
    assert!(
        err.retryable && err.message.starts_with("HTTP 503"),
        "{err:?}"
    );
    let err = send(&channel, &sample_alert()).await.unwrap_err();
    assert!(
        !err.retryable && err.message.starts_with("HTTP 404"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------
// SMTP over TLS
// ---------------------------------------------------------------------------

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Conn = BufReader<Box<dyn Io>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Plain text, no STARTTLS offered.
    Plain,
    /// Plain text until STARTTLS (port 587's way).
    Starttls,
    /// TLS from the first byte (port 465's way).
    Implicit,
}

/// What an SMTP session brought.
#[derive(Debug, Default)]
struct Session {
    /// Each command line, and whether it came over TLS.
    commands: Vec<(bool, String)>,
    /// The message (DATA, dot-unstuffed), and whether it came over TLS.
    message: Option<(bool, String)>,
    /// The server name the client asked for in its TLS hello (SNI).
    server_name: Option<String>,
    /// User names and passwords received with AUTH.
    credentials: Vec<(String, String)>,
    /// Why the session ended early (a TLS handshake the client refused).
    error: Option<String>,
}

impl Session {
    /// For each command starting with `prefix`: whether it came over TLS.
    fn over_tls(&self, prefix: &str) -> Vec<bool> {
        self.commands
            .iter()
            .filter(|(_, c)| c.to_ascii_uppercase().starts_with(prefix))
            .map(|(tls, _)| *tls)
            .collect()
    }

    fn has(&self, command: &str) -> bool {
        self.commands.iter().any(|(_, c)| c == command)
    }
}

struct SmtpServer {
    port: u16,
    session: tokio::task::JoinHandle<Session>,
}

impl SmtpServer {
    /// A server for one session on 127.0.0.1. With `credentials`, it
    /// advertises `AUTH PLAIN LOGIN` once the connection is encrypted, and
    /// takes no mail before a client has logged in with them.
    async fn start(
        mode: Mode,
        tls: Arc<ServerConfig>,
        credentials: Option<(&'static str, &'static str)>,
    ) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let session = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let mut session = Session::default();
            let acceptor = TlsAcceptor::from(tls);
            if let Err(e) = serve_smtp(socket, mode, acceptor, credentials, &mut session).await {
                session.error = Some(e.to_string());
            }
            session
        });
        SmtpServer { port, session }
    }

    async fn session(self) -> Session {
        tokio::time::timeout(PATIENCE, self.session)
            .await
            .expect("the SMTP session ends")
            .unwrap()
    }
}

async fn reply(conn: &mut Conn, text: &str) -> io::Result<()> {
    conn.write_all(text.as_bytes()).await?;
    // Over TLS, nothing leaves before a flush.
    conn.flush().await
}

async fn read_line(conn: &mut Conn) -> io::Result<Option<String>> {
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    Ok(Some(line.trim_end_matches(['\r', '\n']).to_owned()))
}

fn decode(b64: &str) -> io::Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    String::from_utf8(bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn upgrade(
    conn: Box<dyn Io>,
    acceptor: &TlsAcceptor,
    session: &mut Session,
) -> io::Result<Conn> {
    let tls = acceptor.accept(conn).await?;
    session.server_name = tls.get_ref().1.server_name().map(str::to_owned);
    Ok(BufReader::new(Box::new(tls)))
}

/// Asks for the next line of an AUTH exchange.
async fn next(conn: &mut Conn, prompt: &str) -> io::Result<String> {
    reply(conn, prompt).await?;
    Ok(read_line(conn).await?.ok_or(io::ErrorKind::UnexpectedEof)?)
}

/// AUTH PLAIN (with or without the initial response) and AUTH LOGIN.
async fn auth(conn: &mut Conn, args: &str) -> io::Result<Option<(String, String)>> {
    let mut words = args.split_whitespace();
    let mechanism = words.next().unwrap_or_default().to_ascii_uppercase();
    let initial = words.next().map(str::to_owned);
    match mechanism.as_str() {
        "PLAIN" => {
            let response = match initial {
                Some(r) => r,
                None => next(conn, "334 \r\n").await?,
            };
            let plain = decode(&response)?;
            let mut parts = plain.split('\0').skip(1);
            let user = parts.next().unwrap_or_default().to_owned();
            let password = parts.next().unwrap_or_default().to_owned();
            Ok(Some((user, password)))
        }
        "LOGIN" => {
            let user = match initial {
                Some(u) => u,
                None => next(conn, "334 VXNlcm5hbWU6\r\n").await?,
            };
            let password = next(conn, "334 UGFzc3dvcmQ6\r\n").await?;
            Ok(Some((decode(&user)?, decode(&password)?)))
        }
        _ => Ok(None),
    }
}

async fn serve_smtp(
    socket: tokio::net::TcpStream,
    mode: Mode,
    acceptor: TlsAcceptor,
    credentials: Option<(&'static str, &'static str)>,
    session: &mut Session,
) -> io::Result<()> {
    let mut tls = mode == Mode::Implicit;
    let mut conn: Conn = if tls {
        upgrade(Box::new(socket), &acceptor, session).await?
    } else {
        BufReader::new(Box::new(socket))
    };
    let mut logged_in = false;
    reply(&mut conn, "220 localhost ESMTP goflow-test\r\n").await?;
    while let Some(line) = read_line(&mut conn).await? {
        session.commands.push((tls, line.clone()));
        let (verb, args) = line.split_once(' ').unwrap_or((&line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                let mut lines = vec!["localhost", "8BITMIME"];
                if !tls && mode == Mode::Starttls {
                    lines.push("STARTTLS");
                }
                // Like real servers: no password over plain text.
                if tls && credentials.is_some() {
                    lines.push("AUTH PLAIN LOGIN");
                }
                let last = lines.len() - 1;
                let text: String = lines
                    .iter()
                    .enumerate()
                    .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
                    .collect();
                reply(&mut conn, &text).await?;
            }
            "STARTTLS" if !tls && mode == Mode::Starttls => {
                reply(&mut conn, "220 2.0.0 ready to start TLS\r\n").await?;
                // Anything the client sent past STARTTLS before the
                // handshake would be plain text smuggled into the session.
                if !conn.buffer().is_empty() {
                    return Err(io::Error::other("data pipelined after STARTTLS"));
                }
                conn = upgrade(conn.into_inner(), &acceptor, session).await?;
                tls = true;
            }
            "AUTH" if tls && credentials.is_some() => {
                let got = auth(&mut conn, args).await?;
                let ok = got
                    .as_ref()
                    .is_some_and(|(u, p)| credentials == Some((u.as_str(), p.as_str())));
                session.credentials.extend(got);
                if ok {
                    logged_in = true;
                    reply(&mut conn, "235 2.7.0 authentication succeeded\r\n").await?;
                } else {
                    reply(
                        &mut conn,
                        "535 5.7.8 authentication credentials invalid\r\n",
                    )
                    .await?;
                }
            }
            "MAIL" if credentials.is_some() && !logged_in => {
                reply(&mut conn, "530 5.7.0 authentication required\r\n").await?;
            }
            "MAIL" | "RCPT" | "RSET" | "NOOP" => reply(&mut conn, "250 2.0.0 ok\r\n").await?,
            "DATA" => {
                reply(&mut conn, "354 go ahead\r\n").await?;
                let mut data = String::new();
                loop {
                    let l = read_line(&mut conn)
                        .await?
                        .ok_or(io::ErrorKind::UnexpectedEof)?;
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push('\n');
                }
                session.message = Some((tls, data));
                reply(&mut conn, "250 2.0.0 queued\r\n").await?;
            }
            "QUIT" => {
                reply(&mut conn, "221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            _ => reply(&mut conn, "502 5.5.2 command not recognized\r\n").await?,
        }
    }
    Ok(())
}

fn smtp_config(port: u16, tls: SmtpTls) -> SmtpConfig {
    SmtpConfig {
        host: "localhost".into(),
        port: Some(port),
        tls,
        username: None,
        password: None,
        from: "goflow <goflow@example.com>".into(),
        to: vec!["ops@example.com".into()],
    }
}

/// The message arrived over TLS, from and to the right addresses.
fn assert_delivered_over_tls(session: &Session) {
    assert_eq!(session.error, None, "{session:#?}");
    assert_eq!(
        session.server_name.as_deref(),
        Some("localhost"),
        "{session:#?}"
    );
    assert_eq!(session.over_tls("MAIL FROM"), [true], "{session:#?}");
    assert!(
        session.has("MAIL FROM:<goflow@example.com>"),
        "{session:#?}"
    );
    assert!(session.has("RCPT TO:<ops@example.com>"), "{session:#?}");
    let (tls, data) = session.message.as_ref().expect("a message");
    assert!(tls, "{session:#?}");
    assert!(
        data.contains("Subject: [goflow] Task load failed (try 1) in d"),
        "{data}"
    );
    assert!(data.contains("To: ops@example.com"), "{data}");
    assert!(data.contains("Error:\nboom"), "{data}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_with_starttls() {
    let pki = pki();
    let server = SmtpServer::start(Mode::Starttls, pki.server.clone(), None).await;
    let config = smtp_config(server.port, SmtpTls::Starttls);
    let channel = EmailChannel::new(&config, TIMEOUT, Some(&pki.ca())).unwrap();
    send(&channel, &sample_alert()).await.unwrap();
    let session = server.session().await;
    assert_delivered_over_tls(&session);
    // Greeted in plain text, then upgraded before anything else.
    assert_eq!(session.over_tls("EHLO"), [false, true], "{session:#?}");
    assert_eq!(session.over_tls("STARTTLS"), [false], "{session:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_with_implicit_tls() {
    let pki = pki();
    let server = SmtpServer::start(Mode::Implicit, pki.server.clone(), None).await;
    let config = smtp_config(server.port, SmtpTls::Tls);
    let channel = EmailChannel::new(&config, TIMEOUT, Some(&pki.ca())).unwrap();
    send(&channel, &sample_alert()).await.unwrap();
    let session = server.session().await;
    assert_delivered_over_tls(&session);
    assert!(session.commands.iter().all(|(tls, _)| *tls), "{session:#?}");
    assert!(session.over_tls("STARTTLS").is_empty(), "{session:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_with_starttls_and_a_password() {
    let pki = pki();
    let server = SmtpServer::start(
        Mode::Starttls,
        pki.server.clone(),
        Some(("goflow", "s3cret p@ss")),
    )
    .await;
    let config = SmtpConfig {
        username: Some("goflow".into()),
        password: Some("s3cret p@ss".into()),
        ..smtp_config(server.port, SmtpTls::Starttls)
    };
    let channel = EmailChannel::new(&config, TIMEOUT, Some(&pki.ca())).unwrap();
    send(&channel, &sample_alert()).await.unwrap();
    let session = server.session().await;
    assert_delivered_over_tls(&session);
    assert_eq!(
        session.credentials,
        [("goflow".to_owned(), "s3cret p@ss".to_owned())]
    );
    assert_eq!(session.over_tls("AUTH"), [true], "{session:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_smtp_password_is_a_permanent_error() {
    let pki = pki();
    let server = SmtpServer::start(
        Mode::Implicit,
        pki.server.clone(),
        Some(("goflow", "right")),
    )
    .await;
    let config = SmtpConfig {
        username: Some("goflow".into()),
        password: Some("wrong".into()),
        ..smtp_config(server.port, SmtpTls::Tls)
    };
    let channel = EmailChannel::new(&config, TIMEOUT, Some(&pki.ca())).unwrap();
    let err = send(&channel, &sample_alert()).await.unwrap_err();
    assert!(!err.retryable, "{err:?}");
    assert!(err.message.contains("535"), "{err:?}");
    let session = server.session().await;
    assert!(session.message.is_none(), "{session:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_is_required_not_just_tried() {
    let pki = pki();
    let server = SmtpServer::start(Mode::Plain, pki.server.clone(), None).await;
    let config = smtp_config(server.port, SmtpTls::Starttls);
    let channel = EmailChannel::new(&config, TIMEOUT, Some(&pki.ca())).unwrap();
    let err = send(&channel, &sample_alert()).await.unwrap_err();
    assert!(err.message.starts_with("SMTP: "), "{err:?}");
    let session = server.session().await;
    // Nothing of the message went out in plain text.
    assert!(session.over_tls("MAIL").is_empty(), "{session:#?}");
    assert!(session.message.is_none(), "{session:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_without_the_ca_file_fails_naming_the_certificate() {
    let pki = pki();
    for (mode, tls) in [
        (Mode::Starttls, SmtpTls::Starttls),
        (Mode::Implicit, SmtpTls::Tls),
    ] {
        let server = SmtpServer::start(mode, pki.server.clone(), None).await;
        let channel = EmailChannel::new(&smtp_config(server.port, tls), TIMEOUT, None).unwrap();
        let err = send(&channel, &sample_alert()).await.unwrap_err();
        assert!(
            err.message
                .contains("invalid peer certificate: UnknownIssuer"),
            "{mode:?}: {err:?}"
        );
        assert!(err.retryable, "{mode:?}: {err:?}");
        let session = server.session().await;
        assert!(session.message.is_none(), "{mode:?}: {session:#?}");
        assert!(session.error.is_some(), "{mode:?}: {session:#?}");
    }
}

// ---------------------------------------------------------------------------
// The setting
// ---------------------------------------------------------------------------

fn ca_file_error(path: &Path) -> String {
    AlertArgs {
        ca_file: Some(path.to_path_buf()),
        ..AlertArgs::default()
    }
    .into_config()
    .expect_err("an unusable CA file is a config error")
    .to_string()
}

#[test]
fn an_unusable_ca_file_is_a_config_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();

    let missing = dir.path().join("missing.pem");
    let err = ca_file_error(&missing);
    assert!(err.contains(CA_FILE_ENV), "{err}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    assert!(err.contains("cannot read"), "{err}");

    let empty = dir.path().join("key-only.pem");
    std::fs::write(&empty, KeyPair::generate().unwrap().serialize_pem()).unwrap();
    let err = ca_file_error(&empty);
    assert!(err.contains(CA_FILE_ENV), "{err}");
    assert!(err.contains(&empty.display().to_string()), "{err}");
    assert!(err.contains("no PEM certificate"), "{err}");

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = ca_file_error(&broken);
    assert!(err.contains(CA_FILE_ENV), "{err}");
    assert!(err.contains(&broken.display().to_string()), "{err}");

    // An empty setting is no setting, as for the other options.
    let config = AlertArgs {
        ca_file: Some(PathBuf::new()),
        ..AlertArgs::default()
    }
    .into_config()
    .unwrap();
    assert!(config.ca_certificates.is_none());
}

#[test]
fn the_ca_file_is_an_option_and_an_environment_variable() {
    use clap::Args;
    let command = AlertArgs::augment_args(clap::Command::new("goflow"));
    let arg = command
        .get_arguments()
        .find(|a| a.get_long() == Some("alert-ca-file"))
        .expect("--alert-ca-file");
    assert_eq!(arg.get_env(), Some(std::ffi::OsStr::new(CA_FILE_ENV)));
    assert_eq!(CA_FILE_ENV, "GOFLOW_ALERT_CA_FILE");
}
