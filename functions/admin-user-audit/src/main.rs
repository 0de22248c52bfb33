//! Lambda function serving `GET /v1/admin/users/{id}/audit`: builds the state once, then serves the endpoint.

use user_service::http::routes::admin::user_audit;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(user_audit::router).await
}
