//! Lambda function serving `GET /.well-known/jwks.json`: builds the state once, then serves the endpoint.

use user_service::http::routes::jwks;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(jwks::router).await
}
