//! Lambda function serving `POST /v1/users/me/email`: builds the state once, then serves the endpoint.

use user_service::http::routes::change_email;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(change_email::router).await
}
