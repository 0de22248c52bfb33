//! Lambda function serving `GET /v1/users/me/sessions`: builds the state once, then serves the endpoint.

use user_service::http::routes::list_sessions;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(list_sessions::router).await
}
