//! `POST /api/v1/sessions/{sid}/messages`: sending, through the durable outbox.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::extract::{JsonBody, PathParams, QueryMap};
use super::models::Message;
use super::owned_session;
use crate::app::AppState;
use crate::auth::{Auth, CapSend};
use crate::domain::{now_ms, Jid, Phone};
use crate::engine::send::{new_message_id, MediaKind, OutgoingContent};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::store::ingest::{MediaInfo, NewMessage};
use crate::store::outgoing::OutgoingRecord;
use crate::store::MessageStatus;

/// How long a synchronous send waits for WhatsApp's server before answering 202.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const MAX_TEXT: usize = 65_536;

/// Media given inline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MediaInput {
    /// The file, base64-encoded (standard alphabet). The whole request must fit the gateway's
    /// body limit (`body_limit_bytes`).
    pub data: String,
    /// Its MIME type, e.g. `image/jpeg`, `application/pdf`, `audio/ogg; codecs=opus`.
    #[schema(min_length = 1, max_length = 200)]
    pub mimetype: String,
    /// A file name (documents show it).
    #[schema(max_length = 255)]
    pub filename: Option<String>,
}

/// A place.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocationInput {
    #[schema(minimum = -90, maximum = 90)]
    pub latitude: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub longitude: f64,
    #[schema(max_length = 1000)]
    pub name: Option<String>,
    #[schema(max_length = 1000)]
    pub address: Option<String>,
}

/// A contact card.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContactInput {
    #[schema(min_length = 1, max_length = 1000)]
    pub display_name: String,
    /// A vCard 3.0 text (`BEGIN:VCARD` ... `END:VCARD`).
    #[schema(min_length = 1, max_length = 65536)]
    pub vcard: String,
}

/// A poll.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollInput {
    #[schema(min_length = 1, max_length = 1000)]
    pub question: String,
    /// 2 to 12 distinct options.
    #[schema(min_items = 2, max_items = 12)]
    pub options: Vec<String>,
    /// How many options a voter may pick; default 1.
    #[schema(minimum = 1, maximum = 12)]
    pub selectable_count: Option<u32>,
}

/// What to send, to whom. `type` says which of the other fields apply: `text` (with `text`,
/// optional `replyTo`, `mentions`, `linkPreview`), `image` / `video` / `audio` / `document` /
/// `sticker` (with `media`, optional `caption`, `voice` for audio), `location`, `contact`,
/// `poll`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendMessage {
    /// A phone number (`6281234567890`, `+62 812-3456-7890`), a phone JID, a LID or a group JID.
    #[schema(example = "6281234567890")]
    pub to: String,
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: SendKind,
    #[schema(max_length = 65536)]
    pub text: Option<String>,
    /// WhatsApp id of a message of this chat to reply to.
    #[schema(max_length = 128)]
    pub reply_to: Option<String>,
    /// People mentioned, as JIDs; write them in the text as `@<digits>`.
    #[schema(max_items = 256)]
    pub mentions: Option<Vec<String>>,
    /// Show a preview of the first link (off by default).
    pub link_preview: Option<bool>,
    pub media: Option<MediaInput>,
    #[schema(max_length = 65536)]
    pub caption: Option<String>,
    /// For `audio`: send as a voice note.
    pub voice: Option<bool>,
    pub location: Option<LocationInput>,
    pub contact: Option<ContactInput>,
    pub poll: Option<PollInput>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SendKind {
    Text,
    Image,
    Video,
    Audio,
    Document,
    Sticker,
    Location,
    Contact,
    Poll,
}

fn missing(field: &str) -> ApiError {
    ApiError::bad_body(Some(field), "required for this type")
}

/// The recipient: digits are a phone number; otherwise a person's or group's JID.
fn recipient(raw: &str) -> ApiResult<Jid> {
    if raw.contains('@') {
        let jid: Jid = raw
            .parse()
            .map_err(|m: String| ApiError::bad_body(Some("to"), m))?;
        if !(jid.is_person() || jid.is_group()) {
            return Err(ApiError::bad_body(Some("to"), "a person or a group"));
        }
        Ok(jid)
    } else {
        let phone: Phone = raw
            .parse()
            .map_err(|m: String| ApiError::bad_body(Some("to"), m))?;
        Ok(Jid::phone(phone.digits()))
    }
}

fn content_of(b: &SendMessage) -> ApiResult<OutgoingContent> {
    Ok(match b.kind {
        SendKind::Text => {
            let body = b
                .text
                .clone()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| missing("text"))?;
            if body.chars().count() > MAX_TEXT {
                return Err(ApiError::bad_body(Some("text"), "at most 65536 characters"));
            }
            let mentions = b.mentions.clone().unwrap_or_default();
            for (i, m) in mentions.iter().enumerate() {
                if !m.parse::<Jid>().is_ok_and(|j| j.is_person()) {
                    return Err(ApiError::bad_body(
                        Some(&format!("mentions[{i}]")),
                        "a person's JID",
                    ));
                }
            }
            OutgoingContent::Text {
                body,
                reply_to: b.reply_to.clone(),
                mentions,
                link_preview: b.link_preview.unwrap_or(false),
            }
        }
        SendKind::Image
        | SendKind::Video
        | SendKind::Audio
        | SendKind::Document
        | SendKind::Sticker => {
            let m = b.media.as_ref().ok_or_else(|| missing("media"))?;
            let data = STANDARD
                .decode(m.data.as_bytes())
                .map_err(|_| ApiError::bad_body(Some("media.data"), "not base64"))?;
            if data.is_empty() {
                return Err(ApiError::bad_body(Some("media.data"), "empty"));
            }
            if m.mimetype.trim().is_empty() {
                return Err(ApiError::bad_body(Some("media.mimetype"), "required"));
            }
            let kind = match b.kind {
                SendKind::Image => MediaKind::Image,
                SendKind::Video => MediaKind::Video,
                SendKind::Audio => MediaKind::Audio,
                SendKind::Document => MediaKind::Document,
                _ => MediaKind::Sticker,
            };
            OutgoingContent::Media {
                kind,
                data,
                mimetype: m.mimetype.clone(),
                filename: m.filename.clone(),
                caption: b.caption.clone(),
                voice: kind == MediaKind::Audio && b.voice.unwrap_or(false),
            }
        }
        SendKind::Location => {
            let l = b.location.as_ref().ok_or_else(|| missing("location"))?;
            if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) {
                return Err(ApiError::bad_body(
                    Some("location"),
                    "latitude -90..90, longitude -180..180",
                ));
            }
            OutgoingContent::Location {
                latitude: l.latitude,
                longitude: l.longitude,
                name: l.name.clone(),
                address: l.address.clone(),
            }
        }
        SendKind::Contact => {
            let c = b.contact.as_ref().ok_or_else(|| missing("contact"))?;
            if c.display_name.trim().is_empty() || !c.vcard.contains("BEGIN:VCARD") {
                return Err(ApiError::bad_body(
                    Some("contact"),
                    "a display name and a vCard",
                ));
            }
            OutgoingContent::Contact {
                display_name: c.display_name.clone(),
                vcard: c.vcard.clone(),
            }
        }
        SendKind::Poll => {
            let p = b.poll.as_ref().ok_or_else(|| missing("poll"))?;
            let mut distinct = p.options.clone();
            distinct.sort();
            distinct.dedup();
            if p.question.trim().is_empty()
                || !(2..=12).contains(&p.options.len())
                || distinct.len() != p.options.len()
                || p.options.iter().any(|o| o.trim().is_empty())
            {
                return Err(ApiError::bad_body(
                    Some("poll"),
                    "a question and 2 to 12 distinct, non-empty options",
                ));
            }
            let selectable_count = p.selectable_count.unwrap_or(1);
            if selectable_count < 1 || selectable_count as usize > p.options.len() {
                return Err(ApiError::bad_body(
                    Some("poll.selectableCount"),
                    "1 to the number of options",
                ));
            }
            OutgoingContent::Poll {
                question: p.question.clone(),
                options: p.options.clone(),
                selectable_count,
            }
        }
    })
}

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || ApiError::bad_parameter("Idempotency-Key", "1 to 200 visible ASCII characters");
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 200 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// POST /api/v1/sessions/{sid}/messages — send a message.
#[utoipa::path(
    post, path = "/sessions/{sid}/messages", tag = "messages",
    summary = "Send a message",
    description = "Stores the message (direction `out`, status `pending`, with the WhatsApp id it will carry) and the \
request in a durable outbox in one transaction, then sends it through the session's connected client. The message's \
status then moves `sent` → `delivered` → `read` (→ `played`), each move a `message.status` event; a message WhatsApp \
refuses ends `failed` with `error`.\n\n\
Synchronous (default): waits up to 30 s for WhatsApp's server and answers 201 with the message; 202 if it is still \
on its way then. Needs a connected client (501 otherwise) and answers 429 with `Retry-After` when the session's \
`ratePerMin` or `ratePerHour` is used up. With `async=true`: answers 202 at once; the message waits for the \
connection and its turn under the rate limits, across restarts.\n\n\
`Idempotency-Key` (header, per session, kept at least 24 h): a repeated request with the same key answers the first \
one's message instead of sending again, also when the two race; the same key with a different request is a 422. \
Needs `send`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("async" = Option<bool>, Query, description = "`true`: queue and answer 202 at once."),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe: 1 to 200 visible ASCII characters."),
    ),
    request_body = SendMessage,
    responses(
        (status = 201, description = "Sent (or refused: see `status` and `error`).", body = Message),
        (status = 202, description = "Accepted; the message is on its way (see its status and the events).", body = Message),
        (status = 409, description = "The session was deleted meanwhile.", body = ErrorEnvelope),
        (status = 429, description = "The session's send rate is used up (`Retry-After` says for how long).", body = ErrorEnvelope),
        (status = 501, description = "Synchronous send on a session with no connected client.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn send_message(
    auth: Auth<CapSend>,
    State(st): State<AppState>,
    path: PathParams,
    q: QueryMap,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SendMessage>,
) -> ApiResult<Response> {
    let sid = path.session()?;
    let asynchronous = match q.get("async") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::bad_parameter(
                "async",
                format!("`{other}` is not true or false"),
            ))
        }
    };
    let key = idempotency_key(&headers)?;
    let to = recipient(&body.to)?;
    let content = content_of(&body)?;
    let session = owned_session(&st, &auth, &sid).await?;
    let s = session.id.clone();
    let content_json = serde_json::to_string(&content).map_err(|e| ApiError::Internal(e.into()))?;
    let hash = hex::encode(Sha256::digest(format!(
        "{}\n{}\n{}",
        to, content_json, asynchronous
    )));
    let now = now_ms();
    if !asynchronous {
        if st.engine().client(&sid).is_none() {
            // A retry of a request already accepted is still answered.
            if key.is_none() {
                return Err(ApiError::no_client());
            }
        }
        for (window, limit) in [
            (60_000, session.rate_per_min),
            (3_600_000, session.rate_per_hour),
        ] {
            let (n, oldest) = st.store().sends_accepted_since(&s, now - window).await?;
            if n >= limit.max(1) {
                let wait_ms = (oldest.unwrap_or(now) + window - now).max(1000);
                return Err(ApiError::RateLimited {
                    message: format!(
                        "this session may send {limit} messages per {}",
                        if window == 60_000 { "minute" } else { "hour" }
                    ),
                    retry_after_secs: (wait_ms as u64).div_ceil(1000),
                });
            }
        }
    }
    let wa_id = new_message_id();
    let media = match &content {
        OutgoingContent::Media {
            data,
            mimetype,
            filename,
            ..
        } => Some(MediaInfo {
            mimetype: Some(mimetype.clone()),
            size: Some(data.len() as i64),
            filename: filename.clone(),
        }),
        _ => None,
    };
    let (quoted, mentions) = match &content {
        OutgoingContent::Text {
            reply_to, mentions, ..
        } => (reply_to.clone(), mentions.clone()),
        _ => (None, Vec::new()),
    };
    let msg = NewMessage {
        chat: to.clone(),
        chat_alt: None,
        wa_message_id: wa_id.clone(),
        from_me: true,
        sender: None,
        sender_lid: None,
        sender_name: None,
        kind: content.kind().to_owned(),
        body: content.body(),
        media,
        quoted_message_id: quoted,
        mentions,
        status: MessageStatus::Pending,
        timestamp: now,
    };
    let job = OutgoingRecord {
        id: ulid::Ulid::new().to_string(),
        session_id: s.clone(),
        idempotency_key: key.clone(),
        request_hash: hash.clone(),
        chat_jid: to.to_string(),
        wa_message_id: wa_id,
        message_id: 0,
        content: content_json,
        state: "queued".into(),
        attempts: 0,
        not_before: now,
        error: None,
        created_at: now,
        sent_at: None,
    };
    let mut outcomes = st.sender().subscribe();
    let enqueued = st
        .store()
        .enqueue_send(&job, &msg)
        .await?
        .ok_or_else(|| ApiError::Conflict("the session was deleted".into()))?;
    if !enqueued.created && enqueued.job.request_hash != hash {
        return Err(ApiError::bad_body(
            None,
            "this Idempotency-Key was used for a different request",
        ));
    }
    if enqueued.created {
        st.sender().wake();
    } else if !asynchronous && enqueued.job.state == "queued" && st.engine().client(&sid).is_none()
    {
        return Err(ApiError::no_client());
    }
    let job = enqueued.job;
    let mut status = StatusCode::ACCEPTED;
    if !asynchronous {
        let id = job.id.clone();
        let settled = |state: &str| state != "queued";
        let mut done = st
            .store()
            .outgoing(&id)
            .await?
            .is_some_and(|j| settled(&j.state));
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        while !done {
            match tokio::time::timeout_at(deadline, outcomes.recv()).await {
                Ok(Ok(o)) => done = o.job == id,
                // Missed some outcomes: look at the job itself.
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                    done = st
                        .store()
                        .outgoing(&id)
                        .await?
                        .is_some_and(|j| settled(&j.state));
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        if done {
            status = StatusCode::CREATED;
        }
    }
    let chat_jid = job
        .chat_jid
        .parse::<Jid>()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let record = st
        .store()
        .get_message(&s, &chat_jid, &job.wa_message_id)
        .await?
        .ok_or_else(|| ApiError::not_found("message (its chat was deleted)"))?;
    let chat = st.store().get_chat(&s, &chat_jid).await?;
    let shown_jid = chat.map(|c| c.jid).unwrap_or_else(|| job.chat_jid.clone());
    Ok((status, Json(Message::from_record(record, &shown_jid))).into_response())
}
