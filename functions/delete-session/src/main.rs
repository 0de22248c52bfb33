//! Lambda function serving `DELETE /v1/users/me/sessions/{id}`: builds the state once, then serves the endpoint.

use user_service::http::routes::delete_session;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    user_service::lambda::run(delete_session::router).await
}
