//! A soak of two `user-service serve` instances under concurrent clients, with Redis and
//! then Postgres cut for a few seconds. Run by `scripts/soak.sh` (not part of the test
//! command); `--help` lists the knobs.
//!
//! The deployment is a [`TestApp`] built with both dependencies behind a [`TcpProxy`]
//! (`user_service_tests::proxy`): a throwaway database, Redis key prefix and key file, all
//! removed at the end (`KEEP_TEST_DATA=1` keeps them, with the instances' logs). Two real
//! server processes are started on that deployment's settings, so a cut of a proxy is an
//! outage for both (the in-process app of the `TestApp` stays idle).
//!
//! Each client lives users' lives in a loop, every request on a random instance with a
//! random `X-Forwarded-For` (the per-IP limits are not what is soaked): register (now and
//! then the same email again: 409), now and then a wrong password (401), log in (a second
//! session now and then), `GET /me`, then one of four refresh stories: a plain rotation;
//! the same token twice in a row (with `--grace` > 0 both get a pair and the first
//! successor is dead, without grace the second is reuse); a theft (an old token presented
//! after its successor was spent: reuse, the session ends); two concurrent refreshes of
//! one token on the two instances (with grace exactly one of the two successors works;
//! without, at most one gets a pair, the other is reuse, and the session ends). Then
//! logout, logout `{"all": true}`, or nothing. After every ending, the session's tokens
//! must be refused at once by both instances.
//!
//! Every answer is checked against the contract: a status the OpenAPI document lists for
//! the route, never 500, problem bodies of the right shape, a 503 only as `unavailable`
//! with `Retry-After`, no answer slower than `--hang-seconds`, and the status the story
//! expects. A 503 is repeated with the same request (docs/retrying.md) until something
//! else comes back: a logout's repeat must answer 204.
//!
//! At the end, with both dependencies back: every session a client saw end is revoked in
//! Postgres and every session it believes live is not; no Redis revocation marker or
//! journal entry names a session that Postgres calls live (no session half dead); every
//! token of an ended session (and every refresh token a grace retry replaced) is refused by
//! both instances; every live session still works; every registered user can log in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use clap::Parser;
use futures::StreamExt as _;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use user_service_tests::{TestApp, random_client_ip, strong_password, unique_email};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "Two user-service instances, concurrent clients, Redis and Postgres cut")]
struct Args {
    /// Concurrent clients, each living users' lives in a loop.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// How long the clients start new lives (`60`, `60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Length of each outage, Redis then Postgres, in seconds.
    #[arg(long, default_value_t = 8)]
    fault_seconds: u64,
    /// REFRESH_REUSE_GRACE_SECONDS of both instances (0: no grace).
    #[arg(long, default_value_t = 30)]
    grace: u64,
    /// An answer slower than this (seconds) is a violation: a hang.
    #[arg(long, default_value_t = 6)]
    hang_seconds: u64,
    /// The `user-service` binary (default: the one next to this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// argon2 at its production settings instead of the tests' cheap ones.
    #[arg(long)]
    production_hashing: bool,
    /// DATABASE_POOL_SIZE of each instance.
    #[arg(long, default_value_t = 10)]
    pool_size: usize,
    /// Write every request (route, instance, start, end, status, code) to this CSV file.
    #[arg(long)]
    samples_csv: Option<PathBuf>,
    /// `NAME=VALUE` for both instances' environment (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected e.g. 60, 60s or 2m, got {text:?}"))?;
    match unit {
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("expected e.g. 60, 60s or 2m, got {text:?}")),
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

// ----- randomness (uuid v4 is the only random source the crate has) -----

fn random_below(n: u64) -> u64 {
    (Uuid::new_v4().as_u128() % u128::from(n.max(1))) as u64
}

fn chance(p: f64) -> bool {
    (random_below(1_000_000) as f64) < p * 1_000_000.0
}

// ----- the server processes -----

const NAMES: [&str; 2] = ["A", "B"];

struct Instance {
    name: &'static str,
    base: String,
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Instance {
    async fn start(
        name: &'static str,
        bin: &Path,
        app: &TestApp,
        args: &Args,
        http: &reqwest::Client,
    ) -> anyhow::Result<Instance> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut vars = app.vars.clone();
        if args.production_hashing {
            for name in [
                "ARGON2_MEMORY_KIB",
                "ARGON2_ITERATIONS",
                "ARGON2_PARALLELISM",
            ] {
                vars.remove(name);
            }
        }
        vars.insert("LISTEN_ADDR".into(), addr.clone());
        vars.insert("PUBLIC_BASE_URL".into(), format!("http://{addr}"));
        vars.insert("DATABASE_POOL_SIZE".into(), args.pool_size.to_string());
        vars.insert("REFRESH_REUSE_GRACE_SECONDS".into(), args.grace.to_string());
        vars.insert(
            "RUST_LOG".into(),
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        );
        for (k, v) in &args.env {
            vars.insert(k.clone(), v.clone());
        }
        let log = app.temp_dir().join(format!("instance-{name}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new(bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&vars)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("no pid")?;
        let mut instance = Instance {
            name,
            base: format!("http://{addr}"),
            child,
            pid,
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = instance.child.try_wait()? {
                bail!(
                    "instance {name} exited during start-up ({status}):\n{}",
                    instance.log_tail(30)
                );
            }
            let ready = http
                .get(format!("{}/readyz", instance.base))
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200);
            if ready {
                return Ok(instance);
            }
            if Instant::now() > deadline {
                bail!(
                    "instance {name} not ready after 60 s:\n{}",
                    instance.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `(VmHWM, VmRSS)` in KiB.
    fn memory_kib(&self) -> Option<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        };
        Some((field("VmHWM:")?, field("VmRSS:")?))
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn stop(mut self) {
        if let Some(pid) = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

// ----- requests and the contract -----

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
enum Route {
    Register,
    Login,
    Me,
    Refresh,
    Logout,
}

const ROUTES: [Route; 5] = [
    Route::Register,
    Route::Login,
    Route::Me,
    Route::Refresh,
    Route::Logout,
];

impl Route {
    fn method(self) -> Method {
        match self {
            Route::Me => Method::GET,
            _ => Method::POST,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Route::Register => "/v1/auth/register",
            Route::Login => "/v1/auth/login",
            Route::Me => "/v1/users/me",
            Route::Refresh => "/v1/auth/refresh",
            Route::Logout => "/v1/auth/logout",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Route::Register => "register",
            Route::Login => "login",
            Route::Me => "me",
            Route::Refresh => "refresh",
            Route::Logout => "logout",
        }
    }
}

struct Req {
    route: Route,
    instance: Option<usize>,
    bearer: Option<String>,
    body: Option<Value>,
    what: String,
}

impl Req {
    fn new(route: Route, what: String) -> Req {
        Req {
            route,
            instance: None,
            bearer: None,
            body: None,
            what,
        }
    }

    fn body(mut self, body: Value) -> Req {
        self.body = Some(body);
        self
    }

    fn bearer(mut self, token: &str) -> Req {
        self.bearer = Some(token.to_owned());
        self
    }

    fn on(mut self, instance: usize) -> Req {
        self.instance = Some(instance);
        self
    }
}

struct Answer {
    status: u16,
    code: Option<String>,
    body: Value,
    text: String,
    instance: usize,
    retry_after: Option<u64>,
}

struct Sample {
    route: Route,
    instance: usize,
    start: f64,
    end: f64,
    /// 0: no answer (transport error or the client's timeout).
    status: u16,
    code: Option<String>,
}

/// A life was abandoned after a violation (already recorded).
struct Abandon;
type Step<T> = Result<T, Abandon>;

#[derive(Default)]
struct Log {
    samples: Vec<Sample>,
    users: Vec<User>,
    lives: u64,
}

struct User {
    id: Option<String>,
    email: String,
    password: String,
    registered: bool,
    sessions: Vec<Session>,
}

struct Session {
    sid: String,
    /// Every access token issued for it.
    access: Vec<String>,
    /// Every refresh token issued for it.
    refresh: Vec<String>,
    /// The one refresh token that should work (none once ended).
    live_refresh: Option<String>,
    /// Refresh tokens a grace retry replaced: dead, presenting them changes nothing.
    replaced_refresh: Vec<String>,
    /// How it ended, as far as the client was told.
    ended: Option<&'static str>,
    /// Its logout needed a repeat after a 503.
    logout_repeated: bool,
    /// A violation interrupted its story: left out of the final checks.
    uncertain: bool,
}

impl Session {
    fn latest_access(&self) -> &str {
        self.access.last().map_or("", String::as_str)
    }

    fn renew(&mut self, access: String, refresh: String) {
        self.access.push(access);
        self.refresh.push(refresh.clone());
        self.live_refresh = Some(refresh);
    }

    fn end(&mut self, how: &'static str) {
        if self.ended.is_none() {
            self.ended = Some(how);
        }
        self.live_refresh = None;
    }
}

fn short(text: &str) -> &str {
    &text[..text.len().min(12)]
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// An answer in a violation message: its status and problem body, or what pair it was.
fn describe(a: &Answer) -> String {
    match a.body["access_token"].as_str() {
        Some(token) => format!(
            "{} (a token pair of session {})",
            a.status,
            sid_of(token).unwrap_or_default()
        ),
        None => format!("{} {}", a.status, clip(&a.text)),
    }
}

/// The `sid` claim of an access token, read without verifying it.
fn sid_of(access_token: &str) -> Option<String> {
    let payload = access_token.split('.').nth(1)?;
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    claims["sid"].as_str().map(str::to_owned)
}

struct Ctx {
    http: reqwest::Client,
    bases: [String; 2],
    /// The statuses the OpenAPI document lists, per route.
    contract: HashMap<Route, Vec<u16>>,
    t0: Instant,
    /// `t0` in seconds since the Unix epoch (to place Postgres timestamps on the timeline).
    t0_epoch: f64,
    stop_at: f64,
    hang: Duration,
    grace: u64,
    retry_budget: Duration,
    violations: Mutex<Vec<(f64, String)>>,
}

impl Ctx {
    fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    fn violation(&self, text: String) {
        let at = self.now();
        self.violations
            .lock()
            .expect("violations lock")
            .push((at, text));
    }

    fn violation_count(&self) -> usize {
        self.violations.lock().expect("violations lock").len()
    }

    /// One request; records its sample and any breach of the contract.
    async fn send(&self, log: &mut Log, req: &Req) -> Option<Answer> {
        let instance = req.instance.unwrap_or_else(|| random_below(2) as usize);
        let mut builder = self
            .http
            .request(
                req.route.method(),
                format!("{}{}", self.bases[instance], req.route.path()),
            )
            .header("x-forwarded-for", random_client_ip());
        if let Some(token) = &req.bearer {
            builder = builder.bearer_auth(token);
        }
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        let start = self.now();
        let result = async {
            let resp = builder.send().await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let text = resp.text().await?;
            Ok::<_, reqwest::Error>((status, headers, text))
        }
        .await;
        let end = self.now();
        let (status, headers, text) = match result {
            Ok(parts) => parts,
            Err(e) => {
                log.samples.push(Sample {
                    route: req.route,
                    instance,
                    start,
                    end,
                    status: 0,
                    code: None,
                });
                self.violation(format!(
                    "{} on {}: no answer after {:.1} s: {e}",
                    req.what,
                    NAMES[instance],
                    end - start
                ));
                return None;
            }
        };
        let content_type = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let retry_after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let code = if status >= 400 {
            body["code"].as_str().map(str::to_owned)
        } else {
            None
        };
        log.samples.push(Sample {
            route: req.route,
            instance,
            start,
            end,
            status,
            code: code.clone(),
        });
        let answer = Answer {
            status,
            code,
            body,
            text,
            instance,
            retry_after,
        };
        let problems = self.contract_problems(req.route, &answer, &content_type, end - start);
        if !problems.is_empty() {
            self.violation(format!(
                "{} on {}: {}: {}",
                req.what,
                NAMES[instance],
                problems.join("; "),
                describe(&answer)
            ));
        }
        Some(answer)
    }

    /// What in `answer` breaks the contract whatever the story expected.
    fn contract_problems(
        &self,
        route: Route,
        answer: &Answer,
        content_type: &str,
        seconds: f64,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let status = answer.status;
        if !self.contract[&route].contains(&status) {
            problems.push(format!(
                "status {status} is not in the contract of this route"
            ));
        }
        if seconds > self.hang.as_secs_f64() {
            problems.push(format!("answered after {seconds:.1} s (a hang)"));
        }
        if status >= 400 {
            if !content_type.starts_with("application/problem+json") {
                problems.push(format!("problem with Content-Type {content_type:?}"));
            }
            let body = &answer.body;
            for field in ["type", "title", "detail", "code"] {
                if !body[field].is_string() {
                    problems.push(format!("problem without a string `{field}`"));
                }
            }
            if body["status"].as_u64() != Some(u64::from(status)) {
                problems.push("problem `status` differs from the HTTP status".into());
            }
            if status == 503 {
                if answer.code.as_deref() != Some("unavailable") {
                    problems.push("503 whose code is not `unavailable`".into());
                }
                if answer.retry_after.is_none_or(|s| s < 1) {
                    problems.push("503 without a Retry-After of at least 1".into());
                }
            }
        } else if status == 204 {
            if !answer.text.is_empty() {
                problems.push("204 with a body".into());
            }
        } else if !content_type.contains("json") || !answer.body.is_object() {
            problems.push(format!("{status} without a JSON object body"));
        }
        problems
    }

    /// Sends `req`, repeating it after each 503 (Retry-After plus jitter) as a client
    /// following docs/retrying.md would; returns the first other answer and the attempts.
    async fn until_done(&self, log: &mut Log, req: &Req) -> Step<(Answer, u32)> {
        let first = Instant::now();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let answer = self.send(log, req).await.ok_or(Abandon)?;
            if answer.status != 503 {
                return Ok((answer, attempts));
            }
            if first.elapsed() > self.retry_budget {
                self.violation(format!(
                    "{}: still 503 after {attempts} attempts over {:.0} s",
                    req.what,
                    first.elapsed().as_secs_f64()
                ));
                return Err(Abandon);
            }
            let wait = answer.retry_after.unwrap_or(1).clamp(1, 5) * 1000 + random_below(250);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    fn unexpected<T>(&self, what: &str, a: &Answer, attempts: u32, wanted: &str) -> Step<T> {
        self.violation(format!(
            "{what} on {} (attempt {attempts}): expected {wanted}, got {}",
            NAMES[a.instance],
            describe(a)
        ));
        Err(Abandon)
    }

    fn expect(
        &self,
        what: &str,
        a: &Answer,
        attempts: u32,
        status: u16,
        code: Option<&str>,
    ) -> Step<()> {
        if a.status == status && (code.is_none() || a.code.as_deref() == code) {
            Ok(())
        } else {
            self.unexpected(
                what,
                a,
                attempts,
                &format!("{status} {}", code.unwrap_or("")),
            )
        }
    }

    /// The token pair of a 200 from login or refresh, checked against the user.
    fn pair(&self, what: &str, a: &Answer, user: &mut User) -> Step<(String, String, String)> {
        let b = &a.body;
        let access = b["access_token"].as_str().unwrap_or_default().to_owned();
        let refresh = b["refresh_token"].as_str().unwrap_or_default().to_owned();
        let sid = sid_of(&access);
        let mut wrong = Vec::new();
        if sid.is_none() {
            wrong.push("no access token with a `sid`");
        }
        if refresh.is_empty() {
            wrong.push("no refresh token");
        }
        if b["token_type"] != "Bearer" {
            wrong.push("token_type is not Bearer");
        }
        if b["expires_in"].as_u64().is_none_or(|s| s == 0)
            || b["refresh_expires_in"].as_u64().is_none_or(|s| s == 0)
        {
            wrong.push("expires_in or refresh_expires_in not positive");
        }
        if b["user"]["email"] != user.email.as_str() {
            wrong.push("another user's email");
        }
        match (&user.id, b["user"]["id"].as_str()) {
            (Some(id), Some(got)) if id == got => {}
            (None, Some(got)) => user.id = Some(got.to_owned()),
            _ => wrong.push("another user's id"),
        }
        if wrong.is_empty() {
            Ok((access, refresh, sid.unwrap_or_default()))
        } else {
            self.unexpected(what, a, 1, &format!("a token pair ({})", wrong.join(", ")))
        }
    }

    // ----- a user's life -----

    async fn run_client(self: Arc<Self>) -> Log {
        let mut log = Log::default();
        while self.now() < self.stop_at {
            let mut user = User {
                id: None,
                email: unique_email(),
                password: strong_password(),
                registered: false,
                sessions: Vec::new(),
            };
            if self.life(&mut log, &mut user).await.is_err() {
                for s in &mut user.sessions {
                    if s.ended.is_none() {
                        s.uncertain = true;
                    }
                }
                // Give a broken instance a moment rather than spinning on it.
                tokio::time::sleep(Duration::from_millis(200)).await;
            } else {
                log.lives += 1;
            }
            if user.registered {
                log.users.push(user);
            }
        }
        log
    }

    async fn life(&self, log: &mut Log, user: &mut User) -> Step<()> {
        let who = short(&user.email).to_owned();
        let credentials = json!({ "email": user.email, "password": user.password });

        let what = format!("{who}: register");
        let req = Req::new(Route::Register, what.clone()).body(credentials.clone());
        let (a, n) = self.until_done(log, &req).await?;
        match (a.status, a.code.as_deref()) {
            (201, _) => {
                if a.body["email"] != user.email.as_str() || !a.body["id"].is_string() {
                    return self.unexpected(&what, &a, n, "201 with the user");
                }
                user.id = a.body["id"].as_str().map(str::to_owned);
            }
            // The repeat of a register whose answer was lost after the commit.
            (409, Some("email_taken")) if n > 1 => {}
            _ => return self.unexpected(&what, &a, n, "201"),
        }
        user.registered = true;

        if chance(0.1) {
            let what = format!("{who}: register again");
            let body = json!({ "email": user.email, "password": strong_password() });
            let (a, n) = self
                .until_done(log, &Req::new(Route::Register, what.clone()).body(body))
                .await?;
            self.expect(&what, &a, n, 409, Some("email_taken"))?;
        }
        if chance(0.05) {
            let what = format!("{who}: login with a wrong password");
            let body = json!({ "email": user.email, "password": format!("{}x", user.password) });
            let (a, n) = self
                .until_done(log, &Req::new(Route::Login, what.clone()).body(body))
                .await?;
            self.expect(&what, &a, n, 401, Some("invalid_credentials"))?;
        }

        let first = self.login(log, user).await?;
        let second = if chance(0.25) {
            Some(self.login(log, user).await?)
        } else {
            None
        };
        self.me_ok(log, user, first, None).await?;

        match random_below(100) {
            0..50 => {
                self.rotate(log, user, first).await?;
            }
            50..70 => self.refresh_twice(log, user, first).await?,
            70..85 => self.theft(log, user, first).await?,
            _ => self.race(log, user, first).await?,
        }
        if user.sessions[first].ended.is_none() {
            self.me_ok(log, user, first, None).await?;
        }

        let target = if user.sessions[first].ended.is_none() {
            Some(first)
        } else {
            second
        };
        if let Some(idx) = target {
            match random_below(100) {
                0..60 => self.logout(log, user, idx, false).await?,
                60..85 => self.logout(log, user, idx, true).await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn login(&self, log: &mut Log, user: &mut User) -> Step<usize> {
        let what = format!("{}: login", short(&user.email));
        let body = json!({ "email": user.email, "password": user.password });
        let (a, n) = self
            .until_done(log, &Req::new(Route::Login, what.clone()).body(body))
            .await?;
        self.expect(&what, &a, n, 200, None)?;
        let (access, refresh, sid) = self.pair(&what, &a, user)?;
        user.sessions.push(Session {
            sid,
            access: vec![access],
            refresh: vec![refresh.clone()],
            live_refresh: Some(refresh),
            replaced_refresh: Vec::new(),
            ended: None,
            logout_repeated: false,
            uncertain: false,
        });
        Ok(user.sessions.len() - 1)
    }

    /// `GET /me` with the session's newest access token: 200 and the user.
    async fn me_ok(&self, log: &mut Log, user: &User, idx: usize, token: Option<&str>) -> Step<()> {
        let token = token.unwrap_or(user.sessions[idx].latest_access());
        let what = format!("{}: me", short(&user.email));
        let (a, n) = self
            .until_done(log, &Req::new(Route::Me, what.clone()).bearer(token))
            .await?;
        self.expect(&what, &a, n, 200, None)?;
        if a.body["email"] != user.email.as_str() || a.body["id"].as_str() != user.id.as_deref() {
            return self.unexpected(&what, &a, n, "200 with this user");
        }
        Ok(())
    }

    /// Right after a session ended: both instances refuse its newest access token, and its
    /// newest refresh token is refused.
    async fn assert_dead(&self, log: &mut Log, user: &User, idx: usize) -> Step<()> {
        let s = &user.sessions[idx];
        let who = short(&user.email);
        for instance in 0..2 {
            let what = format!(
                "{who}: me right after the session ended ({})",
                s.ended.unwrap_or("?")
            );
            let req = Req::new(Route::Me, what.clone())
                .bearer(s.latest_access())
                .on(instance);
            let (a, n) = self.until_done(log, &req).await?;
            self.expect(&what, &a, n, 401, Some("unauthorized"))?;
        }
        if let Some(token) = s.refresh.last() {
            let what = format!(
                "{who}: refresh right after the session ended ({})",
                s.ended.unwrap_or("?")
            );
            let req =
                Req::new(Route::Refresh, what.clone()).body(json!({ "refresh_token": token }));
            let (a, n) = self.until_done(log, &req).await?;
            self.expect(&what, &a, n, 401, Some("invalid_refresh_token"))?;
        }
        Ok(())
    }

    fn refresh_req(&self, who: &str, story: &str, token: &str) -> Req {
        Req::new(Route::Refresh, format!("{who}: refresh ({story})"))
            .body(json!({ "refresh_token": token }))
    }

    /// One rotation of the session's live refresh token; `false` if the session ended
    /// (only without grace: the repeat of a refresh whose answer was lost is reuse).
    async fn rotate(&self, log: &mut Log, user: &mut User, idx: usize) -> Step<bool> {
        let who = short(&user.email).to_owned();
        let token = user.sessions[idx].live_refresh.clone().unwrap_or_default();
        let req = self.refresh_req(&who, "rotation", &token);
        let (a, n) = self.until_done(log, &req).await?;
        match (a.status, a.code.as_deref()) {
            (200, _) => {
                let (access, refresh, sid) = self.pair(&req.what, &a, user)?;
                if sid != user.sessions[idx].sid {
                    return self.unexpected(&req.what, &a, n, "a pair of the same session");
                }
                user.sessions[idx].renew(access, refresh);
                Ok(true)
            }
            (401, Some("invalid_refresh_token")) if n > 1 && self.grace == 0 => {
                user.sessions[idx].end("reuse (the repeat of a refresh, no grace)");
                self.assert_dead(log, user, idx).await?;
                Ok(false)
            }
            _ => self.unexpected(&req.what, &a, n, "200"),
        }
    }

    /// The same refresh token twice in a row (a client retrying a refresh whose answer it
    /// lost): with grace the second gets a new pair and the first successor is dead;
    /// without, it is reuse.
    async fn refresh_twice(&self, log: &mut Log, user: &mut User, idx: usize) -> Step<()> {
        let who = short(&user.email).to_owned();
        let token = user.sessions[idx].live_refresh.clone().unwrap_or_default();
        if !self.rotate(log, user, idx).await? {
            return Ok(());
        }
        let first_access = user.sessions[idx].latest_access().to_owned();
        let first_refresh = user.sessions[idx].live_refresh.clone().unwrap_or_default();
        let req = self.refresh_req(&who, "the same token again", &token);
        let (a, n) = self.until_done(log, &req).await?;
        if self.grace > 0 {
            self.expect(&req.what, &a, n, 200, None)?;
            let (access, refresh, sid) = self.pair(&req.what, &a, user)?;
            if sid != user.sessions[idx].sid {
                return self.unexpected(&req.what, &a, n, "a pair of the same session");
            }
            let s = &mut user.sessions[idx];
            s.replaced_refresh.push(first_refresh.clone());
            s.renew(access, refresh);
            // The session lives on: the first pair's access token still works ...
            self.me_ok(log, user, idx, Some(&first_access)).await?;
            // ... its refresh token does not (replaced, not spent: no reuse).
            let req = self.refresh_req(&who, "the replaced successor", &first_refresh);
            let (a, n) = self.until_done(log, &req).await?;
            self.expect(&req.what, &a, n, 401, Some("invalid_refresh_token"))?;
        } else {
            self.expect(&req.what, &a, n, 401, Some("invalid_refresh_token"))?;
            user.sessions[idx].end("reuse (the same token twice, no grace)");
            self.assert_dead(log, user, idx).await?;
        }
        Ok(())
    }

    /// An old refresh token presented after its successor was spent: reuse, whatever the
    /// grace; the whole session ends.
    async fn theft(&self, log: &mut Log, user: &mut User, idx: usize) -> Step<()> {
        let who = short(&user.email).to_owned();
        let stolen = user.sessions[idx].live_refresh.clone().unwrap_or_default();
        if !self.rotate(log, user, idx).await? || !self.rotate(log, user, idx).await? {
            return Ok(());
        }
        let req = self.refresh_req(&who, "a stolen, spent token", &stolen);
        let (a, n) = self.until_done(log, &req).await?;
        self.expect(&req.what, &a, n, 401, Some("invalid_refresh_token"))?;
        user.sessions[idx].end("reuse (a stolen token)");
        self.assert_dead(log, user, idx).await
    }

    /// Two refreshes of one token at once, one per instance. With grace both get a pair and
    /// exactly one of the two successors works; without, at most one gets a pair (none when
    /// the reuse is marked before the rotation mints) and the session ends.
    async fn race(&self, log: &mut Log, user: &mut User, idx: usize) -> Step<()> {
        let who = short(&user.email).to_owned();
        let token = user.sessions[idx].live_refresh.clone().unwrap_or_default();
        let req_a = self.refresh_req(&who, "concurrent, first", &token).on(0);
        let req_b = self.refresh_req(&who, "concurrent, second", &token).on(1);
        let mut log_b = Log::default();
        let (a, b) = tokio::join!(
            self.until_done(log, &req_a),
            self.until_done(&mut log_b, &req_b)
        );
        log.samples.append(&mut log_b.samples);
        let ((a, na), (b, nb)) = (a?, b?);
        let what = format!("{who}: two concurrent refreshes of one token");
        let refused =
            |x: &Answer| x.status == 401 && x.code.as_deref() == Some("invalid_refresh_token");
        if self.grace > 0 {
            if a.status != 200 || b.status != 200 {
                let other = if a.status != 200 { &a } else { &b };
                return self.unexpected(&what, other, na.max(nb), "200 for both (grace)");
            }
            let (access_a, refresh_a, sid_a) = self.pair(&what, &a, user)?;
            let (access_b, refresh_b, sid_b) = self.pair(&what, &b, user)?;
            if sid_a != user.sessions[idx].sid || sid_b != user.sessions[idx].sid {
                return self.unexpected(&what, &a, na, "pairs of the same session");
            }
            {
                let s = &mut user.sessions[idx];
                s.access.push(access_a);
                s.access.push(access_b);
                s.refresh.push(refresh_a.clone());
                s.refresh.push(refresh_b.clone());
                s.live_refresh = None;
            }
            // Exactly one of the two successors works; the other was replaced.
            let probe = self.refresh_req(&who, "first successor of the race", &refresh_a);
            let (p, pn) = self.until_done(log, &probe).await?;
            let (live, dead) = match (p.status, p.code.as_deref()) {
                (200, _) => (p, refresh_b),
                (401, Some("invalid_refresh_token")) => {
                    let probe = self.refresh_req(&who, "second successor of the race", &refresh_b);
                    let (q, qn) = self.until_done(log, &probe).await?;
                    if q.status != 200 {
                        return self.unexpected(
                            &probe.what,
                            &q,
                            qn,
                            "200: one successor of two concurrent refreshes must work",
                        );
                    }
                    (q, refresh_a)
                }
                _ => return self.unexpected(&probe.what, &p, pn, "200 or 401"),
            };
            let (access, refresh, sid) = self.pair(&what, &live, user)?;
            if sid != user.sessions[idx].sid {
                return self.unexpected(&what, &live, 1, "a pair of the same session");
            }
            let s = &mut user.sessions[idx];
            s.replaced_refresh.push(dead.clone());
            s.renew(access, refresh);
            let req = self.refresh_req(&who, "the other successor of the race", &dead);
            let (d, dn) = self.until_done(log, &req).await?;
            self.expect(&req.what, &d, dn, 401, Some("invalid_refresh_token"))?;
        } else {
            match (a.status, b.status) {
                (200, _) if refused(&b) => {
                    let (access, refresh, _) = self.pair(&what, &a, user)?;
                    user.sessions[idx].renew(access, refresh);
                }
                (_, 200) if refused(&a) => {
                    let (access, refresh, _) = self.pair(&what, &b, user)?;
                    user.sessions[idx].renew(access, refresh);
                }
                // The reuse was marked before the rotation minted: it refuses too (the
                // session ended; nobody holds a working pair).
                _ if refused(&a) && refused(&b) => {}
                _ => {
                    self.violation(format!(
                        "{what} (attempts {na} on A, {nb} on B): expected at most one 200, the \
                         other 401 invalid_refresh_token (no grace: the second is reuse), got \
                         A {}, B {}",
                        describe(&a),
                        describe(&b)
                    ));
                    return Err(Abandon);
                }
            }
            user.sessions[idx].end("reuse (concurrent refreshes, no grace)");
            self.assert_dead(log, user, idx).await?;
        }
        Ok(())
    }

    /// Logout (or logout-all) with the session's newest access token, repeated after a
    /// 503 until it answers 204; then the session's tokens are refused at once.
    async fn logout(&self, log: &mut Log, user: &mut User, idx: usize, all: bool) -> Step<()> {
        let who = short(&user.email).to_owned();
        let what = format!("{who}: logout{}", if all { " all" } else { "" });
        let mut req =
            Req::new(Route::Logout, what.clone()).bearer(user.sessions[idx].latest_access());
        if all {
            req = req.body(json!({ "all": true }));
        }
        let (a, n) = self.until_done(log, &req).await?;
        if a.status != 204 {
            let wanted = if n > 1 {
                "204: the repeat of a logout cut short completes it"
            } else {
                "204"
            };
            return self.unexpected(&what, &a, n, wanted);
        }
        let ended: Vec<usize> = if all {
            (0..user.sessions.len())
                .filter(|&i| user.sessions[i].ended.is_none())
                .collect()
        } else {
            vec![idx]
        };
        for &i in &ended {
            let s = &mut user.sessions[i];
            s.end(if all { "logout-all" } else { "logout" });
            s.logout_repeated = n > 1;
        }
        for &i in &ended {
            self.assert_dead(log, user, i).await?;
        }
        Ok(())
    }
}

// ----- the faults -----

struct Fault {
    name: &'static str,
    cut: f64,
    restore: f64,
}

async fn run_faults(app: &TestApp, ctx: &Ctx, plan: [(f64, f64); 2]) -> Vec<Fault> {
    let mut faults = Vec::new();
    for (i, (cut_at, restore_at)) in plan.into_iter().enumerate() {
        let (name, proxy) = if i == 0 {
            ("redis", app.redis_proxy())
        } else {
            ("postgres", app.postgres_proxy())
        };
        sleep_until(ctx, cut_at).await;
        proxy.cut();
        let cut = ctx.now();
        eprintln!("  {cut:5.1} s  {name} cut");
        sleep_until(ctx, restore_at).await;
        proxy.restore();
        let restore = ctx.now();
        eprintln!("  {restore:5.1} s  {name} restored");
        faults.push(Fault { name, cut, restore });
    }
    faults
}

async fn sleep_until(ctx: &Ctx, at: f64) {
    let now = ctx.now();
    if at > now {
        tokio::time::sleep(Duration::from_secs_f64(at - now)).await;
    }
}

// ----- the report -----

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn status_label(s: &Sample) -> String {
    match (&s.code, s.status) {
        (_, 0) => "no answer".into(),
        (Some(code), status) => format!("{status} {code}"),
        (None, status) => status.to_string(),
    }
}

fn tally(samples: &[&Sample]) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for s in samples {
        *counts.entry(status_label(s)).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, v)| format!("{k} ×{v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// One final check: its name, what it counted, and its failures.
struct Check {
    name: String,
    detail: String,
    failures: Vec<String>,
}

impl Check {
    fn line(&self) -> String {
        let verdict = if self.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        let mut line = format!("  {verdict}  {}: {}", self.name, self.detail);
        for f in self.failures.iter().take(5) {
            let _ = write!(line, "\n          {f}");
        }
        if self.failures.len() > 5 {
            let _ = write!(line, "\n          … {} more", self.failures.len() - 5);
        }
        line
    }
}

// ----- the final checks -----

enum Probe {
    /// `GET /me` with the token on the instance must answer `status`.
    Me {
        token: String,
        instance: usize,
        status: u16,
        who: String,
    },
    /// A refresh with the token on the instance must answer `status`.
    Refresh {
        token: String,
        instance: usize,
        status: u16,
        who: String,
    },
    /// The user logs in.
    Login {
        email: String,
        password: String,
        id: Option<String>,
    },
}

/// Runs the probes 16 at a time; returns how many ran and the failures.
async fn run_probes(ctx: &Ctx, probes: Vec<Probe>) -> (usize, Vec<String>) {
    let total = probes.len();
    let failures: Vec<String> = futures::stream::iter(probes)
        .map(|probe| async move {
            let mut log = Log::default();
            let (req, status, code, id) = match probe {
                Probe::Me {
                    token,
                    instance,
                    status,
                    who,
                } => (
                    Req::new(Route::Me, format!("final: {who}: me"))
                        .bearer(&token)
                        .on(instance),
                    status,
                    (status == 401).then_some("unauthorized"),
                    None,
                ),
                Probe::Refresh {
                    token,
                    instance,
                    status,
                    who,
                } => (
                    Req::new(Route::Refresh, format!("final: {who}: refresh"))
                        .body(json!({ "refresh_token": token }))
                        .on(instance),
                    status,
                    (status == 401).then_some("invalid_refresh_token"),
                    None,
                ),
                Probe::Login {
                    email,
                    password,
                    id,
                } => (
                    Req::new(Route::Login, format!("final: {}: login", short(&email)))
                        .body(json!({ "email": email, "password": password })),
                    200,
                    None,
                    Some(id),
                ),
            };
            let Ok((a, n)) = ctx.until_done(&mut log, &req).await else {
                return Some(format!("{}: no answer (see the violations)", req.what));
            };
            let ok = a.status == status
                && (code.is_none() || a.code.as_deref() == code)
                && match id {
                    Some(Some(id)) => a.body["user"]["id"].as_str() == Some(id.as_str()),
                    _ => true,
                };
            (!ok).then(|| {
                format!(
                    "{} on {} (attempt {n}): expected {status}, got {}",
                    req.what,
                    NAMES[a.instance],
                    describe(&a)
                )
            })
        })
        .buffer_unordered(16)
        .filter_map(|f| async move { f })
        .collect()
        .await;
    (total, failures)
}

async fn final_checks(app: &TestApp, ctx: &Ctx, users: &[User]) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    let sessions: Vec<(&User, &Session)> = users
        .iter()
        .flat_map(|u| u.sessions.iter().map(move |s| (u, s)))
        .collect();
    let ended: Vec<&(&User, &Session)> =
        sessions.iter().filter(|(_, s)| s.ended.is_some()).collect();
    let live: Vec<&(&User, &Session)> = sessions
        .iter()
        .filter(|(_, s)| s.ended.is_none() && !s.uncertain)
        .collect();
    let uncertain = sessions.iter().filter(|(_, s)| s.uncertain).count();

    // 1. Postgres agrees with what the clients were told (read before any probe).
    let db = app.database().await;
    let rows = db
        .query(
            "SELECT id::text, revoked_at IS NOT NULL, coalesce(revoked_reason, '') FROM sessions",
            &[],
        )
        .await
        .context("reading sessions")?;
    let in_db: HashMap<String, (bool, String)> = rows
        .iter()
        .map(|r| (r.get::<_, String>(0), (r.get(1), r.get(2))))
        .collect();
    let mut failures = Vec::new();
    let mut repeated = 0;
    for (u, s) in &ended {
        if s.logout_repeated {
            repeated += 1;
        }
        match in_db.get(&s.sid) {
            Some((true, _)) => {}
            Some((false, _)) => failures.push(format!(
                "{}: session {} ended ({}{}) but Postgres has no revoked_at",
                short(&u.email),
                s.sid,
                s.ended.unwrap_or("?"),
                if s.logout_repeated {
                    ", after a repeated logout"
                } else {
                    ""
                }
            )),
            None => failures.push(format!("session {} is not in Postgres", s.sid)),
        }
    }
    checks.push(Check {
        name: "ended sessions are revoked in Postgres".into(),
        detail: format!(
            "{}/{} (of them {repeated} logouts needed a repeat after a 503)",
            ended.len() - failures.len(),
            ended.len()
        ),
        failures,
    });

    let mut failures = Vec::new();
    for (u, s) in &live {
        if in_db.get(&s.sid).is_none_or(|(revoked, _)| *revoked) {
            failures.push(format!(
                "{}: session {} never ended for the client, but Postgres revoked it ({})",
                short(&u.email),
                s.sid,
                in_db.get(&s.sid).map_or("missing", |(_, why)| why.as_str())
            ));
        }
    }
    let known: HashSet<&str> = sessions.iter().map(|(_, s)| s.sid.as_str()).collect();
    // Sessions no client was told of: a login whose 503 came after its commit (the client
    // repeated it and holds the repeat's session); say when they were created.
    let unknown: Vec<String> = in_db
        .keys()
        .filter(|k| !known.contains(k.as_str()))
        .cloned()
        .collect();
    let unknown_when = if unknown.is_empty() {
        String::new()
    } else {
        let rows = db
            .query(
                "SELECT extract(epoch FROM created_at)::float8 FROM sessions
                 WHERE id::text = ANY($1) ORDER BY 1",
                &[&unknown],
            )
            .await
            .context("reading unknown sessions")?;
        let at: Vec<String> = rows
            .iter()
            .map(|r| format!("{:.2}", r.get::<_, f64>(0) - ctx.t0_epoch))
            .collect();
        format!(", created at {} s", at.join(", "))
    };
    checks.push(Check {
        name: "live sessions are live in Postgres".into(),
        detail: format!(
            "{}/{} ({uncertain} sessions left out after a violation; {} sessions in \
             Postgres that no client was told of{unknown_when})",
            live.len() - failures.len(),
            live.len(),
            unknown.len()
        ),
        failures,
    });

    // 2. No session half dead: no Redis marker or journal entry for a live session.
    let prefix = app.redis_prefix().to_owned();
    let keys = app.redis_keys().await;
    let markers: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}revoked:session:")))
        .collect();
    let mut journal = Vec::new();
    let mut redis = app.redis().await;
    for key in keys
        .iter()
        .filter(|k| k.starts_with(&format!("{prefix}revoked:pending:")))
    {
        let entries: HashMap<String, String> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .context("reading the journal")?;
        journal.extend(entries.into_keys());
    }
    let mut failures = Vec::new();
    for sid in markers
        .iter()
        .copied()
        .chain(journal.iter().map(String::as_str))
    {
        if !in_db.get(sid).is_some_and(|(revoked, _)| *revoked) {
            failures.push(format!(
                "session {sid} is marked revoked in Redis but live in Postgres"
            ));
        }
    }
    // Entries left in the journal are legitimate when step 3 (shortening the markers) met
    // the Redis cut after Postgres committed: say when Postgres revoked those sessions.
    let journal_when = if journal.is_empty() {
        String::new()
    } else {
        let row = db
            .query_one(
                "SELECT min(extract(epoch FROM revoked_at))::float8,
                        max(extract(epoch FROM revoked_at))::float8
                 FROM sessions WHERE id::text = ANY($1)",
                &[&journal],
            )
            .await
            .context("reading the journal's sessions")?;
        match (row.get::<_, Option<f64>>(0), row.get::<_, Option<f64>>(1)) {
            (Some(first), Some(last)) => format!(
                " (their sessions revoked in Postgres at {:.2}–{:.2} s)",
                first - ctx.t0_epoch,
                last - ctx.t0_epoch
            ),
            _ => String::new(),
        }
    };
    checks.push(Check {
        name: "no session half dead (Redis markers and journal vs Postgres)".into(),
        detail: format!(
            "{} markers, {} journal entries left{journal_when}, {} sessions revoked in Postgres",
            markers.len(),
            journal.len(),
            in_db.values().filter(|(revoked, _)| *revoked).count()
        ),
        failures,
    });

    // 3. Every token of an ended session, and every replaced refresh token, is refused by
    // both instances.
    let mut probes = Vec::new();
    let (mut access_count, mut refresh_count) = (0, 0);
    for (u, s) in &ended {
        for token in &s.access {
            access_count += 1;
            for instance in 0..2 {
                probes.push(Probe::Me {
                    token: token.clone(),
                    instance,
                    status: 401,
                    who: short(&u.email).to_owned(),
                });
            }
        }
        for token in &s.refresh {
            refresh_count += 1;
            for instance in 0..2 {
                probes.push(Probe::Refresh {
                    token: token.clone(),
                    instance,
                    status: 401,
                    who: short(&u.email).to_owned(),
                });
            }
        }
    }
    for (u, s) in sessions.iter() {
        for token in &s.replaced_refresh {
            if s.ended.is_none() {
                refresh_count += 1;
                for instance in 0..2 {
                    probes.push(Probe::Refresh {
                        token: token.clone(),
                        instance,
                        status: 401,
                        who: short(&u.email).to_owned(),
                    });
                }
            }
        }
    }
    let (n, failures) = run_probes(ctx, probes).await;
    checks.push(Check {
        name: "revoked tokens are refused by both instances".into(),
        detail: format!(
            "{access_count} access + {refresh_count} refresh tokens, {n} requests, {} accepted",
            failures.len()
        ),
        failures,
    });

    // 4. Live sessions work on both instances, and their refresh token rotates.
    let mut probes = Vec::new();
    for (u, s) in &live {
        for instance in 0..2 {
            probes.push(Probe::Me {
                token: s.latest_access().to_owned(),
                instance,
                status: 200,
                who: short(&u.email).to_owned(),
            });
        }
        if let Some(token) = &s.live_refresh {
            probes.push(Probe::Refresh {
                token: token.clone(),
                instance: random_below(2) as usize,
                status: 200,
                who: short(&u.email).to_owned(),
            });
        }
    }
    let (n, failures) = run_probes(ctx, probes).await;
    checks.push(Check {
        name: "live sessions work (me on both, refresh)".into(),
        detail: format!("{} sessions, {n} requests", live.len()),
        failures,
    });

    // 5. Every registered user logs in.
    let probes: Vec<Probe> = users
        .iter()
        .map(|u| Probe::Login {
            email: u.email.clone(),
            password: u.password.clone(),
            id: u.id.clone(),
        })
        .collect();
    let (n, failures) = run_probes(ctx, probes).await;
    checks.push(Check {
        name: "every registered user logs in".into(),
        detail: format!("{}/{n}", n - failures.len()),
        failures,
    });
    Ok(checks)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let duration = args.duration.as_secs_f64();
    let fault = args.fault_seconds as f64;
    let plan = [
        (duration * 0.2, duration * 0.2 + fault),
        (duration * 0.55, duration * 0.55 + fault),
    ];
    if fault < 1.0 || plan[0].1 >= plan[1].0 || plan[1].1 + 5.0 > duration {
        bail!(
            "--duration {duration} s is too short for two outages of {fault} s: the Redis cut \
             starts at 20% of it, the Postgres cut at 55%, and 5 s must follow the last"
        );
    }
    let server_bin = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory")?
            .join("user-service"),
    };
    if !server_bin.is_file() {
        bail!(
            "{} is missing: build it (scripts/soak.sh does) or pass --server-bin",
            server_bin.display()
        );
    }
    let hang = Duration::from_secs(args.hang_seconds);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(hang + Duration::from_secs(4))
        .pool_max_idle_per_host(256)
        .build()?;

    let app = TestApp::builder()
        .postgres_via_proxy()
        .redis_via_proxy()
        .spawn()
        .await;
    let a = Instance::start("A", &server_bin, &app, &args, &http).await?;
    let b = Instance::start("B", &server_bin, &app, &args, &http).await?;
    let openapi: Value = http
        .get(format!("{}/openapi.json", a.base))
        .send()
        .await?
        .json()
        .await?;
    let mut contract = HashMap::new();
    for route in ROUTES {
        let method = route.method().as_str().to_ascii_lowercase();
        let responses = openapi["paths"][route.path()][&method]["responses"]
            .as_object()
            .with_context(|| {
                format!("no responses for {method} {} in openapi.json", route.path())
            })?;
        let statuses: Vec<u16> = responses.keys().filter_map(|k| k.parse().ok()).collect();
        contract.insert(route, statuses);
    }

    eprintln!(
        "soak: {} ({}), instances A {} and B {}, {} clients for {duration:.0} s, grace {} s",
        server_bin.display(),
        if args.production_hashing {
            "production argon2"
        } else {
            "the tests' argon2"
        },
        a.base,
        b.base,
        args.clients,
        args.grace
    );
    let ctx = Arc::new(Ctx {
        http,
        bases: [a.base.clone(), b.base.clone()],
        contract,
        t0: Instant::now(),
        t0_epoch: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs_f64(),
        stop_at: duration,
        hang,
        grace: args.grace,
        retry_budget: Duration::from_secs(args.fault_seconds + 30),
        violations: Mutex::new(Vec::new()),
    });
    let clients: Vec<_> = (0..args.clients)
        .map(|_| tokio::spawn(ctx.clone().run_client()))
        .collect();
    let faults = run_faults(&app, &ctx, plan).await;
    let mut logs = Vec::new();
    for client in clients {
        logs.push(client.await.context("a client panicked")?);
    }
    let traffic_seconds = ctx.now();
    let traffic_violations = ctx.violation_count();
    eprintln!("  {traffic_seconds:5.1} s  traffic done; final checks");

    let mut samples = Vec::new();
    let mut users = Vec::new();
    let mut lives = 0;
    for log in logs {
        samples.extend(log.samples);
        users.extend(log.users);
        lives += log.lives;
    }

    if let Some(path) = &args.samples_csv {
        let mut csv = String::from("route,instance,start_s,end_s,status,code\n");
        for s in &samples {
            let _ = writeln!(
                csv,
                "{},{},{:.4},{:.4},{},{}",
                s.route.name(),
                NAMES[s.instance],
                s.start,
                s.end,
                s.status,
                s.code.as_deref().unwrap_or("")
            );
        }
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let checks_started = Instant::now();
    let checks = final_checks(&app, &ctx, &users).await?;
    let checks_seconds = checks_started.elapsed().as_secs_f64();
    let memory = [a.memory_kib(), b.memory_kib()];

    // ----- report -----
    let mut out = String::new();
    let _ = writeln!(
        out,
        "soak: 2 instances ({}, {}), {} clients, {duration:.0} s, outages of {fault:.0} s, \
         REFRESH_REUSE_GRACE_SECONDS={}",
        server_bin
            .parent()
            .and_then(Path::file_name)
            .map_or("?".into(), |n| n.to_string_lossy().into_owned()),
        if args.production_hashing {
            "production argon2"
        } else {
            "tests' argon2"
        },
        args.clients,
        args.grace
    );
    let _ = writeln!(
        out,
        "traffic: {} requests in {traffic_seconds:.1} s = {:.0} req/s; {lives} lives completed, \
         {} users registered",
        samples.len(),
        samples.len() as f64 / traffic_seconds,
        users.len()
    );

    // Recovery: per fault and route, the first success after the restore and the last 503
    // of a request started after it (and answered before the next cut); the fault's window
    // runs to the latest of those 503s.
    let mut windows = Vec::new();
    let _ = writeln!(out, "recovery (from the restore):");
    for (i, f) in faults.iter().enumerate() {
        let next = faults.get(i + 1).map_or(f64::INFINITY, |n| n.cut);
        let mut settle: f64 = 0.0;
        let mut parts = Vec::new();
        for route in ROUTES {
            let of_route = samples.iter().filter(|s| s.route == route);
            let during: Vec<&Sample> = of_route
                .clone()
                .filter(|s| s.start >= f.cut && s.start < f.restore)
                .collect();
            let failed = during.iter().any(|s| s.status == 503);
            let first_ok = of_route
                .clone()
                .filter(|s| s.end >= f.restore && s.end < next && s.status != 503 && s.status != 0)
                .map(|s| s.end - f.restore)
                .fold(f64::INFINITY, f64::min);
            let last_503 = of_route
                .filter(|s| s.start >= f.restore && s.end < next && s.status == 503)
                .map(|s| s.end - f.restore)
                .fold(f64::NEG_INFINITY, f64::max);
            if last_503.is_finite() {
                settle = settle.max(last_503);
            }
            parts.push(format!(
                "{} {}{}",
                route.name(),
                if first_ok.is_finite() {
                    format!("ok +{first_ok:.2} s")
                } else {
                    "never ok".into()
                },
                match (failed, last_503.is_finite()) {
                    (false, false) => " (no 503 in the outage)".to_owned(),
                    (_, true) => format!(", last 503 +{last_503:.2} s"),
                    (true, false) => String::new(),
                }
            ));
        }
        let _ = writeln!(
            out,
            "  {} cut {:.1}–{:.1} s: {}",
            f.name,
            f.cut,
            f.restore,
            parts.join("; ")
        );
        windows.push((f, f.restore + settle));
    }

    let in_window = |s: &Sample| {
        windows
            .iter()
            .any(|(f, until)| s.end >= f.cut && s.start <= *until)
    };
    let _ = writeln!(out, "latency outside the outages and their recovery (ms):");
    let _ = writeln!(out, "  route      count    p50    p99    max");
    for route in ROUTES {
        let mut ms: Vec<f64> = samples
            .iter()
            .filter(|s| s.route == route && !in_window(s))
            .map(|s| (s.end - s.start) * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        let _ = writeln!(
            out,
            "  {:<9} {:>6} {:>6.1} {:>6.1} {:>6.1}",
            route.name(),
            ms.len(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.last().copied().unwrap_or(f64::NAN)
        );
    }

    let _ = writeln!(out, "answers per window (by the request's start):");
    let mut bounds: Vec<(String, f64, f64)> = Vec::new();
    for (f, until) in &windows {
        bounds.push((format!("{} cut", f.name), f.cut, f.restore));
        if *until > f.restore {
            bounds.push((format!("{} recovery", f.name), f.restore, *until));
        }
    }
    for (name, from, to) in &bounds {
        let _ = writeln!(out, "  {name} {from:.1}–{to:.1} s:");
        for route in ROUTES {
            let these: Vec<&Sample> = samples
                .iter()
                .filter(|s| s.route == route && s.start >= *from && s.start < *to)
                .collect();
            if !these.is_empty() {
                let _ = writeln!(out, "    {:<9} {}", route.name(), tally(&these));
            }
        }
    }
    // Calm traffic: requests that overlap no outage and no recovery.
    let outside: Vec<&Sample> = samples.iter().filter(|s| !in_window(s)).collect();
    let errors: Vec<&Sample> = outside
        .iter()
        .copied()
        .filter(|s| s.status == 0 || s.status >= 500)
        .collect();
    let _ = writeln!(
        out,
        "  outside them (no overlap): {} requests, {}",
        outside.len(),
        if errors.is_empty() {
            "no 5xx".to_owned()
        } else {
            format!("errors: {}", tally(&errors))
        }
    );

    let _ = writeln!(out, "peak RSS (VmHWM):");
    for (instance, mem) in [&a, &b].iter().zip(memory) {
        let _ = writeln!(
            out,
            "  {} {}",
            instance.name,
            mem.map_or("n/a".into(), |(hwm, rss)| format!(
                "{} (now {})",
                mib(hwm),
                mib(rss)
            ))
        );
    }

    let violations = ctx.violations.lock().expect("violations lock").clone();
    let _ = writeln!(out, "final checks ({checks_seconds:.0} s):");
    let mut failed = false;
    // Violations by step (the text between the user and the instance), to see at a glance
    // whether they are one finding or many.
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    for (_, text) in &violations {
        let text = text.strip_prefix("final: ").unwrap_or(text);
        let rest = text.split_once(": ").map_or(text, |(_, rest)| rest);
        let step: Vec<&str> = rest
            .split(' ')
            .take_while(|w| *w != "on" && !w.starts_with('('))
            .collect();
        *kinds.entry(step.join(" ")).or_default() += 1;
    }
    let by_step = kinds
        .iter()
        .map(|(k, v)| format!("{k} ×{v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let contract = Check {
        name: "every answer kept the contract".into(),
        detail: format!(
            "{traffic_violations} violations during the traffic, {} in the final checks{}",
            violations.len() - traffic_violations,
            if by_step.is_empty() {
                String::new()
            } else {
                format!(" (by step: {by_step})")
            }
        ),
        failures: violations
            .iter()
            .map(|(at, text)| format!("{at:.1} s: {text}"))
            .collect(),
    };
    for check in std::iter::once(&contract).chain(checks.iter()) {
        failed |= !check.failures.is_empty();
        let _ = writeln!(out, "{}", check.line());
    }
    let _ = writeln!(out, "RESULT: {}", if failed { "FAIL" } else { "PASS" });
    print!("{out}");

    if failed {
        for instance in [&a, &b] {
            eprintln!(
                "--- last lines of instance {} ({}) ---\n{}",
                instance.name,
                instance.log.display(),
                instance.log_tail(15)
            );
        }
    }
    a.stop().await;
    b.stop().await;
    drop(ctx);
    drop(app);
    if failed {
        std::process::exit(1);
    }
    Ok(())
}
