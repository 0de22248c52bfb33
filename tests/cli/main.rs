//! The `user-service` command line, run as an operator runs it: `check` against the local
//! Postgres and Redis (its lines, its exit codes, what it must never print or create), and
//! the help texts. The binary is the one `cargo build --workspace --bins` put next to this
//! test executable.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret as _;
use user_service::auth::keys::KeyAlgorithm;
use user_service_tests::SmtpServer;
use user_service_tests::TestDatabase;
use user_service_tests::runtime_api::profile_dir;

/// The `user-service` binary (`USER_SERVICE_BIN` if set, else the one next to this test
/// executable); fails the test with what to run when it is missing.
fn binary() -> PathBuf {
    let path = std::env::var_os("USER_SERVICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join("user-service"));
    assert!(
        path.is_file(),
        "{} is missing: build it first with `cargo build --workspace --bins` (scripts/test.sh \
         does), then run the tests again",
        path.display()
    );
    path
}

/// What one run printed and how it ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    /// The report's line of `check` (`ok   postgres  ...`), or a panic showing the output.
    fn line(&self, check: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| line.get(5..).is_some_and(|rest| rest.starts_with(check)))
            .unwrap_or_else(|| panic!("no `{check}` line in:\n{}", self.stdout))
    }

    fn everything(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Runs `user-service args` with only `env` in its environment (and a throwaway `HOME`).
async fn run(home: &Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(binary());
    command
        .args(args)
        .env_clear()
        .env("HOME", home)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let output: Output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("user-service {args:?} still runs after 30 s"))
        .expect("user-service runs");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// A fresh directory for one test's files.
fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir()
        .join("user-service-cli-tests")
        .join(uuid::Uuid::new_v4().to_string());
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A port where nothing listens (one that was free a moment ago).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The environment of a deployment on `db` with its key files in `dir`.
fn deployment(db: &str, dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.to_owned()),
        ("REDIS_URL", "redis://127.0.0.1:6379".to_owned()),
        (
            "REDIS_KEY_PREFIX",
            format!("cli-test-{}:", uuid::Uuid::new_v4().simple()),
        ),
        (
            "JWT_PRIVATE_KEY_FILE",
            dir.join("jwt.pem").display().to_string(),
        ),
        (
            "MFA_KEY_FILE",
            dir.join("mfa-keys.json").display().to_string(),
        ),
    ]
}

/// [`run`] with an environment of owned values.
async fn run_in(home: &Path, env: &[(&'static str, String)], args: &[&str]) -> Run {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run(home, &env, args).await
}

#[tokio::test]
async fn check_of_a_fresh_setup_passes_says_what_start_will_create_and_creates_nothing() {
    let db = TestDatabase::create().await;
    let dir = temp_dir();
    let env = deployment(&db.url(), &dir);
    let fresh = run_in(&dir, &env, &["check"]).await;
    assert_eq!(fresh.code, 0, "warnings only:\n{}", fresh.everything());
    assert!(fresh.line("config").starts_with("ok"), "{}", fresh.stdout);
    let postgres = fresh.line("postgres");
    assert!(postgres.starts_with("WARN"), "{postgres}");
    assert!(
        postgres.contains(&format!("postgres@127.0.0.1:5432/{}", db.name()))
            && postgres.contains("(PostgreSQL ")
            && postgres.contains("migrations: 0 applied,")
            && postgres.contains("`serve` and `migrate` apply them"),
        "{postgres}"
    );
    let redis = fresh.line("redis");
    assert!(
        redis.starts_with("ok") && redis.contains("127.0.0.1:6379 (Redis "),
        "{redis}"
    );
    let jwt = fresh.line("jwt keys");
    assert!(
        jwt.starts_with("WARN") && jwt.contains("does not exist") && jwt.contains("created"),
        "{jwt}"
    );
    assert!(
        fresh.line("mfa keys").contains("does not exist"),
        "{}",
        fresh.stdout
    );
    assert!(fresh.line("mail").starts_with("WARN"), "{}", fresh.stdout);
    assert!(
        fresh.line("secrets").contains("none configured"),
        "{}",
        fresh.stdout
    );
    assert!(fresh.stdout.ends_with("exit 0\n"), "{}", fresh.stdout);
    // Nothing was created: no key file, no migration history.
    assert!(
        !dir.join("jwt.pem").exists(),
        "check created the JWT key file"
    );
    assert!(
        !dir.join("mfa-keys.json").exists(),
        "check created the MFA key file"
    );
    let history: bool = db
        .connect()
        .await
        .query_one(
            "SELECT to_regclass('refinery_schema_history') IS NOT NULL",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert!(!history, "check applied migrations");

    // Once migrated and given its keys, every dependency is ok.
    let migrated = run_in(&dir, &env, &["migrate"]).await;
    assert_eq!(migrated.code, 0, "{}", migrated.everything());
    let pem = KeyAlgorithm::EdDsa.generate_pem().expect("a key");
    write_private(&dir.join("jwt.pem"), pem.expose_secret());
    // A missing file gets k1, then the new key k2 becomes current.
    let new_key = run_in(&dir, &env, &["mfa", "new-key"]).await;
    assert_eq!(new_key.code, 0, "{}", new_key.everything());

    let ready = run_in(&dir, &env, &["check"]).await;
    assert_eq!(ready.code, 0, "{}", ready.everything());
    let postgres = ready.line("postgres");
    assert!(
        postgres.starts_with("ok") && postgres.contains(" pending") && !postgres.contains("WARN"),
        "{postgres}"
    );
    assert!(postgres.contains(", 0 pending"), "{postgres}");
    let jwt = ready.line("jwt keys");
    assert!(
        jwt.starts_with("ok") && jwt.contains("1 key, signing kid ") && jwt.contains("EdDSA"),
        "{jwt}"
    );
    let mfa = ready.line("mfa keys");
    assert!(
        mfa.starts_with("ok") && mfa.contains("2 keys (k1, k2), current k2"),
        "{mfa}"
    );
    // No key material in the report.
    for line in pem
        .expose_secret()
        .lines()
        .filter(|l| !l.starts_with("-----"))
    {
        assert!(
            !ready.stdout.contains(line),
            "key material printed:\n{}",
            ready.stdout
        );
    }
    println!("{}", ready.stdout);
}

fn write_private(path: &Path, text: &str) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .expect("create the key file");
    file.write_all(text.as_bytes()).expect("write the key file");
}

#[tokio::test]
async fn redis_down_fails_the_check_naming_redis_within_seconds() {
    let db = TestDatabase::create().await;
    let dir = temp_dir();
    let mut env = deployment(&db.url(), &dir);
    env[1].1 = format!("redis://127.0.0.1:{}", closed_port());
    let report = run_in(&dir, &env, &["check"]).await;
    assert_eq!(report.code, 1, "{}", report.everything());
    let redis = report.line("redis");
    assert!(redis.starts_with("FAIL"), "{redis}");
    assert!(redis.to_lowercase().contains("refused"), "{redis}");
    // The other checks still ran and say so.
    assert!(
        report.line("postgres").starts_with("WARN"),
        "{}",
        report.stdout
    );
    assert!(
        report.took < Duration::from_secs(5),
        "took {:?}",
        report.took
    );
}

#[tokio::test]
async fn an_invalid_variable_exits_2_naming_it() {
    let dir = temp_dir();
    let cases: [(&str, &str); 3] = [
        ("DEPENDENCY_TIMEOUT_MS", "soon"),
        ("JWT_ALGORITHM", "HS256"),
        ("DATABASE_URL", "postgres://u:hunter2-invalid@db:notaport/x"),
    ];
    for (name, value) in cases {
        let report = run(&dir, &[(name, value)], &["check"]).await;
        assert_eq!(report.code, 2, "{name}={value}:\n{}", report.everything());
        let fail = report
            .stdout
            .lines()
            .find(|l| l.starts_with("FAIL"))
            .unwrap_or_else(|| panic!("no FAIL line for {name}:\n{}", report.stdout));
        assert!(fail.contains(name), "{fail}");
        assert!(
            !report.everything().contains("hunter2-invalid"),
            "{}",
            report.stdout
        );
    }
}

#[tokio::test]
async fn passwords_never_appear_in_the_report() {
    let db = TestDatabase::create().await;
    let dir = temp_dir();
    let mut env = deployment(
        // The local Postgres trusts local connections: the password is accepted unread.
        &format!(
            "postgres://postgres:pg-Secret%2F42@127.0.0.1:5432/{}",
            db.name()
        ),
        &dir,
    );
    env[1].1 = format!("redis://:redis-Secret-43@127.0.0.1:{}", closed_port());
    env.push((
        "SMTP_URL",
        format!("smtp://mailer:smtp-Secret-44@127.0.0.1:{}", closed_port()),
    ));
    env.push(("BOOTSTRAP_ADMIN_EMAIL", "root@example.com".into()));
    env.push(("BOOTSTRAP_ADMIN_PASSWORD", "admin-Secret-45".into()));
    let report = run_in(&dir, &env, &["check"]).await;
    assert_eq!(
        report.code,
        1,
        "redis and smtp are down:\n{}",
        report.everything()
    );
    for secret in [
        "pg-Secret%2F42",
        "pg-Secret/42",
        "redis-Secret-43",
        "smtp-Secret-44",
        "admin-Secret-45",
    ] {
        assert!(
            !report.everything().contains(secret),
            "{secret} printed:\n{}",
            report.everything()
        );
    }
    // The lines still say where they went.
    assert!(
        report.line("postgres").contains("127.0.0.1:5432"),
        "{}",
        report.stdout
    );
    assert!(report.line("mail").starts_with("FAIL"), "{}", report.stdout);
    assert!(
        report.line("mail").contains("smtp://mailer:***@127.0.0.1:"),
        "{}",
        report.stdout
    );
}

#[tokio::test]
async fn an_smtp_server_is_asked_whether_it_answers_and_sent_nothing() {
    let smtp = SmtpServer::start().await;
    let db = TestDatabase::create().await;
    let dir = temp_dir();
    let mut env = deployment(&db.url(), &dir);
    env.push(("SMTP_URL", smtp.url()));
    let report = run_in(&dir, &env, &["check"]).await;
    assert_eq!(report.code, 0, "{}", report.everything());
    let mail = report.line("mail");
    assert!(
        mail.starts_with("ok") && mail.contains("the server answers (nothing sent)"),
        "{mail}"
    );
    assert!(smtp.messages().is_empty(), "check sent mail");
}

/// The subcommands a `--help` text lists under `Commands:` (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_command_has_help_that_names_the_environment_it_reads() {
    let home = temp_dir();
    let top = run(&home, &[], &["--help"]).await;
    assert_eq!(top.code, 0, "{}", top.everything());
    assert!(top.stdout.contains("Environment:"), "{}", top.stdout);
    // Every command, nested ones included, found by reading the help texts themselves.
    let mut pending: Vec<Vec<String>> = subcommands(&top.stdout)
        .into_iter()
        .map(|c| vec![c])
        .collect();
    assert!(pending.len() >= 5, "{}", top.stdout);
    let mut seen = Vec::new();
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let help = run(&home, &[], &args).await;
        assert_eq!(help.code, 0, "{args:?}: {}", help.everything());
        assert!(
            help.stdout.contains("Environment:"),
            "`user-service {}` does not say which environment it reads:\n{}",
            args.join(" "),
            help.stdout
        );
        for child in subcommands(&help.stdout) {
            let mut longer = path.clone();
            longer.push(child);
            pending.push(longer);
        }
        seen.push((path.join(" "), help.stdout));
    }
    // And what each one reads is the right thing.
    for (command, must_mention) in [
        (
            "check",
            &[
                "Exit status",
                "0  every check passed",
                "2  the configuration",
                "DATABASE_URL",
            ][..],
        ),
        ("serve", &["LISTEN_ADDR", "DATABASE_URL", "REDIS_URL"][..]),
        ("migrate", &["DATABASE_URL"][..]),
        ("admin create", &["ADMIN_PASSWORD", "--email"][..]),
        ("mfa new-key", &["MFA_KEY_FILE"][..]),
        ("mfa reencrypt", &["MFA_KEYS_SECRET_ARN"][..]),
    ] {
        let (_, help) = seen.iter().find(|(c, _)| c == command).unwrap_or_else(|| {
            panic!(
                "no `{command}` among {:?}",
                seen.iter().map(|s| &s.0).collect::<Vec<_>>()
            )
        });
        for words in must_mention {
            assert!(
                help.contains(words),
                "`{command} --help` lacks {words:?}:\n{help}"
            );
        }
    }
}
