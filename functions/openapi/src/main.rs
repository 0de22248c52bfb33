//! Lambda function serving `GET /openapi.json` and `GET /docs`: builds the state once, then serves the endpoint.

use user_service::http::openapi;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(openapi::router).await
}
