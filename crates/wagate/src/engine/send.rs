//! What the gateway asks the engine to send: one message with the id it must carry.
//!
//! The id is chosen by the gateway and stored before the first attempt, so a send repeated
//! after a crash or a lost answer carries the same id and the recipient's devices keep one
//! copy (WhatsApp deduplicates messages by id).

use serde::{Deserialize, Serialize};

use crate::domain::Jid;

/// A message to send.
#[derive(Debug, Clone, PartialEq)]
pub struct OutgoingMessage {
    /// The chat: a person (phone JID or LID) or a group.
    pub to: Jid,
    /// WhatsApp's message id, chosen by the gateway.
    pub id: String,
    pub content: OutgoingContent,
}

/// The kinds of content the API sends. Serialized into the durable outbox as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum OutgoingContent {
    Text {
        body: String,
        /// WhatsApp id of the message replied to, in the same chat.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reply_to: Option<String>,
        /// People mentioned (`<digits>@s.whatsapp.net` or `@lid`); the body names them as `@<digits>`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        mentions: Vec<String>,
        #[serde(default)]
        link_preview: bool,
    },
    Location {
        latitude: f64,
        longitude: f64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    Contact {
        display_name: String,
        vcard: String,
    },
    Poll {
        question: String,
        options: Vec<String>,
        /// How many options a voter may pick (1 = single choice).
        selectable_count: u32,
    },
    /// Image, video, audio, document or sticker: the bytes travel in the outbox until WhatsApp
    /// has them.
    Media {
        kind: MediaKind,
        #[serde(with = "base64_bytes")]
        data: Vec<u8>,
        mimetype: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filename: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        caption: Option<String>,
        /// For audio: a voice note (push-to-talk) rather than an audio file.
        #[serde(default)]
        voice: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
    Document,
    Sticker,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Image => "image",
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Document => "document",
            MediaKind::Sticker => "sticker",
        }
    }
}

impl OutgoingContent {
    /// The stored message's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            OutgoingContent::Text { .. } => "text",
            OutgoingContent::Location { .. } => "location",
            OutgoingContent::Contact { .. } => "contact",
            OutgoingContent::Poll { .. } => "poll",
            OutgoingContent::Media { kind, .. } => kind.as_str(),
        }
    }

    /// The stored message's `body`: the text, caption, poll question, contact or place name.
    pub fn body(&self) -> Option<String> {
        match self {
            OutgoingContent::Text { body, .. } => Some(body.clone()),
            OutgoingContent::Location { name, .. } => name.clone(),
            OutgoingContent::Contact { display_name, .. } => Some(display_name.clone()),
            OutgoingContent::Poll { question, .. } => Some(question.clone()),
            OutgoingContent::Media { caption, .. } => caption.clone(),
        }
    }
}

/// What WhatsApp's server answered to a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentAck {
    /// The server's timestamp of the message, epoch ms.
    pub timestamp: i64,
}

/// Why a send failed, as the outbox must treat it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No connected client: try again when the session connects.
    NotConnected,
    /// A temporary failure (timeout, connection lost mid-send): try again later with the same id.
    Retry(String),
    /// WhatsApp refused the message for good (no such account, not a member, too large, ...).
    Refused(String),
}

mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// A new message id in the shape WhatsApp Web uses (`3EB0` and 18 hex digits).
pub fn new_message_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 9];
    rand::thread_rng().fill_bytes(&mut b);
    format!("3EB0{}", hex::encode_upper(b))
}
