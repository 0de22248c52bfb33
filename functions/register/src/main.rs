//! Lambda function serving `POST /v1/auth/register`: builds the state once, then serves the endpoint.

use user_service::http::routes::register;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(register::router).await
}
