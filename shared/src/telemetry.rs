//! Structured logging: JSON lines on stdout (what CloudWatch Logs ingests), filtered by
//! `RUST_LOG` (default `info`). Nothing secret is ever a field: see `audit` and `http`.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; later calls are no-ops (tests call it freely).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(filter)
        .try_init();
}

/// The CloudWatch metrics the service emits, in namespace [`NAMESPACE`], without dimensions
/// unless named (the alarms and the dashboard in `template.yaml` read them so). On Lambda
/// they are Embedded Metric Format lines on stdout, flushed after each invocation
/// ([`lambda_metrics`]); the local server installs no recorder, so they cost nothing there.
pub mod metric {
    /// A login that issued tokens.
    pub const LOGIN_SUCCEEDED: &str = "LoginSuccesses";
    /// A login refused for its credentials (the `LoginFailures` alarm).
    pub const LOGIN_FAILED: &str = "LoginFailures";
    /// An access token signed (login, refresh).
    pub const TOKENS_ISSUED: &str = "TokensIssued";
    /// A spent refresh token presented again: its session was revoked.
    pub const REFRESH_REUSE: &str = "RefreshTokenReuse";
    /// A request refused by a rate limit or a lockout (429).
    pub const RATE_LIMITED: &str = "RateLimited";
    /// Milliseconds a function took to answer, with the dimension `Function`.
    pub const LATENCY: &str = "Latency";
}

/// The metrics namespace.
pub const NAMESPACE: &str = "UserService";

/// Counts one `name` event.
pub fn count(name: &'static str) {
    metrics::counter!(name).increment(1);
}

/// Installs the Embedded Metric Format recorder for a Lambda function (once per process).
pub fn lambda_metrics()
-> Result<&'static metrics_cloudwatch_embedded::Collector, metrics_cloudwatch_embedded::Error> {
    metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .lambda_cold_start_metric("ColdStart")
        .with_lambda_request_id("RequestId")
        .init()
}

/// Formats an error with its whole `source()` chain, `outer: middle: root`: the one way
/// every logged error is written (`error = %ErrorChain(&e)`), so no cause is lost and no
/// two log lines spell a chain differently.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorChain;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_names_every_cause() {
        let e = Outer(std::io::Error::other("root cause"));
        assert_eq!(ErrorChain(&e).to_string(), "outer: root cause");
        let any = anyhow::Error::new(e).context("context");
        assert_eq!(
            ErrorChain(any.as_ref()).to_string(),
            "context: outer: root cause"
        );
    }
}
