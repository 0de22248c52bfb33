//! Lambda function serving `POST /v1/users/me/mfa/disable`: builds the state once, then serves the endpoint.

use user_service::http::routes::mfa_disable;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(mfa_disable::router).await
}
