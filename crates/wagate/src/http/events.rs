//! `GET /api/v1/events`: the outbox as a pull feed.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::QueryMap;
use super::AppState;
use crate::auth::{Auth, CapEvents};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::store::{event_kind, EventFilter, EventRecord};

/// One event, in the envelope webhooks and the realtime stream will use as well.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The event's id (a ULID); the same event always has the same id.
    #[schema(example = "01JA2B3C4D5E6F7G8H9J0K1M2N")]
    pub id: String,
    /// Position in the feed; pass the last one you processed as `after`.
    pub seq: i64,
    /// The event type, e.g. `message`, `chat.update`, `session.status`.
    #[schema(example = "message")]
    pub event: String,
    /// Version of the payload shapes.
    #[schema(example = "v1")]
    pub schema: String,
    /// The session it concerns, if any.
    pub session: Option<String>,
    pub organization: String,
    /// When the change was committed, epoch ms.
    pub timestamp: i64,
    /// The changed thing in the API's own shape (a message, a chat, a contact, a session...).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<EventRecord> for Event {
    fn from(e: EventRecord) -> Self {
        Event {
            id: e.id,
            seq: e.seq,
            event: e.event,
            schema: "v1".into(),
            session: e.session_id,
            organization: e.org_id,
            timestamp: e.created_at,
            payload: serde_json::from_str(&e.payload).unwrap_or(serde_json::Value::Null),
        }
    }
}

/// A page of the feed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// Events after `after`, oldest first.
    pub data: Vec<Event>,
    /// The `after` to pass next: the last event's `seq`, or the `after` you sent when there is
    /// nothing new.
    pub next: i64,
    /// True when retention deleted events after your `after` before you read them: you missed
    /// some and should re-read the state you care about through the API.
    pub gap: bool,
}

const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

/// GET /api/v1/events — the organization's events after a sequence number, oldest first.
#[utoipa::path(
    get, path = "/events", tag = "events",
    summary = "Read the event feed",
    description = "Every change a client can see (messages, receipts, chats, contacts, groups, sessions, API keys) \
is written to an outbox in the same transaction as the change. This reads the caller's organization's events \
with a sequence number above `after`, oldest first; remember `next` and pass it as `after` on the next call. \
Events are kept for the configured retention (7 days by default); `gap: true` says some you had not read were \
removed. Needs `events`.",
    params(
        ("after" = Option<i64>, Query, description = "Return events with `seq` above this; default 0 (from the oldest kept)."),
        ("limit" = Option<i64>, Query, description = "Page size, clamped to 1–1000; omitted or 0 means 100."),
        ("session" = Option<String>, Query, description = "Only events of this session (ULID)."),
        ("event" = Option<String>, Query, description = "Only these event types, comma-separated (e.g. `message,message.status`)."),
    ),
    responses(
        (status = 200, description = "A page of events.", body = EventPage),
        (status = 400, description = "Malformed parameter.", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `events`.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn list_events(
    auth: Auth<CapEvents>,
    State(st): State<AppState>,
    q: QueryMap,
) -> ApiResult<Json<EventPage>> {
    let after = match q.get("after") {
        None => 0,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && raw.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::bad_parameter("after", "a non-negative integer"))?,
    };
    let limit =
        crate::domain::Limit::parse_range(q.get("limit"), DEFAULT_LIMIT as u32, MAX_LIMIT as u32)
            .map_err(|m| ApiError::bad_parameter("limit", m))? as i64;
    let session = match q.get("session") {
        None => None,
        Some(raw) => Some(super::extract::session_id(raw)?.to_string()),
    };
    let mut events = Vec::new();
    if let Some(raw) = q.get("event") {
        for e in raw.split(',') {
            if !event_kind::ALL.contains(&e) {
                return Err(ApiError::bad_parameter(
                    "event",
                    format!(
                        "`{e}` is not an event type ({})",
                        event_kind::ALL.join(", ")
                    ),
                ));
            }
            events.push(e.to_owned());
        }
    }
    let filter = EventFilter { session, events };
    let (rows, gap) = st
        .store()
        .list_events(&auth.org_id, after, limit, &filter)
        .await?;
    let next = rows.last().map(|e| e.seq).unwrap_or(after);
    Ok(Json(EventPage {
        data: rows.into_iter().map(Event::from).collect(),
        next,
        gap,
    }))
}
