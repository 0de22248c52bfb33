//! Lambda function serving `POST /v1/auth/logout`: builds the state once, then serves the endpoint.

use user_service::http::routes::logout;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(logout::router).await
}
