//! Cold start, memory and package size of every Lambda function binary, under the emulated
//! Runtime API of the tests (`user_service_tests::runtime_api`). Run by
//! `scripts/lambda-bench.sh`, which builds the release binaries first.
//!
//! For each function (every `ENDPOINTS` function and the authorizer), with a representative
//! event against a fresh deployment on the local Postgres and Redis (production argon2
//! settings):
//! - **cold start**: process spawn to the first response, the median of `--runs` fresh
//!   processes (and the init phase alone: spawn to the runtime's first `/next`);
//! - **peak RSS** (`VmHWM`) after 100 and after 1,000 invocations of one process, to show
//!   that memory does not grow with use;
//! - the size of the deployment zip (the binary as `bootstrap`, `zip -9`).
//!
//! Secrets Manager and other AWS services: variables given with `--env NAME=VALUE` go to
//! every function (e.g. `JWT_KEYS_SECRET_ARN`), and the AWS SDK's credentials and endpoints
//! (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, ...) are passed through from this process's
//! environment, so a moto server can stand in for AWS.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use serde_json::{Value, json};
use user_service::http::routes::ENDPOINTS;
use user_service_tests::runtime_api::{HttpEvent, HttpResponse, LambdaProcess, authorizer_event};
use user_service_tests::test_app::unique_admin_email;
use user_service_tests::{TestApp, TestUser, strong_password, unique_email};

#[derive(Parser)]
#[command(about = "Cold start, peak RSS and zip size of the Lambda function binaries")]
struct Args {
    /// Directory of the function binaries (default: `$CARGO_TARGET_DIR/release`, else
    /// `target/release`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Cold starts per function (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Invocations of one process after which the peak RSS is read (cumulative).
    #[arg(long, value_delimiter = ',', default_values_t = [100, 1000])]
    checkpoints: Vec<usize>,
    /// Only these functions (default: all).
    #[arg(long = "function")]
    functions: Vec<String>,
    /// `NAME=VALUE` for every function's environment (repeatable), e.g. a secret's ARN.
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// Also copy each measured process's `/proc/PID/smaps` after its last checkpoint into
    /// this directory (`FUNCTION.smaps`), to see which mappings its memory is in.
    #[arg(long)]
    smaps: Option<PathBuf>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

/// One function's figures.
struct Row {
    function: String,
    init_ms: f64,
    cold_ms: f64,
    hwm_kib: Vec<u64>,
    rss_kib: u64,
    zip_bytes: Option<u64>,
    errors: usize,
}

/// A well-formed token (43 base64url characters) that was never issued: the events that
/// present it run the lookup and change nothing.
const NEVER_ISSUED: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The deployment every function runs in, and the users the events act as.
struct Fixture {
    app: TestApp,
    admin: TestUser,
    /// Read-only events act as this user (get-me, authorizer, admin get and audit).
    reader: TestUser,
}

/// What a function is invoked with, and what it must answer.
struct Scenario<'a> {
    fixture: &'a Fixture,
    function: &'a str,
    /// A user of this scenario alone (one that the events change).
    own: TestUser,
    /// The refresh token to spend next (refresh), the current password (change-password).
    state: String,
    counter: u64,
}

impl<'a> Scenario<'a> {
    async fn new(fixture: &'a Fixture, function: &'a str) -> Scenario<'a> {
        let own = fixture.app.new_user().await;
        let state = match function {
            "refresh" => own.tokens.refresh_token.clone(),
            _ => own.password.clone(),
        };
        Scenario {
            fixture,
            function,
            own,
            state,
            counter: 0,
        }
    }

    /// The next event (some need a step of their own first: a session to end, a user to
    /// delete) and the status it must get (`None`: an authorizer allow).
    async fn next(&mut self) -> anyhow::Result<(Value, Option<u16>)> {
        self.counter += 1;
        let n = self.counter;
        let f = self.fixture;
        let admin = |method: &str, path: &str| {
            HttpEvent::new(method, path).bearer(&f.admin.tokens.access_token)
        };
        let (event, status) = match self.function {
            "register" => (
                HttpEvent::post_json(
                    "/v1/auth/register",
                    &json!({ "email": unique_email(), "password": strong_password() }),
                ),
                201,
            ),
            "login" => (
                HttpEvent::post_json(
                    "/v1/auth/login",
                    &json!({ "email": self.own.email, "password": self.own.password }),
                ),
                200,
            ),
            "refresh" => (
                HttpEvent::post_json("/v1/auth/refresh", &json!({ "refresh_token": self.state })),
                200,
            ),
            "logout" => {
                let session = f.app.login_ok(&self.own.email, &self.own.password).await;
                (
                    HttpEvent::new("POST", "/v1/auth/logout").bearer(&session.access_token),
                    204,
                )
            }
            "get-me" => (
                HttpEvent::get("/v1/users/me").bearer(&f.reader.tokens.access_token),
                200,
            ),
            "list-sessions" => (
                HttpEvent::get("/v1/users/me/sessions").bearer(&f.reader.tokens.access_token),
                200,
            ),
            "delete-session" => {
                let session = f.app.login_ok(&self.own.email, &self.own.password).await;
                let sid = user_service_tests::jwt::claims_of(&session.access_token)["sid"]
                    .as_str()
                    .ok_or_else(|| anyhow!("no sid in the access token"))?
                    .to_owned();
                (
                    HttpEvent::new("DELETE", &format!("/v1/users/me/sessions/{sid}"))
                        .bearer(&self.own.tokens.access_token),
                    204,
                )
            }
            "update-me" => (
                HttpEvent::new("PATCH", "/v1/users/me")
                    .bearer(&self.own.tokens.access_token)
                    .json(&json!({ "name": format!("Name {n}") })),
                200,
            ),
            "change-password" => {
                let next = if n % 2 == 1 {
                    format!("{}-b", self.own.password)
                } else {
                    self.own.password.clone()
                };
                let body = json!({ "current_password": self.state, "new_password": next });
                self.state = next;
                (
                    HttpEvent::new("PUT", "/v1/users/me/password")
                        .bearer(&self.own.tokens.access_token)
                        .json(&body),
                    204,
                )
            }
            "forgot-password" => (
                HttpEvent::post_json(
                    "/v1/auth/password/forgot",
                    &json!({ "email": self.own.email }),
                ),
                202,
            ),
            // A token that was never issued: the lookup runs, nothing changes.
            "reset-password" => (
                HttpEvent::post_json(
                    "/v1/auth/password/reset",
                    &json!({
                        "token": NEVER_ISSUED,
                        "password": strong_password(),
                    }),
                ),
                400,
            ),
            "verify-email" => (
                HttpEvent::post_json("/v1/auth/email/verify", &json!({ "token": NEVER_ISSUED })),
                400,
            ),
            "login-mfa" => (
                HttpEvent::post_json(
                    "/v1/auth/login/mfa",
                    &json!({ "mfa_token": NEVER_ISSUED, "code": "123456" }),
                ),
                401,
            ),
            // Always 202; a link goes out for the first three of an hour.
            "resend-verification" => (
                HttpEvent::new("POST", "/v1/users/me/email/verification")
                    .bearer(&self.own.tokens.access_token),
                202,
            ),
            // A new address each time (the pending change is replaced): the password hashes.
            "change-email" => (
                HttpEvent::new("POST", "/v1/users/me/email")
                    .bearer(&self.own.tokens.access_token)
                    .json(&json!({ "new_email": unique_email(), "current_password": self.state })),
                202,
            ),
            // Asking again replaces the pending secret: the password hashes.
            "mfa-setup" => (
                HttpEvent::new("POST", "/v1/users/me/mfa/totp")
                    .bearer(&self.own.tokens.access_token)
                    .json(&json!({ "current_password": self.state })),
                200,
            ),
            // No set-up pending: the code is refused, nothing changes.
            "mfa-confirm" => (
                HttpEvent::new("POST", "/v1/users/me/mfa/totp/confirm")
                    .bearer(&self.own.tokens.access_token)
                    .json(&json!({ "code": "123456" })),
                400,
            ),
            // Two-factor login is off: refused before the password is checked.
            "mfa-disable" => (
                HttpEvent::new("POST", "/v1/users/me/mfa/disable")
                    .bearer(&self.own.tokens.access_token)
                    .json(&json!({ "current_password": self.state, "code": "123456" })),
                409,
            ),
            "jwks" => (HttpEvent::get("/.well-known/jwks.json"), 200),
            // Readiness pings Postgres and Redis: the heavier of the two routes.
            "health" => (HttpEvent::get("/readyz"), 200),
            "openapi" => (HttpEvent::get("/openapi.json"), 200),
            "admin-list-users" => (admin("GET", "/v1/admin/users?limit=20"), 200),
            "admin-create-user" => (
                admin("POST", "/v1/admin/users").json(&json!({
                    "email": unique_email(),
                    "password": strong_password(),
                    "role": "user",
                })),
                201,
            ),
            "admin-get-user" => (
                admin("GET", &format!("/v1/admin/users/{}", f.reader.id)),
                200,
            ),
            "admin-update-user" => (
                admin("PATCH", &format!("/v1/admin/users/{}", self.own.id))
                    .json(&json!({ "name": format!("Name {n}") })),
                200,
            ),
            "admin-delete-user" => {
                let victim = f
                    .app
                    .admin_create(
                        &f.admin.tokens.access_token,
                        &json!({ "email": unique_email(), "password": strong_password() }),
                    )
                    .await;
                let victim: Value = victim.json().await.context("created user")?;
                let id = victim["id"]
                    .as_str()
                    .ok_or_else(|| anyhow!("no id in {victim}"))?;
                (admin("DELETE", &format!("/v1/admin/users/{id}")), 204)
            }
            "admin-user-audit" => (
                admin("GET", &format!("/v1/admin/users/{}/audit", f.reader.id)),
                200,
            ),
            "authorizer" => {
                let bearer = format!("Bearer {}", f.reader.tokens.access_token);
                let event = authorizer_event("GET /v1/users/me", "/v1/users/me", Some(&bearer));
                return Ok((event, None));
            }
            other => bail!("no representative event for the function {other}"),
        };
        Ok((event.to_json(), Some(status)))
    }

    /// Checks a response; remembers what the next event needs.
    fn check(&mut self, expected: Option<u16>, payload: &Value) -> anyhow::Result<()> {
        let Some(status) = expected else {
            if payload["isAuthorized"] == json!(true) {
                return Ok(());
            }
            bail!("expected an allow, got {payload}");
        };
        let response = HttpResponse::from_payload(payload).map_err(|e| anyhow!(e))?;
        if response.status != status {
            bail!(
                "expected {status}, got {}: {}",
                response.status,
                response.body
            );
        }
        if self.function == "refresh" {
            let body: Value = serde_json::from_str(&response.body)?;
            self.state = body["refresh_token"]
                .as_str()
                .ok_or_else(|| anyhow!("no refresh_token in {body}"))?
                .to_owned();
        }
        Ok(())
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.is_empty() {
        f64::NAN
    } else if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The size of the deployment zip of `binary`: the file as `bootstrap`, `zip -9`.
fn zip_size(binary: &Path) -> anyhow::Result<u64> {
    let dir = std::env::temp_dir().join(format!("lambda-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    let result = (|| {
        std::fs::copy(binary, dir.join("bootstrap"))?;
        let status = std::process::Command::new("zip")
            .current_dir(&dir)
            .args(["-9", "-q", "-X", "function.zip", "bootstrap"])
            .status()
            .context("running zip")?;
        if !status.success() {
            bail!("zip failed: {status}");
        }
        Ok(std::fs::metadata(dir.join("function.zip"))?.len())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn spawn(
    args: &Args,
    dir: &Path,
    function: &str,
    app: &TestApp,
) -> anyhow::Result<LambdaProcess> {
    let mut builder = LambdaProcess::builder(function)
        .binary(dir.join(function))
        .deployment(app);
    for (name, value) in &args.env {
        builder = builder.env(name, value);
    }
    builder
        .spawn()
        .await
        .with_context(|| format!("starting {function}"))
}

async fn measure(
    args: &Args,
    dir: &Path,
    fixture: &Fixture,
    function: &str,
) -> anyhow::Result<Row> {
    let binary = dir.join(function);
    if !binary.is_file() {
        bail!(
            "{} is missing: build with `cargo build --release --workspace --bins`",
            binary.display()
        );
    }
    let mut scenario = Scenario::new(fixture, function).await;
    let mut errors = 0;
    let mut first_error = None;
    let mut note = |e: anyhow::Error, errors: &mut usize| {
        *errors += 1;
        if first_error.is_none() {
            eprintln!("  {function}: {e:#}");
            first_error = Some(());
        }
    };

    let (mut colds, mut inits) = (Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let (event, expected) = scenario.next().await?;
        let process = spawn(args, dir, function, &fixture.app).await?;
        let payload = process
            .try_invoke(&event)
            .await
            .map_err(|e| anyhow!(process.failure(&e, &event)))?;
        colds.push(millis(process.started().elapsed()));
        if let Some(first_poll) = process.runtime_api().first_poll() {
            inits.push(millis(first_poll - process.started()));
        }
        if let Err(e) = scenario.check(expected, &payload) {
            note(e, &mut errors);
        }
    }

    let process = spawn(args, dir, function, &fixture.app).await?;
    let mut hwm_kib = Vec::new();
    let mut rss_kib = 0;
    let mut done = 0;
    for &checkpoint in &args.checkpoints {
        while done < checkpoint {
            let (event, expected) = scenario.next().await?;
            match process.try_invoke(&event).await {
                Ok(payload) => {
                    if let Err(e) = scenario.check(expected, &payload) {
                        note(e, &mut errors);
                    }
                }
                Err(e) => bail!(process.failure(&e, &event)),
            }
            done += 1;
        }
        let (hwm, rss) = process.memory_kib()?;
        hwm_kib.push(hwm);
        rss_kib = rss;
    }
    if let Some(smaps_dir) = &args.smaps {
        std::fs::create_dir_all(smaps_dir)?;
        let smaps = std::fs::read_to_string(format!("/proc/{}/smaps", process.pid()))?;
        std::fs::write(smaps_dir.join(format!("{function}.smaps")), smaps)?;
    }
    Ok(Row {
        function: function.to_owned(),
        init_ms: median(&mut inits),
        cold_ms: median(&mut colds),
        hwm_kib,
        rss_kib,
        zip_bytes: zip_size(&binary).ok(),
        errors,
    })
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn print_table(args: &Args, rows: &[Row]) {
    let mut header = String::from("| function | cold start median ms | init ms |");
    let mut rule = String::from("|---|---:|---:|");
    for checkpoint in &args.checkpoints {
        header.push_str(&format!(" peak RSS after {checkpoint} |"));
        rule.push_str("---:|");
    }
    header.push_str(" RSS now | zip (x86_64) | errors |");
    rule.push_str("---:|---:|---:|");
    println!("{header}\n{rule}");
    for row in rows {
        let mut line = format!(
            "| {} | {:.0} | {:.0} |",
            row.function, row.cold_ms, row.init_ms
        );
        for hwm in &row.hwm_kib {
            line.push_str(&format!(" {} |", mib(*hwm)));
        }
        let zip = row.zip_bytes.map_or_else(
            || "n/a".to_owned(),
            |b| format!("{:.2} MiB", b as f64 / 1048576.0),
        );
        line.push_str(&format!(" {} | {zip} | {} |", mib(row.rss_kib), row.errors));
        println!("{line}");
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from)
            .join("release"),
    };
    let mut functions: Vec<&str> = ENDPOINTS.iter().map(|e| e.function).collect();
    functions.push("authorizer");
    let mut seen = std::collections::BTreeSet::new();
    functions.retain(|f| seen.insert(*f));
    if !args.functions.is_empty() {
        functions.retain(|f| args.functions.iter().any(|g| g == f));
    }

    // Production settings where they shape the figures: argon2's memory above all.
    let admin_email = unique_admin_email();
    let admin_password = strong_password();
    let mut builder = TestApp::builder()
        .bootstrap_admin(&admin_email, &admin_password)
        .env("ARGON2_MEMORY_KIB", 19456)
        .env("ARGON2_ITERATIONS", 2)
        .env("ACCESS_TOKEN_TTL_SECONDS", 3600)
        .env("RATE_LIMIT_FORGOT_PER_EMAIL_PER_HOUR", 1_000_000);
    for (name, value) in &args.env {
        builder = builder.env(name, value);
    }
    let app = builder.spawn().await;
    let admin = app.login_user(&admin_email, &admin_password).await;
    let reader = app.new_user().await;
    let fixture = Fixture { app, admin, reader };

    eprintln!(
        "binaries: {}; {} cold starts each; peak RSS after {:?} invocations",
        dir.display(),
        args.runs,
        args.checkpoints
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    for function in functions {
        let t = Instant::now();
        let row = measure(&args, &dir, &fixture, function).await?;
        eprintln!("  {function}: done in {:.1} s", t.elapsed().as_secs_f64());
        rows.push(row);
    }
    eprintln!("total {:.0} s", started.elapsed().as_secs_f64());
    print_table(&args, &rows);
    Ok(())
}
