//! Rotation of the JWT signing keys in Secrets Manager (`functions/rotate-keys`), through the
//! real AWS SDK against the local moto server (`MOTO_ENDPOINT`; see `tests/src/moto.rs`).
//!
//! Each test plays Secrets Manager: `RotateSecret` stages a new, empty version `AWSPENDING`
//! (the token), then the rotation function is invoked with the events `createSecret`,
//! `setSecret`, `testSecret` and `finishSecret` for that token. moto cannot invoke a Rust
//! function: it stages the version and then answers that the function does not exist, so
//! the test invokes the handler itself, with the JSON events Secrets Manager sends. What the
//! service then reads is checked through `SecretsManagerKeys`, the key source of the
//! functions that sign, and `SecretsManagerPublicKeys`, that of the functions that only
//! verify. Every test has its own secrets (UUID names).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::RotationRulesType;
use chrono::{DateTime, Utc};
use serde_json::json;
use user_service::auth::key_secret::{SecretsManagerKeys, SecretsManagerPublicKeys};
use user_service::auth::keys::{KeyAlgorithm, KeyRing, KeySet};
use user_service::auth::tokens::{AccessTokens, IssueError};
use user_service::domain::Role;
use user_service::rotation::{RotationError, RotationEvent, RotationSettings, Rotator};
use user_service::secrets::SecretsManager;
use user_service_tests::moto_endpoint;
use uuid::Uuid;

/// The rotation function's ARN as the secret names it (moto has no such function).
const ROTATION_FUNCTION_ARN: &str = "arn:aws:lambda:us-east-1:123456789012:function:rotate-keys";

/// Retention used by these tests: 15 min of token life + 5 min of key cache + 5 min margin,
/// as the defaults give.
const RETENTION: Duration = Duration::from_secs(25 * 60);

const STEPS: [&str; 4] = ["createSecret", "setSecret", "testSecret", "finishSecret"];

/// One secret in moto, a rotation function for it, and the clock that function reads.
struct Rotation {
    client: Client,
    endpoint: String,
    arn: String,
    /// The public-key secret that `setSecret` writes.
    public_arn: String,
    rotator: Rotator,
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl Rotation {
    /// A new secret holding the template's placeholder `{"keys": []}`, or `None` without
    /// moto.
    async fn new(what: &str) -> Option<Rotation> {
        let endpoint = moto_endpoint(what)?;
        // The functions' own client: region and credentials from the environment.
        let client = user_service::secrets::client(Some(&endpoint)).await;
        let created = client
            .create_secret()
            .name(format!("jwt-keys-{}", Uuid::new_v4()))
            .secret_string(r#"{"keys": []}"#)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating a secret in moto: {:?}", e.into_service_error()));
        let arn = created.arn().expect("the new secret's ARN").to_owned();
        let public = client
            .create_secret()
            .name(format!("jwt-public-keys-{}", Uuid::new_v4()))
            .secret_string(r#"{"keys": [], "cursor_key": ""}"#)
            .send()
            .await
            .unwrap_or_else(|e| panic!("creating a secret in moto: {:?}", e.into_service_error()));
        let public_arn = public.arn().expect("the new secret's ARN").to_owned();
        let now = Arc::new(Mutex::new(
            "2026-11-01T12:00:00Z"
                .parse::<DateTime<Utc>>()
                .expect("time"),
        ));
        let clock = now.clone();
        let rotator = Rotator::new(
            client.clone(),
            RotationSettings {
                algorithm: KeyAlgorithm::Es256,
                retention: RETENTION,
                public_keys_secret: Some(public_arn.clone()),
            },
        )
        .with_clock(Arc::new(move || *clock.lock().expect("clock")));
        Some(Rotation {
            client,
            endpoint,
            arn,
            public_arn,
            rotator,
            now,
        })
    }

    /// Sets the rotation function's clock.
    fn set_now(&self, at: DateTime<Utc>) {
        *self.now.lock().expect("clock") = at;
    }

    /// Moves the rotation function's clock forward.
    fn advance(&self, by: Duration) {
        let mut now = self.now.lock().expect("clock");
        *now += chrono::Duration::from_std(by).expect("duration");
    }

    /// Secrets Manager's start of a rotation: a new version staged AWSPENDING, empty; its id
    /// is the token of the four steps.
    async fn start(&self) -> String {
        let token = Uuid::new_v4().to_string();
        let started = self
            .client
            .rotate_secret()
            .secret_id(&self.arn)
            .client_request_token(&token)
            .rotation_lambda_arn(ROTATION_FUNCTION_ARN)
            .rotation_rules(
                RotationRulesType::builder()
                    .automatically_after_days(30)
                    .build(),
            )
            .send()
            .await;
        if let Err(e) = started {
            let e = e.into_service_error();
            // moto, having staged the version, cannot find the function to invoke.
            assert!(e.is_resource_not_found_exception(), "RotateSecret: {e:?}");
        }
        let stages = self.stages(&token).await;
        assert_eq!(
            stages,
            ["AWSPENDING"],
            "RotateSecret staged the new version"
        );
        token
    }

    /// The staging labels of `version`.
    async fn stages(&self, version: &str) -> Vec<String> {
        let described = self
            .client
            .describe_secret()
            .secret_id(&self.arn)
            .send()
            .await
            .expect("DescribeSecret");
        described
            .version_ids_to_stages()
            .and_then(|versions| versions.get(version))
            .cloned()
            .unwrap_or_default()
    }

    /// The value of the version `token`, staged AWSPENDING.
    async fn pending_value(&self, token: &str) -> String {
        let value = self
            .client
            .get_secret_value()
            .secret_id(&self.arn)
            .version_id(token)
            .version_stage("AWSPENDING")
            .send()
            .await
            .expect("the pending version has a value");
        value.secret_string().expect("a string").to_owned()
    }

    /// Invokes the rotation function with one step, as Secrets Manager does.
    async fn step(&self, step: &str, token: &str) -> Result<(), RotationError> {
        let event: RotationEvent = serde_json::from_value(json!({
            "Step": step,
            "SecretId": self.arn,
            "ClientRequestToken": token,
        }))
        .expect("a rotation event");
        self.rotator.handle(&event).await
    }

    /// One whole rotation; returns its token.
    async fn rotate(&self) -> String {
        let token = self.start().await;
        for step in STEPS {
            self.step(step, &token)
                .await
                .unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        assert_eq!(self.stages(&token).await, ["AWSCURRENT"], "finished");
        token
    }

    /// The key source the functions use.
    fn keys(&self) -> SecretsManagerKeys {
        SecretsManagerKeys::new(SecretsManager::new(Some(&self.endpoint)), self.arn.clone())
    }

    /// The keys the functions would load now.
    async fn key_set(&self) -> KeySet {
        KeySet::load(&self.keys())
            .await
            .unwrap_or_else(|e| panic!("loading the keys from Secrets Manager: {e:#}"))
    }

    /// The keys the functions that only verify would load now.
    async fn public_key_set(&self) -> KeySet {
        let source = SecretsManagerPublicKeys::new(
            SecretsManager::new(Some(&self.endpoint)),
            self.public_arn.clone(),
        );
        KeySet::load(&source)
            .await
            .unwrap_or_else(|e| panic!("loading the public keys from Secrets Manager: {e:#}"))
    }

    /// The public-key secret's current value.
    async fn public_value(&self) -> String {
        let value = self
            .client
            .get_secret_value()
            .secret_id(&self.public_arn)
            .send()
            .await
            .expect("the public-key secret");
        value.secret_string().expect("a string").to_owned()
    }

    /// The kids in the current secret, in order.
    async fn kids(&self) -> Vec<String> {
        self.keys()
            .current()
            .await
            .expect("the current secret")
            .keys()
            .iter()
            .map(|k| k.kid().to_owned())
            .collect()
    }
}

/// Access tokens as the service issues and verifies them with `keys`.
fn tokens(keys: KeySet) -> AccessTokens {
    AccessTokens::new(
        Arc::new(KeyRing::fixed(keys)),
        "user-service",
        "user-service",
        Duration::from_secs(900),
    )
}

async fn issue(tokens: &AccessTokens) -> String {
    tokens
        .issue(Uuid::now_v7(), Role::User, Uuid::now_v7())
        .await
        .expect("signing an access token")
        .token
}

#[tokio::test]
async fn before_the_first_rotation_loading_the_keys_says_why_it_cannot() {
    let Some(rotation) = Rotation::new("loading keys from Secrets Manager").await else {
        return;
    };
    let err = KeySet::load(&rotation.keys())
        .await
        .expect_err("the placeholder holds no key");
    let message = format!("{err:#}");
    assert!(
        message.contains("no signing key yet: the rotation has not run"),
        "{message}"
    );
}

#[tokio::test]
async fn the_first_rotation_writes_one_key_that_signs_and_is_published() {
    let Some(rotation) = Rotation::new("key rotation").await else {
        return;
    };
    rotation.rotate().await;
    let set = rotation.key_set().await;
    let jwks = serde_json::to_value(set.jwks()).expect("jwks");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    assert_eq!(jwks["keys"][0]["kid"], set.signing_key().kid());
    assert_eq!(set.signing_key().algorithm(), KeyAlgorithm::Es256);
    let tokens = tokens(set);
    tokens
        .verify(&issue(&tokens).await)
        .await
        .expect("its own token verifies");
}

#[tokio::test]
async fn a_second_rotation_signs_with_a_new_key_and_old_tokens_still_verify() {
    let Some(rotation) = Rotation::new("key rotation").await else {
        return;
    };
    rotation.rotate().await;
    let before = tokens(rotation.key_set().await);
    let old_kid = before
        .keys()
        .await
        .expect("keys")
        .signing_key()
        .kid()
        .to_owned();
    let old_token = issue(&before).await;

    rotation.advance(Duration::from_secs(30 * 24 * 3600));
    rotation.rotate().await;
    let after = tokens(rotation.key_set().await);
    let new_kid = after
        .keys()
        .await
        .expect("keys")
        .signing_key()
        .kid()
        .to_owned();
    assert_ne!(new_kid, old_kid, "the new key signs");
    assert_eq!(rotation.kids().await, [new_kid.clone(), old_kid.clone()]);
    let jwks = serde_json::to_value(after.keys().await.expect("keys").jwks()).expect("jwks");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(2), "{jwks}");

    let claims = after
        .verify(&old_token)
        .await
        .expect("a token signed before the rotation still verifies");
    assert_eq!(claims.role, Role::User);
    let new_token = issue(&after).await;
    let header = jsonwebtoken::decode_header(&new_token).expect("header");
    assert_eq!(header.kid.as_deref(), Some(new_kid.as_str()));
    after
        .verify(&new_token)
        .await
        .expect("a new token verifies");

    let current = rotation.keys().current().await.expect("current");
    assert_eq!(current.keys()[0].retired_at(), None);
    assert_eq!(
        current.keys()[1].retired_at(),
        Some(*rotation.now.lock().expect("clock")),
        "the old signer retired at the rotation"
    );
}

#[tokio::test]
async fn the_verifiers_read_public_keys_only_and_meet_a_new_key_before_anyone_signs_with_it() {
    let Some(rotation) = Rotation::new("key rotation").await else {
        return;
    };
    rotation.rotate().await;
    let signer = tokens(rotation.key_set().await);
    let verifier = tokens(rotation.public_key_set().await);
    let value = rotation.public_value().await;
    assert!(!value.contains("PRIVATE"), "{value}");
    let published: serde_json::Value = serde_json::from_str(&value).expect("json");
    assert!(
        published["keys"][0].get("d").is_none(),
        "no private part: {published}"
    );
    assert_eq!(
        published["keys"][0]["kid"],
        json!(rotation.kids().await[0]),
        "the signing key's public half"
    );

    // The verifier verifies what the signer signs, and cannot sign.
    let token = issue(&signer).await;
    let claims = verifier.verify(&token).await.expect("verifies");
    assert_eq!(claims.role, Role::User);
    let refused = verifier
        .issue(Uuid::now_v7(), Role::Admin, Uuid::now_v7())
        .await;
    assert!(
        matches!(refused, Err(IssueError::CannotSign)),
        "{refused:?}"
    );

    // The next rotation publishes the new key at setSecret, while the old key still signs.
    rotation.advance(Duration::from_secs(30 * 24 * 3600));
    let token_id = rotation.start().await;
    rotation
        .step("createSecret", &token_id)
        .await
        .expect("createSecret");
    rotation
        .step("setSecret", &token_id)
        .await
        .expect("setSecret");
    let old_kid = rotation.kids().await[0].clone();
    let public = rotation.public_key_set().await;
    let new_kid = public.signing_key().kid().to_owned();
    assert_ne!(new_kid, old_kid, "the pending key is published first");
    assert!(
        public.verification_key(&old_kid).is_some(),
        "the old one stays"
    );
    for step in &STEPS[2..] {
        rotation.step(step, &token_id).await.expect(step);
    }
    let signed_after = issue(&tokens(rotation.key_set().await)).await;
    assert_eq!(user_service_tests::jwt::kid_of(&signed_after), new_kid);
    tokens(public)
        .verify(&signed_after)
        .await
        .expect("a token of the new key verifies with what was published");
}

#[tokio::test]
async fn a_retired_key_is_dropped_only_once_its_retention_has_passed() {
    let Some(rotation) = Rotation::new("key rotation").await else {
        return;
    };
    let t0: DateTime<Utc> = "2026-11-01T12:00:00Z".parse().expect("time");
    let minute = chrono::Duration::minutes(1);
    let retention = chrono::Duration::from_std(RETENTION).expect("retention");

    rotation.set_now(t0);
    rotation.rotate().await;
    let k1 = rotation.kids().await[0].clone();

    // k1 retires at t1.
    let t1 = t0 + chrono::Duration::days(30);
    rotation.set_now(t1);
    rotation.rotate().await;
    let k2 = rotation.kids().await[0].clone();

    // A minute before k1's retention ends: k1 is kept; k2 retires.
    rotation.set_now(t1 + retention - minute);
    rotation.rotate().await;
    let k3 = rotation.kids().await[0].clone();
    assert_eq!(rotation.kids().await, [k3.clone(), k2.clone(), k1.clone()]);

    // A minute after: k1 is gone, k2 (retired a minute before k1's retention ended) is not.
    rotation.set_now(t1 + retention + minute);
    rotation.rotate().await;
    let kids = rotation.kids().await;
    assert_eq!(kids.len(), 3, "{kids:?}");
    assert_eq!(kids[1..], [k3, k2]);
    assert!(!kids.contains(&k1), "k1 dropped: {kids:?}");
    let set = rotation.key_set().await;
    assert!(set.verification_key(&k1).is_none());
}

#[tokio::test]
async fn create_secret_repeated_with_the_same_token_writes_the_key_once() {
    let Some(rotation) = Rotation::new("key rotation").await else {
        return;
    };
    let token = rotation.start().await;
    rotation.step("createSecret", &token).await.expect("first");
    let first = rotation.pending_value(&token).await;
    rotation.advance(Duration::from_secs(60));
    rotation.step("createSecret", &token).await.expect("again");
    assert_eq!(
        rotation.pending_value(&token).await,
        first,
        "the retry changed nothing"
    );
    for step in &STEPS[1..] {
        rotation.step(step, &token).await.expect(step);
    }
    assert_eq!(rotation.kids().await.len(), 1);
}

#[tokio::test]
async fn a_token_that_is_not_the_pending_version_is_refused() {
    let Some(rotation) = Rotation::new("key rotation").await else {
        return;
    };
    let first = rotation.rotate().await;
    rotation.advance(Duration::from_secs(24 * 3600));
    let second = rotation.rotate().await;
    let kids = rotation.kids().await;

    // Not a version of the secret at all.
    let unknown = Uuid::new_v4().to_string();
    for step in STEPS {
        let err = rotation.step(step, &unknown).await.expect_err(step);
        assert!(
            matches!(err, RotationError::UnknownVersion { .. }),
            "{step}: {err}"
        );
    }
    // A version, but the previous one (AWSPREVIOUS), not one being rotated in.
    assert_eq!(rotation.stages(&first).await, ["AWSPREVIOUS"]);
    for step in STEPS {
        let err = rotation.step(step, &first).await.expect_err(step);
        assert!(
            matches!(err, RotationError::NotPending { .. }),
            "{step}: {err}"
        );
    }
    // The current version: that rotation is over, nothing to do.
    for step in STEPS {
        rotation.step(step, &second).await.expect(step);
    }
    assert_eq!(rotation.kids().await, kids, "nothing changed");
    assert_eq!(rotation.stages(&second).await, ["AWSCURRENT"]);
}

#[tokio::test]
async fn a_secret_without_rotation_enabled_is_refused() {
    let Some(rotation) = Rotation::new("key rotation").await else {
        return;
    };
    let versions = rotation
        .client
        .list_secret_version_ids()
        .secret_id(&rotation.arn)
        .send()
        .await
        .expect("ListSecretVersionIds");
    let current = versions.versions()[0]
        .version_id()
        .expect("a version id")
        .to_owned();
    let err = rotation
        .step("createSecret", &current)
        .await
        .expect_err("rotation is off");
    assert!(matches!(err, RotationError::NotEnabled(_)), "{err}");
}

/// A running service reading its keys from the secret: it starts before the first rotation
/// (answering 503 only where a token is needed), signs with the first key once it exists,
/// and follows a rotation without a restart: new tokens from the new key, old tokens still
/// good, both keys in the JWKS.
#[tokio::test]
async fn a_running_service_follows_the_rotations_without_a_restart() {
    let Some(rotation) = Rotation::new("a service reading its keys from Secrets Manager").await
    else {
        return;
    };
    let app = user_service_tests::TestApp::builder()
        .env("JWT_KEYS_SECRET_ARN", &rotation.arn)
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &rotation.endpoint)
        .env("SECRETS_REFRESH_SECONDS", 1)
        .spawn()
        .await;
    let email = user_service_tests::unique_email();
    let password = user_service_tests::strong_password();

    // The placeholder `{"keys": []}`: signing up needs no key, signing in does.
    app.register_ok(&email, &password).await;
    let refused = app.login(&email, &password).await;
    user_service_tests::assert_problem(refused, 503, "unavailable").await;

    rotation.rotate().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let first = app.login_ok(&email, &password).await;
    let first_kid = user_service_tests::jwt::kid_of(&first.access_token);
    assert_eq!(rotation.kids().await, std::slice::from_ref(&first_kid));

    rotation.advance(Duration::from_secs(24 * 3600));
    rotation.rotate().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = app.login_ok(&email, &password).await;
    let second_kid = user_service_tests::jwt::kid_of(&second.access_token);
    assert_ne!(second_kid, first_kid, "the new key signs");
    app.assert_me_status(&first.access_token, 200).await;
    app.assert_me_status(&second.access_token, 200).await;
    let published: Vec<String> = app.jwks().await["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect();
    assert_eq!(published, [second_kid.clone(), first_kid]);

    // An instance given the public keys only (as every function that issues no token is):
    // it takes both tokens and publishes the same JWKS, and cannot sign.
    let verifier = app
        .sibling()
        .env("JWT_KEYS_SECRET_ARN", "")
        .env("JWT_PUBLIC_KEYS_SECRET_ARN", &rotation.public_arn)
        .spawn()
        .await;
    verifier.assert_me_status(&first.access_token, 200).await;
    verifier.assert_me_status(&second.access_token, 200).await;
    assert_eq!(verifier.jwks().await, app.jwks().await);
    let refused = verifier.login(&email, &password).await;
    user_service_tests::assert_problem(refused, 500, "internal_error").await;
}
