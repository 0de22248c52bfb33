//! Does a failed login on Lambda tell whether the email has an account? Runs the `login`
//! function binary under the emulated Runtime API of the tests
//! (`user_service_tests::runtime_api`, which freezes the process between invocations and
//! speaks the Extensions API as Lambda does), with its audit trail in DynamoDB (a moto
//! server, `MOTO_ENDPOINT`), and times wrong-password logins of a known email against logins
//! of unknown emails: from the invocation handed to an idle environment to its response
//! posted by the runtime, which is what API Gateway waits for. Also reported: how long the
//! environment stays busy after the response (the extension storing the audit event:
//! Lambda's `PostRuntimeExtensionsDuration`), which the caller does not wait for.
//!
//! - **first invocation**: `--cold-runs` fresh processes (once each initialised: the runtime
//!   has asked for its first event), half of them invoked first with the known email, half
//!   with an unknown one: the median of each;
//! - **warm**: `--pairs` alternating known/unknown invocations of one process: median, p90
//!   and mean of each, and the difference of the medians.
//!
//! Production argon2 settings (19 MiB, 2 iterations); the lockout is off so that the known
//! account answers 401 every time. Run:
//!
//! ```text
//! MOTO_ENDPOINT=http://127.0.0.1:5000 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
//!   cargo run -p user-service-tests --bin login-timing -- --dir target/debug
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use clap::Parser;
use serde_json::json;
use user_service_tests::moto::{create_audit_table, dynamodb};
use user_service_tests::runtime_api::{HttpEvent, HttpResponse, LambdaProcess};
use user_service_tests::{TestApp, strong_password, unique_email};

#[derive(Parser)]
#[command(about = "Known versus unknown email: failed-login response times of the login function")]
struct Args {
    /// Directory of the function binaries (default: `$CARGO_TARGET_DIR/debug`, else
    /// `target/debug`).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The login binary itself (default: `<dir>/login`).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Known/unknown pairs on one warm process.
    #[arg(long, default_value_t = 100)]
    pairs: usize,
    /// Fresh processes for the first-invocation figures (half start with each kind).
    #[arg(long, default_value_t = 10)]
    cold_runs: usize,
    /// `NAME=VALUE` for the function's environment (repeatable).
    #[arg(long = "env", value_parser = parse_env)]
    env: Vec<(String, String)>,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected NAME=VALUE, got {text:?}"))
}

/// Which email a login names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Known,
    Unknown,
}

struct Fixture {
    app: TestApp,
    known_email: String,
}

impl Fixture {
    fn event(&self, kind: Kind) -> HttpEvent {
        let email = match kind {
            Kind::Known => self.known_email.clone(),
            Kind::Unknown => unique_email(),
        };
        HttpEvent::post_json(
            "/v1/auth/login",
            &json!({ "email": email, "password": "not-the-password-at-all" }),
        )
    }
}

/// Waits until the environment is idle (the previous invocation over for the runtime and
/// every extension).
async fn until_idle(process: &LambdaProcess) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !process.runtime_api().idle() {
        if Instant::now() > deadline {
            bail!("the environment is still busy after 10 s");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    Ok(())
}

/// The times of one login, in milliseconds.
struct Timing {
    /// From the event handed to the idle environment to the response posted.
    response: f64,
    /// From the response to the environment idle again.
    after: f64,
}

/// One login on an idle environment: its times; fails unless it is 401
/// `invalid_credentials`.
async fn timed_login(
    process: &LambdaProcess,
    fixture: &Fixture,
    kind: Kind,
) -> anyhow::Result<Timing> {
    let event = fixture.event(kind).to_json();
    until_idle(process).await?;
    let started = Instant::now();
    let payload = process
        .try_invoke(&event)
        .await
        .map_err(|e| anyhow!(process.failure(&e, &event)))?;
    let elapsed = started.elapsed();
    let response = HttpResponse::from_payload(&payload).map_err(|e| anyhow!(e))?;
    if response.status != 401 {
        bail!(
            "{kind:?} email: expected 401, got {}: {}",
            response.status,
            response.body
        );
    }
    until_idle(process).await?;
    let after = process.runtime_api().post_response().unwrap_or_default();
    Ok(Timing {
        response: elapsed.as_secs_f64() * 1000.0,
        after: after.as_secs_f64() * 1000.0,
    })
}

async fn spawn(args: &Args, binary: &PathBuf, fixture: &Fixture) -> anyhow::Result<LambdaProcess> {
    let mut builder = LambdaProcess::builder("login")
        .binary(binary)
        .deployment(&fixture.app)
        // moto keeps the table in the region it was created in.
        .env("AWS_REGION", "us-east-1");
    for (name, value) in &args.env {
        builder = builder.env(name, value);
    }
    let process = builder
        .spawn()
        .await
        .context("starting the login function")?;
    // Initialised: the runtime asks for its first event once its init is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while process.runtime_api().first_poll().is_none() {
        if Instant::now() > deadline {
            bail!(process.failure(&"no init within 60 s", &json!(null)));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the extension (if the binary has one) finish registering and polling.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(process)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Summary {
    n: usize,
    median: f64,
    p90: f64,
    mean: f64,
}

fn summary(values: &[f64]) -> Summary {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Summary {
        n: sorted.len(),
        median: percentile(&sorted, 50.0),
        p90: percentile(&sorted, 90.0),
        mean: sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let endpoint = std::env::var("MOTO_ENDPOINT")
        .context("MOTO_ENDPOINT (a moto server for DynamoDB) is required")?;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| PathBuf::from("target"), PathBuf::from)
            .join("debug"),
    };
    let binary = args.binary.clone().unwrap_or_else(|| dir.join("login"));
    if !binary.is_file() {
        bail!(
            "{} is missing: build with `cargo build -p fn-login`",
            binary.display()
        );
    }

    let table = format!("login-timing-{}", uuid::Uuid::new_v4().simple());
    create_audit_table(&dynamodb(&endpoint), &table).await;
    let app = TestApp::builder()
        .env("ARGON2_MEMORY_KIB", 19456)
        .env("ARGON2_ITERATIONS", 2)
        .env("LOCKOUT_THRESHOLD", 0)
        .env("AUDIT_TABLE", &table)
        .env("AWS_ENDPOINT_URL", &endpoint)
        .spawn()
        .await;
    let known_email = unique_email();
    app.register_ok(&known_email, &strong_password()).await;
    let fixture = Fixture { app, known_email };
    eprintln!(
        "binary {}; {} cold runs, {} warm pairs; audit table {table} on {endpoint}",
        binary.display(),
        args.cold_runs,
        args.pairs
    );

    let (mut first_known, mut first_unknown) = (Vec::new(), Vec::new());
    let mut extensions = 0;
    for run in 0..args.cold_runs {
        let kind = if run % 2 == 0 {
            Kind::Known
        } else {
            Kind::Unknown
        };
        let process = spawn(&args, &binary, &fixture).await?;
        extensions = process.runtime_api().extensions();
        let ms = timed_login(&process, &fixture, kind).await?.response;
        match kind {
            Kind::Known => first_known.push(ms),
            Kind::Unknown => first_unknown.push(ms),
        }
    }

    let process = spawn(&args, &binary, &fixture).await?;
    // Past the first invocation: the warm figures.
    timed_login(&process, &fixture, Kind::Known).await?;
    timed_login(&process, &fixture, Kind::Unknown).await?;
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    let (mut known_after, mut unknown_after) = (Vec::new(), Vec::new());
    for _ in 0..args.pairs {
        let k = timed_login(&process, &fixture, Kind::Known).await?;
        known.push(k.response);
        known_after.push(k.after);
        let u = timed_login(&process, &fixture, Kind::Unknown).await?;
        unknown.push(u.response);
        unknown_after.push(u.after);
    }

    println!(
        "login function, wrong password: response time in ms (extensions registered: {extensions})"
    );
    println!("| invocation | email | n | median | p90 | mean |");
    println!("|---|---|---:|---:|---:|---:|");
    for (what, kind, values) in [
        ("first", "known", &first_known),
        ("first", "unknown", &first_unknown),
        ("warm", "known", &known),
        ("warm", "unknown", &unknown),
        ("warm, busy after the response", "known", &known_after),
        ("warm, busy after the response", "unknown", &unknown_after),
    ] {
        let s = summary(values);
        println!(
            "| {what} | {kind} | {} | {:.1} | {:.1} | {:.1} |",
            s.n, s.median, s.p90, s.mean
        );
    }
    let (k, u) = (summary(&known), summary(&unknown));
    println!(
        "warm median known - unknown: {:+.1} ms; p90: {:+.1} ms",
        k.median - u.median,
        k.p90 - u.p90
    );
    Ok(())
}
