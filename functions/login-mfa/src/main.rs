//! Lambda function serving `POST /v1/auth/login/mfa`: builds the state once, then serves the endpoint.

use user_service::http::routes::login_mfa;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(login_mfa::router).await
}
