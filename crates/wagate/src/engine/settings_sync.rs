//! Chat settings changed through the API reach the phone: the store queues them (table
//! `chat_settings_pending`, written in the same transaction as the change) and the sender
//! (`engine::sender`) pushes them with this module through a connected client, when the API
//! changes one and whenever the session connects. A change survives restarts and waits while
//! the session is offline; a change made later on the phone cancels it (see
//! `ChatSettings::changed_at`).

use super::{ChatSettingChange, EngineError, LiveClient};
use crate::domain::{Jid, SessionId};
use crate::store::{PendingChatSetting, Store};

/// A change that failed this many times is left in the table (and logged) instead of being
/// retried on every connect; a newer change of the same setting resets it.
const MAX_ATTEMPTS: i32 = 10;

fn change_of(p: &PendingChatSetting) -> Option<ChatSettingChange> {
    match p.setting.as_str() {
        "archived" => Some(ChatSettingChange::Archived(p.value != 0)),
        "pinned" => Some(ChatSettingChange::Pinned(p.value != 0)),
        "muted_until" => Some(ChatSettingChange::MutedUntil(
            (p.value > crate::domain::now_ms()).then_some(p.value),
        )),
        _ => None,
    }
}

/// Sends every queued change of `sid` through `client`; returns how many WhatsApp took. The
/// sender calls it from the session's one worker, so two drains of a session never overlap.
pub async fn push_pending(store: &Store, sid: &SessionId, client: &dyn LiveClient) -> usize {
    match drain_once(store, sid, client).await {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(session = %sid, error = %format!("{e:#}"), "chat settings not sent to WhatsApp");
            0
        }
    }
}

async fn drain_once(
    store: &Store,
    sid: &SessionId,
    client: &dyn LiveClient,
) -> anyhow::Result<usize> {
    let session = sid.to_string();
    let mut sent = 0;
    let pending = store.pending_chat_settings(&session, 500).await?;
    for p in pending.iter().filter(|p| p.attempts < MAX_ATTEMPTS) {
        let (Some(change), Ok(chat)) = (change_of(p), p.chat_jid.parse::<Jid>()) else {
            tracing::warn!(
                session,
                chat = p.chat_jid,
                setting = p.setting,
                "unusable queued chat setting dropped"
            );
            store.settle_chat_setting(&session, p, true).await?;
            continue;
        };
        match client.push_chat_setting(&chat, change).await {
            Ok(()) => {
                store.settle_chat_setting(&session, p, true).await?;
                sent += 1;
            }
            // Disconnected meanwhile: the rest waits for the next connect.
            Err(EngineError::NotConnected) => break,
            Err(e) => {
                tracing::warn!(session, chat = p.chat_jid, setting = p.setting, attempts = p.attempts + 1, error = %e,
                    "WhatsApp did not take a chat setting; it stays queued");
                store.settle_chat_setting(&session, p, false).await?;
            }
        }
    }
    Ok(sent)
}
