//! What the HTTP API reads and changes: sessions, keys, the stored copy's pages, chat actions,
//! and the outbox feed.

use super::records::*;
use super::{on_db, Store};
use crate::domain::{Cursor, Jid, Limit, SessionId};

/// Which people a contacts page keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactSource {
    Dm,
    Group,
}

#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub source: Option<ContactSource>,
    pub group: Option<Jid>,
    /// Case-insensitive substring of the name shown, the business name or the number.
    pub q: Option<String>,
}

/// Filters of the event feed.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub session: Option<String>,
    /// Event types to keep; empty keeps all.
    pub events: Vec<String>,
}

impl Store {
    // Sessions.

    pub async fn create_session(&self, new: NewSession) -> anyhow::Result<SessionRecord> {
        let id = SessionId::new().to_string();
        let _w = self.write_gate().await;
        Ok(on_db!(self, sessions::create(&id, &new))?)
    }

    /// The session `id` if it belongs to `org` (`None` for another org's session: callers answer 404).
    pub async fn get_session(
        &self,
        org: &str,
        id: &SessionId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        Ok(on_db!(self, sessions::get(org, &id.to_string()))?)
    }

    /// Any session by id, whatever its org (for the engine and the CLI).
    pub async fn get_session_any_org(
        &self,
        id: &SessionId,
    ) -> anyhow::Result<Option<SessionRecord>> {
        Ok(on_db!(self, sessions::get_any(&id.to_string()))?)
    }

    /// An org's sessions, oldest first (ULIDs sort by creation time).
    pub async fn list_sessions(&self, org: &str) -> anyhow::Result<Vec<SessionRecord>> {
        Ok(on_db!(self, sessions::list(org))?)
    }

    /// Sessions the engine should bring back after a restart.
    pub async fn list_active_sessions(&self) -> anyhow::Result<Vec<SessionRecord>> {
        Ok(on_db!(self, sessions::list_active())?)
    }

    pub async fn update_session(
        &self,
        org: &str,
        id: &SessionId,
        p: SessionPatch,
    ) -> anyhow::Result<Option<SessionRecord>> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, sessions::update(org, &id.to_string(), &p))?)
    }

    /// Records a lifecycle change (writes `session.status` when the status or its reason changed).
    pub async fn set_session_status(
        &self,
        id: &SessionId,
        status: SessionStatus,
        reason: Option<&str>,
    ) -> anyhow::Result<Option<SessionRecord>> {
        let _w = self.write_gate().await;
        let r = on_db!(
            self,
            sessions::set_status(None, &id.to_string(), status, reason, None)
        )?;
        Ok(r.map(|(s, _)| s))
    }

    /// Moves `org`'s session to `status` only if its current status is one of `from`, in one
    /// conditional update: of concurrent claims exactly one succeeds. Returns the session and
    /// whether this call changed it; `None` when the session is not `org`'s.
    pub async fn claim_session_status(
        &self,
        org: &str,
        id: &SessionId,
        from: &[SessionStatus],
        status: SessionStatus,
        reason: Option<&str>,
    ) -> anyhow::Result<Option<(SessionRecord, bool)>> {
        let _w = self.write_gate().await;
        Ok(on_db!(
            self,
            sessions::set_status(Some(org), &id.to_string(), status, reason, Some(from))
        )?)
    }

    /// Announces a session's new pairing QR code (`auth.qr` event: `{qr, expiresAt}`), so a
    /// page can show each rotation without polling.
    pub async fn record_qr(&self, id: &SessionId, qr: &str, expires_at: i64) -> anyhow::Result<()> {
        let payload = serde_json::json!({"qr": qr, "expiresAt": expires_at});
        let _w = self.write_gate().await;
        on_db!(
            self,
            sessions::pairing_event(&id.to_string(), super::outbox::kind::AUTH_QR, &payload)
        )?;
        Ok(())
    }

    /// Announces a pairing code issued for linking by phone number (`auth.code`: `{code}`).
    pub async fn record_pairing_code(&self, id: &SessionId, code: &str) -> anyhow::Result<()> {
        let payload = serde_json::json!({"code": code});
        let _w = self.write_gate().await;
        on_db!(
            self,
            sessions::pairing_event(&id.to_string(), super::outbox::kind::AUTH_CODE, &payload)
        )?;
        Ok(())
    }

    /// Records the WhatsApp account a session is paired with.
    pub async fn set_session_account(
        &self,
        id: &SessionId,
        wa_jid: Option<&str>,
        wa_lid: Option<&str>,
        phone: Option<&str>,
        push_name: Option<&str>,
    ) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(
            self,
            sessions::set_account(&id.to_string(), wa_jid, wa_lid, phone, push_name)
        )?)
    }

    /// Deletes a session and everything stored for it. True when it existed.
    pub async fn delete_session(&self, org: &str, id: &SessionId) -> anyhow::Result<bool> {
        let deleted = {
            let _w = self.write_gate().await;
            on_db!(self, sessions::delete(org, &id.to_string()))?
        };
        if deleted {
            if let Some(dir) = &self.media_dir {
                match tokio::fs::remove_dir_all(dir.join(id.to_string())).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(session = %id, error = %e, "media files not removed"),
                }
            }
        }
        Ok(deleted)
    }

    // API keys and the `meta` table.

    pub async fn insert_api_key(&self, k: NewApiKey) -> anyhow::Result<ApiKeyRecord> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, api_keys::insert(&k))?)
    }

    pub async fn find_api_key_by_hash(&self, hash: &str) -> anyhow::Result<Option<ApiKeyRecord>> {
        Ok(on_db!(self, api_keys::find_by_hash(hash))?)
    }

    /// An org's keys, revoked ones included, oldest first.
    pub async fn list_api_keys(&self, org: &str) -> anyhow::Result<Vec<ApiKeyRecord>> {
        Ok(on_db!(self, api_keys::list(org))?)
    }

    pub async fn count_api_keys(&self) -> anyhow::Result<i64> {
        Ok(on_db!(self, api_keys::count())?)
    }

    /// Revokes a key (with `org`, only that org's key). Returns it when it exists.
    pub async fn revoke_api_key(
        &self,
        org: Option<&str>,
        id: &str,
    ) -> anyhow::Result<Option<ApiKeyRecord>> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, api_keys::revoke(org, id))?)
    }

    pub async fn touch_api_key(&self, id: &str, at: i64) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, api_keys::touch(id, at))?)
    }

    /// Reads a value from the `meta` table.
    pub async fn meta_get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(on_db!(self, api_keys::meta_get(key))?)
    }

    /// Sets `key` only if it is not set yet; true when this call set it.
    pub async fn meta_claim(&self, key: &str, value: &str) -> anyhow::Result<bool> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, api_keys::meta_claim(key, value))?)
    }

    // The stored copy.

    /// One chat by any of its JIDs.
    pub async fn get_chat(&self, session: &str, jid: &Jid) -> anyhow::Result<Option<ChatRecord>> {
        Ok(on_db!(self, chats::get(session, jid))?)
    }

    /// A page of chats in display order: pinned first, then latest activity, then id.
    pub async fn list_chats(
        &self,
        session: &str,
        cursor: Option<&Cursor>,
        limit: Limit,
    ) -> anyhow::Result<(Vec<ChatRecord>, Option<Cursor>)> {
        let n = limit.get() as i64;
        let mut rows = on_db!(self, chats::list(session, cursor, n))?;
        let next = super::finish_page(&mut rows, n, |c| {
            Cursor::new('c', vec![c.pinned as i64, c.last_message_at, c.id])
        });
        Ok((rows, next))
    }

    /// Applies an API patch; the answer is the row the update wrote. `None` when no such chat.
    pub async fn patch_chat(
        &self,
        session: &str,
        jid: &Jid,
        p: ChatPatch,
    ) -> anyhow::Result<Option<ChatRecord>> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, ingest::api_patch_chat(session, jid, &p))?)
    }

    /// Chat settings changed through the API and not yet taken by WhatsApp, oldest first.
    pub async fn pending_chat_settings(
        &self,
        session: &str,
        limit: i64,
    ) -> anyhow::Result<Vec<PendingChatSetting>> {
        Ok(on_db!(self, chats::pending_for_phone(session, limit))?)
    }

    /// Records the outcome of sending a pending chat setting to WhatsApp.
    pub async fn settle_chat_setting(
        &self,
        session: &str,
        p: &PendingChatSetting,
        sent: bool,
    ) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, chats::settle_for_phone(session, p, sent))?)
    }

    /// Sets the gateway's unread counter of a chat to zero. Idempotent.
    pub async fn mark_chat_read(
        &self,
        session: &str,
        jid: &Jid,
    ) -> anyhow::Result<Option<ChatRecord>> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, ingest::api_mark_read(session, jid))?)
    }

    /// Removes a chat and its messages from the stored copy only. True when it existed.
    pub async fn delete_chat(&self, session: &str, jid: &Jid) -> anyhow::Result<bool> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, ingest::api_delete_chat(session, jid))?)
    }

    /// A page of a chat's messages, newest first.
    pub async fn list_messages(
        &self,
        chat_id: i64,
        cursor: Option<&Cursor>,
        limit: Limit,
    ) -> anyhow::Result<(Vec<MessageRecord>, Option<Cursor>)> {
        let n = limit.get() as i64;
        let mut rows = on_db!(self, messages::list(chat_id, cursor, n))?;
        let next = super::finish_page(&mut rows, n, |m| Cursor::new('m', vec![m.timestamp, m.id]));
        Ok((rows, next))
    }

    /// One stored message by its WhatsApp id in a chat.
    pub async fn get_message(
        &self,
        session: &str,
        chat: &Jid,
        wa_message_id: &str,
    ) -> anyhow::Result<Option<MessageRecord>> {
        let Some(c) = self.get_chat(session, chat).await? else {
            return Ok(None);
        };
        Ok(on_db!(self, messages::get(c.id, wa_message_id))?)
    }

    /// A message of the session by its stored id or its WhatsApp id, with its chat's JID:
    /// `Err` when the WhatsApp id is in more than one chat.
    pub async fn find_message(
        &self,
        session: &str,
        mid: &str,
    ) -> anyhow::Result<Result<Option<(MessageRecord, String)>, Ambiguous>> {
        let mut rows = on_db!(self, messages::find(session, mid))?;
        Ok(match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            _ => Err(Ambiguous),
        })
    }

    /// Records the media store's copy of a message's attachment (a path relative to it).
    pub async fn set_media_file(&self, session: &str, id: i64, file: &str) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, messages::set_media_file(session, id, file))?)
    }

    /// Records where a sent message's attachment lives on WhatsApp's media servers.
    pub async fn set_media_ref(
        &self,
        session: &str,
        wa_message_id: &str,
        reference: &str,
    ) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(
            self,
            messages::set_media_ref(session, wa_message_id, reference)
        )?)
    }

    /// A page of the people this session has seen, oldest sighting first.
    pub async fn list_contacts(
        &self,
        session: &str,
        filter: &ContactFilter,
        cursor: Option<&Cursor>,
        limit: Limit,
    ) -> anyhow::Result<(Vec<ContactRecord>, Option<Cursor>)> {
        let n = limit.get() as i64;
        let after = cursor.map(|c| c.keys[0]).unwrap_or(0);
        let mut rows = on_db!(self, people::list(session, filter, after, n))?;
        let next = super::finish_page(&mut rows, n, |c| Cursor::new('p', vec![c.id]));
        Ok((rows, next))
    }

    // The outbox.

    /// The organization's events after `after`, oldest first, and whether retention removed
    /// events after `after` that the caller has not seen.
    pub async fn list_events(
        &self,
        org: &str,
        after: i64,
        limit: i64,
        filter: &EventFilter,
    ) -> anyhow::Result<(Vec<EventRecord>, bool)> {
        let rows = on_db!(self, events::list(org, after, limit, filter))?;
        let swept = on_db!(self, events::swept_through())?;
        Ok((rows, after < swept))
    }

    /// Deletes events older than `before` (epoch ms). Returns how many.
    pub async fn sweep_events(&self, before: i64) -> anyhow::Result<u64> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, events::sweep(before))?)
    }
}

/// A WhatsApp message id found in more than one chat of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ambiguous;
