//! What the store returns and the few write inputs of the API side.

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

/// Delivery state of a message; it only ever moves forward (`failed` aside). Stored as its
/// lowercase name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::Type,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum MessageStatus {
    Pending,
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Played => "played",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => MessageStatus::Pending,
            "delivered" => MessageStatus::Delivered,
            "read" => MessageStatus::Read,
            "played" => MessageStatus::Played,
            "failed" => MessageStatus::Failed,
            _ => MessageStatus::Sent,
        }
    }

    /// Position in the forward order (`failed` last).
    pub fn rank(self) -> i64 {
        match self {
            MessageStatus::Pending => 0,
            MessageStatus::Sent => 1,
            MessageStatus::Delivered => 2,
            MessageStatus::Read => 3,
            MessageStatus::Played => 4,
            MessageStatus::Failed => 5,
        }
    }
}

/// Lifecycle state of a session as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Starting,
    ScanQrCode,
    Working,
    Failed,
    Stopped,
    LoggedOut,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Starting => "starting",
            SessionStatus::ScanQrCode => "scan_qr_code",
            SessionStatus::Working => "working",
            SessionStatus::Failed => "failed",
            SessionStatus::Stopped => "stopped",
            SessionStatus::LoggedOut => "logged_out",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "starting" => SessionStatus::Starting,
            "scan_qr_code" => SessionStatus::ScanQrCode,
            "working" => SessionStatus::Working,
            "failed" => SessionStatus::Failed,
            "logged_out" => SessionStatus::LoggedOut,
            _ => SessionStatus::Stopped,
        }
    }

    /// True while the engine holds (or is building) a connection for the session.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            SessionStatus::Starting | SessionStatus::ScanQrCode | SessionStatus::Working
        )
    }
}

#[derive(Debug, Clone, FromRow, Deserialize)]
pub struct ChatRecord {
    pub id: i64,
    pub session_id: String,
    pub jid: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    #[serde(deserialize_with = "super::json_flag")]
    pub archived: bool,
    #[serde(deserialize_with = "super::json_flag")]
    pub pinned: bool,
    pub muted_until: Option<i64>,
    pub unread_count: i64,
    pub last_message_at: i64,
    /// Other JIDs of the same conversation, comma-separated.
    pub aliases: String,
}

impl ChatRecord {
    pub fn alias_list(&self) -> Vec<String> {
        self.aliases
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A partial update of a chat from the API; `None` leaves a field unchanged, and
/// `muted_until: Some(None)` clears the mute.
#[derive(Debug, Clone, Default)]
pub struct ChatPatch {
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
    pub muted_until: Option<Option<i64>>,
}

/// A chat setting changed through the API, waiting to be sent to WhatsApp.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PendingChatSetting {
    pub chat_jid: String,
    /// `archived`, `pinned` or `muted_until`.
    pub setting: String,
    /// 0/1 for the flags; the mute's end (epoch ms) for `muted_until`, 0 for unmuted.
    pub value: i64,
    pub changed_at: i64,
    pub attempts: i32,
}

#[derive(Debug, Clone, FromRow, Deserialize)]
pub struct MessageRecord {
    pub id: i64,
    pub session_id: String,
    pub chat_id: i64,
    pub wa_message_id: String,
    #[serde(deserialize_with = "super::json_flag")]
    pub from_me: bool,
    pub sender_jid: Option<String>,
    pub sender_lid: Option<String>,
    pub sender_name: Option<String>,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub body: Option<String>,
    #[serde(deserialize_with = "super::json_flag")]
    pub has_media: bool,
    pub media_mimetype: Option<String>,
    pub media_size: Option<i64>,
    pub media_filename: Option<String>,
    /// How to fetch the attachment again (`engine::MediaRef` as JSON); not part of the API.
    #[serde(default)]
    pub media_ref: Option<String>,
    /// The on-disk copy of the attachment, relative to the media folder.
    #[serde(default)]
    pub media_file: Option<String>,
    /// For a poll: its options, choice count and secret (`engine::PollInfo` as JSON).
    #[serde(default)]
    pub poll: Option<String>,
    pub quoted_message_id: Option<String>,
    pub mentions: Option<String>,
    pub status: MessageStatus,
    pub error: Option<String>,
    #[serde(deserialize_with = "super::json_flag")]
    pub edited: bool,
    #[serde(deserialize_with = "super::json_flag")]
    pub deleted: bool,
    pub timestamp: i64,
    pub created_at: i64,
}

/// A person as one session knows them.
#[derive(Debug, Clone, FromRow, Deserialize)]
pub struct ContactRecord {
    pub id: i64,
    pub lid: Option<String>,
    pub phone: Option<String>,
    /// The name shown: the session's address-book name, else the person's push name.
    pub name: Option<String>,
    pub business_name: Option<String>,
    #[serde(deserialize_with = "super::json_flag")]
    pub in_dm: bool,
    #[serde(deserialize_with = "super::json_flag")]
    pub in_group: bool,
}

#[derive(Debug, Clone, FromRow)]
pub struct SessionRecord {
    pub id: String,
    pub org_id: String,
    pub label: Option<String>,
    pub status: String,
    pub status_reason: Option<String>,
    pub phone_number: Option<String>,
    pub wa_jid: Option<String>,
    pub wa_lid: Option<String>,
    pub push_name: Option<String>,
    pub auto_read: bool,
    pub presence_typing: bool,
    pub rate_per_min: i64,
    pub rate_per_hour: i64,
    /// Keep a copy of incoming attachments in the on-disk media store.
    pub download_media: bool,
    pub last_connected_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SessionRecord {
    pub fn status(&self) -> SessionStatus {
        SessionStatus::parse(&self.status)
    }
}

/// Settings of a new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub org_id: String,
    pub label: Option<String>,
    pub auto_read: bool,
    pub presence_typing: bool,
    pub rate_per_min: i64,
    pub rate_per_hour: i64,
    pub download_media: bool,
}

/// A partial update of a session's settings; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SessionPatch {
    pub label: Option<Option<String>>,
    pub auto_read: Option<bool>,
    pub presence_typing: Option<bool>,
    pub rate_per_min: Option<i64>,
    pub rate_per_hour: Option<i64>,
    pub download_media: Option<bool>,
}

#[derive(Debug, Clone, FromRow)]
pub struct ApiKeyRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub key_hash: String,
    pub key_prefix: String,
    pub capabilities: String,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

/// A key to insert; the caller has already hashed the secret.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub key_hash: String,
    pub key_prefix: String,
    pub capabilities: String,
    pub created_by: Option<String>,
    pub expires_at: Option<i64>,
}

/// One outbox event.
#[derive(Debug, Clone, FromRow)]
pub struct EventRecord {
    /// Position in the database's event order.
    pub seq: i64,
    /// The event's own id (a ULID), stable across deliveries.
    pub id: String,
    pub org_id: String,
    pub session_id: Option<String>,
    pub event: String,
    /// The payload as JSON text.
    pub payload: String,
    pub created_at: i64,
}
