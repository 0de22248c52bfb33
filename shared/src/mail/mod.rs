//! Outgoing email: one [`Mailer`] in front of three back ends (the texts are in
//! [`templates`]), chosen by configuration
//! ([`MailBackend`]):
//!
//! - **SMTP** (`SMTP_URL`, as lettre reads it): `smtp://host:port` plain,
//!   `smtp://host:port?tls=required` with STARTTLS, `smtps://host:port` with implicit TLS;
//!   credentials as `smtp://user:password@host`. Pooled connections, rustls with Mozilla's
//!   roots.
//! - **Amazon SES** (`MAIL_BACKEND=ses`, only in builds with the `ses` cargo feature): the
//!   SESv2 API with the AWS SDK's own configuration (region, credentials and
//!   `AWS_ENDPOINT_URL` from the environment), loaded on the first send so that functions
//!   that never send mail never load it.
//! - **Log** (the default when neither is configured): the email is written to the log,
//!   body included, and not sent. This is the contract's local-development behaviour
//!   ("unset: emails are written to the log") and so it **does** log secrets such as
//!   password-reset links: never run a deployment on it. Nothing else in this module logs a
//!   message body, and [`OutgoingEmail`]'s `Debug` hides it.
//!
//! Sending never blocks or fails a request: the caller runs [`Mailer::deliver`] in a
//! background task of its own and answers at once. Delivery retries transient failures a few times with growing
//! pauses ([`RetryPolicy`]) and logs every failure and the outcome.

pub(crate) mod templates;

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox, Message, MultiPart, SinglePart};
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Tokio1Executor};
use secrecy::ExposeSecret as _;

use crate::config::Config;
use crate::domain::Email;

/// How long one SMTP command may take before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

pub use crate::config::MailBackend;

/// Why mail could not be configured or one delivery attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The configuration cannot work (bad `SMTP_URL` or `SMTP_FROM`, SES not built in).
    #[error("{variable}: {reason}")]
    Config {
        /// The environment variable at fault.
        variable: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The message could not be built (an address lettre refuses).
    #[error("the email could not be built")]
    Message(#[source] anyhow::Error),
    /// The SMTP server refused the message or could not be reached.
    #[error("SMTP delivery failed")]
    Smtp(#[source] lettre::transport::smtp::Error),
    /// SES refused the message or could not be reached.
    #[error("SES delivery failed")]
    Ses {
        /// Whether retrying cannot help (a rejected message, not a throttle or an outage).
        permanent: bool,
        /// The SDK's error.
        #[source]
        source: anyhow::Error,
    },
}

impl MailError {
    /// Whether retrying the same message cannot succeed.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::Config { .. } | Self::Message(_) => true,
            Self::Smtp(e) => e.is_permanent(),
            Self::Ses { permanent, .. } => *permanent,
        }
    }
}

/// One email to one recipient: plain text, and optionally the same in HTML.
#[derive(Clone)]
pub struct OutgoingEmail {
    to: Email,
    subject: String,
    text: String,
    html: Option<String>,
    /// What the email is for (`password_reset`), for log lines.
    purpose: &'static str,
}

impl OutgoingEmail {
    /// A plain-text email to `to`. `purpose` names it in log lines (never the body).
    pub fn new(
        purpose: &'static str,
        to: &Email,
        subject: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        Self {
            to: to.clone(),
            subject: subject.into(),
            text: text.into(),
            html: None,
            purpose,
        }
    }

    /// The same email with an HTML alternative of its text.
    pub fn with_html(mut self, html: impl Into<String>) -> Self {
        self.html = Some(html.into());
        self
    }

    /// The recipient.
    #[cfg(test)]
    pub fn to(&self) -> &Email {
        &self.to
    }

    /// The text body (may hold a secret link: do not log it).
    #[cfg(test)]
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The HTML body, when there is one (may hold a secret link: do not log it).
    #[cfg(test)]
    pub fn html(&self) -> Option<&str> {
        self.html.as_deref()
    }

    /// The RFC 5322 message: `text/plain; charset=utf-8`, or `multipart/alternative` of the
    /// text and the HTML.
    fn to_message(&self, from: &Mailbox) -> Result<Message, MailError> {
        let to: Mailbox = self
            .to
            .as_str()
            .parse()
            .map_err(|e| MailError::Message(anyhow::Error::new(e).context("recipient")))?;
        let builder = Message::builder()
            .from(from.clone())
            .to(to)
            .subject(self.subject.clone());
        let text = SinglePart::builder()
            .header(ContentType::TEXT_PLAIN)
            .body(text_body(&self.text));
        match &self.html {
            None => builder.singlepart(text),
            Some(html) => builder.multipart(
                MultiPart::alternative()
                    .singlepart(text)
                    .singlepart(SinglePart::html(html.clone())),
            ),
        }
        .map_err(|e| MailError::Message(e.into()))
    }
}

/// Most characters of a line of a message body, without its CRLF (RFC 5322, 2.1.1).
const MAX_LINE_CHARS: usize = 998;

/// `text` as a message body: 7bit, as written, when it is ASCII with lines of at most 998
/// characters, so that a link stays one readable line of the raw message. (lettre itself
/// picks quoted-printable for any line of 76 characters or more, which splits a long link
/// with soft line breaks.) Other text is left to lettre's choice of encoding.
fn text_body(text: &str) -> Body {
    let plain = text.is_ascii()
        && !text.contains(['\0', '\r'])
        && text.lines().all(|line| line.len() <= MAX_LINE_CHARS);
    if plain {
        let crlf = text.replace('\n', "\r\n");
        Body::dangerous_pre_encoded(crlf.into_bytes(), ContentTransferEncoding::SevenBit)
    } else {
        Body::new(text.to_owned())
    }
}

impl fmt::Debug for OutgoingEmail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingEmail")
            .field("purpose", &self.purpose)
            .field("subject", &self.subject)
            .field("text", &"<redacted>")
            .field("html", &self.html.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

/// How often and how patiently a delivery is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Pause before the second attempt; each further pause is `factor` times longer.
    pub first_pause: Duration,
    /// Growth of the pause.
    pub factor: u32,
}

impl Default for RetryPolicy {
    /// 4 attempts, pausing 1 s, 4 s and 16 s: rides out a server restart or a short
    /// throttle, and gives up within half a minute.
    fn default() -> Self {
        Self {
            attempts: 4,
            first_pause: Duration::from_secs(1),
            factor: 4,
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based).
    fn pause_after(&self, attempt: u32) -> Duration {
        self.first_pause * self.factor.saturating_pow(attempt.saturating_sub(1))
    }
}

#[derive(Clone)]
enum Transport {
    Log,
    Smtp(Box<SmtpSender>),
    #[cfg(feature = "ses")]
    Ses(ses::SesSender),
}

struct Inner {
    from: Mailbox,
    transport: Transport,
    retry: RetryPolicy,
}

/// Sends email through the configured back end; cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    inner: Arc<Inner>,
}

impl Mailer {
    /// The mailer `config` asks for; checks `SMTP_FROM` and `SMTP_URL`. Opens no connection
    /// and needs no runtime: SMTP connects on the first send, SES loads the AWS configuration
    /// on the first send.
    pub fn from_config(config: &Config) -> Result<Self, MailError> {
        let from: Mailbox =
            config
                .smtp_from
                .parse()
                .map_err(|e: lettre::address::AddressError| MailError::Config {
                    variable: "SMTP_FROM",
                    reason: format!("not an email address ({e})"),
                })?;
        let transport = match config.mail_backend {
            MailBackend::Log => {
                tracing::warn!(
                    "no mail back end configured (SMTP_URL, MAIL_BACKEND): emails, \
                     password-reset links included, are written to the log instead of sent"
                );
                Transport::Log
            }
            MailBackend::Smtp => {
                let url = config.smtp_url.as_ref().ok_or(MailError::Config {
                    variable: "SMTP_URL",
                    reason: "is required with MAIL_BACKEND=smtp".into(),
                })?;
                Transport::Smtp(Box::new(SmtpSender::new(url.expose_secret())?))
            }
            #[cfg(feature = "ses")]
            MailBackend::Ses => Transport::Ses(ses::SesSender::new()),
            #[cfg(not(feature = "ses"))]
            MailBackend::Ses => {
                return Err(MailError::Config {
                    variable: "MAIL_BACKEND",
                    reason: "ses: this build has no SES support (cargo feature `ses`)".into(),
                });
            }
        };
        Ok(Self::new(from, transport, RetryPolicy::default()))
    }

    /// For `user-service check`: whether the SMTP server answers (connect, TLS as
    /// configured, `EHLO`, `NOOP`), sending no message; `None` for the log and SES, which
    /// have no server to ask short of sending.
    pub async fn test_smtp_connection(
        &self,
    ) -> Option<Result<bool, lettre::transport::smtp::Error>> {
        match &self.inner.transport {
            Transport::Smtp(sender) => Some(sender.transport().test_connection().await),
            _ => None,
        }
    }

    /// A mailer that writes emails to the log.
    #[cfg(test)]
    pub fn log(from: Mailbox) -> Self {
        Self::new(from, Transport::Log, RetryPolicy::default())
    }

    fn new(from: Mailbox, transport: Transport, retry: RetryPolicy) -> Self {
        Self {
            inner: Arc::new(Inner {
                from,
                transport,
                retry,
            }),
        }
    }

    /// The same mailer with another retry policy.
    #[cfg(test)]
    pub fn with_retry(&self, retry: RetryPolicy) -> Self {
        Self::new(self.inner.from.clone(), self.inner.transport.clone(), retry)
    }

    /// The back end in use.
    pub fn backend(&self) -> MailBackend {
        match self.inner.transport {
            Transport::Log => MailBackend::Log,
            Transport::Smtp(_) => MailBackend::Smtp,
            #[cfg(feature = "ses")]
            Transport::Ses(_) => MailBackend::Ses,
        }
    }

    /// One delivery attempt.
    pub async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = email.to_message(&self.inner.from)?;
        match &self.inner.transport {
            Transport::Log => {
                // The one place a body is logged: see the module docs.
                tracing::info!(
                    target: "mail",
                    purpose = email.purpose,
                    from = %self.inner.from,
                    to = %email.to,
                    subject = %email.subject,
                    text = %email.text,
                    "email written to the log instead of sent (no mail back end configured)"
                );
                Ok(())
            }
            Transport::Smtp(smtp) => smtp
                .transport()
                .send(message)
                .await
                .map(drop)
                .map_err(MailError::Smtp),
            #[cfg(feature = "ses")]
            Transport::Ses(ses) => ses.send(&message).await,
        }
    }

    /// Delivers `email`, retrying transient failures per the retry policy; logs every
    /// failure and the outcome (never the body). Returns whether it was delivered.
    pub async fn deliver(&self, email: OutgoingEmail) -> bool {
        let retry = self.inner.retry;
        let backend = self.backend().as_str();
        for attempt in 1..=retry.attempts.max(1) {
            match self.send(&email).await {
                Ok(()) => {
                    tracing::info!(purpose = email.purpose, backend, attempt, "email delivered");
                    return true;
                }
                Err(e) if e.is_permanent() || attempt >= retry.attempts => {
                    tracing::error!(
                        purpose = email.purpose,
                        backend,
                        attempt,
                        permanent = e.is_permanent(),
                        error = %crate::telemetry::ErrorChain(&e),
                        "email not delivered; giving up"
                    );
                    return false;
                }
                Err(e) => {
                    let pause = retry.pause_after(attempt);
                    tracing::warn!(
                        purpose = email.purpose,
                        backend,
                        attempt,
                        retry_in_ms = pause.as_millis() as u64,
                        error = %crate::telemetry::ErrorChain(&e),
                        "email delivery failed; will retry"
                    );
                    tokio::time::sleep(pause).await;
                }
            }
        }
        false
    }
}

/// The SMTP back end: the URL is checked at start, the pooled transport is built on the
/// first send (building it starts the pool's reaper task, which needs the Tokio runtime).
#[derive(Clone)]
struct SmtpSender {
    builder: AsyncSmtpTransportBuilder,
    transport: Arc<OnceLock<AsyncSmtpTransport<Tokio1Executor>>>,
}

impl SmtpSender {
    /// The sender for `url` (see the module docs for the URL forms).
    fn new(url: &str) -> Result<Self, MailError> {
        let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(|e| {
            // lettre's message names the scheme or the parse error, never the password.
            MailError::Config {
                variable: "SMTP_URL",
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            builder: builder.timeout(Some(SMTP_TIMEOUT)),
            transport: Arc::default(),
        })
    }

    fn transport(&self) -> &AsyncSmtpTransport<Tokio1Executor> {
        self.transport.get_or_init(|| self.builder.clone().build())
    }
}

#[cfg(feature = "ses")]
mod ses {
    //! The SES back end: the raw RFC 5322 message lettre builds, sent with SESv2
    //! `SendEmail`, so every back end sends the same bytes.

    use aws_sdk_sesv2::Client;
    use aws_sdk_sesv2::error::{ProvideErrorMetadata as _, SdkError};
    use aws_sdk_sesv2::primitives::Blob;
    use aws_sdk_sesv2::types::{EmailContent, RawMessage};
    use lettre::message::Message;
    use std::sync::Arc;
    use tokio::sync::OnceCell;

    use super::MailError;

    /// Error codes of SES that a later attempt may get past.
    const TRANSIENT_CODES: &[&str] = &["TooManyRequestsException", "LimitExceededException"];

    /// An SESv2 client, built on first use.
    #[derive(Clone, Default)]
    pub(super) struct SesSender {
        client: Arc<OnceCell<Client>>,
    }

    impl SesSender {
        pub(super) fn new() -> Self {
            Self::default()
        }

        /// A sender with a ready client (tests against a local SES emulator).
        #[cfg(test)]
        pub(super) fn with_client(client: Client) -> Self {
            Self {
                client: Arc::new(OnceCell::new_with(Some(client))),
            }
        }

        async fn client(&self) -> &Client {
            self.client
                .get_or_init(|| async {
                    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
                        .load()
                        .await;
                    Client::new(&config)
                })
                .await
        }

        pub(super) async fn send(&self, message: &Message) -> Result<(), MailError> {
            let raw = RawMessage::builder()
                .data(Blob::new(message.formatted()))
                .build()
                .map_err(|e| MailError::Message(e.into()))?;
            let content = EmailContent::builder().raw(raw).build();
            match self
                .client()
                .await
                .send_email()
                .content(content)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    // A refusal of the request itself (a rejected message, an unverified
                    // sender) will be refused again; throttles, 5xx and network trouble not.
                    let permanent = match &e {
                        SdkError::ServiceError(service) => {
                            let code = service.err().code().unwrap_or_default();
                            !service.raw().status().is_server_error()
                                && !TRANSIENT_CODES.contains(&code)
                        }
                        _ => false,
                    };
                    Err(MailError::Ses {
                        permanent,
                        source: anyhow::Error::new(e),
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned()).expect("valid config")
    }

    fn email() -> OutgoingEmail {
        OutgoingEmail::new(
            "test",
            &Email::parse("ada@example.com").expect("valid"),
            "Hello",
            "Hello,\n\nA link of more than 76 characters stays on one line:\n\n\
             https://app.example.com/reset-password?token=abcdefghijklmnopqrstuvwxyz0123456789-_ABCDEFG\n",
        )
    }

    #[test]
    fn the_back_end_follows_the_configuration() {
        let log = Mailer::from_config(&config(&[])).expect("log back end");
        assert_eq!(log.backend(), MailBackend::Log);
        for url in [
            "smtp://127.0.0.1:2525",
            "smtp://user:pass@mail.example.com:587?tls=required",
            "smtps://mail.example.com",
            "smtp://mail.example.com?tls=opportunistic",
        ] {
            let smtp = Mailer::from_config(&config(&[("SMTP_URL", url)]))
                .unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(smtp.backend(), MailBackend::Smtp, "{url}");
        }
        let ses = Mailer::from_config(&config(&[("MAIL_BACKEND", "ses")]));
        #[cfg(feature = "ses")]
        assert_eq!(ses.expect("ses back end").backend(), MailBackend::Ses);
        #[cfg(not(feature = "ses"))]
        assert!(ses.is_err_and(|e| e.to_string().contains("MAIL_BACKEND")));
    }

    #[test]
    fn bad_settings_name_the_variable() {
        let err = Mailer::from_config(&config(&[("SMTP_URL", "http://mail.example.com")]))
            .err()
            .expect("not an SMTP URL");
        assert!(err.to_string().starts_with("SMTP_URL"), "{err}");
        let err = Mailer::from_config(&config(&[("SMTP_FROM", "not an address")]))
            .err()
            .expect("not an address");
        assert!(err.to_string().starts_with("SMTP_FROM"), "{err}");
        let named =
            Mailer::from_config(&config(&[("SMTP_FROM", "Example <no-reply@example.com>")]));
        assert!(named.is_ok());
    }

    #[test]
    fn the_message_is_plain_readable_text() {
        let from: Mailbox = "no-reply@example.com".parse().expect("mailbox");
        let raw = String::from_utf8(email().to_message(&from).expect("message").formatted())
            .expect("ASCII message");
        assert!(raw.contains("To: ada@example.com\r\n"), "{raw}");
        assert!(raw.contains("Subject: Hello\r\n"), "{raw}");
        assert!(raw.contains("Content-Transfer-Encoding: 7bit\r\n"), "{raw}");
        assert!(
            raw.contains(
                "\r\n\r\nhttps://app.example.com/reset-password?token=abcdefghijklmnopqrstuvwxyz0123456789-_ABCDEFG\r\n"
            ),
            "{raw}"
        );
        // Text lettre cannot send as 7bit is still sent, in an encoding of its choice.
        let accents = OutgoingEmail::new("test", email().to(), "Grüße", "Grüße\n");
        let raw = accents.to_message(&from).expect("message").formatted();
        assert!(!String::from_utf8_lossy(&raw).contains("7bit"));
    }

    #[test]
    fn debug_hides_the_body() {
        let shown = format!("{:?}", email());
        assert!(!shown.contains("token="), "{shown}");
    }

    #[test]
    fn pauses_grow() {
        let retry = RetryPolicy::default();
        let pauses: Vec<u64> = (1..4).map(|a| retry.pause_after(a).as_secs()).collect();
        assert_eq!(pauses, [1, 4, 16]);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_retried_then_given_up() {
        // Nothing listens on a port we bound and released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mailer = Mailer::from_config(&config(&[(
            "SMTP_URL",
            &format!("smtp://127.0.0.1:{port}"),
        )]))
        .expect("smtp")
        .with_retry(RetryPolicy {
            attempts: 3,
            first_pause: Duration::from_millis(10),
            factor: 2,
        });
        let started = std::time::Instant::now();
        assert!(!mailer.deliver(email()).await);
        assert!(
            started.elapsed() >= Duration::from_millis(30),
            "paused between attempts"
        );
    }

    /// Against moto's SES emulator (the one `scripts/test.sh` starts, `MOTO_ENDPOINT`),
    /// through the real SES v2 client: a verified sender's email is accepted, an unverified
    /// sender's is refused as a permanent failure (no retry). Outside the test command it
    /// is skipped; in CI it must run.
    #[cfg(feature = "ses")]
    #[tokio::test]
    async fn ses_sends_the_raw_message_and_classifies_refusals() {
        use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};

        let Ok(endpoint) = std::env::var("MOTO_ENDPOINT") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "MOTO_ENDPOINT is not set: run the tests through scripts/test.sh"
            );
            eprintln!("skipped: MOTO_ENDPOINT is not set (scripts/test.sh starts moto)");
            return;
        };
        let config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .build();
        let client = aws_sdk_sesv2::Client::from_conf(config);
        let verified_domain = format!("verified-{}.example.com", uuid::Uuid::now_v7().simple());
        client
            .create_email_identity()
            .email_identity(&verified_domain)
            .send()
            .await
            .expect("create the sender identity");
        let mailer = |from: &str| {
            Mailer::new(
                from.parse().expect("mailbox"),
                Transport::Ses(ses::SesSender::with_client(client.clone())),
                RetryPolicy::default(),
            )
        };
        let sent = mailer(&format!("no-reply@{verified_domain}"))
            .send(&email())
            .await;
        let refused = mailer("no-reply@unverified.example.com")
            .send(&email())
            .await;
        sent.expect("a verified sender's email is accepted");
        let refused = refused.expect_err("an unverified sender is refused");
        assert!(refused.is_permanent(), "{refused:?}");
    }

    #[tokio::test]
    async fn the_log_back_end_delivers() {
        let mailer = Mailer::log("no-reply@example.com".parse().expect("mailbox"));
        assert!(mailer.deliver(email()).await);
    }
}
