//! Where audit events are kept, and the background writer that puts them there.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::dynamo::DynamoStore;
use super::{AuditEvent, AuditKind, AuditReason};
use crate::db::{Db, DbError};
use crate::telemetry::ErrorChain;

/// Events waiting to be stored, at most; past that they are dropped (and still logged).
const CHANNEL_CAPACITY: usize = 4096;
/// Events written in one batch, at most (DynamoDB's `BatchWriteItem` takes 25).
const BATCH_SIZE: usize = 25;
/// How long a batch waits for more events after its first one, unless it fills up or a
/// flush asks for it: under load, one write (and one commit) for several requests' events
/// instead of one each. Events wait in memory either way; this only groups them.
const LINGER: Duration = Duration::from_millis(50);
/// Attempts at writing one batch before it is given up (and logged as lost).
const WRITE_ATTEMPTS: u32 = 3;

/// One stored event, as the admin audit route returns it. Every field is always present;
/// those that do not apply are null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEvent)]
pub struct StoredEvent {
    /// The event's id (a UUID v7).
    pub id: Uuid,
    /// The user it concerns.
    #[serde(skip)]
    pub user_id: Uuid,
    /// When it happened (RFC 3339, UTC).
    pub at: DateTime<Utc>,
    /// What happened. `login` is a token pair issued, or a refusal with its reason
    /// (`locked_out` included); `refresh` refused with `reuse_detected` is a spent refresh
    /// token presented again.
    #[serde(rename = "type")]
    #[schema(value_type = AuditKind)]
    pub kind: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The client IP, when known.
    #[schema(value_type = Option<String>, required = true)]
    pub ip: Option<IpAddr>,
    /// Why it failed, or a detail of what it did.
    #[schema(value_type = Option<AuditReason>, required = true)]
    pub reason: Option<String>,
    /// The admin who acted, when not the user itself.
    #[schema(required = true)]
    pub actor_id: Option<Uuid>,
    /// The session it concerns.
    #[schema(required = true)]
    pub session_id: Option<Uuid>,
    /// The fields an admin action changed (names, never values); for
    /// `admin_access_denied` and `route_access_denied`, the refused operation
    /// (`GET /v1/admin/users`).
    #[schema(required = true)]
    pub changes: Option<String>,
    /// For an email change: the address before.
    #[schema(required = true)]
    pub old_email: Option<String>,
    /// For an email change: the address after (or asked for).
    #[schema(required = true)]
    pub new_email: Option<String>,
}

impl StoredEvent {
    fn from_event(event: AuditEvent, user_id: Uuid) -> Self {
        Self {
            id: Uuid::now_v7(),
            user_id,
            at: event.at,
            kind: event.kind.as_str().to_owned(),
            outcome: event.outcome.as_str().to_owned(),
            ip: event.ip,
            reason: event.reason.map(|r| r.as_str().to_owned()),
            actor_id: event.actor_id,
            session_id: event.session_id,
            changes: event.changes,
            old_email: event.old_email,
            new_email: event.new_email,
        }
    }
}

pub use crate::db::PagePosition;

/// One page of a user's events, newest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// At most the asked number of events.
    pub events: Vec<StoredEvent>,
    /// Whether older events exist.
    pub more: bool,
}

/// A store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum AuditStoreError {
    /// Postgres failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// DynamoDB failed or could not be reached.
    #[error("DynamoDB")]
    DynamoDb(#[source] anyhow::Error),
}

/// Where events are kept.
#[derive(Clone)]
pub enum AuditStore {
    /// The `audit_events` table.
    Postgres(Db),
    /// A DynamoDB table keyed by `pk = USER#<id>`, `sk = <at>#<event id>`, TTL `expires_at`.
    DynamoDb(DynamoStore),
}

impl AuditStore {
    /// The DynamoDB table `table`, with a client built on first use from the AWS SDK's
    /// environment (credentials, region), at `endpoint_url` when given.
    pub fn dynamodb(table: &str, endpoint_url: Option<String>) -> Self {
        Self::DynamoDb(DynamoStore::new(table.to_owned(), endpoint_url))
    }

    /// Stores `events` (idempotent: a retried batch does not duplicate them).
    pub async fn write(
        &self,
        events: &[StoredEvent],
        retention: Duration,
    ) -> Result<(), AuditStoreError> {
        match self {
            Self::Postgres(db) => Ok(db.insert_audit_events(events, retention).await?),
            Self::DynamoDb(dynamo) => dynamo.write(events, retention).await,
        }
    }

    /// Up to `limit` of `user_id`'s events after `after`, newest first.
    pub async fn page(
        &self,
        user_id: Uuid,
        after: Option<PagePosition>,
        limit: usize,
    ) -> Result<AuditPage, AuditStoreError> {
        // One more than asked tells whether another page exists.
        let mut events = match self {
            Self::Postgres(db) => db.audit_events(user_id, after, limit as i64 + 1).await?,
            Self::DynamoDb(dynamo) => dynamo.page(user_id, after, limit + 1).await?,
        };
        let more = events.len() > limit;
        events.truncate(limit);
        Ok(AuditPage { events, more })
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::DynamoDb(_) => "dynamodb",
        }
    }
}

enum Message {
    Event(Box<StoredEvent>),
    Flush(oneshot::Sender<()>),
}

/// The process's audit sink: hands events to a background writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    inner: Arc<Inner>,
}

struct Inner {
    store: AuditStore,
    retention: Duration,
    sender: mpsc::Sender<Message>,
    /// The writer's end until the writer is started (on the first event sent from inside a
    /// Tokio runtime).
    receiver: Mutex<Option<mpsc::Receiver<Message>>>,
    started: AtomicBool,
    dropped: AtomicU64,
}

impl AuditSink {
    /// A sink storing into `store`, keeping events for `retention`.
    pub fn new(store: AuditStore, retention: Duration) -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        Self {
            inner: Arc::new(Inner {
                store,
                retention,
                sender,
                receiver: Mutex::new(Some(receiver)),
                started: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// The store events go to (and the admin audit route reads).
    pub fn store(&self) -> &AuditStore {
        &self.inner.store
    }

    /// Queues `event` for storing, without waiting. An event that names no user is not
    /// stored (no user's trail could show it; it is in the log).
    pub fn emit(&self, event: AuditEvent) {
        let Some(user_id) = event.user_id else {
            return;
        };
        self.start();
        let stored = StoredEvent::from_event(event, user_id);
        if let Err(e) = self.inner.sender.try_send(Message::Event(Box::new(stored))) {
            let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the audit writer is behind",
                mpsc::error::TrySendError::Closed(_) => "the audit writer has stopped",
            };
            tracing::warn!(
                dropped,
                store = self.inner.store.name(),
                "{why}; audit event not stored (it is in the log)"
            );
        }
    }

    /// Waits until every event emitted before this call has been written (or given up).
    /// For short-lived processes (the admin CLI) and tests; handlers never wait.
    pub async fn flush(&self) {
        self.start();
        let (done, wait) = oneshot::channel();
        if self.inner.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Spawns the writer, once, if a Tokio runtime is at hand.
    fn start(&self) {
        if self.inner.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut receiver = self
            .inner
            .receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(receiver) = receiver.take() {
            self.inner.started.store(true, Ordering::Release);
            runtime.spawn(write_loop(
                self.inner.store.clone(),
                self.inner.retention,
                receiver,
            ));
        }
    }
}

/// The background writer: drains the channel in batches until every sender is gone.
async fn write_loop(store: AuditStore, retention: Duration, mut receiver: mpsc::Receiver<Message>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = Vec::with_capacity(BATCH_SIZE);
        let mut flushes = Vec::new();
        let mut next = Some(first);
        let linger_until = tokio::time::Instant::now() + LINGER;
        while let Some(message) = next.take() {
            match message {
                Message::Event(event) => batch.push(*event),
                Message::Flush(done) => flushes.push(done),
            }
            if batch.len() >= BATCH_SIZE {
                break;
            }
            next = match receiver.try_recv() {
                Ok(message) => Some(message),
                // Nothing queued: wait for more until the linger ends, unless a flush is
                // waiting for this batch (a Lambda about to answer) or every sender is gone.
                Err(TryRecvError::Empty) if flushes.is_empty() => {
                    tokio::time::timeout_at(linger_until, receiver.recv())
                        .await
                        .ok()
                        .flatten()
                }
                Err(_) => None,
            };
        }
        if !batch.is_empty() {
            write_batch(&store, &batch, retention).await;
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

async fn write_batch(store: &AuditStore, batch: &[StoredEvent], retention: Duration) {
    let mut delay = Duration::from_millis(100);
    for attempt in 1..=WRITE_ATTEMPTS {
        match store.write(batch, retention).await {
            Ok(()) => return,
            Err(e) if attempt < WRITE_ATTEMPTS => {
                tracing::warn!(attempt, error = %ErrorChain(&e), store = store.name(), "audit write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 4;
            }
            Err(e) => {
                tracing::error!(
                    lost = batch.len(),
                    error = %ErrorChain(&e),
                    store = store.name(),
                    "audit events not stored (they are in the log)"
                );
            }
        }
    }
}
