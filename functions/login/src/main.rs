//! Lambda function serving `POST /v1/auth/login`: builds the state once, then serves the endpoint.

use user_service::http::routes::login;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run_with_init(login::router, login::init).await
}
