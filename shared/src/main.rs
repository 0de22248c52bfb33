//! `user-service`: the local server (`serve`, every route in one process), `migrate`, and
//! the operator's tools (`admin create`, `mfa new-key`, `mfa reencrypt`).

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use user_service::domain::Role;
use user_service::services::accounts::Creator;
use user_service::{App, Config, db, telemetry};

#[derive(Parser)]
#[command(version, about = "User management service: local server and tools")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations, then serve every route on LISTEN_ADDR.
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Manage users from the command line.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Rotate the key that encrypts TOTP secrets (two-factor login).
    #[command(subcommand)]
    Mfa(MfaCommand),
}

#[derive(Subcommand)]
enum MfaCommand {
    /// Add a new key to MFA_KEY_FILE (created if missing) and make it the current one; the
    /// older keys stay, so stored secrets keep decrypting. Then run `mfa reencrypt`. (On
    /// AWS the keys are the secret MFA_KEYS_SECRET_ARN: add the key there; see
    /// docs/deploying.md.)
    NewKey,
    /// Re-encrypt every stored TOTP secret under the current key (MFA_KEY_FILE or
    /// MFA_KEYS_SECRET_ARN), so that older keys can be removed. Safe while the service runs.
    Reencrypt,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an admin. The password is read from ADMIN_PASSWORD, else from the first
    /// line of standard input (so it never appears in the process list or shell history).
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
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let config = Config::from_env()?;
    // The one command that needs no database.
    if let Command::Mfa(MfaCommand::NewKey) = cli.command {
        let path = &config.mfa.key_file;
        let id = user_service::auth::mfa_keys::add_key_to_file(path).await?;
        println!(
            "added key {id} to {} and made it current; now run `user-service mfa reencrypt`",
            path.display()
        );
        return Ok(());
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
        Command::Mfa(MfaCommand::NewKey) => {}
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
    Ok(())
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
