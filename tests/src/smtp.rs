//! [`SmtpServer`]: a real SMTP server for the tests, on `127.0.0.1:<random port>`.
//!
//! The protocol (RFC 5321: greeting, `EHLO`/`HELO`, `MAIL FROM`, `RCPT TO`, `DATA` with
//! dot-unstuffing, `RSET`, `NOOP`, `QUIT`) is the `mailin` crate's state machine; this
//! module does the network I/O with tokio and keeps every accepted message for the test to
//! read. The service under test talks to it through its ordinary SMTP back end
//! (`SMTP_URL=smtp://127.0.0.1:<port>`), over TCP, exactly as it would to a mail relay: no
//! part of the service is replaced. [`ReceivedMail`] decodes what arrived (MIME structure,
//! quoted-printable or base64 bodies, charsets) with `mailparse`.
//!
//! Dropping the server stops it and closes every connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin::{Action, Handler, Response, SessionBuilder, response};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};

/// One message the server accepted.
#[derive(Debug, Clone)]
pub struct ReceivedMail {
    /// The envelope sender (`MAIL FROM`).
    pub from: String,
    /// The envelope recipients (`RCPT TO`).
    pub to: Vec<String>,
    /// The message as received after `DATA`, dot-unstuffed, lines ending in CRLF.
    pub data: Vec<u8>,
}

impl ReceivedMail {
    /// The parsed message; panics if it is not RFC 5322.
    pub fn parsed(&self) -> mailparse::ParsedMail<'_> {
        mailparse::parse_mail(&self.data)
            .unwrap_or_else(|e| panic!("not an RFC 5322 message ({e}): {}", self.raw()))
    }

    /// The raw message, for failure messages.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The first value of header `name`, decoded (RFC 2047).
    pub fn header(&self, name: &str) -> Option<String> {
        use mailparse::MailHeaderMap as _;
        self.parsed().headers.get_first_value(name)
    }

    /// The decoded `Subject`.
    pub fn subject(&self) -> String {
        self.header("Subject").unwrap_or_default()
    }

    /// The decoded body of the first `text/html` part; panics if there is none.
    pub fn html(&self) -> String {
        self.part("text/html")
    }

    /// The decoded body of the first `text/plain` part (the whole body if that is the
    /// message itself); panics if there is none.
    pub fn text(&self) -> String {
        self.part("text/plain")
    }

    /// The token of the link `prefix<token>` in the text (`https://…/verify-email?token=`):
    /// 43 base64url characters (256 bits); panics if there is none.
    pub fn link_token(&self, prefix: &str) -> String {
        let text = self.text();
        let start = text
            .find(prefix)
            .unwrap_or_else(|| panic!("no link {prefix}… in the email text:\n{text}"))
            + prefix.len();
        let token: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        assert_eq!(
            token.len(),
            43,
            "a 256-bit base64url token: {token:?} in\n{text}"
        );
        token
    }

    /// The decoded body of the first leaf part of type `mimetype`.
    fn part(&self, mimetype: &str) -> String {
        fn find(part: &mailparse::ParsedMail<'_>, mimetype: &str) -> Option<String> {
            if part.subparts.is_empty() {
                return (part.ctype.mimetype == mimetype)
                    .then(|| part.get_body().expect("a decodable part"));
            }
            part.subparts.iter().find_map(|p| find(p, mimetype))
        }
        find(&self.parsed(), mimetype)
            .unwrap_or_else(|| panic!("no {mimetype} part in the message: {}", self.raw()))
    }
}

/// An `SMTP_URL` where nothing listens (a port that was free a moment ago): a mail server
/// that is down.
pub fn unreachable_smtp_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("smtp://127.0.0.1:{port}")
}

/// What the connections share: the accepted messages and who waits for them.
#[derive(Default)]
struct Inbox {
    messages: Mutex<Vec<ReceivedMail>>,
    arrived: Notify,
    /// How many further messages to refuse with a transient error (451).
    refuse: AtomicU32,
    /// When set, only messages whose subject starts with it are kept (and refused);
    /// others are accepted and dropped.
    only_subject: Mutex<Option<String>>,
}

impl Inbox {
    fn push(&self, mail: ReceivedMail) {
        self.messages.lock().expect("inbox lock").push(mail);
        self.arrived.notify_waiters();
    }

    /// Whether a message with these bytes is one the test looks at.
    fn wanted(&self, data: &[u8]) -> bool {
        let only = self.only_subject.lock().expect("filter lock").clone();
        let Some(prefix) = only else {
            return true;
        };
        use mailparse::MailHeaderMap as _;
        mailparse::parse_headers(data)
            .ok()
            .and_then(|(headers, _)| headers.get_first_value("Subject"))
            .is_some_and(|subject| subject.starts_with(&prefix))
    }

    fn take_refusal(&self) -> bool {
        self.refuse
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// A running SMTP server that keeps what it receives.
pub struct SmtpServer {
    addr: SocketAddr,
    inbox: Arc<Inbox>,
    task: JoinHandle<()>,
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

impl SmtpServer {
    /// Starts a server on `127.0.0.1:0`.
    pub async fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP server");
        let addr = listener.local_addr().expect("local addr");
        let inbox = Arc::new(Inbox::default());
        let shared = inbox.clone();
        let task = tokio::spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                let inbox = shared.clone();
                connections.spawn(async move {
                    if let Err(e) = serve_connection(stream, peer.ip(), inbox).await {
                        eprintln!("test SMTP server: connection from {peer} failed: {e}");
                    }
                });
                // Reap finished connections so the set does not grow.
                while connections.try_join_next().is_some() {}
            }
        });
        SmtpServer { addr, inbox, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `smtp://127.0.0.1:<port>`: plain SMTP, for `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Keeps only the messages whose subject starts with `subject` from now on: the others
    /// (security notices, verification links) are accepted and dropped, so a test can count
    /// the emails it is about.
    pub fn keep_only(&self, subject: &str) {
        *self.inbox.only_subject.lock().expect("filter lock") = Some(subject.to_owned());
    }

    /// Answers the next `n` messages (that [`Self::keep_only`] keeps) with `451` at the end
    /// of their data (a transient failure: the client should try again later).
    pub fn refuse_next(&self, n: u32) {
        self.inbox.refuse.store(n, Ordering::SeqCst);
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.inbox.messages.lock().expect("inbox lock").clone()
    }

    /// The messages accepted so far for envelope recipient `to`, oldest first.
    pub fn messages_to(&self, to: &str) -> Vec<ReceivedMail> {
        self.messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|r| r.eq_ignore_ascii_case(to)))
            .collect()
    }

    /// Waits until `count` messages for `to` have arrived and returns them (all of them,
    /// oldest first); panics after `within`.
    pub async fn wait_for_count(
        &self,
        to: &str,
        count: usize,
        within: Duration,
    ) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Registered before looking, so an arrival in between is not missed.
            let arrived = self.inbox.arrived.notified();
            let found = self.messages_to(to);
            if found.len() >= count {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "{} message(s) for {to} within {within:?}, expected {count}; all received: {:?}",
                    found.len(),
                    self.messages().iter().map(|m| &m.to).collect::<Vec<_>>()
                );
            }
        }
    }

    /// The messages for `to` whose subject starts with `subject`, oldest first.
    pub fn messages_about(&self, to: &str, subject: &str) -> Vec<ReceivedMail> {
        self.messages_to(to)
            .into_iter()
            .filter(|m| m.subject().starts_with(subject))
            .collect()
    }

    /// Waits until `count` messages for `to` whose subject starts with `subject` have
    /// arrived and returns them, oldest first; panics after `within`.
    pub async fn wait_for_about(
        &self,
        to: &str,
        subject: &str,
        count: usize,
        within: Duration,
    ) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let arrived = self.inbox.arrived.notified();
            let found = self.messages_about(to, subject);
            if found.len() >= count {
                return found;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "{} message(s) \"{subject}…\" for {to} within {within:?}, expected {count}; all subjects for {to}: {:?}",
                    found.len(),
                    self.messages_to(to)
                        .iter()
                        .map(ReceivedMail::subject)
                        .collect::<Vec<_>>()
                );
            }
        }
    }

    /// Waits for the first message for `to`; panics after `within`.
    pub async fn wait_for(&self, to: &str, within: Duration) -> ReceivedMail {
        self.wait_for_count(to, 1, within).await.remove(0)
    }
}

/// One SMTP session: the greeting, then a line at a time through `mailin`'s state machine.
async fn serve_connection(
    stream: TcpStream,
    peer: IpAddr,
    inbox: Arc<Inbox>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut session = SessionBuilder::new("smtp.test").build(peer, Collector::new(inbox));
    write.write_all(&session.greeting().buffer()?).await?;
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let reply = session.process(&line);
        match reply.action {
            Action::NoReply => {}
            Action::Reply => write.write_all(&reply.buffer()?).await?,
            Action::Close => {
                write.write_all(&reply.buffer()?).await?;
                return Ok(());
            }
            // STARTTLS is never offered, so a client has no business asking for it.
            Action::UpgradeTls => return Ok(()),
        }
    }
}

/// Collects one session's messages into the inbox.
struct Collector {
    inbox: Arc<Inbox>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Collector {
    fn new(inbox: Arc<Inbox>) -> Self {
        Self {
            inbox,
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        }
    }
}

impl Handler for Collector {
    fn data_start(&mut self, _domain: &str, from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.from = from.to_owned();
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        if !self.inbox.wanted(&self.data) {
            return response::OK;
        }
        if self.inbox.take_refusal() {
            // mailin stays in its DATA state after an error reply here: close the
            // connection, so the client's retry starts a clean session.
            let mut refusal = Response::custom(451, "4.3.0 Try again later (test refusal)".into());
            refusal.action = Action::Close;
            return refusal;
        }
        self.inbox.push(ReceivedMail {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
        });
        response::OK
    }
}
