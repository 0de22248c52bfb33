//! Scheduled function (EventBridge, hourly): one pass of the cleanup that deletes dead
//! sessions and expired tokens, in bounded batches (`user_service::db::prune`).

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    user_service::lambda::run_cleanup().await
}
