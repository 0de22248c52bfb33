//! Running one endpoint as an AWS Lambda function behind API Gateway (HTTP API, payload 2.0).
//!
//! A function's `main.rs` is one call: `lambda::run(routes::login::router)`. The state is
//! built once per cold start, never per invocation; the router gets the same common layers
//! as the local server, plus the client IP from API Gateway's request context.
//!
//! # The caller: the bearer token, verified here
//!
//! Behind the Lambda authorizer ([`crate::auth::authorizer`]), API Gateway also passes the
//! authorizer's context to the function (`requestContext.authorizer.lambda`), but a function
//! never takes its caller from it: whoever may invoke the function directly (a principal
//! with `lambda:InvokeFunction`, a mistaken trigger) could write any `sub`, `role` and `sid`
//! there. API Gateway forwards the `Authorization` header with the request, so the
//! `Authenticated` extractor verifies the bearer token itself, with the same
//! [`crate::auth::authorize`] the authorizer and the local server run: signature, issuer,
//! audience, expiry and revocation. The verified-token cache makes the signature check of a
//! token the authorizer has just seen nearly free, and the revocation check (one Redis
//! `MGET`) is made on every request anyway: API Gateway may have served the authorizer's
//! allow from its cache, and a logout, a role change or a disabled user takes effect at once.
//!
//! [`run_authorizer`] runs the authorizer itself (`functions/authorizer`).
//!
//! # The answer first, the audit write after
//!
//! What a handler leaves behind (its audit events, an email, a re-hash) must be finished
//! before Lambda freezes the sandbox, or it stalls until the next invocation thaws it (and is
//! lost if none comes). Holding the response until then would make every answer wait for a
//! DynamoDB write, and unevenly: a login with a known email and a wrong password stores an
//! event for that user, one with an unknown email stores none, so the known email would
//! answer one write later, which tells an attacker which emails have accounts.
//!
//! So the function registers an *internal Lambda extension* at init ([`AfterResponse`]).
//! Lambda hands each invocation to the runtime and the extension at once, sends the
//! runtime's response to the caller as soon as it is posted, and freezes the sandbox only
//! when the runtime and every extension have asked for their next event. The handler's
//! response goes out at once; the extension waits until this invocation's handler is done,
//! then for its background work and audit writes, and only then asks for its next event.
//! Every response thus waits for nothing but its own handler, whichever events it left.
//! The time after the response is still billed (`PostRuntimeExtensionsDuration`) and within
//! the function's timeout, as the wait before the response was.
//! Where no Extensions API answers (an emulator without one), the work is settled before
//! the response, as the in-process tests' [`function_app`] does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::apigw::ApiGatewayV2CustomAuthorizerV2Request;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use lambda_http::request::RequestContext;
use lambda_runtime::{LambdaEvent, service_fn};
use tokio::sync::watch;

use crate::config::Config;
use crate::http::extract::ClientIp;
use crate::http::{self, AppState, MinimumResponseTime};
use crate::telemetry;

/// Serves `routes` as a Lambda function until the runtime stops it; metrics are flushed
/// as Embedded Metric Format lines after each invocation.
pub async fn run(routes: fn() -> Router<AppState>) -> Result<(), lambda_http::Error> {
    run_with_init(routes, no_init).await
}

fn no_init(_: AppState) -> futures::future::BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async { Ok(()) })
}

/// What a function does at init, with its state, before its first invocation (the login
/// function builds its dummy hash there: [`crate::http::routes::login::init`]).
pub type Init = fn(AppState) -> futures::future::BoxFuture<'static, anyhow::Result<()>>;

/// [`run`], with `init` run once at init (cold start), before the first invocation.
pub async fn run_with_init(
    routes: fn() -> Router<AppState>,
    init: Init,
) -> Result<(), lambda_http::Error> {
    telemetry::init();
    let metrics = telemetry::lambda_metrics()?;
    let config = Config::from_env()?;
    let state = crate::app::state(&config).await?;
    init(state.clone()).await?;
    let after_response = match AfterResponse::register(state.clone()).await {
        Ok(after) => Some(after),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no Lambda Extensions API: each response waits for its background work and audit events"
            );
            None
        }
    };
    let app = serving_app(routes(), state, after_response);
    // Boxed: the runtime's future is deeply nested, and `main`'s would inline all of it.
    Box::pin(metrics_cloudwatch_embedded::lambda::service::run_http(
        metrics, app,
    ))
    .await
}

/// `routes` as a Lambda function serves them: the common layers, the client IP from API
/// Gateway's request context, and the background work settled
/// before the response (as a function without the Extensions API does). Public for
/// in-process tests with `lambda_http::request::from_str`.
pub fn function_app(routes: Router<AppState>, state: AppState) -> Router {
    serving_app(routes, state, None)
}

/// [`function_app`], settling after the response when `after_response` is given.
fn serving_app(
    routes: Router<AppState>,
    state: AppState,
    after_response: Option<AfterResponse>,
) -> Router {
    let settlement = Settlement {
        state: state.clone(),
        after_response,
    };
    http::with_common_layers(routes, state)
        .layer(middleware::from_fn_with_state(
            settlement,
            settle_background_work,
        ))
        .layer(middleware::from_fn(source_ip))
}

/// The longest an invocation waits for its background work (the template gives the
/// functions 10 s; the email and the audit writes take milliseconds when all is well).
const BACKGROUND_DEADLINE: Duration = Duration::from_secs(5);

/// Where an invocation's leftover work is settled.
#[derive(Clone)]
struct Settlement {
    state: AppState,
    /// After the response, by the extension; `None`: before it.
    after_response: Option<AfterResponse>,
}

/// Settles each invocation's leftover work after its response: an internal Lambda extension
/// (see the module docs), told by [`settle_background_work`] when an invocation's handler
/// is done.
#[derive(Clone)]
struct AfterResponse {
    /// The request id of the last invocation whose handler is done.
    handled: Arc<watch::Sender<Option<String>>>,
}

impl AfterResponse {
    /// Registers the extension (init phase: before the runtime's first `next`) and starts
    /// its event loop.
    async fn register(state: AppState) -> Result<Self, lambda_extension::Error> {
        const EVENTS: &[&str] = &["INVOKE"];
        let handled = Arc::new(watch::Sender::new(None::<String>));
        let events = {
            let handled = Arc::clone(&handled);
            lambda_extension::service_fn(move |event: lambda_extension::LambdaEvent| {
                let handled = handled.subscribe();
                let state = state.clone();
                async move {
                    if let lambda_extension::NextEvent::Invoke(invoke) = event.next {
                        settle_after_response(&state, invoke, handled).await;
                    }
                    Ok::<(), std::convert::Infallible>(())
                }
            })
        };
        let registered = lambda_extension::Extension::new()
            .with_events(EVENTS)
            .with_events_processor(events)
            .with_extension_name("settle-after-response")
            .register()
            .await?;
        tokio::spawn(async move {
            if let Err(e) = registered.run().await {
                // Without its extension asking for events, Lambda would wait for it until
                // every invocation timed out: end the sandbox instead, Lambda starts another.
                tracing::error!(error = %e, "the settling extension stopped; exiting");
                std::process::exit(1);
            }
        });
        Ok(Self { handled })
    }
}

/// The extension's part of one invocation: waits until its handler is done (at most until
/// the invocation's deadline), then settles what it left.
async fn settle_after_response(
    state: &AppState,
    invoke: lambda_extension::InvokeEvent,
    mut handled: watch::Receiver<Option<String>>,
) {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let left = Duration::from_millis(invoke.deadline_ms.saturating_sub(now_ms));
    let done = handled.wait_for(|id| id.as_deref() == Some(invoke.request_id.as_str()));
    if tokio::time::timeout(left, done).await.is_err() {
        tracing::warn!(request_id = %invoke.request_id, "no handler finished this invocation by its deadline");
    }
    settle(state).await;
}

/// Waits until the work the handler left running is done and the audit events it emitted
/// are stored, each at most [`BACKGROUND_DEADLINE`].
async fn settle(state: &AppState) {
    // One invocation at a time per instance: whatever the tracker holds is this request's.
    state.background.close();
    if tokio::time::timeout(BACKGROUND_DEADLINE, state.background.wait())
        .await
        .is_err()
    {
        tracing::warn!("background work still running at the deadline; it may be lost");
    }
    state.background.reopen();
    if tokio::time::timeout(BACKGROUND_DEADLINE, state.audit.flush())
        .await
        .is_err()
    {
        tracing::warn!("audit events not stored by the deadline; they are in the log");
    }
}

/// Settles the work the handler left running and the audit events it emitted: Lambda
/// freezes the sandbox once the invocation ends, so anything still running would stall
/// until (and unless) the next invocation thaws it. With the extension, this only tells it
/// the handler is done and the response goes out at once; without, the response waits.
/// Then honours a [`MinimumResponseTime`] the handler asked for.
async fn settle_background_work(
    State(settlement): State<Settlement>,
    request: Request,
    next: Next,
) -> Response {
    let arrived = Instant::now();
    let function = function_name();
    let request_id = request
        .extensions()
        .get::<lambda_http::Context>()
        .map(|context| context.request_id.clone());
    let response = next.run(request).await;
    match (&settlement.after_response, request_id) {
        (Some(after), Some(request_id)) => {
            after.handled.send_replace(Some(request_id));
        }
        _ => settle(&settlement.state).await,
    }
    if let Some(MinimumResponseTime(floor)) = response.extensions().get().copied() {
        tokio::time::sleep_until((arrived + floor).into()).await;
    }
    metrics::histogram!(telemetry::metric::LATENCY, "Function" => function)
        .record(arrived.elapsed().as_secs_f64() * 1000.0);
    response
}

/// This function's name (`AWS_LAMBDA_FUNCTION_NAME`), for the latency metric's dimension.
fn function_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME").unwrap_or_else(|_| "local".into())
    })
}

/// Runs the API Gateway Lambda authorizer until the runtime stops it: the keys, the
/// revocation mirror, the route rules (`AUTHORIZER_ROUTE_RULES`) and the audit sink (lazy)
/// are built once, and nothing else (no hasher, no mailer, no settling extension); each event
/// is decided by [`crate::auth::authorizer::authorize_request`]. A revocation check that
/// cannot be made fails the invocation (API Gateway answers 500; see the authorizer module
/// for why). A valid token refused by the route's rules is audited, and the event stored
/// before the deny is returned (the only invocations that write: an allow waits for
/// nothing, so the extension the HTTP functions register would only add work to each).
pub async fn run_authorizer() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let authorizer = &crate::app::authorizer(&config).await?;
    let metrics = telemetry::lambda_metrics()?;
    // Boxed, handler and runtime: their futures nest deep enough to overflow the compiler's
    // layout query when `main` inlines them.
    Box::pin(metrics_cloudwatch_embedded::lambda::service::run(
        metrics,
        service_fn(
            move |event: LambdaEvent<ApiGatewayV2CustomAuthorizerV2Request>| {
                Box::pin(async move {
                    authorizer
                        .handle(&event.payload)
                        .await
                        .map_err(lambda_runtime::Error::from)
                })
            },
        ),
    ))
    .await
}

/// Runs the scheduled cleanup function (`functions/cleanup`) until the runtime stops it: the
/// database pool is built once; each event (EventBridge's scheduled event, whatever it
/// holds) runs one pass of [`crate::db::prune`], and the answer is the rows deleted per
/// table. A pass that fails fails the invocation (logged, and the next one tries again).
pub async fn run_cleanup() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = Config::from_env()?;
    let cleanup = &crate::app::cleanup(&config)?;
    // Boxed, handler and runtime: their futures nest deep enough to overflow the compiler's
    // layout query when `main` inlines them.
    Box::pin(lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<serde_json::Value>| {
            Box::pin(async move {
                let pruned = cleanup.run().await?;
                tracing::info!(deleted = ?pruned.deleted, "cleanup pass done");
                Ok::<_, lambda_runtime::Error>(pruned)
            })
        },
    )))
    .await
}

/// Copies API Gateway's view of the client IP into the request, for [`ClientIp`].
async fn source_ip(mut request: Request, next: Next) -> Response {
    let ip = match request.extensions().get::<RequestContext>() {
        Some(RequestContext::ApiGatewayV2(context)) => context
            .http
            .source_ip
            .as_deref()
            .and_then(|ip| ip.parse().ok()),
        _ => None,
    };
    if ip.is_some() {
        request.extensions_mut().insert(ClientIp(ip));
    }
    next.run(request).await
}
