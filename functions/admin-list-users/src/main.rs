//! Lambda function serving `GET /v1/admin/users`: builds the state once, then serves the endpoint.

use user_service::http::routes::admin::list_users;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(list_users::router).await
}
