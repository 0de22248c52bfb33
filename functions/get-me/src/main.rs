//! Lambda function serving `GET /v1/users/me`: builds the state once, then serves the endpoint.

use user_service::http::routes::get_me;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(get_me::router).await
}
