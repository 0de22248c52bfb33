//! Lambda function serving `GET /healthz and GET /readyz`: builds the state once, then serves the endpoint.

use user_service::http::routes::health;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(health::router).await
}
