//! Opaque pagination cursors: the position after the last item of a page, bound to the
//! query's filters and signed, so a client can only hand back a cursor we issued for the
//! same query. Anything else is 400 `malformed_request`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::ApiError;
use crate::auth::keys::KeySet;
use crate::db::PagePosition;

/// What a cursor carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Sort key of the last item returned (microseconds since the epoch).
    pub at: i64,
    /// Tie-breaker: the last item's id.
    pub id: Uuid,
    /// What the list was filtered by, so a cursor cannot be replayed on another query.
    pub query: String,
}

impl Position {
    /// The position after an item created at `at` with id `id`, for `query`.
    pub fn after(at: DateTime<Utc>, id: Uuid, query: String) -> Self {
        Self {
            at: at.timestamp_micros(),
            id,
            query,
        }
    }

    /// The `created_at` this position names.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.at)
    }
}

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 20;
/// Largest page size.
pub const MAX_LIMIT: usize = 100;

/// The query parameters of a paginated list (a malformed query string is 400).
pub fn query_params(
    query: Result<
        axum::extract::Query<std::collections::HashMap<String, String>>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    query
        .map(|axum::extract::Query(params)| params)
        .map_err(|_| ApiError::MalformedRequest("the query string is malformed".into()))
}

/// `limit`: [`DEFAULT_LIMIT`] when absent, else 1 to [`MAX_LIMIT`] or 400 `validation_failed`.
pub fn page_limit(limit: Option<&String>) -> Result<usize, ApiError> {
    let Some(raw) = limit else {
        return Ok(DEFAULT_LIMIT);
    };
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| {
            ApiError::field(
                "limit",
                "out_of_range",
                "limit must be a whole number from 1 to 100",
            )
        })
}

/// The position a `cursor` parameter names, if one was sent; it must have been issued for
/// `query`.
pub fn position_after(
    keys: &KeySet,
    cursor: Option<&String>,
    query: &str,
) -> Result<Option<PagePosition>, ApiError> {
    let Some(raw) = cursor else {
        return Ok(None);
    };
    let position = decode(keys, raw, query)?;
    let at = position
        .created_at()
        .ok_or_else(|| ApiError::MalformedRequest("cursor is out of range".into()))?;
    Ok(Some(PagePosition {
        at,
        id: position.id,
    }))
}

/// The cursor for the page after `last`, when there is more.
pub fn next_page(
    keys: &KeySet,
    last: Option<PagePosition>,
    more: bool,
    query: String,
) -> Option<String> {
    match last {
        Some(last) if more => Some(encode(keys, &Position::after(last.at, last.id, query))),
        _ => None,
    }
}

/// Encodes `position` as `payload.tag`, both base64url.
pub fn encode(keys: &KeySet, position: &Position) -> String {
    let payload = serde_json::to_vec(position).unwrap_or_default();
    let tag = keys.mac(&payload);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(&payload),
        URL_SAFE_NO_PAD.encode(tag)
    )
}

/// Decodes a cursor we issued for `query`.
pub fn decode(keys: &KeySet, cursor: &str, query: &str) -> Result<Position, ApiError> {
    let invalid = || ApiError::MalformedRequest("cursor is not one this service issued".into());
    let (payload, tag) = cursor.split_once('.').ok_or_else(invalid)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
    if !keys.verify_mac(&payload, &tag) {
        return Err(invalid());
    }
    let position: Position = serde_json::from_slice(&payload).map_err(|_| invalid())?;
    if position.query != query {
        return Err(ApiError::MalformedRequest(
            "cursor belongs to a query with other filters".into(),
        ));
    }
    Ok(position)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeyAlgorithm;

    fn keys() -> KeySet {
        KeySet::from_pem(&KeyAlgorithm::EdDsa.generate_pem().expect("key")).expect("set")
    }

    #[test]
    fn cursors_round_trip_and_resist_tampering() {
        let keys = keys();
        let position = Position::after(Utc::now(), Uuid::now_v7(), "role=user".into());
        let cursor = encode(&keys, &position);
        assert_eq!(
            decode(&keys, &cursor, "role=user").ok(),
            Some(position.clone())
        );
        // Another query, another key, a flipped byte, garbage: all refused.
        assert!(decode(&keys, &cursor, "role=admin").is_err());
        assert!(decode(&self::keys(), &cursor, "role=user").is_err());
        let mut bytes = cursor.into_bytes();
        bytes[3] = if bytes[3] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        assert!(decode(&keys, &tampered, "role=user").is_err());
        assert!(decode(&keys, "garbage", "").is_err());
    }
}
