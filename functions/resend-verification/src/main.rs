//! Lambda function serving `POST /v1/users/me/email/verification`: builds the state once, then serves the endpoint.

use user_service::http::routes::resend_verification;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(resend_verification::router).await
}
