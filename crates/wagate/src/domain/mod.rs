//! Newtypes that parse once at the edge: everything past the HTTP layer can trust them.

pub mod capability;
pub mod jid;
pub mod page;
pub mod phone;
pub mod session_id;

pub use capability::{CapSet, Capability};
pub use jid::{ChatKind, Jid};
pub use page::{Cursor, Limit};
pub use phone::Phone;
pub use session_id::SessionId;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
