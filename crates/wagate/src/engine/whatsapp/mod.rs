//! The production engine: each session is a WhatsApp linked device run by `whatsapp-rust`.
//!
//! One client per session, its keys in the gateway's database (`Store::key_store`), its events
//! handed in order to a per-session task that records them through the store (statuses, QR
//! codes, receipts, chat settings, names) and its inbound messages committed by the engine's
//! durability hook before WhatsApp is acknowledged. The engine retries failed connects forever
//! and says nothing; a watchdog here counts them and ends the session as `failed` after
//! `max_connect_failures`.

mod convert;
mod live;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::types::durability_hook::InboundDurabilityHook;
use whatsapp_rust::types::events::{Event, EventHandler, InboundMessage};
use whatsapp_rust::Client;
use whatsapp_rust_tokio_transport::TokioWebSocketTransportFactory;
use whatsapp_rust_ureq_http_client::UreqHttpClient;

use super::{Engine, EngineError, LiveClient, QrCode};
use crate::domain::{now_ms, Phone, SessionId};
use crate::store::ingest::{ChatSettings, Receipt, RecordOptions};
use crate::store::{MessageStatus, SessionRecord, SessionStatus, Store};

/// The web client version announced to WhatsApp (fixed, so no HTTP fetch precedes a connect).
const WA_VERSION: (u32, u32, u32) = (2, 3000, 1_027_000_000);
/// How long the session's settings (`autoRead`, `downloadMedia`) read for incoming messages
/// are used before they are read again. A PATCH on this node clears them at once; one made
/// through another node takes effect within this time.
const SETTINGS_TTL: Duration = Duration::from_secs(2);
/// Pre-keys a device keeps uploaded (the engine's default is 812; they live in the database).
const PRE_KEYS: usize = 100;

/// Settings of the engine.
#[derive(Debug, Clone)]
pub struct WaConfig {
    pub url: String,
    pub max_connect_failures: u32,
    pub resume_concurrency: usize,
    /// The on-disk media store.
    pub media_dir: std::path::PathBuf,
    pub media_store_max_bytes: u64,
}

struct Running {
    client: Arc<Client>,
    handle: tokio::sync::Mutex<Option<BotHandle>>,
    qr: Mutex<Option<QrCode>>,
    /// Set when the gateway ends the connection itself (stop, logout, a final status).
    ending: AtomicBool,
    /// Groups whose members were fetched in this run.
    groups: Mutex<std::collections::HashSet<String>>,
    /// The session's settings as last read, and when (live messages come one per batch: this
    /// spares a read per message).
    settings: Mutex<Option<(std::time::Instant, SessionRecord)>>,
}

struct Inner {
    store: Store,
    cfg: WaConfig,
    sessions: Mutex<HashMap<SessionId, Arc<Running>>>,
}

/// Runs sessions on WhatsApp (or, in a `simulator` build, on wa-sim).
#[derive(Clone)]
pub struct WaEngine(Arc<Inner>);

impl WaEngine {
    pub fn new(store: Store, cfg: WaConfig) -> Self {
        WaEngine(Arc::new(Inner {
            store,
            cfg,
            sessions: Mutex::default(),
        }))
    }

    fn running(&self, sid: &SessionId) -> Option<Arc<Running>> {
        self.0
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .cloned()
    }

    /// Reconnects the sessions that were connecting or working when the gateway stopped, a
    /// bounded number at a time with a little jitter, so a restart is no reconnect storm.
    pub async fn resume_all(&self) -> anyhow::Result<usize> {
        let sessions = self.0.store.list_active_sessions().await?;
        let n = sessions.len();
        let gate = Arc::new(tokio::sync::Semaphore::new(self.0.cfg.resume_concurrency));
        for s in sessions {
            let this = self.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                let Ok(_permit) = gate.acquire_owned().await else {
                    return;
                };
                let jitter = rand::random::<u64>() % 250;
                tokio::time::sleep(Duration::from_millis(jitter)).await;
                if let Ok(sid) = s.id.parse::<SessionId>() {
                    this.set_status(
                        &sid,
                        SessionStatus::Starting,
                        Some("reconnecting after a gateway restart"),
                    )
                    .await;
                }
                if let Err(e) = this.start(&s).await {
                    tracing::warn!(session = s.id, error = %e, "could not resume the session");
                }
            });
        }
        Ok(n)
    }

    /// Disconnects every session (keeping their status, so the next start resumes them).
    pub async fn shutdown(&self) {
        let all: Vec<SessionId> = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        let stops = all.iter().map(|sid| self.stop(sid));
        futures::future::join_all(stops).await;
    }

    async fn set_status(&self, sid: &SessionId, status: SessionStatus, reason: Option<&str>) {
        if let Err(e) = self.0.store.set_session_status(sid, status, reason).await {
            tracing::warn!(session = %sid, error = %format!("{e:#}"), "could not record a status");
        }
    }

    /// Ends a session's connection from inside (a final status): the client is shut down in
    /// the background.
    fn end(&self, sid: &SessionId) {
        let Some(r) = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid)
        else {
            return;
        };
        r.ending.store(true, Ordering::SeqCst);
        tokio::spawn(async move {
            if let Some(h) = r.handle.lock().await.take() {
                let _ = tokio::time::timeout(Duration::from_secs(25), h.shutdown()).await;
            }
        });
    }

    async fn on_event(&self, sid: SessionId, run: &Arc<Running>, event: &Event) {
        let store = &self.0.store;
        let s = sid.to_string();
        match event {
            Event::PairingQrCode(q) => {
                let expires_at = now_ms() + q.timeout.as_millis() as i64;
                *run.qr.lock().unwrap_or_else(|p| p.into_inner()) = Some(QrCode {
                    code: q.code.clone(),
                    expires_at,
                });
                self.set_status(
                    &sid,
                    SessionStatus::ScanQrCode,
                    Some("scan the QR code with the phone"),
                )
                .await;
                let _ = store.record_qr(&sid, &q.code, expires_at).await;
            }
            Event::PairingQrCodesExhausted(_) => {
                *run.qr.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.end(&sid);
                self.set_status(
                    &sid,
                    SessionStatus::Failed,
                    Some("no QR code was scanned in time; start the session again for new ones"),
                )
                .await;
            }
            Event::PairSuccess(p) => {
                *run.qr.lock().unwrap_or_else(|p| p.into_inner()) = None;
                let phone = convert::jid(&p.id).map(|j| j.user().to_owned());
                let _ = store
                    .set_session_account(
                        &sid,
                        convert::jid(&p.id).map(|j| j.to_string()).as_deref(),
                        convert::jid(&p.lid).map(|j| j.to_string()).as_deref(),
                        phone.as_deref(),
                        None,
                    )
                    .await;
                self.set_status(&sid, SessionStatus::Starting, Some("paired; connecting"))
                    .await;
            }
            Event::Connected(_) => {
                *run.qr.lock().unwrap_or_else(|p| p.into_inner()) = None;
                self.set_status(&sid, SessionStatus::Working, None).await;
                let client: Arc<dyn LiveClient> = Arc::new(live::WaLive(run.client.clone()));
                let store = store.clone();
                tokio::spawn(async move {
                    super::settings_sync::push_pending(&store, &sid, client).await;
                });
            }
            Event::Disconnected(_) => self.on_closed(sid, run).await,
            Event::LoggedOut(l) => {
                let reason = format!("WhatsApp unlinked this device ({:?})", l.reason);
                self.end(&sid);
                let _ = store.key_store(&s).delete_all().await;
                self.set_status(&sid, SessionStatus::LoggedOut, Some(&reason))
                    .await;
            }
            Event::StreamReplaced(_) => {
                self.end(&sid);
                self.set_status(
                    &sid,
                    SessionStatus::Failed,
                    Some("another connection of this device replaced this one; start the session again to take over"),
                )
                .await;
            }
            Event::TemporaryBan(b) => {
                let until = now_ms() + b.expire.num_milliseconds();
                let reason = format!(
                    "temporarily banned by WhatsApp ({:?}) until {until} (epoch ms)",
                    b.code
                );
                self.end(&sid);
                self.set_status(&sid, SessionStatus::Failed, Some(&reason))
                    .await;
            }
            Event::HistorySync(h) => {
                // WhatsApp has been told we have it: keep it before anything else.
                let blob = crate::store::history::PendingHistory {
                    id: ulid::Ulid::new().to_string(),
                    session_id: s.clone(),
                    data: h.compressed_bytes().to_vec(),
                    decompressed_size: h.decompressed_size() as i64,
                    sync_type: h.sync_type(),
                    chunk_order: h.chunk_order().map(i64::from),
                    progress: h.progress().map(i64::from),
                    created_at: now_ms(),
                };
                match store.save_history_blob(&blob).await {
                    Ok(()) => process_history(store, &s).await,
                    Err(e) => {
                        tracing::error!(session = s, error = %format!("{e:#}"), "a history sync could not be kept")
                    }
                }
            }
            Event::Messages(batch) => {
                if !batch.hook_committed {
                    record_batch(store, &s, &batch.messages).await.ok();
                }
                for m in batch.messages.iter() {
                    if m.info.source.is_group {
                        self.learn_group(&s, run, &m.info.source.chat);
                    }
                }
                self.after_commit(&sid, run, &batch.messages).await;
            }
            Event::Receipt(r) => {
                let status = match r.r#type {
                    whatsapp_rust::types::presence::ReceiptType::Delivered => {
                        Some(MessageStatus::Delivered)
                    }
                    whatsapp_rust::types::presence::ReceiptType::Read
                    | whatsapp_rust::types::presence::ReceiptType::ReadSelf => {
                        Some(MessageStatus::Read)
                    }
                    whatsapp_rust::types::presence::ReceiptType::Played
                    | whatsapp_rust::types::presence::ReceiptType::PlayedSelf => {
                        Some(MessageStatus::Played)
                    }
                    _ => None,
                };
                if let (Some(status), Some(chat)) = (status, convert::jid(&r.source.chat)) {
                    let receipt = Receipt {
                        chat,
                        ids: r.message_ids.iter().map(|i| i.to_string()).collect(),
                        status,
                        error: None,
                    };
                    if let Err(e) = store.record_receipt(&s, &receipt).await {
                        tracing::warn!(session = s, error = %format!("{e:#}"), "receipt not recorded");
                    }
                }
            }
            Event::ArchiveUpdate(u) => {
                if let Some(chat) = convert::jid(&u.jid) {
                    let c = ChatSettings {
                        archived: Some(u.action.archived.unwrap_or(false)),
                        changed_at: Some(u.timestamp.timestamp_millis()),
                        ..ChatSettings::new(chat)
                    };
                    let _ = store.record_chat(&s, &c).await;
                }
            }
            Event::PinUpdate(u) => {
                if let Some(chat) = convert::jid(&u.jid) {
                    let c = ChatSettings {
                        pinned: Some(u.action.pinned.unwrap_or(false)),
                        changed_at: Some(u.timestamp.timestamp_millis()),
                        ..ChatSettings::new(chat)
                    };
                    let _ = store.record_chat(&s, &c).await;
                }
            }
            Event::MuteUpdate(u) => {
                if let Some(chat) = convert::jid(&u.jid) {
                    let muted = u.action.muted.unwrap_or(false);
                    let until = u.action.mute_end_timestamp.filter(|t| *t > 0);
                    let c = ChatSettings {
                        muted_until: Some(if muted {
                            Some(until.unwrap_or(i64::MAX))
                        } else {
                            None
                        }),
                        changed_at: Some(u.timestamp.timestamp_millis()),
                        ..ChatSettings::new(chat)
                    };
                    let _ = store.record_chat(&s, &c).await;
                }
            }
            Event::MarkChatAsReadUpdate(u) => {
                if let Some(chat) = convert::jid(&u.jid) {
                    let read = u.action.read.unwrap_or(false);
                    if read {
                        let c = ChatSettings {
                            unread_count: Some(0),
                            ..ChatSettings::new(chat)
                        };
                        let _ = store.record_chat(&s, &c).await;
                    }
                }
            }
            Event::DeleteChatUpdate(u) => {
                if let Some(chat) = convert::jid(&u.jid) {
                    let c = ChatSettings {
                        deleted: true,
                        ..ChatSettings::new(chat)
                    };
                    let _ = store.record_chat(&s, &c).await;
                }
            }
            _ => {}
        }
    }

    /// A connection of a linked session ended without the gateway ending it: reconnecting.
    async fn on_closed(&self, sid: SessionId, run: &Arc<Running>) {
        // Not while pairing (the device has no account yet), nor when the gateway ends it.
        if run.ending.load(Ordering::SeqCst) || run.client.pn().is_none() {
            return;
        }
        self.set_status(
            &sid,
            SessionStatus::Starting,
            Some("connection lost; reconnecting"),
        )
        .await;
    }

    /// What a committed batch asks for by the session's settings: read receipts (`autoRead`)
    /// and copies of attachments (`downloadMedia`).
    async fn after_commit(&self, sid: &SessionId, run: &Arc<Running>, batch: &[InboundMessage]) {
        if batch.is_empty() {
            return;
        }
        let cached = run
            .settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < SETTINGS_TTL)
            .map(|(_, s)| s.clone());
        let session = match cached {
            Some(s) => s,
            None => {
                let Ok(Some(s)) = self.0.store.get_session_any_org(sid).await else {
                    return;
                };
                *run.settings.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((std::time::Instant::now(), s.clone()));
                s
            }
        };
        if !session.download_media && !session.auto_read {
            return;
        }
        // The durability hook converted these already; only sessions that ask pay again.
        let rows: Vec<_> = batch
            .iter()
            .filter_map(|m| convert::new_message(m).map(|n| (m, n)))
            .collect();
        if session.download_media {
            for (_, n) in &rows {
                if n.media.as_ref().is_some_and(|m| m.reference.is_some()) {
                    self.keep_media(sid, run, n);
                }
            }
        }
        if session.auto_read {
            let incoming: Vec<&InboundMessage> = rows
                .iter()
                .filter(|(m, _)| !m.info.source.is_from_me)
                .map(|(m, _)| *m)
                .collect();
            self.auto_read(sid, run, &incoming).await;
        }
    }

    /// Downloads an attachment into the media store (`<media_dir>/<session>/<message id>`,
    /// written to a temporary name and renamed) and records it with the message.
    fn keep_media(&self, sid: &SessionId, run: &Arc<Running>, n: &crate::store::NewMessage) {
        let Some(media) = n
            .media
            .as_ref()
            .and_then(|m| m.reference.as_deref())
            .and_then(crate::engine::MediaRef::from_json)
        else {
            return;
        };
        let s = sid.to_string();
        if media.file_length > self.0.cfg.media_store_max_bytes {
            tracing::info!(
                session = s,
                size = media.file_length,
                "attachment over media_store_max_bytes: not kept"
            );
            return;
        }
        let (store, dir, client) = (
            self.0.store.clone(),
            self.0.cfg.media_dir.clone(),
            run.client.clone(),
        );
        let (chat, wa_id) = (n.chat.clone(), n.wa_message_id.clone());
        tokio::spawn(async move {
            let Ok(Some(row)) = store.get_message(&s, &chat, &wa_id).await else {
                return;
            };
            let bytes = match live::WaLive(client).download_media(&media).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(session = s, message = row.id, error = %e, "attachment not kept");
                    return;
                }
            };
            let rel = format!("{s}/{}", row.id);
            let path = dir.join(&rel);
            let tmp = dir.join(format!("{rel}.part"));
            let written = async {
                tokio::fs::create_dir_all(dir.join(&s)).await?;
                tokio::fs::write(&tmp, &bytes).await?;
                tokio::fs::rename(&tmp, &path).await
            }
            .await;
            match written {
                Ok(()) => {
                    if let Err(e) = store.set_media_file(&s, row.id, &rel).await {
                        tracing::warn!(session = s, error = %format!("{e:#}"), "media file not recorded");
                    }
                }
                Err(e) => {
                    let _ = tokio::fs::remove_file(&tmp).await;
                    tracing::warn!(session = s, error = %e, "media file not written");
                }
            }
        });
    }

    /// Sends read receipts for incoming messages of a committed batch (per chat and, in groups,
    /// per author) and zeroes the chats' unread counters, as a phone that shows them would.
    async fn auto_read(&self, sid: &SessionId, run: &Arc<Running>, incoming: &[&InboundMessage]) {
        if incoming.is_empty() {
            return;
        }
        let store = &self.0.store;
        let s = sid.to_string();
        // (chat, author in a group) → message ids, in arrival order.
        type ReadKey = (String, Option<String>);
        let mut groups: Vec<(ReadKey, Vec<String>)> = Vec::new();
        for m in incoming {
            let src = &m.info.source;
            let key = (
                src.chat.to_string(),
                src.is_group.then(|| src.sender.to_string()),
            );
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ids)) => ids.push(m.info.id.to_string()),
                None => groups.push((key, vec![m.info.id.to_string()])),
            }
        }
        for ((chat, sender), ids) in groups {
            let (Ok(chat_jid), sender_jid) = (
                chat.parse::<whatsapp_rust::Jid>(),
                sender.and_then(|x| x.parse::<whatsapp_rust::Jid>().ok()),
            ) else {
                continue;
            };
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            match run
                .client
                .mark_as_read(&chat_jid, sender_jid.as_ref(), &refs)
                .await
            {
                Ok(()) => {
                    if let Some(j) = convert::jid(&chat_jid) {
                        let _ = store.mark_chat_read(&s, &j).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(session = s, error = %e, "autoRead: read receipts not sent")
                }
            }
        }
    }

    /// Fetches a group's subject and members once per run and records them, so its members
    /// become contacts (source `group`) of this session.
    fn learn_group(&self, s: &str, run: &Arc<Running>, group: &whatsapp_rust::Jid) {
        let key = group.to_string();
        if !run
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key)
        {
            return;
        }
        let (store, client, s, group) = (
            self.0.store.clone(),
            run.client.clone(),
            s.to_owned(),
            group.clone(),
        );
        tokio::spawn(async move {
            let meta = match client.groups().get_metadata(&group).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(session = s, group = %group, error = %e, "group metadata not available");
                    return;
                }
            };
            let Some(jid) = convert::jid(&meta.id) else {
                return;
            };
            let members = meta
                .participants
                .iter()
                .filter_map(|p| {
                    let jid = convert::jid(&p.jid)?;
                    let other = if jid.is_lid() {
                        p.phone_number.as_ref()
                    } else {
                        p.lid.as_ref()
                    };
                    Some(crate::store::ingest::GroupMember {
                        jid,
                        alt: other.and_then(convert::jid),
                        role: if p.is_admin() {
                            "admin".into()
                        } else {
                            "member".into()
                        },
                    })
                })
                .collect();
            let info = crate::store::ingest::GroupInfo {
                jid,
                subject: Some(meta.subject.clone()).filter(|x| !x.is_empty()),
                members: Some(members),
            };
            if let Err(e) = store.record_group(&s, &info).await {
                tracing::warn!(session = s, error = %format!("{e:#}"), "group not recorded");
            }
        });
    }

    /// Watches the connection: the engine retries failed connects forever without an event,
    /// so the gateway counts them and gives up honestly.
    async fn watchdog(self, sid: SessionId, run: Arc<Running>) {
        let max = self.0.cfg.max_connect_failures;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if run.ending.load(Ordering::SeqCst)
                || self.running(&sid).is_none_or(|r| !Arc::ptr_eq(&r, &run))
            {
                return;
            }
            let failures = run.client.stats().reconnect_errors;
            if failures >= max && !run.client.is_connected() {
                self.end(&sid);
                let reason = format!("could not connect to WhatsApp {failures} times in a row");
                self.set_status(&sid, SessionStatus::Failed, Some(&reason))
                    .await;
                return;
            }
        }
    }
}

/// Processes the session's kept history-sync blobs, oldest first; each is deleted once its
/// rows are committed, so a crash in between processes it again (ingest is idempotent).
async fn process_history(store: &Store, s: &str) {
    let blobs = match store.pending_history_blobs(s).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(session = s, error = %format!("{e:#}"), "history blobs not readable");
            return;
        }
    };
    for blob in blobs {
        let id = blob.id.clone();
        // Inflating and decoding a large blob is CPU work: off the async threads.
        let batch = tokio::task::spawn_blocking(move || {
            let lazy = whatsapp_rust::types::events::LazyHistorySync::new(
                blob.data.into(),
                blob.decompressed_size.max(0) as usize,
                blob.sync_type,
                blob.chunk_order.map(|c| c as u32),
                blob.progress.map(|p| p as u32),
            );
            lazy.get().map(convert::history)
        })
        .await
        .ok()
        .flatten();
        let Some(batch) = batch else {
            tracing::warn!(
                session = s,
                blob = id,
                "a history sync blob could not be decoded; dropped"
            );
            let _ = store.history_blob_done(&id).await;
            continue;
        };
        match store.record_history(s, &batch).await {
            Ok(counts) => {
                tracing::info!(
                    session = s,
                    chats = counts.chats,
                    messages = counts.messages,
                    "history sync stored"
                );
                let _ = store.history_blob_done(&id).await;
            }
            Err(e) => {
                tracing::warn!(session = s, error = %format!("{e:#}"), "history sync not stored; kept for the next start");
                return;
            }
        }
    }
}

async fn record_batch(store: &Store, s: &str, batch: &[InboundMessage]) -> anyhow::Result<()> {
    let msgs: Vec<_> = batch.iter().filter_map(convert::new_message).collect();
    let changes: Vec<_> = batch.iter().filter_map(convert::change).collect();
    store
        .record_inbound(s, &msgs, &changes, RecordOptions::default())
        .await?;
    Ok(())
}

/// Commits inbound messages before the engine acknowledges them to WhatsApp.
struct Durable {
    store: Store,
    session: String,
}

#[async_trait]
impl InboundDurabilityHook for Durable {
    async fn on_messages(
        &self,
        _client: Arc<Client>,
        batch: &[InboundMessage],
    ) -> anyhow::Result<()> {
        record_batch(&self.store, &self.session, batch).await
    }
}

/// What the session's task hears: the engine's events, and the gateway's own notice that a
/// connection was closed (the engine reconnects after a 515 or a dead socket without raising an
/// event, so the transport tells).
enum Signal {
    Event(Arc<Event>),
    ConnectionClosed,
}

/// Hands the engine's events, in order and without dropping any, to the session's task.
struct Forward(mpsc::UnboundedSender<Signal>);

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        let _ = self.0.send(Signal::Event(event));
    }
}

/// The WebSocket transport, with its closing reported to the session's task.
struct Watched {
    inner: Arc<dyn Transport>,
    tx: mpsc::UnboundedSender<Signal>,
}

#[async_trait]
impl Transport for Watched {
    async fn send(&self, data: bytes::Bytes) -> anyhow::Result<()> {
        self.inner.send(data).await
    }

    async fn disconnect(&self) {
        let _ = self.tx.send(Signal::ConnectionClosed);
        self.inner.disconnect().await
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::TransportResourceReport> {
        self.inner.resource_report()
    }
}

struct WatchedFactory {
    inner: TokioWebSocketTransportFactory,
    tx: mpsc::UnboundedSender<Signal>,
}

#[async_trait]
impl TransportFactory for WatchedFactory {
    async fn create_transport(
        &self,
    ) -> anyhow::Result<(Arc<dyn Transport>, async_channel::Receiver<TransportEvent>)> {
        let (t, events) = self.inner.create_transport().await?;
        let watched: Arc<dyn Transport> = Arc::new(Watched {
            inner: t,
            tx: self.tx.clone(),
        });
        Ok((watched, events))
    }
}

/// The test build's HTTP client: media hosts on 127.0.0.1 (the simulator) over plain HTTP.
struct Http(UreqHttpClient);

#[async_trait]
impl whatsapp_rust::http::HttpClient for Http {
    async fn execute(
        &self,
        mut request: whatsapp_rust::http::HttpRequest,
    ) -> anyhow::Result<whatsapp_rust::http::HttpResponse> {
        if cfg!(feature = "simulator") {
            if let Some(rest) = request.url.strip_prefix("https://127.0.0.1:") {
                request.url = format!("http://127.0.0.1:{rest}");
            }
        }
        self.0.execute(request).await
    }
}

#[async_trait]
impl Engine for WaEngine {
    async fn start(&self, session: &SessionRecord) -> Result<(), EngineError> {
        let sid: SessionId = session.id.parse().map_err(EngineError::Conflict)?;
        if self.running(&sid).is_some() {
            return Err(EngineError::Conflict(
                "the session is already running".into(),
            ));
        }
        let backend = Arc::new(self.0.store.key_store(&session.id));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let bot = Bot::builder()
            .with_backend_arc(backend)
            .with_transport_factory(WatchedFactory {
                inner: TokioWebSocketTransportFactory::new().with_url(&self.0.cfg.url),
                tx: tx.clone(),
            })
            .with_http_client(Http(UreqHttpClient::new()))
            .with_runtime(whatsapp_rust::TokioRuntime)
            .with_version(WA_VERSION)
            .with_wanted_pre_key_count(PRE_KEYS)
            .with_event_handler(Forward(tx))
            .with_inbound_durability_hook(Durable {
                store: self.0.store.clone(),
                session: session.id.clone(),
            })
            .build()
            .await
            .map_err(|e| {
                EngineError::Upstream(format!("could not build the WhatsApp client: {e}"))
            })?;
        let client = bot.client();
        let run = Arc::new(Running {
            client,
            handle: tokio::sync::Mutex::new(None),
            qr: Mutex::new(None),
            ending: AtomicBool::new(false),
            groups: Mutex::default(),
            settings: Mutex::default(),
        });
        {
            let mut map = self.0.sessions.lock().unwrap_or_else(|p| p.into_inner());
            if map.contains_key(&sid) {
                return Err(EngineError::Conflict(
                    "the session is already running".into(),
                ));
            }
            map.insert(sid, run.clone());
        }
        *run.handle.lock().await = Some(bot.spawn());
        let this = self.clone();
        let events_run = run.clone();
        tokio::spawn(async move {
            while let Some(signal) = rx.recv().await {
                match signal {
                    Signal::Event(e) => this.on_event(sid, &events_run, &e).await,
                    Signal::ConnectionClosed => this.on_closed(sid, &events_run).await,
                }
            }
        });
        tokio::spawn(self.clone().watchdog(sid, run));
        // History a previous run kept but did not finish.
        let store = self.0.store.clone();
        let s = session.id.clone();
        tokio::spawn(async move { process_history(&store, &s).await });
        Ok(())
    }

    async fn stop(&self, sid: &SessionId) -> Result<(), EngineError> {
        let Some(r) = self
            .0
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(sid)
        else {
            return Ok(());
        };
        r.ending.store(true, Ordering::SeqCst);
        if let Some(h) = r.handle.lock().await.take() {
            if r.client.is_connected() {
                // Flushes what the device holds (receipts, key material) before closing.
                let _ = tokio::time::timeout(Duration::from_secs(25), h.shutdown()).await;
            } else {
                // Still connecting (or retrying): nothing to flush, and a graceful shutdown
                // would wait for the connect attempt to time out.
                h.abort();
            }
        }
        Ok(())
    }

    async fn logout(&self, sid: &SessionId) -> Result<(), EngineError> {
        let r = self.running(sid).ok_or(EngineError::NotConnected)?;
        if !r.client.is_connected() {
            return Err(EngineError::NotConnected);
        }
        r.ending.store(true, Ordering::SeqCst);
        r.client.logout().await;
        self.stop(sid).await
    }

    async fn qr(&self, sid: &SessionId) -> Result<QrCode, EngineError> {
        let r = self.running(sid).ok_or(EngineError::NotConnected)?;
        let qr = r.qr.lock().unwrap_or_else(|p| p.into_inner()).clone();
        qr.ok_or_else(|| EngineError::Conflict("the session is not waiting for a QR scan".into()))
    }

    async fn pairing_code(&self, sid: &SessionId, phone: &Phone) -> Result<String, EngineError> {
        let r = self.running(sid).ok_or(EngineError::NotConnected)?;
        if r.client.is_logged_in() {
            return Err(EngineError::Conflict(
                "the session is already paired".into(),
            ));
        }
        let options = whatsapp_rust::pair_code::PairCodeOptions {
            phone_number: phone.digits().to_owned(),
            ..Default::default()
        };
        let code = r.client.pair_with_code(options).await.map_err(|e| {
            EngineError::Upstream(format!("WhatsApp did not issue a pairing code: {e}"))
        })?;
        let _ = self.0.store.record_pairing_code(sid, &code).await;
        Ok(code)
    }

    fn settings_changed(&self, sid: &SessionId) {
        if let Some(r) = self.running(sid) {
            *r.settings.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    fn client(&self, sid: &SessionId) -> Option<Arc<dyn LiveClient>> {
        let r = self.running(sid)?;
        (r.client.is_connected() && r.client.is_logged_in())
            .then(|| Arc::new(live::WaLive(r.client.clone())) as Arc<dyn LiveClient>)
    }
}
