//! Lambda authorizer of the HTTP API (payload 2.0, simple responses): verifies the bearer
//! token, checks revocation and the route's roles, and passes the caller on in the context.
//! The state and the route rules (`AUTHORIZER_ROUTE_RULES`) are built once per cold start;
//! everything else is in `user_service::auth::authorizer`.

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    user_service::lambda::run_authorizer().await
}
