//! The local moto server that stands in for AWS (DynamoDB, Secrets Manager, SES), reached
//! through the real AWS SDK. `scripts/test.sh` starts it and sets `MOTO_ENDPOINT` and fake
//! `AWS_*` credentials; without it an AWS test fails when `CI` is set and is skipped (saying
//! why) otherwise.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};

/// The moto endpoint, or `None` (after saying why) when `what` cannot be tested here: without
/// `MOTO_ENDPOINT` the test fails when `CI` is set and is skipped otherwise.
pub fn moto_endpoint(what: &str) -> Option<String> {
    let endpoint = std::env::var("MOTO_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let Some(endpoint) = endpoint else {
        assert!(
            std::env::var_os("CI").is_none(),
            "MOTO_ENDPOINT is not set, so {what} cannot be tested; in CI it must be: run the \
             suite through scripts/test.sh, which starts moto and sets it"
        );
        eprintln!(
            "skipping {what}: MOTO_ENDPOINT is not set (scripts/test.sh starts a moto server \
             and sets it)"
        );
        return None;
    };
    // The service's AWS SDK clients take their credentials and region from the environment.
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        assert!(
            std::env::var_os(name).is_some(),
            "MOTO_ENDPOINT is set but {name} is not: set AWS_ACCESS_KEY_ID=test \
             AWS_SECRET_ACCESS_KEY=test AWS_DEFAULT_REGION=us-east-1 as scripts/test.sh does"
        );
    }
    Some(endpoint)
}

/// A Secrets Manager client for moto (the test's own, independent of the app's).
pub fn secrets_manager(endpoint: &str) -> aws_sdk_secretsmanager::Client {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(config)
}

/// Creates a secret with a unique name holding `value`; returns its ARN.
pub async fn create_secret(endpoint: &str, purpose: &str, value: &str) -> String {
    secrets_manager(endpoint)
        .create_secret()
        .name(format!("test/{purpose}/{}", uuid::Uuid::new_v4()))
        .secret_string(value)
        .send()
        .await
        .expect("create the secret on moto")
        .arn
        .expect("the new secret's ARN")
}

/// Replaces the secret's current value (what a rotation does).
pub async fn put_secret(endpoint: &str, arn: &str, value: &str) {
    secrets_manager(endpoint)
        .put_secret_value()
        .secret_id(arn)
        .secret_string(value)
        .send()
        .await
        .expect("put the secret's new value on moto");
}

/// A DynamoDB client for moto (the test's own, independent of the app's).
pub fn dynamodb(endpoint: &str) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "moto"))
        .build();
    Client::from_conf(config)
}

/// Creates a table shaped like template.yaml's `AuditTable` (pk, sk; TTL on `expires_at`).
pub async fn create_audit_table(client: &Client, name: &str) {
    let key = |name: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("key schema")
    };
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition")
    };
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating table {name} in moto: {e:?}"));
}
