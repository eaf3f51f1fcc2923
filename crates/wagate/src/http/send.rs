//! `POST /api/v1/sessions/{sid}/messages`: sending, through the durable outbox.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::extract::{JsonBody, PathParams, QueryMap};
use super::limits::Deadline;
use super::models::Message;
use super::owned_session;
use super::AppState;
use crate::auth::{Auth, CapSend};
use crate::domain::{now_ms, Jid, Phone};
use crate::engine::send::{new_message_id, MediaKind, OutgoingContent};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::store::ingest::{MediaInfo, NewMessage};
use crate::store::outgoing::{JobState, OutgoingRecord};
use crate::store::{MessageRecord, MessageStatus, SessionRecord};
use tokio::time::Instant;

/// How long a synchronous send waits for WhatsApp's server before answering 202.
const SYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
const MAX_TEXT: usize = 65_536;

/// The file to send: inline (`data`) or fetched by the gateway (`url`), exactly one of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MediaInput {
    /// The file, base64-encoded (standard alphabet). The whole request must fit the gateway's
    /// body limit (`body_limit_bytes`).
    pub data: Option<String>,
    /// An `http(s)` URL the gateway downloads the file from when it accepts the request (within
    /// `media_url_max_bytes` and `media_url_timeout_secs`; no redirects; loopback and private
    /// addresses refused unless `media_url_allow_private`).
    #[schema(max_length = 2048, example = "https://example.com/invoice.pdf")]
    pub url: Option<String>,
    /// Its MIME type, e.g. `image/jpeg`, `application/pdf`, `audio/ogg; codecs=opus`. Required
    /// with `data`; with `url` the server's `Content-Type` is used when omitted.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    pub mimetype: Option<String>,
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
    /// The name shown on the card, not only spaces.
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S")]
    pub display_name: String,
    /// A vCard 3.0 text (`BEGIN:VCARD` ... `END:VCARD`; it must contain `BEGIN:VCARD`).
    #[schema(min_length = 1, max_length = 65536, pattern = "BEGIN:VCARD")]
    pub vcard: String,
}

/// A poll.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollInput {
    /// The question, not only spaces.
    #[schema(min_length = 1, max_length = 1000, pattern = "\\S")]
    pub question: String,
    #[schema(schema_with = poll_options)]
    pub options: Vec<String>,
    /// How many options a voter may pick; default 1.
    #[schema(minimum = 1, maximum = 12)]
    pub selectable_count: Option<u32>,
}

/// The document's schema of a poll's options: what the server checks, stated whole.
fn poll_options() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    ArrayBuilder::new()
        .description(Some("2 to 12 distinct options, none only spaces."))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .pattern(Some("\\S")),
        )
        .min_items(Some(2))
        .max_items(Some(12))
        .unique_items(true)
        .build()
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

/// What the document says a recipient (`to`) may be: what [`recipient`] accepts, a phone number
/// or a person's or group's JID, built from the parsers' own patterns.
pub fn recipient_pattern() -> String {
    let inner = |p: &str| {
        p.strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .expect("an anchored pattern")
            .to_owned()
    };
    format!(
        "^(({})|({})|({}))$",
        inner(Phone::PATTERN),
        inner(Jid::PERSON_PATTERN),
        inner(Jid::GROUP_PATTERN)
    )
}

/// The recipient: digits are a phone number; otherwise a person's or group's JID.
pub fn recipient(raw: &str) -> ApiResult<Jid> {
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

/// A file to send: its bytes, MIME type and file name.
pub struct File {
    pub bytes: Vec<u8>,
    pub mimetype: String,
    pub filename: Option<String>,
    /// For a downloaded file, its download slot: held until the file is in the outbox.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// The file of a media send: decoded from `data` (taken out of the request, so its base64 is
/// freed once decoded), or downloaded from `url`.
async fn media_file(st: &AppState, m: &mut MediaInput) -> ApiResult<File> {
    if m.mimetype.as_deref().is_some_and(super::blank) {
        return Err(ApiError::bad_body(
            Some("media.mimetype"),
            "not only spaces",
        ));
    }
    let mimetype = m.mimetype.clone();
    match (m.data.take(), &m.url) {
        (Some(data), None) => {
            let bytes = STANDARD
                .decode(data.as_bytes())
                .map_err(|_| ApiError::bad_body(Some("media.data"), "not base64"))?;
            drop(data);
            if bytes.is_empty() {
                return Err(ApiError::bad_body(Some("media.data"), "empty"));
            }
            let mimetype = mimetype
                .ok_or_else(|| ApiError::bad_body(Some("media.mimetype"), "required with data"))?;
            Ok(File {
                bytes,
                mimetype,
                filename: m.filename.clone(),
                slot: None,
            })
        }
        (None, Some(url)) => {
            let got = st.media_fetcher().fetch(url).await?;
            let mimetype = mimetype.or(got.content_type).ok_or_else(|| {
                ApiError::bad_body(
                    Some("media.mimetype"),
                    "required: the server sent no Content-Type",
                )
            })?;
            Ok(File {
                bytes: got.bytes,
                mimetype,
                filename: m.filename.clone().or(got.filename),
                slot: Some(got.slot),
            })
        }
        _ => Err(ApiError::bad_body(
            Some("media"),
            "give exactly one of `data` and `url`",
        )),
    }
}

/// The content a request asks to send, one function per kind.
fn content_of(b: &SendMessage, file: Option<File>) -> ApiResult<OutgoingContent> {
    match b.kind {
        SendKind::Text => text_content(b),
        SendKind::Image => media_content(b, MediaKind::Image, file),
        SendKind::Video => media_content(b, MediaKind::Video, file),
        SendKind::Audio => media_content(b, MediaKind::Audio, file),
        SendKind::Document => media_content(b, MediaKind::Document, file),
        SendKind::Sticker => media_content(b, MediaKind::Sticker, file),
        SendKind::Location => location_content(b),
        SendKind::Contact => contact_content(b),
        SendKind::Poll => poll_content(b),
    }
}

fn text_content(b: &SendMessage) -> ApiResult<OutgoingContent> {
    let body = b
        .text
        .clone()
        .filter(|t| !super::blank(t))
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
    Ok(OutgoingContent::Text {
        body,
        reply_to: b.reply_to.clone(),
        mentions,
        link_preview: b.link_preview.unwrap_or(false),
    })
}

fn media_content(
    b: &SendMessage,
    kind: MediaKind,
    file: Option<File>,
) -> ApiResult<OutgoingContent> {
    let file = file.ok_or_else(|| missing("media"))?;
    Ok(OutgoingContent::Media {
        kind,
        data: file.bytes,
        mimetype: file.mimetype,
        filename: file.filename,
        caption: b.caption.clone(),
        voice: kind == MediaKind::Audio && b.voice.unwrap_or(false),
        reference: None,
    })
}

fn location_content(b: &SendMessage) -> ApiResult<OutgoingContent> {
    let l = b.location.as_ref().ok_or_else(|| missing("location"))?;
    if !(-90.0..=90.0).contains(&l.latitude) || !(-180.0..=180.0).contains(&l.longitude) {
        return Err(ApiError::bad_body(
            Some("location"),
            "latitude -90..90, longitude -180..180",
        ));
    }
    Ok(OutgoingContent::Location {
        latitude: l.latitude,
        longitude: l.longitude,
        name: l.name.clone(),
        address: l.address.clone(),
    })
}

fn contact_content(b: &SendMessage) -> ApiResult<OutgoingContent> {
    let c = b.contact.as_ref().ok_or_else(|| missing("contact"))?;
    if super::blank(&c.display_name) || !c.vcard.contains("BEGIN:VCARD") {
        return Err(ApiError::bad_body(
            Some("contact"),
            "a display name and a vCard",
        ));
    }
    Ok(OutgoingContent::Contact {
        display_name: c.display_name.clone(),
        vcard: c.vcard.clone(),
    })
}

fn poll_content(b: &SendMessage) -> ApiResult<OutgoingContent> {
    let p = b.poll.as_ref().ok_or_else(|| missing("poll"))?;
    let mut distinct = p.options.clone();
    distinct.sort();
    distinct.dedup();
    if super::blank(&p.question)
        || !(2..=12).contains(&p.options.len())
        || distinct.len() != p.options.len()
        || p.options.iter().any(|o| super::blank(o))
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
    Ok(OutgoingContent::Poll {
        question: p.question.clone(),
        options: p.options.clone(),
        selectable_count,
        // Chosen when the request is accepted (after its idempotency hash).
        secret: None,
    })
}

/// A media message as `multipart/form-data`: the file travels as raw bytes (no base64), within
/// the gateway's body limit (`body_limit_bytes`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // documents the form; SendInput reads it
pub struct SendMessageForm {
    /// A phone number, a phone JID, a LID or a group JID.
    to: String,
    /// `image`, `video`, `audio`, `document` or `sticker`.
    #[schema(rename = "type")]
    kind: MediaKind,
    /// The file (not empty); its part's `Content-Type` is its MIME type unless `mimetype` is given.
    #[schema(value_type = String, format = Binary, min_length = 1)]
    file: Vec<u8>,
    /// Its MIME type, not only spaces; default: the file part's `Content-Type`, else
    /// `application/octet-stream`.
    #[schema(min_length = 1, max_length = 200, pattern = "\\S")]
    mimetype: Option<String>,
    /// A file name (documents show it); default: the part's file name.
    #[schema(max_length = 255)]
    filename: Option<String>,
    #[schema(max_length = 65536)]
    caption: Option<String>,
    /// For `audio`: `true` sends a voice note (the text `true` or `false`).
    #[schema(value_type = String, required = false, pattern = "^(true|false)$")]
    voice: Option<bool>,
}

/// The body of a send: JSON, or a media message as `multipart/form-data`.
pub enum SendInput {
    Json(SendMessage),
    Form(SendMessage, File),
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for SendInput {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let multipart = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                t.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("multipart/form-data")
            });
        if !multipart {
            let JsonBody(b) = JsonBody::<SendMessage>::from_request(req, state).await?;
            return Ok(SendInput::Json(b));
        }
        let form_error = |e: axum::extract::multipart::MultipartError| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(
                    "the request body is larger than this gateway accepts".into(),
                )
            } else {
                ApiError::bad_body(None, format!("unreadable form: {}", e.body_text()))
            }
        };
        let mut mp = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_body(None, format!("unreadable form: {}", e.body_text())))?;
        let mut fields = serde_json::Map::new();
        let mut file: Option<(Vec<u8>, Option<String>, Option<String>)> = None;
        while let Some(field) = mp.next_field().await.map_err(form_error)? {
            let name = field.name().unwrap_or_default().to_owned();
            match name.as_str() {
                "file" => {
                    if file.is_some() {
                        return Err(ApiError::bad_body(Some("file"), "only one file"));
                    }
                    let ctype = field.content_type().map(str::to_owned);
                    let fname = field.file_name().map(str::to_owned);
                    let bytes = field.bytes().await.map_err(form_error)?;
                    // No copy: the part's buffer becomes the file.
                    file = Some((Vec::from(bytes), ctype, fname));
                }
                "to" | "type" | "caption" | "mimetype" | "filename" | "voice" => {
                    if fields.contains_key(&name) {
                        return Err(ApiError::bad_body(Some(&name), "given twice"));
                    }
                    let text = field.text().await.map_err(form_error)?;
                    let value = if name == "voice" {
                        match text.as_str() {
                            "true" => serde_json::Value::Bool(true),
                            "false" => serde_json::Value::Bool(false),
                            _ => return Err(ApiError::bad_body(Some("voice"), "true or false")),
                        }
                    } else {
                        serde_json::Value::String(text)
                    };
                    fields.insert(name, value);
                }
                other => {
                    return Err(ApiError::bad_body(
                        Some(other),
                        "unknown field; a form takes to, type, file, mimetype, filename, caption, voice",
                    ))
                }
            }
        }
        let mimetype = fields
            .remove("mimetype")
            .and_then(|v| v.as_str().map(str::to_owned));
        let filename = fields
            .remove("filename")
            .and_then(|v| v.as_str().map(str::to_owned));
        let body: SendMessage =
            serde_json::from_value(serde_json::Value::Object(fields)).map_err(|e| {
                let msg = e.to_string();
                match msg
                    .strip_prefix("missing field `")
                    .and_then(|r| r.split('`').next())
                {
                    Some(f) => ApiError::bad_body(Some(f), "required"),
                    None => ApiError::bad_body(None, msg),
                }
            })?;
        if !matches!(
            body.kind,
            SendKind::Image
                | SendKind::Video
                | SendKind::Audio
                | SendKind::Document
                | SendKind::Sticker
        ) {
            return Err(ApiError::bad_body(
                Some("type"),
                "a form sends image, video, audio, document or sticker; use JSON for the others",
            ));
        }
        let (bytes, ctype, fname) =
            file.ok_or_else(|| ApiError::bad_body(Some("file"), "required"))?;
        if bytes.is_empty() {
            return Err(ApiError::bad_body(Some("file"), "empty"));
        }
        // Neither a `mimetype` field nor a part `Content-Type`: an opaque file (the document
        // cannot make `mimetype` required only when the part has no type).
        let mimetype = match mimetype.or(ctype) {
            Some(t) if super::blank(&t) => {
                return Err(ApiError::bad_body(Some("mimetype"), "not only spaces"))
            }
            Some(t) => t,
            None => "application/octet-stream".to_owned(),
        };
        Ok(SendInput::Form(
            body,
            File {
                bytes,
                mimetype,
                filename: filename.or(fname),
                slot: None,
            },
        ))
    }
}

pub fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
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
Synchronous (default): waits up to 30 s for WhatsApp's server (less when the gateway's request time limit would \
pass first) and answers 201 with the message; 202 if it is still on its way then. Needs a connected client (501 otherwise) and answers 429 with `Retry-After` when the session's \
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
    request_body(content(
        (SendMessage = "application/json"),
        (SendMessageForm = "multipart/form-data"),
    )),
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
    opts: SendOptions,
    input: SendInput,
) -> ApiResult<Response> {
    let (mut body, form_file) = match input {
        SendInput::Json(b) => (b, None),
        SendInput::Form(b, f) => (b, Some(f)),
    };
    let sid = path.session()?;
    let to = recipient(&body.to)?;
    let is_media = matches!(
        body.kind,
        SendKind::Image
            | SendKind::Video
            | SendKind::Audio
            | SendKind::Document
            | SendKind::Sticker
    );
    // Checked before a file is downloaded for it.
    let session = owned_session(&st, &auth, &sid).await?;
    let mut file = match (form_file, body.media.as_mut(), is_media) {
        (Some(f), _, _) => Some(f),
        (None, Some(m), true) => Some(media_file(&st, m).await?),
        _ => None,
    };
    // A download's slot is kept until its file is in the outbox, then freed before the wait.
    let slot = file.as_mut().and_then(|f| f.slot.take());
    let content = content_of(&body, file)?;
    let accepted = accept(&st, &session, &opts, to, content, None).await?;
    drop(slot);
    let (status, job) = accepted.settle(&st, &opts).await?;
    let record = job_message(&st, &session.id, &job).await?;
    Ok((status, Json(record)).into_response())
}

/// `async=true|false`.
pub fn asynchronous(q: &QueryMap) -> ApiResult<bool> {
    match q.get("async") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_parameter(
            "async",
            format!("`{other}` is not true or false"),
        )),
    }
}

/// How outgoing work is accepted, from the request: `?async=true` (queue and answer 202),
/// the `Idempotency-Key` header, and the request's deadline (a synchronous wait ends before it).
pub struct SendOptions {
    pub asynchronous: bool,
    pub key: Option<String>,
    pub deadline: Option<Instant>,
}

impl<S: Send + Sync> FromRequestParts<S> for SendOptions {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let q = QueryMap::from_request_parts(parts, state).await?;
        Ok(SendOptions {
            asynchronous: asynchronous(&q)?,
            key: idempotency_key(&parts.headers)?,
            deadline: parts.extensions.get::<Deadline>().map(|d| d.0),
        })
    }
}

/// The stored message a message-sending job shows as, with its chat's JID as stored.
pub async fn job_message(st: &AppState, s: &str, job: &OutgoingRecord) -> ApiResult<Message> {
    let chat_jid = job
        .chat_jid
        .parse::<Jid>()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!(e)))?;
    let record = st
        .store()
        .get_message(s, &chat_jid, &job.wa_message_id)
        .await?
        .ok_or_else(|| ApiError::not_found("message (its chat was deleted)"))?;
    let chat = st.store().get_chat(s, &chat_jid).await?;
    let shown_jid = chat.map(|c| c.jid).unwrap_or_else(|| job.chat_jid.clone());
    Ok(Message::from_record(record, &shown_jid))
}

/// Accepts outgoing work into the durable outbox and, for a synchronous request, waits for
/// WhatsApp's server: 201 once the job settled, 202 while it is still on its way (see
/// [`accept`] and [`Accepted::settle`]).
pub async fn submit(
    st: &AppState,
    session: &SessionRecord,
    opts: &SendOptions,
    to: Jid,
    content: OutgoingContent,
    target: Option<&MessageRecord>,
) -> ApiResult<(StatusCode, OutgoingRecord)> {
    accept(st, session, opts, to, content, target)
        .await?
        .settle(st, opts)
        .await
}

/// Work in the outbox, not yet settled.
pub struct Accepted {
    /// The job, without its content (nothing after acceptance reads it; a media file is not
    /// kept in memory while the request waits).
    job: OutgoingRecord,
    sid: crate::domain::SessionId,
    watch: crate::engine::sender::JobWatch,
    /// Stored by this request (not a retry of an earlier one).
    created: bool,
}

/// Accepts outgoing work into the durable outbox. A message gets its stored row (status
/// `pending`) in the same transaction; an edit or a revoke has none and names its `target` row
/// instead. Applies the session's rate limits (synchronous: 429) and the Idempotency-Key (a
/// retry returns the first job; a different request with the same key is a 422).
///
/// Memory: the content is serialized once into a buffer of its final size, hashed in place,
/// and dropped (a media file's bytes) before the database sees the job.
pub async fn accept(
    st: &AppState,
    session: &SessionRecord,
    opts: &SendOptions,
    to: Jid,
    content: OutgoingContent,
    target: Option<&MessageRecord>,
) -> ApiResult<Accepted> {
    let sid: crate::domain::SessionId = session
        .id
        .parse()
        .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))?;
    let now = now_ms();
    if !opts.asynchronous {
        // A retry of a request already accepted is still answered.
        if st.engine().client(&sid).is_none() && opts.key.is_none() {
            return Err(ApiError::no_client());
        }
        check_rate(st, session, now).await?;
    }
    let mut content = content;
    let mut content_json = to_json(&content)?;
    let hash = request_hash(&to, &content_json, opts.asynchronous);
    if let OutgoingContent::Poll { secret, .. } = &mut content {
        // Chosen after the hash, so a retry of the same poll matches it.
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        *secret = Some(hex::encode(b));
        content_json = to_json(&content)?;
    }
    let wa_id = new_message_id();
    let msg = (!content.is_change()).then(|| stored_message(&to, &wa_id, now, &content));
    // The JSON is what is stored; the content (a file's bytes) is no longer needed.
    drop(content);
    let job = OutgoingRecord {
        id: ulid::Ulid::new().to_string(),
        session_id: session.id.clone(),
        idempotency_key: opts.key.clone(),
        request_hash: hash,
        chat_jid: to.to_string(),
        wa_message_id: wa_id,
        message_id: target.map(|t| t.id).unwrap_or_default(),
        content: content_json,
        state: JobState::Queued,
        attempts: 0,
        not_before: now,
        error: None,
        created_at: now,
        sent_at: None,
    };
    let mut watch = st.sender().watch(&job.id);
    let enqueued = st.store().enqueue_send(&job, msg.as_ref()).await?;
    let hash = job.request_hash.clone();
    drop(job);
    let enqueued = enqueued.ok_or_else(|| ApiError::Conflict("the session was deleted".into()))?;
    if !enqueued.created && enqueued.job.request_hash != hash {
        return Err(ApiError::bad_body(
            None,
            "this Idempotency-Key was used for a different request",
        ));
    }
    let mut job = enqueued.job;
    job.content = String::new();
    if enqueued.created {
        st.sender().wake(&sid);
    } else {
        if !opts.asynchronous && job.state == JobState::Queued && st.engine().client(&sid).is_none()
        {
            return Err(ApiError::no_client());
        }
        // A retry waits for the first request's job.
        watch = st.sender().watch(&job.id);
    }
    Ok(Accepted {
        job,
        sid,
        watch,
        created: enqueued.created,
    })
}

impl Accepted {
    /// For a synchronous request, waits for WhatsApp's server: 201 once the job settled, 202
    /// when it is still on its way after [`SYNC_WAIT`] or when the request's deadline comes
    /// first. An asynchronous request answers 202 at once.
    pub async fn settle(
        mut self,
        st: &AppState,
        opts: &SendOptions,
    ) -> ApiResult<(StatusCode, OutgoingRecord)> {
        if opts.asynchronous {
            return Ok((StatusCode::ACCEPTED, self.job));
        }
        let id = self.job.id.clone();
        // Accepted without a connected client (a first request with an Idempotency-Key):
        // nothing will settle it before the session connects, so there is nothing to wait for.
        if st.engine().client(&self.sid).is_none() {
            return Ok((StatusCode::ACCEPTED, self.job));
        }
        let mut until = tokio::time::Instant::now() + SYNC_WAIT;
        if let Some(deadline) = opts.deadline {
            until = until.min(deadline.checked_sub(ANSWER_MARGIN).unwrap_or(deadline));
        }
        // The watch was registered before the job was stored: a settle in between is not
        // missed, and a job settled before (a retry's) is seen by the look below.
        // A job this request stored has not been settled before its watch.
        let mut done = if self.created {
            None
        } else {
            settled_job(st, &id).await?.filter(|j| j.state.is_settled())
        };
        if done.is_none()
            && tokio::time::timeout_at(until, self.watch.settled())
                .await
                .is_ok()
        {
            done = settled_job(st, &id).await?.filter(|j| j.state.is_settled());
        }
        Ok(match done {
            Some(j) => (StatusCode::CREATED, j),
            None => (StatusCode::ACCEPTED, self.job),
        })
    }
}

/// How long before the request's deadline a synchronous wait gives up, to answer 202 in time.
const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The job as stored now (the store reads it without its content).
async fn settled_job(st: &AppState, id: &str) -> ApiResult<Option<OutgoingRecord>> {
    Ok(st.store().outgoing(id).await?)
}

/// 429 when the session's per-minute or per-hour send rate is used up.
async fn check_rate(st: &AppState, session: &SessionRecord, now: i64) -> ApiResult<()> {
    for (window, limit) in [
        (60_000, session.rate_per_min),
        (3_600_000, session.rate_per_hour),
    ] {
        let (n, oldest) = st
            .store()
            .sends_accepted_since(&session.id, now - window, limit.max(1))
            .await?;
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
    Ok(())
}

/// The content as the outbox stores it, written into a buffer sized for it (a media file's
/// base64 is 4/3 of the file), so the buffer never grows by doubling.
fn to_json(content: &OutgoingContent) -> ApiResult<String> {
    let file = match content {
        OutgoingContent::Media { data, .. } => data.len(),
        _ => 0,
    };
    let mut buf = Vec::with_capacity(file.div_ceil(3) * 4 + 1024);
    serde_json::to_writer(&mut buf, content).map_err(|e| ApiError::Internal(e.into()))?;
    String::from_utf8(buf).map_err(|e| ApiError::Internal(e.into()))
}

/// The request hash an Idempotency-Key is checked against: SHA-256 of
/// `<to>\n<content JSON>\n<async>`, fed in pieces (the JSON is not copied).
fn request_hash(to: &Jid, content_json: &str, asynchronous: bool) -> String {
    let digest = Sha256::new()
        .chain_update(to.to_string().as_bytes())
        .chain_update(b"\n")
        .chain_update(content_json.as_bytes())
        .chain_update(b"\n")
        .chain_update(asynchronous.to_string().as_bytes())
        .finalize();
    hex::encode(digest)
}

/// The stored row a message shows as while it is on its way (status `pending`).
fn stored_message(to: &Jid, wa_id: &str, now: i64, content: &OutgoingContent) -> NewMessage {
    let (quoted, mentions) = match content {
        OutgoingContent::Text {
            reply_to, mentions, ..
        } => (reply_to.clone(), mentions.clone()),
        OutgoingContent::Reaction { target, .. } => (Some(target.id.clone()), Vec::new()),
        _ => (None, Vec::new()),
    };
    NewMessage {
        chat: to.clone(),
        chat_alt: None,
        wa_message_id: wa_id.to_owned(),
        from_me: true,
        sender: None,
        sender_lid: None,
        sender_name: None,
        kind: content.kind().to_owned(),
        body: content.body(),
        media: media_info(content),
        quoted_message_id: quoted,
        mentions,
        status: MessageStatus::Pending,
        timestamp: now,
        poll: poll_info(content),
    }
}

/// What the stored row says of a message's attachment: a new file's size, or a forwarded
/// file's reference.
fn media_info(content: &OutgoingContent) -> Option<MediaInfo> {
    match content {
        OutgoingContent::Media {
            data,
            mimetype,
            filename,
            reference,
            ..
        } => Some(MediaInfo {
            mimetype: Some(mimetype.clone()),
            size: Some(
                reference
                    .as_ref()
                    .map_or(data.len() as u64, |r| r.file_length) as i64,
            ),
            filename: filename.clone(),
            reference: reference.as_ref().map(|r| r.to_json()),
        }),
        OutgoingContent::Forward { content } => match &**content {
            OutgoingContent::Media {
                mimetype,
                filename,
                reference: Some(r),
                ..
            } => Some(MediaInfo {
                mimetype: Some(mimetype.clone()),
                size: Some(r.file_length as i64),
                filename: filename.clone(),
                reference: Some(r.to_json()),
            }),
            _ => None,
        },
        _ => None,
    }
}

/// A poll's options and secret, kept so that votes can be sent and read.
fn poll_info(content: &OutgoingContent) -> Option<String> {
    match content {
        OutgoingContent::Poll {
            options,
            selectable_count,
            secret: Some(secret),
            ..
        } => Some(
            crate::engine::PollInfo {
                options: options.clone(),
                selectable_count: *selectable_count,
                secret: secret.clone(),
            }
            .to_json(),
        ),
        _ => None,
    }
}
