//! CloudFormation custom resource `MigrationRun`: applies the pending database migrations on
//! Create and Update, does nothing on Delete, and always answers CloudFormation (see
//! `user_service::custom_resource`). Built once per cold start.

use lambda_runtime::service_fn;
use user_service::custom_resource::{CustomResourceEvent, MigrationResource};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    user_service::telemetry::init();
    let config = user_service::Config::from_env()?;
    let secrets = user_service::secrets::SecretsManager::from_config(&config);
    // The owner's login (the master secret) and the runtime role's secret, whose password
    // the role gets after the migrations.
    let database = user_service::db::runtime_role::Migrator::from_config(&config, &secrets)?;
    let resource = &MigrationResource::new(database)?;
    // Boxed: the handler's future nests deep enough to overflow the compiler's layout query.
    lambda_runtime::run(service_fn(move |event: CustomResourceEvent| {
        Box::pin(async move {
            resource
                .handle_invocation(event)
                .await
                .map_err(lambda_runtime::Error::from)
        })
    }))
    .await
}
