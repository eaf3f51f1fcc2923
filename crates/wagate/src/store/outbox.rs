//! Outbox events drafted inside a write transaction and inserted just before it commits.
//!
//! The envelope a consumer sees is `{id, seq, event, schema, session, organization, timestamp,
//! payload}`; the payload is the API's JSON shape of the changed thing.

use serde::Serialize;

/// Event type names.
pub mod kind {
    pub const MESSAGE: &str = "message";
    pub const MESSAGE_FROM_ME: &str = "message.from_me";
    pub const MESSAGE_STATUS: &str = "message.status";
    /// A reaction (or its removal: empty `body`) to the message `quotedMessageId`.
    pub const MESSAGE_REACTION: &str = "message.reaction";
    pub const MESSAGE_EDITED: &str = "message.edited";
    pub const MESSAGE_REVOKED: &str = "message.revoked";
    pub const CHAT_UPDATE: &str = "chat.update";
    pub const CHAT_DELETED: &str = "chat.deleted";
    pub const CONTACT_UPDATE: &str = "contact.update";
    pub const GROUP_UPDATE: &str = "group.update";
    pub const GROUP_PARTICIPANT: &str = "group.participant";
    pub const HISTORY_SYNC: &str = "history.sync";
    pub const SESSION_CREATED: &str = "session.created";
    pub const SESSION_UPDATED: &str = "session.updated";
    pub const SESSION_STATUS: &str = "session.status";
    pub const SESSION_DELETED: &str = "session.deleted";
    /// A new pairing QR code (first one, and each rotation).
    pub const AUTH_QR: &str = "auth.qr";
    /// A pairing code was issued for linking by phone number.
    pub const AUTH_CODE: &str = "auth.code";
    pub const API_KEY_CREATED: &str = "api_key.created";
    pub const API_KEY_REVOKED: &str = "api_key.revoked";

    /// Every type, for validating the feed's `event=` filter.
    pub const ALL: &[&str] = &[
        MESSAGE,
        MESSAGE_FROM_ME,
        MESSAGE_REACTION,
        MESSAGE_STATUS,
        MESSAGE_EDITED,
        MESSAGE_REVOKED,
        CHAT_UPDATE,
        CHAT_DELETED,
        CONTACT_UPDATE,
        GROUP_UPDATE,
        GROUP_PARTICIPANT,
        HISTORY_SYNC,
        SESSION_CREATED,
        SESSION_UPDATED,
        SESSION_STATUS,
        SESSION_DELETED,
        AUTH_QR,
        AUTH_CODE,
        API_KEY_CREATED,
        API_KEY_REVOKED,
    ];
}

/// One drafted event.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub id: String,
    pub session: Option<String>,
    pub event: &'static str,
    pub payload: String,
}

/// The events of one transaction, all of one organization.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    pub org: String,
    pub drafts: Vec<Draft>,
}

impl Outbox {
    pub fn new(org: impl Into<String>) -> Self {
        Outbox {
            org: org.into(),
            drafts: Vec::new(),
        }
    }

    pub fn push(&mut self, session: Option<&str>, event: &'static str, payload: &impl Serialize) {
        let payload = serde_json::to_string(payload).unwrap_or_else(|_| "null".into());
        self.drafts.push(Draft {
            id: ulid::Ulid::new().to_string(),
            session: session.map(str::to_owned),
            event,
            payload,
        });
    }
}

/// Contacts and chats a transaction changed, so it can write one event for each at its end.
#[derive(Debug, Default)]
pub(crate) struct Touched {
    pub contacts: std::collections::BTreeSet<i64>,
    pub chats: std::collections::BTreeSet<i64>,
}
