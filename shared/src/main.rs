//! `user-service`: the local server (`serve`, every route in one process), `migrate`, and
//! the operator's tools (`check`, `admin create`, `mfa new-key`, `mfa reencrypt`). The help
//! texts (`--help`) are the command line's documentation: keep them true.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use user_service::domain::Role;
use user_service::services::accounts::Creator;
use user_service::{App, Config, check, db, telemetry};

#[derive(Parser)]
#[command(
    version,
    about = "User management service: local server and operator tools",
    long_about = "User management service: the local server and the operator's tools.\n\n\
        The same code runs on AWS as one Lambda function per endpoint; this binary serves \
        every route in one process (`serve`) and holds what an operator runs by hand: the \
        configuration check, migrations, the first admin, the two-factor key rotation.",
    after_help = concat!(
        "Examples:\n",
        "  user-service check                 # what does this configuration reach? start here\n",
        "  user-service serve                 # every route on LISTEN_ADDR (127.0.0.1:8080)\n",
        "  DATABASE_URL=postgres://app@db.internal/users user-service migrate\n",
        "  user-service admin create --email ops@example.com   # password on standard input\n",
        "\n",
        "Environment: every setting is an environment variable with a default that works on a \
        developer machine; docs/configuration.md lists them all, and each command's --help \
        names the ones it reads.\n",
        "\n",
        "Exit status: 0 on success; 1 on an error, printed on standard error (`check` has its \
        own: see `user-service check --help`)."
    )
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration: read it, reach every dependency, report one line each.
    ///
    /// Reads the configuration as `serve` would, then checks, each within
    /// DEPENDENCY_TIMEOUT_MS plus 3 s and all at once: Postgres (reachable, its version,
    /// the database, migrations applied and pending), Redis (PING, its version), the JWT
    /// signing keys (count, signing kid, algorithm), the two-factor keys, the mail back end
    /// (SMTP: the server answers; no mail is sent) and every configured Secrets Manager
    /// secret (readable). One line per check: `ok`, `WARN` (works, but read it: e.g.
    /// pending migrations, or a key file that `serve` creates at first start) or `FAIL`.
    ///
    /// It changes nothing: it creates no database, key file or table and applies no
    /// migration. It prints no secret: passwords in URLs, the Redis AUTH token and key
    /// material are never shown.
    #[command(after_help = concat!(
        "Exit status:\n",
        "  0  every check passed (warnings allowed)\n",
        "  1  a check failed: a dependency unreachable, keys or a secret unusable\n",
        "  2  the configuration itself is invalid: the line names the variable and what is wrong\n",
        "\n",
        "Environment: everything `serve` reads (docs/configuration.md): DATABASE_URL or \
        DATABASE_HOST/DATABASE_PORT/DATABASE_NAME, DATABASE_SECRET_ARN, DATABASE_TLS, \
        DATABASE_CA_FILE, REDIS_URL or REDIS_HOST/REDIS_PORT/REDIS_TLS, \
        REDIS_AUTH_SECRET_ARN, REDIS_CA_FILE, JWT_PRIVATE_KEY_FILE or JWT_KEYS_SECRET_ARN, \
        MFA_KEY_FILE or MFA_KEYS_SECRET_ARN, MAIL_BACKEND, SMTP_URL, SMTP_FROM, \
        DEPENDENCY_TIMEOUT_MS, and the AWS SDK's variables for Secrets Manager.\n",
        "\n",
        "Examples:\n",
        "  user-service check\n",
        "  DATABASE_URL=postgres://app@db.internal/users REDIS_URL=rediss://cache.internal:6379 user-service check\n",
        "  user-service check || echo \"not ready: see the FAIL lines\""
    ))]
    Check,
    /// Apply pending migrations, then serve every route on LISTEN_ADDR.
    ///
    /// At start it creates the database of DATABASE_URL if missing, applies pending
    /// migrations, creates the JWT signing key file (JWT_PRIVATE_KEY_FILE) with one new key
    /// if it is missing, fills the revocation mirror in Redis, and creates the first admin
    /// when BOOTSTRAP_ADMIN_EMAIL and BOOTSTRAP_ADMIN_PASSWORD are set and no admin exists.
    /// Stops on Ctrl-C or SIGTERM after the requests in flight.
    #[command(after_help = concat!(
        "Environment: all of docs/configuration.md; first of all LISTEN_ADDR, DATABASE_URL, \
        REDIS_URL, JWT_PRIVATE_KEY_FILE, MFA_KEY_FILE, SMTP_URL (unset: emails go to the \
        log), PUBLIC_BASE_URL; RUST_LOG sets the log level (JSON lines on standard output).\n",
        "\n",
        "Examples:\n",
        "  user-service serve\n",
        "  LISTEN_ADDR=0.0.0.0:8080 PUBLIC_BASE_URL=https://id.example.com user-service serve"
    ))]
    Serve,
    /// Apply pending migrations and exit.
    ///
    /// Creates the database if it is missing, then applies every migration of
    /// `migrations/` not applied yet, under an advisory lock (several instances may run it at
    /// once). `serve` does the same at start; this is for deployments that migrate first.
    #[command(after_help = concat!(
        "Environment: DATABASE_URL (or DATABASE_HOST, DATABASE_PORT, DATABASE_NAME), \
        DATABASE_SECRET_ARN, DATABASE_TLS, DATABASE_CA_FILE, DEPENDENCY_TIMEOUT_MS.\n",
        "\n",
        "Example:\n",
        "  DATABASE_URL=postgres://app@db.internal/users user-service migrate"
    ))]
    Migrate,
    /// Manage users from the command line.
    #[command(subcommand)]
    #[command(after_help = "Environment: as `serve` (docs/configuration.md); see \
        `user-service admin create --help`.")]
    Admin(AdminCommand),
    /// Rotate the key that encrypts TOTP secrets (two-factor login).
    ///
    /// First `mfa new-key` (a new current key; old secrets keep decrypting), then
    /// `mfa reencrypt` (every stored secret under the new key); then the old key may go.
    #[command(subcommand)]
    #[command(
        after_help = "Environment: MFA_KEY_FILE, or MFA_KEYS_SECRET_ARN on AWS; see \
        `user-service mfa new-key --help` and `user-service mfa reencrypt --help`."
    )]
    Mfa(MfaCommand),
}

#[derive(Subcommand)]
enum MfaCommand {
    /// Add a new key to MFA_KEY_FILE and make it the current one.
    ///
    /// The file is created (mode 0600) if missing. The older keys stay, so stored secrets
    /// keep decrypting; then run `mfa reencrypt`. A running server picks the new key up at
    /// once. (On AWS the keys are the secret MFA_KEYS_SECRET_ARN: add the key there; see
    /// docs/deploying.md.)
    #[command(after_help = concat!(
        "Environment: MFA_KEY_FILE (default ~/.local/share/user-service/mfa-keys.json).\n",
        "\n",
        "Example:\n",
        "  user-service mfa new-key && user-service mfa reencrypt"
    ))]
    NewKey,
    /// Re-encrypt every stored TOTP secret under the current key.
    ///
    /// Reads the keys from MFA_KEY_FILE or MFA_KEYS_SECRET_ARN and rewrites each stored
    /// secret under the current key, so that older keys can be removed. Safe while the
    /// service runs; prints how many secrets it re-encrypted.
    #[command(after_help = concat!(
        "Environment: MFA_KEY_FILE or MFA_KEYS_SECRET_ARN, DATABASE_URL (or DATABASE_HOST \
        and friends), REDIS_URL, JWT_PRIVATE_KEY_FILE or JWT_KEYS_SECRET_ARN (the state is \
        built as `serve` builds it).\n",
        "\n",
        "Example:\n",
        "  user-service mfa reencrypt"
    ))]
    Reencrypt,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin account.
    ///
    /// The password is read from ADMIN_PASSWORD, else from the first line of standard input
    /// (so it never appears in the process list or shell history), and must pass the
    /// password policy. Applies pending migrations first. Prints the new admin's id.
    #[command(after_help = concat!(
        "Environment: ADMIN_PASSWORD (else standard input), and what `serve` reads to reach \
        the database and Redis: DATABASE_URL, REDIS_URL, JWT_PRIVATE_KEY_FILE, ... \
        (docs/configuration.md).\n",
        "\n",
        "Examples:\n",
        "  user-service admin create --email ops@example.com --name Ops   # then type the password\n",
        "  ADMIN_PASSWORD=\"$(pass show user-service/admin)\" user-service admin create --email ops@example.com"
    ))]
    Create {
        /// The admin's email.
        #[arg(long)]
        email: String,
        /// An optional display name.
        #[arg(long)]
        name: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    if let Command::Check = cli.command {
        // The report is the whole output: no log lines in between.
        let report = check::run(|name| std::env::var(name).ok()).await;
        print!("{report}");
        return Ok(ExitCode::from(report.exit_code()));
    }
    telemetry::init();
    let config = Config::from_env()?;
    // The one command that needs no database.
    if let Command::Mfa(MfaCommand::NewKey) = cli.command {
        let path = &config.mfa.key_file;
        let id = user_service::auth::mfa_keys::add_key_to_file(path).await?;
        println!(
            "added key {id} to {} and made it current; now run `user-service mfa reencrypt`",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // The owner's login: migrations only; the routes and tools run as the runtime role.
    let migrator = db::runtime_role::Migrator::from_config(
        &config,
        &user_service::secrets::SecretsManager::from_config(&config),
    )?;
    db::ensure_database(migrator.owner()).await?;
    match cli.command {
        Command::Migrate => {
            let applied = migrator.run().await?;
            tracing::info!(applied, "migrations done");
        }
        Command::Admin(AdminCommand::Create { email, name }) => {
            let password = match std::env::var("ADMIN_PASSWORD") {
                Ok(password) if !password.is_empty() => password,
                _ => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            migrator.run().await?;
            let state = user_service::app::state(&config).await?;
            let created = state
                .accounts
                .create(
                    &email,
                    &password,
                    name.as_deref(),
                    Role::Admin,
                    Creator::CommandLine,
                )
                .await;
            // The process ends next: store the audit event before it does.
            state.audit.flush().await;
            let user = created.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created admin {} ({})", user.email, user.id);
        }
        // Handled before connecting.
        Command::Check | Command::Mfa(MfaCommand::NewKey) => {}
        Command::Mfa(MfaCommand::Reencrypt) => {
            migrator.run().await?;
            let state = user_service::app::state(&config).await?;
            let count = state
                .accounts
                .reencrypt_mfa_secrets()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("re-encrypted {count} two-factor secrets under the current key");
        }
        Command::Serve => {
            let listen_addr = config.listen_addr;
            let app = App::build(config).await?;
            let listener = TcpListener::bind(listen_addr).await?;
            tracing::info!(address = %listener.local_addr()?, "serving");
            app.serve_with_shutdown(listener, shutdown_signal()).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return ctrl_c.await.unwrap_or_default(),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or_default();
    tracing::info!("shutting down");
}
