//! `/api/v1/sessions/{sid}/messages/{mid}`: one stored message, by the gateway's id or by
//! WhatsApp's.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::extract::{JsonBody, PathParams};
use super::models::Message;
use super::send::{job_message, recipient, submit, SendOptions};
use super::AppState;
use super::{check_session, owned_session};
use crate::auth::{Auth, CapRead, CapSend};
use crate::domain::{now_ms, Jid};
use crate::engine::send::{MediaKind, MessageKey, OutgoingContent};
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::store::MessageRecord;

/// How long after sending WhatsApp lets a message be edited.
const EDIT_WINDOW_MS: i64 = 15 * 60 * 1000;

/// What the document says an `emoji` may hold: no white space (`char::is_whitespace`) and no
/// control character (`char::is_control`), spelled out so every regex dialect reads the same;
/// a unit test keeps it equal to [`emoji_ok`] over every character.
pub const EMOJI_PATTERN: &str =
    "^[^\\x00-\\x20\\x7f-\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*$";

/// The server's check of an `emoji`: at most 32 characters, none white space or control.
fn emoji_ok(emoji: &str) -> bool {
    emoji.chars().count() <= 32 && !emoji.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// What `{mid}` may be: the stored message's `id` (digits) or its `waMessageId`.
pub const MESSAGE_REF_PATTERN: &str = "^[0-9A-Za-z_.:-]{1,128}$";

fn message_ref(path: &PathParams) -> ApiResult<String> {
    let raw = path.text("mid")?;
    let ok = (1..=128).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b));
    if !ok {
        return Err(ApiError::bad_parameter(
            "mid",
            "a message's id or WhatsApp id: 1 to 128 letters, digits, `_`, `.`, `:` or `-`",
        ));
    }
    Ok(raw.to_owned())
}

/// The message `{mid}` of session `s` (404 when unknown, 409 when a WhatsApp id is in two chats).
pub async fn resolve(st: &AppState, s: &str, mid: &str) -> ApiResult<(MessageRecord, String)> {
    match st.store().find_message(s, mid).await? {
        Ok(Some(found)) => Ok(found),
        Ok(None) => Err(ApiError::not_found("message")),
        Err(_) => Err(ApiError::Conflict(
            "this WhatsApp id is in more than one chat of the session; use the message's `id`"
                .into(),
        )),
    }
}

/// GET /api/v1/sessions/{sid}/messages/{mid} — one stored message.
#[utoipa::path(
    get, path = "/sessions/{sid}/messages/{mid}", tag = "chats",
    summary = "Get a message",
    description = "Reads one stored message of the session, addressed by its `id` or by its WhatsApp id \
(`waMessageId`). A WhatsApp id is unique within a chat; if the session holds it in two chats the answer is 409 \
and the message must be addressed by `id`. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("mid" = String, Path, description = "The message's `id`, or its `waMessageId`."),
    ),
    responses(
        (status = 200, description = "The message.", body = Message),
        (status = 404, description = "Unknown session or message.", body = ErrorEnvelope),
        (status = 409, description = "The WhatsApp id is in more than one chat.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn get_message(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Json<Message>> {
    let sid = path.session()?;
    let mid = message_ref(&path)?;
    let s = check_session(&st, &auth, &sid).await?;
    let (m, jid) = resolve(&st, &s, &mid).await?;
    Ok(Json(Message::from_record(m, &jid)))
}

fn key_of(m: &MessageRecord, chat: &Jid) -> MessageKey {
    MessageKey {
        id: m.wa_message_id.clone(),
        from_me: m.from_me,
        participant: if chat.is_group() && !m.from_me {
            m.sender_jid.clone().or_else(|| m.sender_lid.clone())
        } else {
            None
        },
    }
}

fn chat_of(jid: &str) -> ApiResult<Jid> {
    jid.parse()
        .map_err(|e: String| ApiError::Internal(anyhow::anyhow!(e)))
}

/// The parameters every action on a message takes (edit, revoke, react, forward, vote).
pub struct ActionParams;

impl utoipa::IntoParams for ActionParams {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        use utoipa::openapi::Required;
        let param = |name: &str, at: ParameterIn, required: bool, ty: Type, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(at)
                .required(if required {
                    Required::True
                } else {
                    Required::False
                })
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(ty)))
                .build()
        };
        vec![
            param(
                "sid",
                ParameterIn::Path,
                true,
                Type::String,
                "Session id (ULID).",
            ),
            param(
                "mid",
                ParameterIn::Path,
                true,
                Type::String,
                "The message's `id`, or its `waMessageId`.",
            ),
            param(
                "async",
                ParameterIn::Query,
                false,
                Type::Boolean,
                "`true`: queue and answer 202 at once.",
            ),
            param(
                "Idempotency-Key",
                ParameterIn::Header,
                false,
                Type::String,
                "Makes retries safe: 1 to 200 visible ASCII characters.",
            ),
        ]
    }
}

/// What every action on a message starts with: a caller with `send`, the addressed message
/// (`{sid}`, `{mid}`) and how the change is accepted (`async`, `Idempotency-Key`).
pub struct MessageAction {
    auth: Auth<CapSend>,
    path: PathParams,
    opts: SendOptions,
}

impl<S> FromRequestParts<S> for MessageAction
where
    S: Send + Sync,
    Auth<CapSend>: FromRequestParts<S, Rejection = ApiError>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Ok(MessageAction {
            auth: Auth::<CapSend>::from_request_parts(parts, state).await?,
            path: PathParams::from_request_parts(parts, state).await?,
            opts: SendOptions::from_request_parts(parts, state).await?,
        })
    }
}

/// The message an action is about, checked to exist and not to be revoked.
struct Target {
    session: crate::store::SessionRecord,
    message: MessageRecord,
    chat: Jid,
}

impl MessageAction {
    async fn target(&self, st: &AppState) -> ApiResult<Target> {
        let sid = self.path.session()?;
        let mid = message_ref(&self.path)?;
        let session = owned_session(st, &self.auth, &sid).await?;
        let (message, jid) = resolve(st, &session.id, &mid).await?;
        if message.deleted {
            return Err(ApiError::Conflict(
                "the message was deleted for everyone".into(),
            ));
        }
        let chat = chat_of(&jid)?;
        Ok(Target {
            session,
            message,
            chat,
        })
    }

    /// Sends a change of the target message (edit, revoke, vote): answered with the message.
    async fn change(
        &self,
        st: &AppState,
        t: &Target,
        content: OutgoingContent,
    ) -> ApiResult<Response> {
        let (status, job) = submit(
            st,
            &t.session,
            &self.opts,
            t.chat.clone(),
            content,
            Some(&t.message),
        )
        .await?;
        change_answer(st, &t.session.id, t.message.id, status, &job).await
    }

    /// Sends a new message made from the target (reaction, forward): answered with it.
    async fn new_message(
        &self,
        st: &AppState,
        t: &Target,
        to: Jid,
        content: OutgoingContent,
    ) -> ApiResult<Response> {
        let (status, job) = submit(st, &t.session, &self.opts, to, content, None).await?;
        Ok((status, Json(job_message(st, &t.session.id, &job).await?)).into_response())
    }
}

/// The answer to an edit or revoke: the changed message once WhatsApp took the change (200),
/// the message as it still is while the change is on its way (202), or why WhatsApp refused.
async fn change_answer(
    st: &AppState,
    s: &str,
    mid: i64,
    status: StatusCode,
    job: &crate::store::outgoing::OutgoingRecord,
) -> ApiResult<Response> {
    if job.state == crate::store::outgoing::JobState::Failed {
        return Err(ApiError::Conflict(format!(
            "WhatsApp did not take the change: {}",
            job.error.as_deref().unwrap_or("no reason given")
        )));
    }
    let (m, jid) = resolve(st, s, &mid.to_string()).await?;
    let status = if status == StatusCode::CREATED {
        StatusCode::OK
    } else {
        status
    };
    Ok((status, Json(Message::from_record(m, &jid))).into_response())
}

/// A new text for a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EditMessage {
    /// The new text: 1 to 65,536 characters, not only spaces.
    #[schema(min_length = 1, max_length = 65536, pattern = "\\S")]
    pub text: String,
}

/// A reaction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct React {
    /// One emoji; an empty string removes this account's reaction.
    #[schema(max_length = 32, example = "👍")]
    pub emoji: String,
}

/// Where to forward a message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Forward {
    /// A phone number, a phone JID, a LID or a group JID.
    #[schema(example = "6281234567890")]
    pub to: String,
}

/// PATCH /api/v1/sessions/{sid}/messages/{mid} — edit a message's text.
#[utoipa::path(
    patch, path = "/sessions/{sid}/messages/{mid}", tag = "messages",
    summary = "Edit a message",
    description = "Replaces the text of one of this account's own text messages, for everyone, as the phone's \
\"Edit\" does. WhatsApp allows it for 15 minutes after sending. The change goes through the same durable outbox as \
sending (same `async`, `Idempotency-Key`, rate limits and 501 without a connected client); once WhatsApp took it the \
stored message has the new `body` and `edited: true`, and a `message.edited` event is written. Answers 200 with the \
edited message, or 202 with the message as it still is while the edit is on its way. Needs `send`.",
    params(ActionParams),
    request_body = EditMessage,
    responses(
        (status = 200, description = "Edited.", body = Message),
        (status = 202, description = "Accepted; the edit is on its way.", body = Message),
        (status = 404, description = "Unknown session or message.", body = ErrorEnvelope),
        (status = 409, description = "Deleted message, ambiguous WhatsApp id, or WhatsApp refused the edit.", body = ErrorEnvelope),
        (status = 429, description = "The session's send rate is used up.", body = ErrorEnvelope),
        (status = 501, description = "Synchronous request on a session with no connected client.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn edit_message(
    action: MessageAction,
    State(st): State<AppState>,
    JsonBody(body): JsonBody<EditMessage>,
) -> ApiResult<Response> {
    if super::blank(&body.text) || body.text.chars().count() > 65_536 {
        return Err(ApiError::bad_body(
            Some("text"),
            "1 to 65536 characters, not only spaces",
        ));
    }
    let t = action.target(&st).await?;
    let (m, chat) = (&t.message, &t.chat);
    if !m.from_me {
        return Err(ApiError::bad_body(
            None,
            "only this account's own messages can be edited",
        ));
    }
    if m.kind != "text" {
        return Err(ApiError::bad_body(
            None,
            format!("only text messages can be edited, this one is `{}`", m.kind),
        ));
    }
    if m.status == crate::store::MessageStatus::Failed {
        return Err(ApiError::bad_body(None, "the message was never sent"));
    }
    if now_ms() - m.timestamp > EDIT_WINDOW_MS {
        return Err(ApiError::bad_body(
            None,
            "WhatsApp lets a message be edited for 15 minutes after it was sent",
        ));
    }
    let content = OutgoingContent::Edit {
        target: key_of(m, chat),
        text: body.text,
    };
    action.change(&st, &t, content).await
}

/// DELETE /api/v1/sessions/{sid}/messages/{mid} — delete a message for everyone.
#[utoipa::path(
    delete, path = "/sessions/{sid}/messages/{mid}", tag = "messages",
    summary = "Delete a message for everyone",
    description = "Revokes a message for everyone, as the phone's \"Delete for everyone\" does: in a direct chat one \
of this account's own messages; in a group also another member's message when this account is an admin (WhatsApp \
refuses it otherwise). Goes through the durable outbox like sending; once WhatsApp took it the stored message keeps \
its row with `deleted: true` and its body, mentions and attachment cleared, and a `message.revoked` event is written. \
Answers 200 with the message, or 202 while the revoke is on its way. Needs `send`.",
    params(ActionParams),
    responses(
        (status = 200, description = "Deleted for everyone.", body = Message),
        (status = 202, description = "Accepted; the revoke is on its way.", body = Message),
        (status = 404, description = "Unknown session or message.", body = ErrorEnvelope),
        (status = 409, description = "Already deleted, ambiguous WhatsApp id, or WhatsApp refused.", body = ErrorEnvelope),
        (status = 422, description = "Not a message this account may delete for everyone.", body = ErrorEnvelope),
        (status = 429, description = "The session's send rate is used up.", body = ErrorEnvelope),
        (status = 501, description = "Synchronous request on a session with no connected client.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn revoke_message(
    action: MessageAction,
    State(st): State<AppState>,
) -> ApiResult<Response> {
    let t = action.target(&st).await?;
    let (m, chat) = (&t.message, &t.chat);
    if !m.from_me && !chat.is_group() {
        return Err(ApiError::bad_body(
            None,
            "in a direct chat only this account's own messages can be deleted for everyone",
        ));
    }
    if m.kind == "reaction" {
        return Err(ApiError::bad_body(
            None,
            "a reaction is removed by reacting with an empty emoji",
        ));
    }
    let content = OutgoingContent::Revoke {
        target: key_of(m, chat),
    };
    action.change(&st, &t, content).await
}

/// POST /api/v1/sessions/{sid}/messages/{mid}/reaction — react to a message.
#[utoipa::path(
    post, path = "/sessions/{sid}/messages/{mid}/reaction", tag = "messages",
    summary = "React to a message",
    description = "Sends this account's reaction to a message (an empty `emoji` removes it). The reaction is stored \
as a message of type `reaction` (its `quotedMessageId` is the message reacted to) and sent through the durable outbox \
like any message, with the same answers (201, 202, 429, 501) and status events. Needs `send`.",
    params(ActionParams),
    request_body = React,
    responses(
        (status = 201, description = "Sent.", body = Message),
        (status = 202, description = "Accepted; the reaction is on its way.", body = Message),
        (status = 404, description = "Unknown session or message.", body = ErrorEnvelope),
        (status = 409, description = "Deleted message or ambiguous WhatsApp id.", body = ErrorEnvelope),
        (status = 429, description = "The session's send rate is used up.", body = ErrorEnvelope),
        (status = 501, description = "Synchronous request on a session with no connected client.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn react(
    action: MessageAction,
    State(st): State<AppState>,
    JsonBody(body): JsonBody<React>,
) -> ApiResult<Response> {
    if !emoji_ok(&body.emoji) {
        return Err(ApiError::bad_body(
            Some("emoji"),
            "one emoji, or empty to remove the reaction",
        ));
    }
    let t = action.target(&st).await?;
    let (m, chat) = (&t.message, &t.chat);
    if m.kind == "reaction" {
        return Err(ApiError::bad_body(None, "a reaction cannot be reacted to"));
    }
    let content = OutgoingContent::Reaction {
        target: key_of(m, chat),
        emoji: body.emoji,
    };
    let to = t.chat.clone();
    action.new_message(&st, &t, to, content).await
}

/// POST /api/v1/sessions/{sid}/messages/{mid}/forward — forward a message.
#[utoipa::path(
    post, path = "/sessions/{sid}/messages/{mid}/forward", tag = "messages",
    summary = "Forward a message",
    description = "Sends a copy of a stored message to `to`, marked as forwarded, as a new message through the \
durable outbox (same answers as sending). Texts and attachments (image, video, audio, document, sticker) can be \
forwarded; an attachment goes by reference to the file on WhatsApp's media servers, as phones forward, so it works \
while WhatsApp keeps the file. Places and contact cards are not stored whole and cannot be forwarded. Needs `send`.",
    params(ActionParams),
    request_body = Forward,
    responses(
        (status = 201, description = "Sent.", body = Message),
        (status = 202, description = "Accepted; the copy is on its way.", body = Message),
        (status = 404, description = "Unknown session or message.", body = ErrorEnvelope),
        (status = 409, description = "Deleted message or ambiguous WhatsApp id.", body = ErrorEnvelope),
        (status = 429, description = "The session's send rate is used up.", body = ErrorEnvelope),
        (status = 501, description = "Synchronous request on a session with no connected client.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn forward(
    action: MessageAction,
    State(st): State<AppState>,
    JsonBody(body): JsonBody<Forward>,
) -> ApiResult<Response> {
    let to = recipient(&body.to)?;
    let t = action.target(&st).await?;
    let m = &t.message;
    let kind = match m.kind.as_str() {
        "image" => Some(MediaKind::Image),
        "video" => Some(MediaKind::Video),
        "audio" => Some(MediaKind::Audio),
        "document" => Some(MediaKind::Document),
        "sticker" => Some(MediaKind::Sticker),
        _ => None,
    };
    let reference = m
        .media_ref
        .as_deref()
        .and_then(crate::engine::MediaRef::from_json);
    let inner = match (m.kind.as_str(), m.body.clone(), kind, reference) {
        ("text", Some(t), _, _) if !t.is_empty() => OutgoingContent::Text {
            body: t,
            reply_to: None,
            mentions: Vec::new(),
            link_preview: false,
        },
        // An attachment is forwarded by reference: WhatsApp's servers have the file.
        (_, caption, Some(kind), Some(reference)) => OutgoingContent::Media {
            kind,
            data: Vec::new(),
            mimetype: m
                .media_mimetype
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
            filename: m.media_filename.clone(),
            caption,
            voice: false,
            reference: Some(reference),
        },
        (kind, ..) => {
            return Err(ApiError::bad_body(
                None,
                format!("this `{kind}` message cannot be forwarded: only texts and attachments whose location the gateway knows"),
            ))
        }
    };
    let content = OutgoingContent::Forward {
        content: Box::new(inner),
    };
    action.new_message(&st, &t, to, content).await
}

/// GET /api/v1/sessions/{sid}/messages/{mid}/media — a message's attachment.
#[utoipa::path(
    get, path = "/sessions/{sid}/messages/{mid}/media", tag = "chats",
    summary = "Download a message's attachment",
    description = "Answers the attachment of an image, video, audio, document or sticker message: the media \
store's copy when the session keeps one (`downloadMedia`; then no connection is needed), otherwise fetched from \
WhatsApp's media servers through the session's connected client, decrypted and checked. The file comes with the \
message's MIME type (and its file name for documents). WhatsApp keeps media for a limited time (weeks); older \
files are gone there. 404 when the message has no attachment or the gateway does not know where it lives (a message \
revoked, or stored before the gateway recorded media locations); 501 without a connected client. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("mid" = String, Path, description = "The message's `id`, or its `waMessageId`."),
    ),
    responses(
        (status = 200, description = "The file.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "Unknown session or message, or no attachment to fetch.", body = ErrorEnvelope),
        (status = 409, description = "The WhatsApp id is in more than one chat.", body = ErrorEnvelope),
        (status = 501, description = "The session has no connected client.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn get_media(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Response> {
    use axum::http::header;
    let sid = path.session()?;
    let mid = message_ref(&path)?;
    let s = check_session(&st, &auth, &sid).await?;
    let (m, _) = resolve(&st, &s, &mid).await?;
    // The media store's copy first; else WhatsApp's media servers.
    // The media store's copy first, streamed from disk; else WhatsApp's media servers.
    let kept = match m.media_file.as_deref() {
        Some(f) if !f.split('/').any(|p| p == ".." || p.is_empty()) => {
            tokio::fs::File::open(st.config().media_path().join(f))
                .await
                .ok()
        }
        _ => None,
    };
    // A kept file is served only whole: its length must be the attachment's (a file cut short
    // by a crash before it reached the disk is not sent with 200; WhatsApp's copy is).
    let want = m
        .media_ref
        .as_deref()
        .and_then(crate::engine::MediaRef::from_json)
        .map(|r| r.file_length)
        .or(m.media_size.and_then(|n| u64::try_from(n).ok()));
    let kept = match kept {
        Some(file) => {
            let len = file.metadata().await.ok().map(|md| md.len());
            match (len, want) {
                (Some(len), Some(want)) if len == want => Some((file, len)),
                (Some(len), None) => Some((file, len)),
                (len, want) => {
                    tracing::warn!(
                        session = s,
                        message = m.id,
                        ?len,
                        ?want,
                        "the media store's copy is not whole; not served"
                    );
                    None
                }
            }
        }
        None => None,
    };
    let body = match kept {
        Some((file, len)) => {
            let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file));
            (body, Some(len))
        }
        None => {
            let media = m
                .media_ref
                .as_deref()
                .and_then(crate::engine::MediaRef::from_json)
                .ok_or_else(|| ApiError::not_found("attachment of this message"))?;
            let client = st.engine().client(&sid).ok_or_else(ApiError::no_client)?;
            // Downloaded into an unnamed file (removed from the folder as soon as it is open),
            // checked whole, then streamed: a large file never sits in memory, and nothing
            // unchecked is sent.
            let dir = st.config().media_path().join(".incoming");
            let path = dir.join(ulid::Ulid::new().to_string());
            let tmp = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)?;
                std::fs::remove_file(&path)?;
                Ok::<_, std::io::Error>(f)
            })
            .await
            .map_err(|e| ApiError::Internal(e.into()))?
            .map_err(|e| {
                ApiError::Internal(anyhow::anyhow!("a temporary file for the attachment: {e}"))
            })?;
            let file = tokio::fs::File::from_std(client.download_media_to(&media, tmp).await?);
            let len = file.metadata().await.ok().map(|md| md.len());
            (
                axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(file)),
                len,
            )
        }
    };
    let mime = m
        .media_mimetype
        .as_deref()
        .filter(|t| t.parse::<axum::http::HeaderValue>().is_ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let (body, len) = body;
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    if let Some(n) = len {
        h.insert(header::CONTENT_LENGTH, axum::http::HeaderValue::from(n));
    }
    h.insert(
        header::CONTENT_TYPE,
        mime.parse().unwrap_or(axum::http::HeaderValue::from_static(
            "application/octet-stream",
        )),
    );
    if let Some(name) = m.media_filename.as_deref() {
        // RFC 6266 / 5987: a plain ASCII fallback and the UTF-8 name.
        let ascii: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        // RFC 5987 attr-chars stay as they are.
        const ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        let encoded = percent_encoding::utf8_percent_encode(name, ESCAPE).to_string();
        if let Ok(v) =
            format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}").parse()
        {
            h.insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(resp)
}

/// A vote in a poll.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vote {
    /// The chosen options, by name, as many as the poll allows; an empty list withdraws the vote.
    #[schema(max_items = 12)]
    pub options: Vec<String>,
}

/// POST /api/v1/sessions/{sid}/messages/{mid}/vote — vote in a poll.
#[utoipa::path(
    post, path = "/sessions/{sid}/messages/{mid}/vote", tag = "messages",
    summary = "Vote in a poll",
    description = "Sends this account's vote in a poll of the stored copy: the chosen options by name (each one of the \
poll's options, at most as many as it allows; none withdraws the vote). A vote replaces this account's earlier vote. \
The gateway needs the poll's secret, which it keeps for polls it sent or received since it records them; other polls \
answer 422. Goes through the durable outbox like sending; answers 200 with the poll once WhatsApp took the vote (202 \
while it is on its way, 409 if refused). Votes are not counted in the stored copy. Needs `send`.",
    params(ActionParams),
    request_body = Vote,
    responses(
        (status = 200, description = "Voted.", body = Message),
        (status = 202, description = "Accepted; the vote is on its way.", body = Message),
        (status = 404, description = "Unknown session or message.", body = ErrorEnvelope),
        (status = 409, description = "Deleted poll, ambiguous WhatsApp id, or WhatsApp refused.", body = ErrorEnvelope),
        (status = 429, description = "The session's send rate is used up.", body = ErrorEnvelope),
        (status = 501, description = "Synchronous request on a session with no connected client.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn vote(
    action: MessageAction,
    State(st): State<AppState>,
    JsonBody(body): JsonBody<Vote>,
) -> ApiResult<Response> {
    let t = action.target(&st).await?;
    let (m, chat) = (&t.message, &t.chat);
    if m.kind != "poll" {
        return Err(ApiError::bad_body(
            None,
            format!("this message is a `{}`, not a poll", m.kind),
        ));
    }
    let poll = m
        .poll
        .as_deref()
        .and_then(crate::engine::PollInfo::from_json)
        .ok_or_else(|| ApiError::bad_body(None, "the gateway does not have this poll's secret"))?;
    let mut chosen = body.options.clone();
    chosen.sort();
    chosen.dedup();
    if chosen.len() != body.options.len() {
        return Err(ApiError::bad_body(
            Some("options"),
            "an option is given twice",
        ));
    }
    if let Some((i, o)) = body
        .options
        .iter()
        .enumerate()
        .find(|(_, o)| !poll.options.contains(o))
    {
        return Err(ApiError::bad_body(
            Some(&format!("options[{i}]")),
            format!("`{o}` is not an option of this poll"),
        ));
    }
    let max = if poll.selectable_count == 0 {
        poll.options.len()
    } else {
        poll.selectable_count as usize
    };
    if body.options.len() > max {
        return Err(ApiError::bad_body(
            Some("options"),
            format!("this poll allows {max} choice(s)"),
        ));
    }
    let creator = if m.from_me {
        t.session.wa_jid.clone()
    } else {
        m.sender_jid.clone().or_else(|| m.sender_lid.clone())
    }
    .ok_or_else(|| ApiError::bad_body(None, "the poll's creator is not known"))?;
    let content = OutgoingContent::Vote {
        target: key_of(m, chat),
        creator,
        secret: poll.secret,
        options: body.options,
    };
    action.change(&st, &t, content).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_emoji_pattern_and_the_check_agree_on_every_character() {
        let re = regex::Regex::new(super::EMOJI_PATTERN).unwrap();
        for c in (0u32..=0x10FFFF).filter_map(char::from_u32) {
            let s = c.to_string();
            assert_eq!(re.is_match(&s), super::emoji_ok(&s), "U+{:04X}", c as u32);
        }
        assert!(super::emoji_ok("👍🏽") && super::emoji_ok(""));
    }
}
