//! Lambda function serving `PUT /v1/users/me/password`: builds the state once, then serves the endpoint.

use user_service::http::routes::change_password;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(change_password::router).await
}
