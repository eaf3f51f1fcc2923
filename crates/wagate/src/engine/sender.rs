//! The sender: works through the durable outbox of messages to send (`store::outgoing`).
//!
//! Per session, jobs leave in the order they were accepted, one at a time, only while the
//! session has a connected client, and within its `ratePerMin` / `ratePerHour`. A temporary
//! failure holds the job and retries it later with the same WhatsApp id; a refusal fails it
//! (the stored message shows `failed` with the reason). Nothing is removed from the outbox
//! before WhatsApp's server has the message, so a restart or a kill -9 repeats at most the send
//! in flight, with the same id, which the recipient's devices keep once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};

use super::send::{OutgoingContent, OutgoingMessage, SendError};
use super::{ChatPresence, Engine, LiveClient};
use crate::domain::{now_ms, Jid, SessionId};
use crate::store::outgoing::OutgoingRecord;
use crate::store::{ChangeKind, MessageChange, MessageStatus, RecordOptions, Store};

/// Attempts before a job that keeps failing temporarily is given up as `failed`.
pub const MAX_ATTEMPTS: i32 = 8;
/// How often the sender looks for work it was not woken for (held jobs coming due).
const TICK: Duration = Duration::from_millis(1000);

/// How a job ended, for callers waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub job: String,
    pub sent: bool,
}

struct Inner {
    store: Store,
    engine: Arc<dyn Engine>,
    wake: Arc<Notify>,
    outcomes: broadcast::Sender<Outcome>,
    running: Mutex<HashSet<String>>,
}

/// Handle to the sender; the background task ends when the last handle is dropped.
#[derive(Clone)]
pub struct Sender(Arc<Inner>);

impl Sender {
    /// Starts the sender's task on the current runtime.
    pub fn start(store: Store, engine: Arc<dyn Engine>) -> Self {
        let inner = Arc::new(Inner {
            store,
            engine,
            wake: Arc::new(Notify::new()),
            outcomes: broadcast::channel(1024).0,
            running: Mutex::default(),
        });
        tokio::spawn(run(Arc::downgrade(&inner), inner.wake.clone()));
        Sender(inner)
    }

    /// New work was accepted, or a session connected: look now.
    pub fn wake(&self) {
        self.0.wake.notify_one();
    }

    /// Outcomes of jobs from now on (subscribe before waking to see your own).
    pub fn subscribe(&self) -> broadcast::Receiver<Outcome> {
        self.0.outcomes.subscribe()
    }
}

async fn run(weak: Weak<Inner>, wake: Arc<Notify>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        match inner.store.sessions_with_sends(10_000).await {
            Ok(sessions) => {
                for s in sessions {
                    let Ok(sid) = s.parse::<SessionId>() else {
                        continue;
                    };
                    let Some(client) = inner.engine.client(&sid) else {
                        continue;
                    };
                    let fresh = inner
                        .running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(s.clone());
                    if fresh {
                        let inner = inner.clone();
                        tokio::spawn(async move {
                            drain(&inner, &s, client).await;
                            inner
                                .running
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .remove(&s);
                        });
                    }
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "sender: cannot read the outbox"),
        }
        drop(inner);
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// How long "typing…" shows before a text of `len` characters: about a fast typist's pace,
/// between one and five seconds.
pub fn typing_time(len: usize) -> Duration {
    Duration::from_millis((600 + 40 * len as u64).clamp(1000, 5000))
}

/// Backoff before attempt `n + 1`: 2 s, 4 s, ... capped at 5 minutes.
fn backoff(attempts: i32) -> i64 {
    (2_000i64 << attempts.clamp(0, 8)).min(300_000)
}

async fn drain(inner: &Inner, s: &str, client: Arc<dyn LiveClient>) {
    loop {
        match step(inner, s, client.as_ref()).await {
            Ok(true) => continue,
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(session = s, error = %format!("{e:#}"), "sender: step failed");
                return;
            }
        }
    }
}

/// Sends the session's next job if it may go now. True when the caller should go on.
async fn step(inner: &Inner, s: &str, client: &dyn LiveClient) -> anyhow::Result<bool> {
    let store = &inner.store;
    let Some(job) = store.next_send(s).await? else {
        return Ok(false);
    };
    let now = now_ms();
    if job.not_before > now {
        return Ok(false);
    }
    let sid: SessionId = s.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    let Some(session) = store.get_session_any_org(&sid).await? else {
        return Ok(false);
    };
    // Rate limits count what left in the last minute and hour.
    for (window, limit) in [
        (60_000, session.rate_per_min),
        (3_600_000, session.rate_per_hour),
    ] {
        let (n, oldest) = store.sends_sent_since(s, now - window).await?;
        if n >= limit.max(1) {
            let until = oldest.unwrap_or(now) + window + 1;
            store.send_hold(&job.id, until).await?;
            return Ok(false);
        }
    }
    let to: Jid = job
        .chat_jid
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let content: OutgoingContent = match serde_json::from_str(&job.content) {
        Ok(c) => c,
        Err(e) => {
            fail(inner, &job, &to, &format!("unreadable job: {e}")).await?;
            return Ok(true);
        }
    };
    if session.presence_typing {
        if let OutgoingContent::Text { body, .. } = &content {
            // Best effort: a failed indicator does not hold the message.
            if client
                .send_chat_presence(&to, ChatPresence::Composing)
                .await
                .is_ok()
            {
                tokio::time::sleep(typing_time(body.chars().count())).await;
                let _ = client.send_chat_presence(&to, ChatPresence::Paused).await;
            }
        }
    }
    let msg = OutgoingMessage {
        to: to.clone(),
        id: job.wa_message_id.clone(),
        content,
    };
    match client.send_message(&msg).await {
        Ok(ack) => {
            if let Some(media) = &ack.media {
                store
                    .set_media_ref(s, &job.wa_message_id, &media.to_json())
                    .await?;
            }
            // The stored copy first, then the job: whoever sees the job settled sees the
            // message's new status (or the edit, the revoke) too.
            if let Some(change) = change_of(&to, &msg.content) {
                store
                    .record_inbound(s, &[], &[change], RecordOptions::default())
                    .await?;
            } else {
                store
                    .update_message_status(
                        s,
                        &to,
                        std::slice::from_ref(&job.wa_message_id),
                        MessageStatus::Sent,
                        None,
                    )
                    .await?;
            }
            store.send_done(&job.id, now_ms()).await?;
            let _ = inner.outcomes.send(Outcome {
                job: job.id.clone(),
                sent: true,
            });
            Ok(true)
        }
        Err(SendError::NotConnected) => Ok(false),
        Err(SendError::Retry(e)) if job.attempts + 1 < MAX_ATTEMPTS => {
            tracing::info!(
                session = s,
                job = job.id,
                attempts = job.attempts + 1,
                error = e,
                "send will be retried"
            );
            store
                .send_retry(&job.id, now_ms() + backoff(job.attempts), &e)
                .await?;
            Ok(false)
        }
        Err(SendError::Retry(e)) | Err(SendError::Refused(e)) => {
            fail(inner, &job, &to, &e).await?;
            Ok(true)
        }
    }
}

/// An edit or revoke as the change it makes to the stored copy once WhatsApp took it.
fn change_of(to: &Jid, content: &OutgoingContent) -> Option<MessageChange> {
    let (target, kind) = match content {
        OutgoingContent::Edit { target, text } => (
            target,
            ChangeKind::Edit {
                body: Some(text.clone()),
            },
        ),
        OutgoingContent::Revoke { target } => (target, ChangeKind::Revoke),
        _ => return None,
    };
    Some(MessageChange {
        chat: to.clone(),
        chat_alt: None,
        target: target.id.clone(),
        from_me: true,
        kind,
    })
}

async fn fail(inner: &Inner, job: &OutgoingRecord, to: &Jid, error: &str) -> anyhow::Result<()> {
    tracing::warn!(session = job.session_id, job = job.id, error, "send failed");
    inner
        .store
        .update_message_status(
            &job.session_id,
            to,
            std::slice::from_ref(&job.wa_message_id),
            MessageStatus::Failed,
            Some(error),
        )
        .await?;
    inner.store.send_failed(&job.id, error).await?;
    let _ = inner.outcomes.send(Outcome {
        job: job.id.clone(),
        sent: false,
    });
    Ok(())
}
