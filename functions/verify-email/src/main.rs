//! Lambda function serving `POST /v1/auth/email/verify`: builds the state once, then serves the endpoint.

use user_service::http::routes::verify_email;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(verify_email::router).await
}
