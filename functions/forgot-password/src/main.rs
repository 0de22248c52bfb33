//! Lambda function serving `POST /v1/auth/password/forgot`: builds the state once, then serves the endpoint.

use user_service::http::routes::forgot_password;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(forgot_password::router).await
}
