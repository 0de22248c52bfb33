//! CloudFormation custom resources, and the one this service has: `MigrationRun`, which
//! applies the database migrations on every deploy (`functions/migrate`).
//!
//! CloudFormation sends a request (Create, Update or Delete) and then waits for the answer
//! at a presigned S3 URL (`ResponseURL`): a function that never answers stalls the deploy
//! until the resource's `ServiceTimeout`. So this module **always** answers: the work runs
//! under a deadline that leaves time to send the answer before the invocation's own
//! deadline, and a failure, a panic-free timeout or a malformed request all answer FAILED
//! with a short reason. Only a request without a `ResponseURL` cannot be answered.
//!
//! Migrations: Create and Update apply the pending ones as the database's owner (the master
//! user) and then set the runtime role's password from its secret (see
//! [`crate::db::runtime_role`]); Delete does nothing (the schema and
//! its data outlive the stack's resource, never dropped from here). The physical id is
//! always [`MIGRATIONS_PHYSICAL_ID`], so an Update never makes CloudFormation delete the
//! "old" resource.
//!
//! The response URL is a credential (anyone holding it can answer for the stack): it is
//! never logged, and neither is a database URL. Reasons carry no secrets.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use lambda_runtime::LambdaEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::db::runtime_role::Migrator;
use crate::telemetry::ErrorChain;

/// The physical id of `MigrationRun`: one, stable, whatever the request.
pub const MIGRATIONS_PHYSICAL_ID: &str = "user-service-migrations";

/// Time kept back from the invocation's deadline for sending the answer (every attempt of
/// [`send_response`], with its waits, fits in it).
pub const RESPONSE_RESERVE: Duration = Duration::from_secs(45);

/// Longest answer reason sent (CloudFormation shows it in the stack events; the whole
/// response must stay under 4 KiB).
const MAX_REASON_CHARS: usize = 400;

/// Attempts at delivering the answer, and the deadline of each.
const SEND_ATTEMPTS: u32 = 3;
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What CloudFormation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestType {
    /// The resource is being created.
    Create,
    /// One of its properties changed.
    Update,
    /// The resource is being deleted (also on a rollback of a failed Create).
    Delete,
}

/// A custom-resource request, as CloudFormation sends it.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceRequest {
    /// `Create`, `Update` or `Delete` (anything else is answered FAILED).
    pub request_type: String,
    /// The presigned S3 URL the answer goes to (never logged).
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    /// The stack's ARN.
    pub stack_id: String,
    /// This request's id.
    pub request_id: String,
    /// The resource's name in the template.
    pub logical_resource_id: String,
    /// The id the resource was given (Update and Delete).
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

impl fmt::Debug for CustomResourceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CustomResourceRequest")
            .field("request_type", &self.request_type)
            .field("stack_id", &self.stack_id)
            .field("request_id", &self.request_id)
            .field("logical_resource_id", &self.logical_resource_id)
            .field("physical_resource_id", &self.physical_resource_id)
            .finish_non_exhaustive()
    }
}

impl CustomResourceRequest {
    /// The request type, if it is one CloudFormation defines.
    pub fn kind(&self) -> Option<RequestType> {
        match self.request_type.as_str() {
            "Create" => Some(RequestType::Create),
            "Update" => Some(RequestType::Update),
            "Delete" => Some(RequestType::Delete),
            _ => None,
        }
    }
}

/// The outcome sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// The work was done.
    Success,
    /// It was not; the stack operation fails (and rolls back).
    Failed,
}

/// The answer CloudFormation reads from the response URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceResponse {
    /// SUCCESS or FAILED.
    pub status: Status,
    /// Why (shown in the stack events).
    pub reason: String,
    /// The resource's id; a different one on Update makes CloudFormation delete the old.
    pub physical_resource_id: String,
    /// Copied from the request.
    pub stack_id: String,
    /// Copied from the request.
    pub request_id: String,
    /// Copied from the request.
    pub logical_resource_id: String,
    /// Whether `Data` is hidden from `Fn::GetAtt` output (never: it holds no secret).
    pub no_echo: bool,
    /// Attributes for `Fn::GetAtt`.
    pub data: Map<String, Value>,
}

/// Why the answer could not be delivered (the URL is never part of it).
#[derive(Debug, thiserror::Error)]
pub enum CustomResourceError {
    /// The request lacks the fields an answer needs: nobody can be told.
    #[error("not a CloudFormation custom resource request (missing {0})")]
    Unanswerable(&'static str),
    /// The PUT failed (connection, timeout).
    #[error("sending the answer failed")]
    Send(#[source] reqwest::Error),
    /// The response URL refused the PUT.
    #[error("the response URL answered HTTP {0}")]
    Refused(u16),
}

/// The event the migrate function is invoked with: the request as raw JSON, so that even a
/// malformed one is answered when it can be.
pub type CustomResourceEvent = LambdaEvent<Value>;

/// The invocation's deadline, as a [`tokio::time::Instant`].
pub fn invocation_deadline(context: &lambda_runtime::Context) -> Instant {
    let left = context
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Instant::now() + left
}

/// The `MigrationRun` custom resource: its handler and an HTTP client for the answer.
#[derive(Clone)]
pub struct MigrationResource {
    database: Arc<Migrator>,
    http: reqwest::Client,
}

impl fmt::Debug for MigrationResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MigrationResource").finish_non_exhaustive()
    }
}

impl MigrationResource {
    /// Migrates with `database` (the owner's credentials from Secrets Manager and TLS as
    /// configured, and the runtime role's secret).
    pub fn new(database: Migrator) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            database: Arc::new(database),
            http,
        })
    }

    /// Handles one invocation: the work gets until [`RESPONSE_RESERVE`] before the
    /// invocation's deadline, then the answer is sent. An error means nobody could be told
    /// (the invocation fails, and Lambda retries it).
    pub async fn handle_invocation(
        &self,
        event: CustomResourceEvent,
    ) -> Result<CustomResourceResponse, CustomResourceError> {
        let deadline = invocation_deadline(&event.context);
        let work_deadline = deadline
            .checked_sub(RESPONSE_RESERVE)
            .unwrap_or_else(Instant::now)
            .max(Instant::now());
        self.handle(event.payload, work_deadline).await
    }

    /// Handles a request (raw JSON) with the work stopped at `work_deadline`; returns the
    /// answer it delivered.
    pub async fn handle(
        &self,
        event: Value,
        work_deadline: Instant,
    ) -> Result<CustomResourceResponse, CustomResourceError> {
        let request = parse_request(event)?;
        tracing::info!(
            request_type = %request.request_type,
            stack_id = %request.stack_id,
            request_id = %request.request_id,
            logical_resource_id = %request.logical_resource_id,
            "custom resource request"
        );
        let response = match request.kind() {
            None => failed(
                &request,
                MIGRATIONS_PHYSICAL_ID,
                format!("unknown RequestType {:?}", request.request_type),
            ),
            Some(RequestType::Delete) => {
                // Never drop the schema: the data outlives the resource.
                let physical = request
                    .physical_resource_id
                    .clone()
                    .unwrap_or_else(|| MIGRATIONS_PHYSICAL_ID.to_owned());
                succeeded(&request, &physical, "nothing to delete", Map::new())
            }
            Some(RequestType::Create | RequestType::Update) => {
                let work = async {
                    let applied = self.database.run().await?;
                    let mut data = Map::new();
                    data.insert("AppliedMigrations".into(), applied.to_string().into());
                    Ok((format!("applied {applied} pending migrations"), data))
                };
                run_until(&request, MIGRATIONS_PHYSICAL_ID, work_deadline, work).await
            }
        };
        send_response(&self.http, &request.response_url, &response).await?;
        tracing::info!(status = ?response.status, reason = %response.reason, "custom resource answered");
        Ok(response)
    }
}

/// Reads the request; one lacking what an answer needs is an error, anything else
/// (an unknown RequestType included) is left for an answer.
fn parse_request(event: Value) -> Result<CustomResourceRequest, CustomResourceError> {
    for field in [
        "ResponseURL",
        "StackId",
        "RequestId",
        "LogicalResourceId",
        "RequestType",
    ] {
        if !event.get(field).is_some_and(Value::is_string) {
            return Err(CustomResourceError::Unanswerable(field));
        }
    }
    serde_json::from_value(event).map_err(|_| CustomResourceError::Unanswerable("a valid field"))
}

/// Runs `work` until `deadline`; its outcome, or the deadline, becomes the answer.
async fn run_until<F>(
    request: &CustomResourceRequest,
    physical_id: &str,
    deadline: Instant,
    work: F,
) -> CustomResourceResponse
where
    F: Future<Output = anyhow::Result<(String, Map<String, Value>)>>,
{
    let started = Instant::now();
    match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok((reason, data))) => succeeded(request, physical_id, &reason, data),
        Ok(Err(e)) => {
            let chain = ErrorChain(e.as_ref()).to_string();
            tracing::error!(error = %chain, "custom resource work failed");
            failed(request, physical_id, chain)
        }
        Err(_) => {
            let took = started.elapsed().as_secs();
            tracing::error!(
                seconds = took,
                "custom resource work did not finish in time"
            );
            failed(
                request,
                physical_id,
                format!("did not finish within {took} s (the function's deadline); see its log"),
            )
        }
    }
}

fn succeeded(
    request: &CustomResourceRequest,
    physical_id: &str,
    reason: &str,
    data: Map<String, Value>,
) -> CustomResourceResponse {
    response(
        request,
        Status::Success,
        physical_id,
        reason.to_owned(),
        data,
    )
}

fn failed(
    request: &CustomResourceRequest,
    physical_id: &str,
    reason: String,
) -> CustomResourceResponse {
    response(request, Status::Failed, physical_id, reason, Map::new())
}

fn response(
    request: &CustomResourceRequest,
    status: Status,
    physical_id: &str,
    reason: String,
    data: Map<String, Value>,
) -> CustomResourceResponse {
    CustomResourceResponse {
        status,
        reason: truncate(reason, MAX_REASON_CHARS),
        physical_resource_id: physical_id.to_owned(),
        stack_id: request.stack_id.clone(),
        request_id: request.request_id.clone(),
        logical_resource_id: request.logical_resource_id.clone(),
        no_echo: false,
        data,
    }
}

fn truncate(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// PUTs the answer to the presigned URL (`content-type` empty: it is not part of the
/// signature), retrying a failed attempt twice.
pub async fn send_response(
    http: &reqwest::Client,
    url: &str,
    response: &CustomResourceResponse,
) -> Result<(), CustomResourceError> {
    // Plain data: serializing cannot fail.
    let body = serde_json::to_vec(response).unwrap_or_default();
    let mut wait = Duration::from_secs(1);
    let mut attempt = 1;
    loop {
        let outcome = http
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "")
            .body(body.clone())
            .send()
            .await;
        let error = match outcome {
            Ok(answer) if answer.status().is_success() => return Ok(()),
            Ok(answer) => CustomResourceError::Refused(answer.status().as_u16()),
            // The URL's query string is the signature: keep it out of the error.
            Err(e) => CustomResourceError::Send(e.without_url()),
        };
        tracing::warn!(attempt, error = %ErrorChain(&error), "sending the custom resource answer failed");
        if attempt >= SEND_ATTEMPTS {
            return Err(error);
        }
        tokio::time::sleep(wait).await;
        wait *= 2;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(kind: &str) -> CustomResourceRequest {
        serde_json::from_value(json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:migrate",
            "ResponseURL": "https://cloudformation-custom-resource-response.s3.amazonaws.com/x?X-Amz-Signature=abc",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
            "RequestId": "req-1",
            "ResourceType": "AWS::CloudFormation::CustomResource",
            "LogicalResourceId": "MigrationRun",
            "ResourceProperties": {"DeployId": "abc"}
        }))
        .expect("request")
    }

    #[test]
    fn the_answer_has_cloudformations_field_names() {
        let r = succeeded(&request("Create"), MIGRATIONS_PHYSICAL_ID, "ok", Map::new());
        let value = serde_json::to_value(&r).expect("json");
        assert_eq!(
            value,
            json!({
                "Status": "SUCCESS",
                "Reason": "ok",
                "PhysicalResourceId": "user-service-migrations",
                "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1",
                "RequestId": "req-1",
                "LogicalResourceId": "MigrationRun",
                "NoEcho": false,
                "Data": {}
            })
        );
    }

    #[test]
    fn the_response_url_is_not_in_debug_output() {
        assert!(!format!("{:?}", request("Create")).contains("Signature"));
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let cut = truncate("é".repeat(1000), 10);
        assert_eq!(cut.chars().count(), 11);
    }

    #[test]
    fn a_request_without_a_response_url_cannot_be_answered() {
        let err = parse_request(json!({"RequestType": "Create"})).expect_err("unanswerable");
        assert!(matches!(
            err,
            CustomResourceError::Unanswerable("ResponseURL")
        ));
    }

    #[tokio::test]
    async fn work_past_the_deadline_is_answered_failed() {
        let request = request("Create");
        let deadline = Instant::now() + Duration::from_millis(50);
        let response = run_until(&request, "id", deadline, async {
            std::future::pending::<anyhow::Result<(String, Map<String, Value>)>>().await
        })
        .await;
        assert_eq!(response.status, Status::Failed);
        assert!(
            response.reason.contains("did not finish"),
            "{}",
            response.reason
        );
    }
}
