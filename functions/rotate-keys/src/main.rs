//! Secrets Manager rotation function of the JWT signing-key secret: each invocation runs one
//! step (createSecret, setSecret, testSecret, finishSecret) of
//! `user_service::rotation::Rotator`. The client and settings are built once per cold start.

use lambda_runtime::{LambdaEvent, service_fn};
use user_service::rotation::{RotationEvent, Rotator};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    user_service::telemetry::init();
    let config = user_service::Config::from_env()?;
    let rotator = &Rotator::from_config(&config).await;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<RotationEvent>| async move {
            rotator
                .handle(&event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
