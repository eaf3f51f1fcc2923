//! The seam between the gateway and a live WhatsApp connection.
//!
//! The HTTP layer talks to WhatsApp only through [`Engine`] (session lifecycle and pairing)
//! and [`LiveClient`] (actions on a connected session). The engine reports what happens on the
//! connection by calling the store's ingest operations. [`OfflineEngine`] is what a gateway
//! without a WhatsApp connection has: no client, so every live call answers 501.

use std::sync::Arc;

use async_trait::async_trait;

pub mod send;
pub mod sender;
pub mod settings_sync;
pub mod whatsapp;

use crate::domain::{Jid, Phone, SessionId};
use crate::store::SessionRecord;

/// Why a live call could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// There is no connected client for the session (→ 501 `not_implemented`).
    #[error("the session has no connected WhatsApp client")]
    NotConnected,
    /// The call conflicts with the session's state (→ 409 `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// WhatsApp did not answer or refused (→ 503 `gateway_unavailable`).
    #[error("{0}")]
    Upstream(String),
}

/// The typing indicator states.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ChatPresence {
    Composing,
    Recording,
    Paused,
}

/// The answer of a number lookup, for one of the numbers asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnWhatsApp {
    /// The number asked about.
    pub phone: Phone,
    pub registered: bool,
    /// The account's JID when registered.
    pub jid: Option<Jid>,
}

/// Where a profile picture can be downloaded (WhatsApp's CDN; the URL expires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePicture {
    pub url: String,
    /// WhatsApp's id of the picture: changes when the picture does.
    pub id: String,
}

/// A person's "about" text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct About {
    pub text: String,
    /// When it was set, epoch ms, if WhatsApp says.
    pub set_at: Option<i64>,
}

/// A QR code waiting to be scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QrCode {
    /// The text to encode in the QR image.
    pub code: String,
    /// When WhatsApp rotates it, epoch ms.
    pub expires_at: i64,
}

/// A chat setting as WhatsApp's app state carries it, to make the same change a phone would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatSettingChange {
    Archived(bool),
    Pinned(bool),
    /// The mute's end, epoch ms; `None` unmutes.
    MutedUntil(Option<i64>),
}

/// Live actions on one connected session.
#[async_trait]
pub trait LiveClient: Send + Sync {
    async fn send_chat_presence(&self, chat: &Jid, state: ChatPresence) -> Result<(), EngineError>;
    /// Looks up numbers (at most 50 per call), one answer per number, in any order.
    async fn is_on_whatsapp(&self, phones: &[Phone]) -> Result<Vec<OnWhatsApp>, EngineError>;
    /// Shows the account as online (`true`) or offline to its contacts.
    async fn set_available(&self, available: bool) -> Result<(), EngineError>;
    /// A person's or group's profile picture, `None` when there is none or privacy hides it.
    async fn profile_picture(&self, who: &Jid) -> Result<Option<ProfilePicture>, EngineError>;
    /// A person's about text, `None` when there is none or privacy hides it.
    async fn about(&self, who: &Jid) -> Result<Option<About>, EngineError>;
    /// Sends a chat setting to WhatsApp as an app-state change (what archiving, pinning or
    /// muting on the phone does), so the phone and the other linked devices follow.
    async fn push_chat_setting(
        &self,
        chat: &Jid,
        change: ChatSettingChange,
    ) -> Result<(), EngineError>;
    /// Fetches and decrypts an attachment from WhatsApp's media servers.
    async fn download_media(&self, media: &MediaRef) -> Result<Vec<u8>, EngineError>;
    /// The same into an empty file, rewound on success to be read back (it then holds only a
    /// checked, complete attachment), so a large file never has to fit in memory.
    async fn download_media_to(
        &self,
        media: &MediaRef,
        file: std::fs::File,
    ) -> Result<std::fs::File, EngineError> {
        use std::io::{Seek, Write};
        let bytes = self.download_media(media).await?;
        let mut file = file;
        file.write_all(&bytes)
            .and_then(|()| file.rewind())
            .map_err(|e| EngineError::Upstream(format!("writing the attachment: {e}")))?;
        Ok(file)
    }
    /// Sends one message with the id it carries (uploading its media first), and returns when
    /// WhatsApp's server has it.
    async fn send_message(
        &self,
        msg: &send::OutgoingMessage,
    ) -> Result<send::SentAck, send::SendError>;
}

/// Where an attachment lives on WhatsApp's media servers and how to decrypt it: enough to fetch
/// it again while WhatsApp keeps it (weeks, not forever). Stored with the message as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MediaRef {
    /// `image`, `video`, `audio`, `document` or `sticker`.
    pub kind: String,
    pub direct_path: String,
    #[serde(with = "send::base64_bytes")]
    pub media_key: Vec<u8>,
    #[serde(with = "send::base64_bytes")]
    pub file_sha256: Vec<u8>,
    #[serde(with = "send::base64_bytes")]
    pub file_enc_sha256: Vec<u8>,
    pub file_length: u64,
}

impl MediaRef {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Option<MediaRef> {
        serde_json::from_str(s).ok()
    }
}

/// What voting in a poll needs, kept with the poll's message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollInfo {
    pub options: Vec<String>,
    pub selectable_count: u32,
    /// The poll's 32-byte secret, hex; votes are encrypted with keys derived from it.
    pub secret: String,
}

impl PollInfo {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Option<PollInfo> {
        serde_json::from_str(s).ok()
    }
}

/// Runs sessions' WhatsApp connections.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Starts connecting a session (showing QR codes when it is not paired yet).
    async fn start(&self, session: &SessionRecord) -> Result<(), EngineError>;
    /// Disconnects a session, keeping its pairing. Stopping a session that does not run is fine.
    async fn stop(&self, session: &SessionId) -> Result<(), EngineError>;
    /// Unlinks the device from the phone and forgets the pairing.
    async fn logout(&self, session: &SessionId) -> Result<(), EngineError>;
    /// The QR code currently shown for pairing.
    async fn qr(&self, session: &SessionId) -> Result<QrCode, EngineError>;
    /// Asks WhatsApp for an 8-character code to link by phone number instead of QR.
    async fn pairing_code(&self, session: &SessionId, phone: &Phone)
        -> Result<String, EngineError>;
    /// The connected client of a session, if it has one.
    fn client(&self, session: &SessionId) -> Option<Arc<dyn LiveClient>>;
    /// The session's settings were changed through the API: forget any copy of them.
    fn settings_changed(&self, _session: &SessionId) {}
    /// Sessions as their client connects (the sender sends what waited for it). An engine
    /// that does not report connections gives a closed channel; the sender then finds
    /// connected sessions with work at its next look.
    fn connections(&self) -> tokio::sync::broadcast::Receiver<SessionId> {
        tokio::sync::broadcast::channel(1).1
    }
    /// What the engine runs now, for `/metrics`.
    fn stats(&self) -> EngineStats {
        EngineStats::default()
    }
}

/// A snapshot of what an engine runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Sessions with a run (connecting, connected or waiting for a scan).
    pub running: usize,
    /// Sessions with a connected, logged-in client.
    pub connected: usize,
    /// Sessions whose engine events wait to be handled, and how many.
    pub event_queues: Vec<(SessionId, usize)>,
    /// Tasks the engine owns.
    pub tasks: usize,
    /// WhatsApp clients in memory.
    pub clients_alive: usize,
    /// Writes of WhatsApp's changes tried again after a database error, and given up.
    pub store_retries: u64,
    pub store_failures: u64,
}

/// A gateway without WhatsApp connectivity: nothing is ever connected.
#[derive(Debug, Default)]
pub struct OfflineEngine;

#[async_trait]
impl Engine for OfflineEngine {
    async fn start(&self, _: &SessionRecord) -> Result<(), EngineError> {
        Err(EngineError::NotConnected)
    }
    async fn stop(&self, _: &SessionId) -> Result<(), EngineError> {
        Ok(())
    }
    async fn logout(&self, _: &SessionId) -> Result<(), EngineError> {
        Err(EngineError::NotConnected)
    }
    async fn qr(&self, _: &SessionId) -> Result<QrCode, EngineError> {
        Err(EngineError::NotConnected)
    }
    async fn pairing_code(&self, _: &SessionId, _: &Phone) -> Result<String, EngineError> {
        Err(EngineError::NotConnected)
    }
    fn client(&self, _: &SessionId) -> Option<Arc<dyn LiveClient>> {
        None
    }
}

impl From<EngineError> for crate::error::ApiError {
    fn from(e: EngineError) -> Self {
        use crate::error::ApiError;
        match e {
            EngineError::NotConnected => ApiError::no_client(),
            EngineError::Conflict(m) => ApiError::Conflict(m),
            EngineError::Upstream(m) => ApiError::Unavailable(m),
        }
    }
}
