//! Lambda function serving `POST /v1/admin/users`: builds the state once, then serves the endpoint.

use user_service::http::routes::admin::create_user;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(create_user::router).await
}
