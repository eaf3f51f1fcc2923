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
        /// The poll's 32-byte secret (hex), chosen once so every attempt sends the same poll;
        /// voters derive their vote keys from it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret: Option<String>,
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
        /// A file already on WhatsApp's media servers (a forward): sent by reference, `data`
        /// is empty and nothing is uploaded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reference: Option<super::MediaRef>,
    },
    /// A reaction to the message `target` (an empty emoji removes this account's reaction).
    Reaction {
        target: MessageKey,
        emoji: String,
    },
    /// A copy of a stored message, marked as forwarded.
    Forward {
        content: Box<OutgoingContent>,
    },
    /// A new text for the account's own message `target`.
    Edit {
        target: MessageKey,
        text: String,
    },
    /// "Delete for everyone" of the message `target`.
    Revoke {
        target: MessageKey,
    },
    /// This account's vote in the poll `target` (no options: the vote is withdrawn).
    Vote {
        target: MessageKey,
        /// Who created the poll (this account's JID for its own polls).
        creator: String,
        /// The poll's secret, hex.
        secret: String,
        options: Vec<String>,
    },
}

/// The message an action is about, as WhatsApp addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageKey {
    /// WhatsApp id of the message.
    pub id: String,
    /// Sent by this account.
    pub from_me: bool,
    /// In a group, the author of a message not sent by this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
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
            OutgoingContent::Reaction { .. } => "reaction",
            OutgoingContent::Forward { content } => content.kind(),
            OutgoingContent::Edit { .. } => "edit",
            OutgoingContent::Revoke { .. } => "revoke",
            OutgoingContent::Vote { .. } => "vote",
        }
    }

    /// A change to an existing message (edit, revoke) rather than a message of its own: it has
    /// no stored row; once WhatsApp took it, it is applied to its target.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            OutgoingContent::Edit { .. }
                | OutgoingContent::Revoke { .. }
                | OutgoingContent::Vote { .. }
        )
    }

    /// The stored message's `body`: the text, caption, poll question, contact or place name.
    pub fn body(&self) -> Option<String> {
        match self {
            OutgoingContent::Text { body, .. } => Some(body.clone()),
            OutgoingContent::Location { name, .. } => name.clone(),
            OutgoingContent::Contact { display_name, .. } => Some(display_name.clone()),
            OutgoingContent::Poll { question, .. } => Some(question.clone()),
            OutgoingContent::Media { caption, .. } => caption.clone(),
            OutgoingContent::Reaction { emoji, .. } => Some(emoji.clone()),
            OutgoingContent::Forward { content } => content.body(),
            OutgoingContent::Edit { text, .. } => Some(text.clone()),
            OutgoingContent::Revoke { .. } | OutgoingContent::Vote { .. } => None,
        }
    }
}

/// What WhatsApp's server answered to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentAck {
    /// The server's timestamp of the message, epoch ms.
    pub timestamp: i64,
    /// Where an uploaded attachment now lives on WhatsApp's media servers.
    pub media: Option<super::MediaRef>,
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

pub(crate) mod base64_bytes {
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
