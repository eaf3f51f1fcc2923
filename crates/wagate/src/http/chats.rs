//! `/api/v1/sessions/{sid}/chats...`: the stored copy of a session's chats and messages, plus
//! the live typing indicator.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use utoipa::ToSchema;

use super::check_session;
use super::extract::{JsonBody, PathParams, QueryMap};
use super::models::{Chat, ChatPage, Message, MessagePage};
use super::AppState;
use crate::auth::{Auth, CapRead, CapSend};
use crate::engine::ChatPresence;
use crate::error::{ApiError, ApiResult, ErrorEnvelope};
use crate::store::ChatPatch;

/// GET /api/v1/sessions/{sid}/chats — a page of chats, pinned first, then by latest activity.
#[utoipa::path(
    get, path = "/sessions/{sid}/chats", tag = "chats",
    summary = "List chats",
    description = "Reads the gateway's stored copy (no WhatsApp round trip), in the order a chat list shows them: \
pinned chats first, then by the time of their newest message, newest first. Page with `limit` and `cursor`; \
`nextCursor` is null on the last page. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID) owned by the caller's organization."),
        ("limit" = Option<i64>, Query, description = "Page size, clamped to 1–200; omitted or 0 means 50."),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page; opaque."),
    ),
    responses(
        (status = 200, description = "A page of chats.", body = ChatPage),
        (status = 400, description = "Malformed parameter.", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `read`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session or another organization's.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn list_chats(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
    q: QueryMap,
) -> ApiResult<Json<ChatPage>> {
    let sid = path.session()?;
    let limit = q.limit()?;
    let cursor = q.cursor('c', 3)?;
    let session = check_session(&st, &auth, &sid).await?;
    let (rows, next) = st
        .store()
        .list_chats(&session, cursor.as_ref(), limit)
        .await?;
    Ok(Json(ChatPage {
        data: rows.into_iter().map(Chat::from).collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}

/// GET /api/v1/sessions/{sid}/chats/{cid} — one stored chat.
#[utoipa::path(
    get, path = "/sessions/{sid}/chats/{cid}", tag = "chats",
    summary = "Get a chat",
    description = "One chat from the stored copy, with its archive, pin and mute state and unread counter. \
A direct chat can be addressed by its phone-number JID or by the contact's `@lid`. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("cid" = String, Path, description = "Chat JID, e.g. `6281234567890@s.whatsapp.net` or `123-456@g.us` (percent-encoding allowed)."),
    ),
    responses(
        (status = 200, description = "The chat.", body = Chat),
        (status = 400, description = "Malformed JID or session id.", body = ErrorEnvelope),
        (status = 401, description = "Missing or invalid token.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `read`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session, another organization's, or no such chat stored.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn get_chat(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Json<Chat>> {
    let (sid, cid) = (path.session()?, path.chat()?);
    let session = check_session(&st, &auth, &sid).await?;
    let chat = st
        .store()
        .get_chat(&session, &cid)
        .await?
        .ok_or_else(ApiError::chat_not_found)?;
    Ok(Json(chat.into()))
}

/// The fields a chat update may carry; omitted fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchChat {
    /// Archive (`true`) or unarchive (`false`).
    pub archived: Option<bool>,
    /// Pin (`true`) or unpin (`false`).
    pub pinned: Option<bool>,
    /// Mute until this time (epoch milliseconds). `null` or `0` removes the mute.
    #[serde(default, deserialize_with = "deserialize_some")]
    #[schema(value_type = Option<i64>, minimum = 0, maximum = 9223372036854775807_i64)]
    pub muted_until: Option<Option<i64>>,
    /// `true` removes any mute; wins over `mutedUntil`.
    pub unmute: Option<bool>,
}

/// Tells a present `null` apart from an absent field.
fn deserialize_some<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// PATCH /api/v1/sessions/{sid}/chats/{cid} — archive, pin or mute a chat.
#[utoipa::path(
    patch, path = "/sessions/{sid}/chats/{cid}", tag = "chats",
    summary = "Update a chat (archive, pin, mute)",
    description = "Partial update of the stored chat: only the fields sent change. `unmute: true` clears the mute \
and takes precedence over `mutedUntil` (epoch ms). Unknown fields and wrong types are rejected with 422. \
Returns the updated chat at once; the change is also sent to WhatsApp as the app-state change a phone would make \
(right away when the session is connected, otherwise when it next connects), so the phone shows the same. \
Needs `send`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("cid" = String, Path, description = "Chat JID."),
    ),
    request_body = PatchChat,
    responses(
        (status = 200, description = "The updated chat.", body = Chat),
        (status = 400, description = "Malformed JID or session id.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `send`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session or chat.", body = ErrorEnvelope),
        (status = 422, description = "Malformed body.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn patch_chat(
    auth: Auth<CapSend>,
    State(st): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<PatchChat>,
) -> ApiResult<Json<Chat>> {
    let (sid, cid) = (path.session()?, path.chat()?);
    let muted_until = match (body.unmute, body.muted_until) {
        (Some(true), _) => Some(None),
        (_, Some(Some(v))) if v < 0 => {
            return Err(ApiError::bad_body(
                Some("mutedUntil"),
                "must be epoch milliseconds, not negative",
            ))
        }
        (_, Some(Some(0))) => Some(None),
        (_, other) => other,
    };
    let session = check_session(&st, &auth, &sid).await?;
    let patch = ChatPatch {
        archived: body.archived,
        pinned: body.pinned,
        muted_until,
    };
    let chat = st
        .store()
        .patch_chat(&session, &cid, patch)
        .await?
        .ok_or_else(ApiError::chat_not_found)?;
    // The change is queued for the phone in the same transaction; send it now if connected
    // (otherwise the session sends it when it connects).
    st.sender().push_settings(&sid);
    Ok(Json(chat.into()))
}

/// DELETE /api/v1/sessions/{sid}/chats/{cid} — forget a chat locally.
#[utoipa::path(
    delete, path = "/sessions/{sid}/chats/{cid}", tag = "chats",
    summary = "Delete a chat from the stored copy",
    description = "Removes the chat and its stored messages from the gateway only; WhatsApp is not told, and new \
activity in the chat brings it back. 204 with an empty body. Needs `send`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("cid" = String, Path, description = "Chat JID."),
    ),
    responses(
        (status = 204, description = "Deleted."),
        (status = 400, description = "Malformed JID or session id.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `send`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session or chat.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn delete_chat(
    auth: Auth<CapSend>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<StatusCode> {
    let (sid, cid) = (path.session()?, path.chat()?);
    let session = check_session(&st, &auth, &sid).await?;
    if st.store().delete_chat(&session, &cid).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::chat_not_found())
    }
}

/// POST /api/v1/sessions/{sid}/chats/{cid}/read — clear the gateway's unread counter.
#[utoipa::path(
    post, path = "/sessions/{sid}/chats/{cid}/read", tag = "chats",
    summary = "Mark a chat as read",
    description = "Sets the gateway's own unread counter of the chat to zero and returns the chat. No read receipts \
are sent to WhatsApp. Calling it again is harmless and returns the same chat. Needs `send`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("cid" = String, Path, description = "Chat JID."),
    ),
    responses(
        (status = 200, description = "The chat, with `unreadCount` 0.", body = Chat),
        (status = 400, description = "Malformed JID or session id.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `send`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session or chat.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn mark_read(
    auth: Auth<CapSend>,
    State(st): State<AppState>,
    path: PathParams,
) -> ApiResult<Json<Chat>> {
    let (sid, cid) = (path.session()?, path.chat()?);
    let session = check_session(&st, &auth, &sid).await?;
    let chat = st
        .store()
        .mark_chat_read(&session, &cid)
        .await?
        .ok_or_else(ApiError::chat_not_found)?;
    Ok(Json(chat.into()))
}

/// The typing indicator to show.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresenceBody {
    /// `composing` shows "typing…", `recording` shows "recording audio…", `paused` clears it.
    pub state: ChatPresence,
}

/// PUT /api/v1/sessions/{sid}/chats/{cid}/presence — show or clear "typing…" in a chat.
#[utoipa::path(
    put, path = "/sessions/{sid}/chats/{cid}/presence", tag = "chats",
    summary = "Set the typing indicator in a chat",
    description = "Sends a chat-state update to WhatsApp through the session's connected client. WhatsApp hides the \
indicator by itself after a few seconds, so repeat the call to keep it visible. 204 with an empty body; 501 when \
the session has no connected client. Needs `send`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("cid" = String, Path, description = "Chat JID."),
    ),
    request_body = PresenceBody,
    responses(
        (status = 204, description = "Sent."),
        (status = 400, description = "Malformed JID or session id.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `send`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session.", body = ErrorEnvelope),
        (status = 422, description = "`state` missing or not composing/recording/paused.", body = ErrorEnvelope),
        (status = 501, description = "No connected WhatsApp client for the session.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn set_presence(
    auth: Auth<CapSend>,
    State(st): State<AppState>,
    path: PathParams,
    JsonBody(body): JsonBody<PresenceBody>,
) -> ApiResult<StatusCode> {
    let (sid, cid) = (path.session()?, path.chat()?);
    check_session(&st, &auth, &sid).await?;
    let client = st.engine().client(&sid).ok_or_else(ApiError::no_client)?;
    client.send_chat_presence(&cid, body.state).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// GET /api/v1/sessions/{sid}/chats/{cid}/messages — a chat's stored messages, newest first.
#[utoipa::path(
    get, path = "/sessions/{sid}/chats/{cid}/messages", tag = "chats",
    summary = "List a chat's messages",
    description = "Reads the stored messages of one chat, newest first. Pass `nextCursor` back as `cursor` to get \
older messages; it is null on the last page. Messages stored after the first page was read never shift later \
pages. Needs `read`.",
    params(
        ("sid" = String, Path, description = "Session id (ULID)."),
        ("cid" = String, Path, description = "Chat JID."),
        ("limit" = Option<i64>, Query, description = "Page size, clamped to 1–200; omitted or 0 means 50."),
        ("cursor" = Option<String>, Query, description = "The `nextCursor` of the previous page; opaque."),
    ),
    responses(
        (status = 200, description = "A page of messages.", body = MessagePage),
        (status = 400, description = "Malformed parameter.", body = ErrorEnvelope),
        (status = 403, description = "The caller lacks `read`.", body = ErrorEnvelope),
        (status = 404, description = "Unknown session or chat.", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn list_messages(
    auth: Auth<CapRead>,
    State(st): State<AppState>,
    path: PathParams,
    q: QueryMap,
) -> ApiResult<Json<MessagePage>> {
    let (sid, cid) = (path.session()?, path.chat()?);
    let limit = q.limit()?;
    let cursor = q.cursor('m', 2)?;
    let session = check_session(&st, &auth, &sid).await?;
    let chat = st
        .store()
        .get_chat(&session, &cid)
        .await?
        .ok_or_else(ApiError::chat_not_found)?;
    let (rows, next) = st
        .store()
        .list_messages(chat.id, cursor.as_ref(), limit)
        .await?;
    Ok(Json(MessagePage {
        data: rows
            .into_iter()
            .map(|m| Message::from_record(m, &chat.jid))
            .collect(),
        next_cursor: next.map(|c| c.encode()),
    }))
}
