//! The JSON shapes of the API (camelCase), converted from store records.
//!
//! They live here, below both the store (which writes them into event payloads) and `http`
//! (which answers with them and re-exports them as `http::models`), so the store never reaches
//! up into the HTTP layer.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{ApiKeyRecord, ChatRecord, ContactRecord, MessageRecord, SessionRecord, SessionStatus};
use crate::domain::now_ms;

/// A conversation in the stored copy.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chat {
    /// The gateway's numeric id of the chat.
    #[schema(example = 3344)]
    pub id: i64,
    #[schema(example = "01J9ZX8K2QHV0M3T6R7P4N5W8C")]
    pub session_id: String,
    /// The chat's JID (a phone-number JID for a direct chat, `...@g.us` for a group).
    #[schema(example = "6281234567890@s.whatsapp.net")]
    pub jid: String,
    /// `dm`, `group`, `newsletter`, `broadcast` or `status`.
    #[serde(rename = "type")]
    #[schema(example = "dm")]
    pub kind: String,
    /// Display name: the group subject, or the contact's name as WhatsApp reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Alice")]
    pub name: Option<String>,
    pub archived: bool,
    pub pinned: bool,
    /// Muted until this time (epoch ms); null when the chat is not muted.
    #[schema(example = 1751198400000_i64)]
    pub muted_until: Option<i64>,
    /// Incoming messages not yet marked read in the gateway.
    #[schema(example = 3)]
    pub unread_count: i64,
    /// Time of the newest stored message (epoch ms); null for a chat without messages.
    #[schema(example = 1719662400000_i64)]
    pub last_message_at: Option<i64>,
    /// Other JIDs of the same conversation, e.g. the contact's `@lid` address.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub aliases: Vec<String>,
}

impl From<ChatRecord> for Chat {
    fn from(c: ChatRecord) -> Self {
        let now = now_ms();
        let aliases = c.alias_list();
        Chat {
            id: c.id,
            session_id: c.session_id,
            jid: c.jid,
            kind: c.kind,
            name: c.name,
            archived: c.archived,
            pinned: c.pinned,
            muted_until: c.muted_until.filter(|&m| m > now),
            unread_count: c.unread_count,
            last_message_at: (c.last_message_at > 0).then_some(c.last_message_at),
            aliases,
        }
    }
}

/// A page of chats. `nextCursor` is null on the last page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatPage {
    pub data: Vec<Chat>,
    pub next_cursor: Option<String>,
}

/// Attachment metadata.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Media {
    pub mimetype: Option<String>,
    pub size: Option<i64>,
    pub filename: Option<String>,
    /// Where the gateway keeps its copy of the file, relative to its media folder (sessions
    /// with `downloadMedia`); absent while there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// A stored message.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: i64,
    /// WhatsApp's id of the message.
    #[schema(example = "3EB0C431C26A1916E2B2")]
    pub wa_message_id: String,
    pub session_id: String,
    pub chat_jid: String,
    /// `text`, `image`, `video`, `audio`, `document`, `sticker`, `location`, `contact`, `poll`, `reaction`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// `in` for received, `out` for sent by this account (from any of its devices).
    pub direction: String,
    pub from_me: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_jid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_lid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    pub has_media: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media: Option<Media>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quoted_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mentions: Option<Vec<String>>,
    /// `pending`, `sent`, `delivered`, `read`, `played` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub edited: bool,
    pub deleted: bool,
    /// When WhatsApp says it was sent (epoch ms).
    pub timestamp: i64,
    /// When the gateway stored it (epoch ms).
    pub created_at: i64,
}

impl Message {
    pub fn from_record(m: MessageRecord, chat_jid: &str) -> Self {
        let media = m.has_media.then_some(Media {
            mimetype: m.media_mimetype,
            size: m.media_size,
            filename: m.media_filename,
            file: m.media_file,
        });
        Message {
            id: m.id,
            wa_message_id: m.wa_message_id,
            session_id: m.session_id,
            chat_jid: chat_jid.to_owned(),
            kind: m.kind,
            direction: if m.from_me { "out" } else { "in" }.to_owned(),
            from_me: m.from_me,
            sender_jid: m.sender_jid,
            sender_lid: m.sender_lid,
            sender_name: m.sender_name,
            body: m.body,
            has_media: m.has_media,
            media,
            quoted_message_id: m.quoted_message_id,
            mentions: m.mentions.and_then(|s| serde_json::from_str(&s).ok()),
            status: m.status.as_str().to_owned(),
            error: m.error,
            edited: m.edited,
            deleted: m.deleted,
            timestamp: m.timestamp,
            created_at: m.created_at,
        }
    }
}

/// A page of messages, newest first. `nextCursor` is null on the last page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MessagePage {
    pub data: Vec<Message>,
    pub next_cursor: Option<String>,
}

/// A person this session has seen.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// The person's LID (WhatsApp's privacy address); null only while WhatsApp has not yet
    /// told the gateway the LID of a number.
    #[schema(example = "205227043110953@lid")]
    pub lid: Option<String>,
    /// `dm` when the session has a direct chat with the person, otherwise `group`.
    #[schema(example = "dm")]
    pub source: String,
    /// The name saved in the phone's address book, else the person's own push name.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Alice")]
    pub name: Option<String>,
    /// Digits only, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "6281234567890")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Acme Corp")]
    pub business_name: Option<String>,
}

impl From<ContactRecord> for Contact {
    fn from(c: ContactRecord) -> Self {
        Contact {
            lid: c.lid,
            source: if c.in_dm { "dm" } else { "group" }.to_owned(),
            name: c.name,
            phone_number: c.phone,
            business_name: c.business_name,
        }
    }
}

/// A page of contacts. `nextCursor` is an empty string on the last page.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactPage {
    pub data: Vec<Contact>,
    pub next_cursor: String,
}

/// The answer of a number check.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OnWhatsApp {
    /// The number as asked.
    pub query: String,
    /// Whether the number has a WhatsApp account.
    #[serde(rename = "isOnWhatsApp")]
    pub is_on_whatsapp: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "6281234567890@s.whatsapp.net")]
    pub jid: Option<String>,
}

/// A WhatsApp session: one attached number.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[schema(example = "01J9ZX8K2QHV0M3T6R7P4N5W8C")]
    pub id: String,
    pub organization_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    pub status: SessionStatus,
    /// Why the session has its status (a failure, a ban with its end, a replacement, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_jid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wa_lid: Option<String>,
    /// Mark incoming messages read on WhatsApp automatically.
    pub auto_read: bool,
    /// Show "typing…" before each message sent through the API.
    pub presence_typing: bool,
    /// Messages per minute this session may send.
    pub rate_per_min: i64,
    /// Messages per hour this session may send.
    pub rate_per_hour: i64,
    /// Incoming attachments are copied into the gateway's media store.
    pub download_media: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_connected_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<SessionRecord> for Session {
    fn from(s: SessionRecord) -> Self {
        Session {
            status: s.status(),
            id: s.id,
            organization_id: s.org_id,
            label: s.label,
            status_reason: s.status_reason,
            phone_number: s.phone_number,
            wa_jid: s.wa_jid,
            wa_lid: s.wa_lid,
            auto_read: s.auto_read,
            presence_typing: s.presence_typing,
            rate_per_min: s.rate_per_min,
            rate_per_hour: s.rate_per_hour,
            download_media: s.download_media,
            last_connected_at: s.last_connected_at,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A list of sessions.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    pub data: Vec<Session>,
}

/// An API key's metadata (never its secret, except once in [`CreatedApiKey`]).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    /// The first characters of the key, to recognise it.
    #[schema(example = "wag_Xy3k9Q")]
    pub prefix: String,
    pub capabilities: Vec<String>,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

impl From<ApiKeyRecord> for ApiKey {
    fn from(k: ApiKeyRecord) -> Self {
        ApiKey {
            id: k.id,
            organization_id: k.org_id,
            name: k.name,
            prefix: k.key_prefix,
            capabilities: k
                .capabilities
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            created_at: k.created_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            last_used_at: k.last_used_at,
        }
    }
}

/// A new API key: its metadata and the secret, shown only in this response.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub meta: ApiKey,
    /// The secret. Store it now: the gateway keeps only its hash.
    pub key: String,
}

/// A list of API keys.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyList {
    pub data: Vec<ApiKey>,
}
