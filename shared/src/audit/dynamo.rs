//! The DynamoDB store: one item per event, `pk = USER#<user id>`,
//! `sk = <at, RFC 3339 with microseconds>#<event id>` (so that the sort key orders a user's
//! events by time), and `expires_at` in epoch seconds for the table's TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::OnceCell;
use uuid::Uuid;

use super::store::{AuditStoreError, PagePosition, StoredEvent};

/// Attempts at getting DynamoDB to take a batch's unprocessed items.
const UNPROCESSED_ATTEMPTS: u32 = 5;

/// A DynamoDB table and a client, built on first use.
#[derive(Clone)]
pub struct DynamoStore {
    table: Arc<str>,
    endpoint_url: Option<Arc<str>>,
    client: Arc<OnceCell<Client>>,
}

impl DynamoStore {
    pub(super) fn new(table: String, endpoint_url: Option<String>) -> Self {
        Self {
            table: table.into(),
            endpoint_url: endpoint_url.map(Into::into),
            client: Arc::new(OnceCell::new()),
        }
    }

    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
                if let Some(url) = &self.endpoint_url {
                    loader = loader.endpoint_url(url.as_ref());
                }
                Client::new(&loader.load().await)
            })
            .await
    }

    pub(super) async fn write(
        &self,
        events: &[StoredEvent],
        retention: Duration,
    ) -> Result<(), AuditStoreError> {
        let client = self.client().await;
        let mut requests = events
            .iter()
            .map(|event| {
                let put = PutRequest::builder()
                    .set_item(Some(to_item(event, retention)))
                    .build()
                    .map_err(|e| AuditStoreError::DynamoDb(e.into()))?;
                Ok(WriteRequest::builder().put_request(put).build())
            })
            .collect::<Result<Vec<_>, AuditStoreError>>()?;
        let mut delay = Duration::from_millis(50);
        for _ in 0..UNPROCESSED_ATTEMPTS {
            if requests.is_empty() {
                return Ok(());
            }
            let output = client
                .batch_write_item()
                .request_items(self.table.as_ref(), requests)
                .send()
                .await
                .map_err(|e| {
                    AuditStoreError::DynamoDb(anyhow::Error::new(e.into_service_error()))
                })?;
            requests = output
                .unprocessed_items
                .and_then(|mut items| items.remove(self.table.as_ref()))
                .unwrap_or_default();
            if !requests.is_empty() {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        if requests.is_empty() {
            Ok(())
        } else {
            Err(AuditStoreError::DynamoDb(anyhow!(
                "{} items still unprocessed",
                requests.len()
            )))
        }
    }

    pub(super) async fn page(
        &self,
        user_id: Uuid,
        after: Option<PagePosition>,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, AuditStoreError> {
        let pk = partition_key(user_id);
        let start = after.map(|p| {
            HashMap::from([
                ("pk".to_owned(), AttributeValue::S(pk.clone())),
                ("sk".to_owned(), AttributeValue::S(sort_key(p.at, p.id))),
            ])
        });
        let output = self
            .client()
            .await
            .query()
            .table_name(self.table.as_ref())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", AttributeValue::S(pk))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| AuditStoreError::DynamoDb(anyhow::Error::new(e.into_service_error())))?;
        output
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| from_item(item, user_id))
            .collect()
    }
}

fn partition_key(user_id: Uuid) -> String {
    format!("USER#{user_id}")
}

/// Fixed width (always six fractional digits, `Z`), so that string order is time order.
fn sort_key(at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}#{id}", at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

fn to_item(event: &StoredEvent, retention: Duration) -> HashMap<String, AttributeValue> {
    let expires_at = event
        .at
        .timestamp()
        .saturating_add(i64::try_from(retention.as_secs()).unwrap_or(i64::MAX));
    let mut item = HashMap::from([
        (
            "pk".to_owned(),
            AttributeValue::S(partition_key(event.user_id)),
        ),
        (
            "sk".to_owned(),
            AttributeValue::S(sort_key(event.at, event.id)),
        ),
        ("id".to_owned(), AttributeValue::S(event.id.to_string())),
        (
            "at".to_owned(),
            AttributeValue::S(event.at.to_rfc3339_opts(SecondsFormat::Micros, true)),
        ),
        ("type".to_owned(), AttributeValue::S(event.kind.clone())),
        (
            "outcome".to_owned(),
            AttributeValue::S(event.outcome.clone()),
        ),
        (
            "expires_at".to_owned(),
            AttributeValue::N(expires_at.to_string()),
        ),
    ]);
    let optional = [
        ("ip", event.ip.map(|ip| ip.to_string())),
        ("actor_id", event.actor_id.map(|id| id.to_string())),
        ("session_id", event.session_id.map(|id| id.to_string())),
        ("reason", event.reason.clone()),
        ("changes", event.changes.clone()),
        ("old_email", event.old_email.clone()),
        ("new_email", event.new_email.clone()),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            item.insert(name.to_owned(), AttributeValue::S(value));
        }
    }
    item
}

fn from_item(
    item: &HashMap<String, AttributeValue>,
    user_id: Uuid,
) -> Result<StoredEvent, AuditStoreError> {
    let bad = |what: &str| AuditStoreError::DynamoDb(anyhow!("audit item holds an invalid {what}"));
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let required = |name: &str| text(name).ok_or_else(|| bad(name));
    let uuid = |name: &str| {
        text(name)
            .map(|raw| raw.parse::<Uuid>().map_err(|_| bad(name)))
            .transpose()
    };
    Ok(StoredEvent {
        id: uuid("id")?.ok_or_else(|| bad("id"))?,
        user_id,
        at: DateTime::parse_from_rfc3339(&required("at")?)
            .map_err(|_| bad("at"))?
            .with_timezone(&Utc),
        kind: required("type")?,
        outcome: required("outcome")?,
        ip: text("ip")
            .map(|raw| raw.parse().map_err(|_| bad("ip")))
            .transpose()?,
        actor_id: uuid("actor_id")?,
        session_id: uuid("session_id")?,
        reason: text("reason"),
        changes: text("changes"),
        old_email: text("old_email"),
        new_email: text("new_email"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_by_time() {
        let id = Uuid::now_v7();
        let earlier = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let later = DateTime::from_timestamp_micros(1_700_000_000_000_001).expect("time");
        assert!(sort_key(earlier, id) < sort_key(later, id));
        assert!(sort_key(earlier, id).starts_with("2023-11-14T22:13:20.000000Z#"));
    }

    #[test]
    fn items_round_trip() {
        let event = StoredEvent {
            id: Uuid::now_v7(),
            user_id: Uuid::now_v7(),
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).expect("time"),
            kind: "login".into(),
            outcome: "failure".into(),
            ip: Some("203.0.113.7".parse().expect("ip")),
            reason: Some("wrong_password".into()),
            actor_id: None,
            session_id: Some(Uuid::now_v7()),
            changes: None,
            old_email: Some("old@example.com".into()),
            new_email: Some("new@example.com".into()),
        };
        let item = to_item(&event, Duration::from_secs(90 * 86_400));
        assert_eq!(
            item.get("expires_at")
                .and_then(|v| v.as_n().ok())
                .map(String::as_str),
            Some((1_700_000_000 + 90 * 86_400).to_string().as_str())
        );
        assert_eq!(from_item(&item, event.user_id).expect("parses"), event);
    }
}
