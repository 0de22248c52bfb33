//! The AWS Lambda Runtime API, emulated, and the real function binaries run under it.
//!
//! [`RuntimeApi`] is an HTTP server on `127.0.0.1:0` that speaks the protocol a Lambda
//! runtime (here `lambda_runtime` 1.5, under `lambda_http`) speaks to the Lambda service:
//!
//! - `GET /2018-06-01/runtime/invocation/next`: long-polls until an event is queued, then
//!   returns it with `Lambda-Runtime-Aws-Request-Id`, `Lambda-Runtime-Deadline-Ms`,
//!   `Lambda-Runtime-Invoked-Function-Arn` and `Lambda-Runtime-Trace-Id`;
//! - `POST /2018-06-01/runtime/invocation/{id}/response` and `.../{id}/error`: the outcome
//!   of that invocation (202; 400 for an id that is not in flight);
//! - `POST /2018-06-01/runtime/init/error`: the runtime could not start;
//! - the Extensions API for internal extensions: `POST /2020-01-01/extension/register`
//!   (`INVOKE` events only) and `GET /2020-01-01/extension/event/next`.
//!
//! As Lambda does, an invocation is handed to the runtime and to every registered extension
//! at once, its response is returned to the invoker as soon as the runtime posts it, and the
//! next invocation (and the freeze) waits until the runtime and every extension have asked
//! for their next event: an extension may work after the response, not after the freeze.
//!
//! [`LambdaProcess`] starts one built function binary (`functions/<name>`, see
//! [`function_binary`]) with `AWS_LAMBDA_RUNTIME_API` pointing at its own emulator, the
//! variables Lambda sets and the deployment's own configuration, and invokes it with
//! [`LambdaProcess::invoke`]. As on Lambda, the process is frozen (`SIGSTOP`) while it waits
//! for its next event and thawed (`SIGCONT`) when one comes: work a function leaves running
//! after its response does not progress between invocations (see
//! [`LambdaProcessBuilder::freeze_between_invocations`]). Dropping it kills the process.
//!
//! [`HttpEvent`] builds API Gateway HTTP API (payload 2.0) requests and [`authorizer_event`]
//! the requests API Gateway sends to a Lambda authorizer; [`HttpResponse`] reads what an
//! HTTP function returns.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::test_app::TestApp;

/// How long one invocation may take by default (the functions' `Timeout` is 10 s; a debug
/// build on a busy machine gets some slack).
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The memory size and region the emulated functions report (as in `template.yaml`).
const MEMORY_SIZE_MB: &str = "256";
const REGION: &str = "eu-west-1";

/// Lines of a process's output kept for failure messages and log searches (the newest).
const OUTPUT_LINES_KEPT: usize = 2000;

/// Variables copied from this process's environment into a function's, when set: logging,
/// and the AWS SDK's credentials, region and endpoints (so that a function can load its
/// secrets from a local moto server: `JWT_KEYS_SECRET_ARN` and friends are passed with
/// [`LambdaProcessBuilder::env`]).
const PASSED_THROUGH: &[&str] = &[
    "RUST_LOG",
    "RUST_BACKTRACE",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
];
/// Prefix of more variables copied the same way (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, ...).
const PASSED_THROUGH_PREFIX: &str = "AWS_ENDPOINT_URL_";

// ----- the emulator -----

/// How an invocation ended, as the runtime reported it.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// `POST .../response`: the function's response payload.
    Response(Bytes),
    /// `POST .../error`: the function failed (`Lambda-Runtime-Function-Error-Type` and the
    /// error document).
    Error { error_type: String, body: String },
}

/// What `POST /runtime/init/error` reported.
#[derive(Debug, Clone)]
pub struct InitError {
    pub error_type: String,
    pub body: String,
}

struct Queued {
    request_id: String,
    payload: Bytes,
    timeout: Duration,
    reply: oneshot::Sender<Outcome>,
}

/// An extension registered with the Extensions API.
struct Extension {
    id: String,
    /// Its `GET .../event/next` waiting for an event.
    waiting: Option<oneshot::Sender<Value>>,
    /// Events for it that its next poll takes (its previous poll went away).
    pending: VecDeque<Value>,
}

#[derive(Default)]
struct Inner {
    /// Events waiting for the runtime's next `GET .../next`.
    queue: VecDeque<Queued>,
    /// The runtime's `GET .../next` waiting for an event.
    waiting: Option<oneshot::Sender<Queued>>,
    /// The registered extensions.
    extensions: Vec<Extension>,
    /// Invocations handed to the runtime and not answered yet.
    in_flight: HashMap<String, oneshot::Sender<Outcome>>,
    /// The process to freeze while it waits for an event, and whether it is frozen now.
    freeze_pid: Option<u32>,
    frozen: bool,
    /// Polls of `.../next` so far, and when the first came (it ends the init phase).
    polls: u64,
    first_poll: Option<Instant>,
    /// When the runtime last posted an invocation's outcome.
    responded_at: Option<Instant>,
    /// Since when the runtime and every extension wait for an event with none queued.
    idle_since: Option<Instant>,
}

struct Shared {
    inner: Mutex<Inner>,
    init_error: watch::Sender<Option<InitError>>,
    function_arn: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A Lambda Runtime API for one function (one execution environment), on `127.0.0.1:0`.
pub struct RuntimeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Serves the Runtime API for the function `function_name`.
    pub async fn start(function_name: &str) -> std::io::Result<RuntimeApi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (init_error, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner::default()),
            init_error,
            function_arn: format!("arn:aws:lambda:{REGION}:123456789012:function:{function_name}"),
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(report_init_error))
            .route("/2020-01-01/extension/register", post(register_extension))
            .route(
                "/2020-01-01/extension/event/next",
                get(next_extension_event),
            )
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("runtime API emulator stopped: {e}");
            }
        });
        Ok(RuntimeApi {
            addr,
            shared,
            server,
        })
    }

    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` carries it.
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Freezes `pid` whenever the runtime waits for an event (see the module docs).
    pub fn freeze_while_idle(&self, pid: u32) {
        self.shared.lock().freeze_pid = Some(pid);
    }

    /// How many times the runtime has asked for its next event.
    pub fn polls(&self) -> u64 {
        self.shared.lock().polls
    }

    /// Whether the runtime and every extension wait for their next event (the previous
    /// invocation is over for all of them), with no event queued.
    pub fn idle(&self) -> bool {
        self.shared.lock().idle_since.is_some()
    }

    /// How long the last invocation kept the environment busy after its response was posted
    /// (extensions at work: Lambda's `PostRuntimeExtensionsDuration`); `None` while it still
    /// does.
    pub fn post_response(&self) -> Option<Duration> {
        let inner = self.shared.lock();
        match (inner.responded_at, inner.idle_since) {
            (Some(responded), Some(idle)) => Some(idle.saturating_duration_since(responded)),
            _ => None,
        }
    }

    /// How many extensions registered.
    pub fn extensions(&self) -> usize {
        self.shared.lock().extensions.len()
    }

    /// When the runtime first asked for an event: the end of its init phase.
    pub fn first_poll(&self) -> Option<Instant> {
        self.shared.lock().first_poll
    }

    /// The init error the runtime reported, if any.
    pub fn init_error(&self) -> Option<InitError> {
        self.shared.init_error.borrow().clone()
    }

    /// A receiver that changes when the runtime reports an init error.
    pub fn watch_init_error(&self) -> watch::Receiver<Option<InitError>> {
        self.shared.init_error.subscribe()
    }

    /// Queues `payload` as the next invocation (thawing the process if it is frozen) and
    /// returns its request id and a receiver of its outcome. `timeout` sets the deadline
    /// the runtime is told.
    pub fn enqueue(
        &self,
        payload: Bytes,
        timeout: Duration,
    ) -> (String, oneshot::Receiver<Outcome>) {
        let request_id = Uuid::new_v4().to_string();
        let (reply, outcome) = oneshot::channel();
        let queued = Queued {
            request_id: request_id.clone(),
            payload,
            timeout,
            reply,
        };
        let mut inner = self.shared.lock();
        if inner.frozen {
            if let Some(pid) = inner.freeze_pid {
                signal(pid, rustix::process::Signal::CONT);
            }
            inner.frozen = false;
        }
        inner.queue.push_back(queued);
        dispatch(&mut inner, &self.shared.function_arn);
        (request_id, outcome)
    }
}

/// Hands the next queued event to the runtime and the extensions once all of them wait for
/// one (the previous invocation is over for all); freezes the process when they all wait and
/// nothing is queued.
fn dispatch(inner: &mut Inner, function_arn: &str) {
    let idle = inner.waiting.is_some() && inner.extensions.iter().all(|e| e.waiting.is_some());
    if !idle {
        return;
    }
    let Some(queued) = inner.queue.pop_front() else {
        inner.idle_since.get_or_insert_with(Instant::now);
        // Idle: as on Lambda, the environment is frozen until the next event. The pending
        // polls stay open; their answers come when the process runs again.
        if let Some(pid) = inner.freeze_pid
            && !inner.frozen
        {
            signal(pid, rustix::process::Signal::STOP);
            inner.frozen = true;
        }
        return;
    };
    let deadline_ms = SystemTime::now()
        .checked_add(queued.timeout)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let event = json!({
        "eventType": "INVOKE",
        "deadlineMs": deadline_ms,
        "requestId": queued.request_id,
        "invokedFunctionArn": function_arn,
        "tracing": {"type": "X-Amzn-Trace-Id", "value": trace_id(deadline_ms)},
    });
    let Some(runtime) = inner.waiting.take() else {
        return;
    };
    if let Err(queued) = runtime.send(queued) {
        // The poll went away (its connection closed): keep the event for the next.
        inner.queue.push_front(queued);
        return;
    }
    inner.idle_since = None;
    for extension in &mut inner.extensions {
        let sent = match extension.waiting.take() {
            Some(waiting) => waiting.send(event.clone()),
            None => Err(event.clone()),
        };
        if let Err(event) = sent {
            extension.pending.push_back(event);
        }
    }
}

fn trace_id(deadline_ms: u64) -> String {
    format!(
        "Root=1-{:08x}-{};Parent={};Sampled=0",
        deadline_ms / 1000,
        &Uuid::new_v4().simple().to_string()[..24],
        &Uuid::new_v4().simple().to_string()[..16]
    )
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // The process may have exited already: then there is nothing to freeze or thaw.
    let _ = rustix::process::kill_process(pid, signal);
}

async fn next_invocation(State(shared): State<Arc<Shared>>) -> Response {
    let receiver = {
        let mut inner = shared.lock();
        inner.polls += 1;
        inner.first_poll.get_or_insert_with(Instant::now);
        let (sender, receiver) = oneshot::channel();
        inner.waiting = Some(sender);
        dispatch(&mut inner, &shared.function_arn);
        receiver
    };
    let Ok(queued) = receiver.await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let deadline_ms = SystemTime::now()
        .checked_add(queued.timeout)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as u64);
    let trace_id = trace_id(deadline_ms);
    shared
        .lock()
        .in_flight
        .insert(queued.request_id.clone(), queued.reply);
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set("lambda-runtime-aws-request-id", queued.request_id);
    set("lambda-runtime-deadline-ms", deadline_ms.to_string());
    set(
        "lambda-runtime-invoked-function-arn",
        shared.function_arn.clone(),
    );
    set("lambda-runtime-trace-id", trace_id);
    set("content-type", "application/json".to_owned());
    (StatusCode::OK, headers, queued.payload).into_response()
}

fn finish(shared: &Shared, id: &str, outcome: Outcome) -> Response {
    let mut inner = shared.lock();
    match inner.in_flight.remove(id) {
        Some(reply) => {
            inner.responded_at = Some(Instant::now());
            // The invoker may have given up (timeout); the runtime still did its part.
            let _ = reply.send(outcome);
            (StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "errorMessage": format!("Invalid request ID: {id}"),
                "errorType": "InvalidRequestID"
            })),
        )
            .into_response(),
    }
}

async fn invocation_response(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> Response {
    finish(&shared, &id, Outcome::Response(body))
}

fn error_type(headers: &HeaderMap) -> String {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Unhandled")
        .to_owned()
}

async fn invocation_error(
    State(shared): State<Arc<Shared>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = Outcome::Error {
        error_type: error_type(&headers),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    finish(&shared, &id, outcome)
}

const EXTENSION_ID: &str = "lambda-extension-identifier";

/// `POST /2020-01-01/extension/register`: a new extension, for `INVOKE` events (the only
/// events an internal extension may have).
async fn register_extension(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let events: Vec<&str> = body["events"]
        .as_array()
        .map(|events| events.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if events != ["INVOKE"] || headers.get("lambda-extension-name").is_none() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "errorMessage": format!("this emulator takes internal extensions named in Lambda-Extension-Name, for INVOKE only; got {events:?}"),
                "errorType": "InvalidRequest"
            })),
        )
            .into_response();
    }
    let id = Uuid::new_v4().to_string();
    shared.lock().extensions.push(Extension {
        id: id.clone(),
        waiting: None,
        pending: VecDeque::new(),
    });
    let function_name = shared
        .function_arn
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut response = Json(json!({
        "functionName": function_name,
        "functionVersion": "$LATEST",
        "handler": "bootstrap",
        "accountId": "123456789012",
    }))
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(EXTENSION_ID, value);
    }
    response
}

/// `GET /2020-01-01/extension/event/next`: the extension is done with the current
/// invocation (or its init) and waits for the next.
async fn next_extension_event(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let id = headers
        .get(EXTENSION_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let receiver = {
        let mut inner = shared.lock();
        let Some(extension) = inner.extensions.iter_mut().find(|e| e.id == id) else {
            return (
                StatusCode::FORBIDDEN,
                Json(json!({"errorMessage": "unknown extension id", "errorType": "Extension.InvalidExtensionId"})),
            )
                .into_response();
        };
        if let Some(event) = extension.pending.pop_front() {
            return Json(event).into_response();
        }
        let (sender, receiver) = oneshot::channel();
        extension.waiting = Some(sender);
        dispatch(&mut inner, &shared.function_arn);
        receiver
    };
    match receiver.await {
        Ok(event) => Json(event).into_response(),
        Err(_) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn report_init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.init_error.send_replace(Some(InitError {
        error_type: error_type(&headers),
        body: String::from_utf8_lossy(&body).into_owned(),
    }));
    (StatusCode::ACCEPTED, Json(json!({"status": "OK"}))).into_response()
}

// ----- the function binaries -----

/// The directory cargo put this test executable's profile in (`.../target/debug`): the
/// executable is `<profile>/deps/<name>-<hash>`.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot find the test executable's path: {e}"));
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} has no profile directory", exe.display()))
        .to_path_buf()
}

/// The built binary of the function `name` (`functions/<name>`) next to this test
/// executable; fails the test with what to run when it is missing.
pub fn function_binary(name: &str) -> PathBuf {
    let path = profile_dir().join(name);
    assert!(
        path.is_file(),
        "the Lambda function binary {} is missing: build the functions first with \
         `cargo build --workspace --bins` (scripts/test.sh does), then run the tests again",
        path.display()
    );
    path
}

/// The newest lines a process wrote to stdout and stderr.
#[derive(Default)]
pub struct Output {
    lines: Mutex<VecDeque<String>>,
}

impl Output {
    fn push(&self, line: String) {
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() == OUTPUT_LINES_KEPT {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

fn collect_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    tag: &'static str,
    output: Arc<Output>,
) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            output.push(format!("[{tag}] {line}"));
        }
    });
}

/// Why an invocation gave no response.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("the function failed: {error_type}: {body}")]
    Function { error_type: String, body: String },
    #[error("the runtime reported an init error: {}: {}", .0.error_type, .0.body)]
    Init(InitError),
    #[error("the process exited ({0})")]
    Exited(ExitStatus),
    #[error("the response is not JSON ({error}): {body}")]
    NotJson {
        error: serde_json::Error,
        body: String,
    },
}

/// Starts a [`LambdaProcess`].
pub struct LambdaProcessBuilder {
    function: String,
    binary: Option<PathBuf>,
    env: BTreeMap<String, String>,
    freeze: bool,
    timeout: Duration,
}

impl LambdaProcessBuilder {
    /// Runs this binary instead of [`function_binary`]'s (e.g. a release build).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// The service configuration of `app`'s deployment: its database, Redis prefix, key file,
    /// hashing settings and the rest (`LISTEN_ADDR` aside). The database must be migrated,
    /// as the deployment's migration step does on AWS: a [`TestApp`] has done it.
    pub fn deployment(mut self, app: &TestApp) -> Self {
        for (name, value) in &app.vars {
            if name != "LISTEN_ADDR" {
                self.env.insert(name.clone(), value.clone());
            }
        }
        // What template.yaml gives every function: one request at a time per instance.
        self.env.insert("DATABASE_POOL_SIZE".into(), "2".into());
        self
    }

    /// Sets one variable of the function's environment.
    pub fn env(mut self, name: &str, value: impl ToString) -> Self {
        self.env.insert(name.to_owned(), value.to_string());
        self
    }

    /// Whether to freeze the process while it waits for an event, as Lambda does (default
    /// `true`). Background work started by an invocation then only runs during later ones.
    pub fn freeze_between_invocations(mut self, freeze: bool) -> Self {
        self.freeze = freeze;
        self
    }

    /// The default limit of one [`LambdaProcess::invoke`] (default [`DEFAULT_INVOKE_TIMEOUT`]).
    pub fn invoke_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the emulator and the process. The process initialises on its own; the first
    /// invocation waits for it.
    pub async fn spawn(self) -> std::io::Result<LambdaProcess> {
        let binary = self
            .binary
            .unwrap_or_else(|| function_binary(&self.function));
        let api = RuntimeApi::start(&self.function).await?;
        let mut command = Command::new(&binary);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.address())
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.function)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", MEMORY_SIZE_MB)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", self.function),
            )
            .env(
                "AWS_LAMBDA_LOG_STREAM_NAME",
                format!("2026/11/29/[$LATEST]{}", Uuid::new_v4().simple()),
            )
            .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
            .env("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023")
            .env("AWS_REGION", REGION)
            .env("AWS_DEFAULT_REGION", REGION)
            .env("TZ", ":UTC");
        for (name, value) in std::env::vars() {
            if PASSED_THROUGH.contains(&name.as_str()) || name.starts_with(PASSED_THROUGH_PREFIX) {
                command.env(name, value);
            }
        }
        command
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let started = Instant::now();
        let mut child = command.spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot start {}: {e}", binary.display()))
        })?;
        let pid = child.id().unwrap_or_default();
        let output = Arc::new(Output::default());
        if let Some(stdout) = child.stdout.take() {
            collect_lines(stdout, "stdout", output.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            collect_lines(stderr, "stderr", output.clone());
        }
        if self.freeze && pid != 0 {
            api.freeze_while_idle(pid);
        }
        let (exit_sender, exit) = watch::channel(None);
        let waiter = tokio::spawn(wait_for_exit(child, exit_sender));
        Ok(LambdaProcess {
            function: self.function,
            binary,
            api,
            pid,
            started,
            exit,
            waiter,
            output,
            timeout: self.timeout,
        })
    }
}

/// Owns the child until it exits (or the task is aborted, which kills it: `kill_on_drop`).
async fn wait_for_exit(mut child: Child, exit: watch::Sender<Option<ExitStatus>>) {
    if let Ok(status) = child.wait().await {
        exit.send_replace(Some(status));
    }
}

/// One function binary running under its own [`RuntimeApi`]: one Lambda execution
/// environment.
pub struct LambdaProcess {
    function: String,
    binary: PathBuf,
    api: RuntimeApi,
    pid: u32,
    started: Instant,
    exit: watch::Receiver<Option<ExitStatus>>,
    waiter: JoinHandle<()>,
    output: Arc<Output>,
    timeout: Duration,
}

impl Drop for LambdaProcess {
    fn drop(&mut self) {
        // Dropping the child kills it (SIGKILL works on a stopped process too).
        self.waiter.abort();
    }
}

impl LambdaProcess {
    /// A builder for the function `function` (by default its binary next to this test
    /// executable: [`function_binary`]).
    pub fn builder(function: &str) -> LambdaProcessBuilder {
        LambdaProcessBuilder {
            function: function.to_owned(),
            binary: None,
            env: BTreeMap::new(),
            freeze: true,
            timeout: DEFAULT_INVOKE_TIMEOUT,
        }
    }

    /// The function `function` in `app`'s deployment, started; fails the test if it cannot.
    pub async fn start(function: &str, app: &TestApp) -> LambdaProcess {
        Self::builder(function)
            .deployment(app)
            .spawn()
            .await
            .unwrap_or_else(|e| panic!("cannot start the function {function}: {e}"))
    }

    /// Starts several functions of `app`'s deployment at once.
    pub async fn start_all<const N: usize>(
        functions: [&str; N],
        app: &TestApp,
    ) -> [LambdaProcess; N] {
        let started = futures::future::join_all(functions.map(|f| Self::start(f, app))).await;
        started
            .try_into()
            .unwrap_or_else(|_| unreachable!("join_all keeps the count"))
    }

    /// The function's name.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// When the process was spawned.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Its Runtime API.
    pub fn runtime_api(&self) -> &RuntimeApi {
        &self.api
    }

    /// What the process wrote so far (the newest lines, tagged `[stdout]` / `[stderr]`).
    pub fn output(&self) -> Vec<String> {
        self.output.lines()
    }

    /// Invokes the function with `event` and returns its response payload, or why there is
    /// none; at most `timeout`.
    pub async fn try_invoke_within(
        &self,
        event: &Value,
        timeout: Duration,
    ) -> Result<Value, InvokeError> {
        let payload = Bytes::from(event.to_string());
        let (_, outcome) = self.api.enqueue(payload, timeout);
        let mut exit = self.exit.clone();
        let mut init_error = self.api.watch_init_error();
        let exited = async {
            let status = exit.wait_for(Option::is_some).await.ok().and_then(|s| *s);
            match status {
                Some(status) => status,
                // The waiter was aborted: only on drop, which cannot happen while borrowed.
                None => std::future::pending().await,
            }
        };
        let init_failed = async {
            match init_error.wait_for(Option::is_some).await {
                Ok(error) => error.clone(),
                Err(_) => None,
            }
        };
        let outcome = tokio::select! {
            outcome = outcome => outcome.ok(),
            status = exited => return Err(self.after_exit(status).await),
            Some(error) = init_failed => return Err(InvokeError::Init(error)),
            () = tokio::time::sleep(timeout) => return Err(InvokeError::Timeout(timeout)),
        };
        match outcome {
            Some(Outcome::Response(body)) => {
                serde_json::from_slice(&body).map_err(|error| InvokeError::NotJson {
                    error,
                    body: String::from_utf8_lossy(&body).into_owned(),
                })
            }
            Some(Outcome::Error { error_type, body }) => {
                Err(InvokeError::Function { error_type, body })
            }
            // The emulator dropped the invocation: only when it stops.
            None => Err(InvokeError::Timeout(timeout)),
        }
    }

    /// An exit, or the init error reported just before it.
    async fn after_exit(&self, status: ExitStatus) -> InvokeError {
        // Let the output readers catch the last lines.
        tokio::time::sleep(Duration::from_millis(50)).await;
        match self.api.init_error() {
            Some(error) => InvokeError::Init(error),
            None => InvokeError::Exited(status),
        }
    }

    /// [`Self::try_invoke_within`] with the builder's timeout.
    pub async fn try_invoke(&self, event: &Value) -> Result<Value, InvokeError> {
        self.try_invoke_within(event, self.timeout).await
    }

    /// Invokes the function with `event` and returns its response payload; fails the test,
    /// showing the process's output, if there is none.
    pub async fn invoke(&self, event: &Value) -> Value {
        match self.try_invoke(event).await {
            Ok(response) => response,
            Err(e) => panic!("{}", self.failure(&e, event)),
        }
    }

    /// Sends an HTTP API request to an HTTP function; fails the test if the function gives no
    /// response or not an HTTP API response.
    pub async fn http(&self, event: &HttpEvent) -> HttpResponse {
        let event = event.to_json();
        let payload = self.invoke(&event).await;
        HttpResponse::from_payload(&payload)
            .unwrap_or_else(|e| panic!("{}", self.failure(&e, &event)))
    }

    /// Waits until a line of the process's output contains `needle`; returns that line.
    pub async fn wait_for_output(&self, needle: &str, within: Duration) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(line) = self.output().into_iter().find(|l| l.contains(needle)) {
                return Some(line);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A failure message: what went wrong, the event and the process's last output.
    pub fn failure(&self, error: &dyn std::fmt::Display, event: &Value) -> String {
        let output = self.output();
        let tail = &output[output.len().saturating_sub(60)..];
        format!(
            "function {} ({}): {error}\nevent: {event}\nlast output of the process:\n{}",
            self.function,
            self.binary.display(),
            tail.join("\n")
        )
    }

    /// `VmHWM` (peak resident set) and `VmRSS` of the process in KiB, from
    /// `/proc/<pid>/status`.
    pub fn memory_kib(&self) -> std::io::Result<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                .ok_or_else(|| std::io::Error::other(format!("no {name} in /proc status")))
        };
        Ok((field("VmHWM:")?, field("VmRSS:")?))
    }
}

// ----- events -----

/// A request as API Gateway (HTTP API, payload format 2.0) passes it to a function.
#[derive(Debug, Clone)]
pub struct HttpEvent {
    method: String,
    path: String,
    query: String,
    route_key: Option<String>,
    headers: BTreeMap<String, String>,
    body: Option<String>,
    source_ip: String,
    authorizer: Option<Value>,
}

impl HttpEvent {
    /// `method path` (`path` may carry `?query`), from a random client IP.
    pub fn new(method: &str, path: &str) -> Self {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let mut headers = BTreeMap::new();
        for (name, value) in [
            ("accept", "application/json"),
            ("host", "abcdef1234.execute-api.eu-west-1.amazonaws.com"),
            ("user-agent", "curl/8.5.0"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-proto", "https"),
        ] {
            headers.insert(name.to_owned(), value.to_owned());
        }
        Self {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            route_key: None,
            headers,
            body: None,
            source_ip: crate::test_app::random_client_ip(),
            authorizer: None,
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// `POST path` with a JSON body.
    pub fn post_json(path: &str, body: &Value) -> Self {
        Self::new("POST", path).json(body)
    }

    /// The route key API Gateway matched (`"GET /v1/admin/users/{id}"`); default
    /// `"METHOD path"`.
    pub fn route_key(mut self, route_key: &str) -> Self {
        self.route_key = Some(route_key.to_owned());
        self
    }

    /// Sets a header (names are lowercased, as API Gateway passes them).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .insert(name.to_ascii_lowercase(), value.to_owned());
        self
    }

    /// `Authorization: Bearer token`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    /// A JSON body.
    pub fn json(self, body: &Value) -> Self {
        self.body(&body.to_string(), Some("application/json"))
    }

    /// A raw body with this content type (or none).
    pub fn body(mut self, body: &str, content_type: Option<&str>) -> Self {
        if let Some(content_type) = content_type {
            self.headers
                .insert("content-type".into(), content_type.to_owned());
        }
        self.body = Some(body.to_owned());
        self
    }

    /// The client IP API Gateway saw (`requestContext.http.sourceIp`).
    pub fn source_ip(mut self, ip: &str) -> Self {
        self.source_ip = ip.to_owned();
        self
    }

    /// The Lambda authorizer's context (`requestContext.authorizer.lambda`), as API Gateway
    /// passes it after an allow.
    pub fn authorizer_context(mut self, context: &Value) -> Self {
        self.authorizer = Some(context.clone());
        self
    }

    /// The event JSON.
    pub fn to_json(&self) -> Value {
        let route_key = self
            .route_key
            .clone()
            .unwrap_or_else(|| format!("{} {}", self.method, self.path));
        let mut headers = self.headers.clone();
        headers.insert(
            "content-length".into(),
            self.body.as_ref().map_or(0, String::len).to_string(),
        );
        headers.insert("x-forwarded-for".into(), self.source_ip.clone());
        headers.insert(
            "x-amzn-trace-id".into(),
            format!(
                "Root=1-67890abc-{}",
                &Uuid::new_v4().simple().to_string()[..24]
            ),
        );
        let mut event = json!({
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": self.path,
            "rawQueryString": self.query,
            "headers": headers,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "abcdef1234",
                "domainName": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
                "domainPrefix": "abcdef1234",
                "http": {
                    "method": self.method,
                    "path": self.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": self.source_ip,
                    "userAgent": "curl/8.5.0"
                },
                "requestId": request_id(),
                "routeKey": route_key,
                "stage": "$default",
                "time": "29/Nov/2026:10:15:30 +0000",
                "timeEpoch": epoch_ms()
            },
            "isBase64Encoded": false
        });
        if !self.query.is_empty() {
            let params: BTreeMap<&str, &str> = self
                .query
                .split('&')
                .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                .collect();
            event["queryStringParameters"] = json!(params);
        }
        if let Some(body) = &self.body {
            event["body"] = json!(body);
        }
        if let Some(context) = &self.authorizer {
            event["requestContext"]["authorizer"] = json!({ "lambda": context });
        }
        event
    }
}

fn request_id() -> String {
    STANDARD.encode(&Uuid::new_v4().as_bytes()[..10])
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A request as API Gateway sends it to a Lambda authorizer (HTTP API, payload 2.0) for
/// `route_key` (`"GET /v1/users/me"`) on the concrete `path`, with the identity sources
/// `$request.header.Authorization` and `$context.routeKey`. Without `authorization` the
/// header and `identitySource` are absent.
pub fn authorizer_event(route_key: &str, path: &str, authorization: Option<&str>) -> Value {
    let method = route_key.split(' ').next().unwrap_or("GET");
    let method = if method == "ANY" { "GET" } else { method };
    let mut event = json!({
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": format!("arn:aws:execute-api:{REGION}:123456789012:abcdef1234/$default/{method}{path}"),
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "accept": "application/json",
            "content-length": "0",
            "host": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
            "user-agent": "curl/8.5.0",
            "x-amzn-trace-id": "Root=1-67890abc-0123456789abcdef01234567",
            "x-forwarded-for": "203.0.113.7",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https"
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abcdef1234",
            "domainName": "abcdef1234.execute-api.eu-west-1.amazonaws.com",
            "domainPrefix": "abcdef1234",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "curl/8.5.0"
            },
            "requestId": request_id(),
            "routeKey": route_key,
            "stage": "$default",
            "time": "29/Nov/2026:10:15:30 +0000",
            "timeEpoch": epoch_ms()
        }
    });
    if let Some(authorization) = authorization {
        event["identitySource"] = json!([authorization, route_key]);
        event["headers"]["authorization"] = json!(authorization);
    }
    event
}

/// What an HTTP function returned (an API Gateway HTTP API response), body decoded.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lowercased; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    pub cookies: Vec<String>,
    pub body: String,
}

impl HttpResponse {
    /// Reads a function's response payload (`statusCode`, `headers`, `multiValueHeaders`,
    /// `body`, `isBase64Encoded`, `cookies`).
    pub fn from_payload(payload: &Value) -> Result<Self, String> {
        let status = payload["statusCode"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| format!("no statusCode in the response {payload}"))?;
        let mut headers = BTreeMap::new();
        if let Some(multi) = payload["multiValueHeaders"].as_object() {
            for (name, values) in multi {
                let values: Vec<&str> = values
                    .as_array()
                    .map(|vs| vs.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                headers.insert(name.to_ascii_lowercase(), values.join(", "));
            }
        }
        if let Some(single) = payload["headers"].as_object() {
            for (name, value) in single {
                if let Some(value) = value.as_str() {
                    headers
                        .entry(name.to_ascii_lowercase())
                        .or_insert_with(|| value.to_owned());
                }
            }
        }
        let raw = payload["body"].as_str().unwrap_or_default();
        let body = if payload["isBase64Encoded"].as_bool() == Some(true) {
            let bytes = STANDARD
                .decode(raw)
                .map_err(|e| format!("body is not base64 ({e}): {payload}"))?;
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            raw.to_owned()
        };
        let cookies = payload["cookies"]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            status,
            headers,
            cookies,
            body,
        })
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Asserts the status is `status`; returns the body as JSON (`null` when empty).
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "expected {status}, got {} with body {}",
            self.status, self.body
        );
        if self.body.is_empty() {
            return Value::Null;
        }
        if status != 204 {
            let content_type = self.header("content-type").unwrap_or_default();
            assert!(
                content_type.starts_with("application/json"),
                "a {status} JSON body needs Content-Type application/json, got {content_type:?}: {}",
                self.body
            );
        }
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }

    /// Asserts the response is the problem `status` / `code` of the contract; returns it.
    pub fn expect_problem(&self, status: u16, code: &str) -> Value {
        assert_eq!(
            self.status, status,
            "expected {status} `{code}`, got {} with body {}",
            self.status, self.body
        );
        crate::problem::check_problem_body(
            "lambda",
            status,
            code,
            self.header("content-type").unwrap_or_default(),
            &self.body,
        )
    }
}
