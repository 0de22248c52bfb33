//! Lambda function serving `DELETE /v1/admin/users/{id}`: builds the state once, then serves the endpoint.

use user_service::http::routes::admin::delete_user;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(delete_user::router).await
}
