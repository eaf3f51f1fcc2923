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
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::transport::{Transport, TransportEvent, TransportFactory};
use whatsapp_rust::types::durability_hook::InboundDurabilityHook;
use whatsapp_rust::types::events::{Event, EventHandler, InboundMessage};
use whatsapp_rust::Client;
use whatsapp_rust_tokio_transport::TokioWebSocketTransportFactory;
use whatsapp_rust_ureq_http_client::UreqHttpClient;

use super::{Engine, EngineError, EngineStats, LiveClient, QrCode};
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
/// Attachments downloaded into the media store at once (per gateway), and how many more may
/// wait for a turn before new ones are skipped (and logged).
const MEDIA_DOWNLOADS: usize = 4;
const MEDIA_WAITING: usize = 1_000;
/// The longest a resumed session keeps its connect slot (`resume_concurrency`) while it has
/// neither connected nor failed; then the next session may go.
const CONNECT_SLOT: Duration = Duration::from_secs(30);
/// How long a change WhatsApp reported is retried while the database refuses it.
const KEEP_TRYING: Duration = Duration::from_secs(300);

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

/// One run of a session: from `start` until it is stopped or ends. Everything the run spawned
/// stops with `cancel`, so nothing of it (tasks, the client) outlives the run.
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
    /// Cancelled when the run ends: its event task, watchdog and history worker stop.
    cancel: CancellationToken,
    /// Wakes the run's history worker (a history blob was kept).
    history: Notify,
    /// True once the connect attempt is over: connected, waiting for a QR scan, or ended.
    settled: watch::Sender<bool>,
    /// Events handed over by the engine and not yet handled.
    queued: Arc<AtomicUsize>,
}

impl Running {
    /// The connect attempt is over (see `settled`).
    fn settle(&self) {
        self.settled.send_replace(true);
    }
}

struct Inner {
    store: Store,
    cfg: WaConfig,
    sessions: Mutex<HashMap<SessionId, Arc<Running>>>,
    /// Every task the engine spawns; `shutdown` waits for them.
    tasks: TaskTracker,
    /// Cancelled by `shutdown`.
    stop: CancellationToken,
    /// Every client built, weakly: how many are still alive (they must not outlive their run).
    clients: Mutex<Vec<Weak<Client>>>,
    /// Turns to download into the media store, and how many wait for one.
    media: Arc<Semaphore>,
    media_waiting: Arc<AtomicUsize>,
    /// Writes of WhatsApp's changes that failed and were tried again, or given up.
    store_retries: AtomicU64,
    store_failures: AtomicU64,
    /// Sessions as they connect (bounded; a receiver that lags looks at every session).
    connections: tokio::sync::broadcast::Sender<SessionId>,
}

/// Runs sessions on WhatsApp (or, in a `simulator` build, on wa-sim).
#[derive(Clone)]
pub struct WaEngine(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl WaEngine {
    pub fn new(store: Store, cfg: WaConfig) -> Self {
        WaEngine(Arc::new(Inner {
            store,
            cfg,
            sessions: Mutex::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
            clients: Mutex::default(),
            media: Arc::new(Semaphore::new(MEDIA_DOWNLOADS)),
            media_waiting: Arc::default(),
            store_retries: AtomicU64::new(0),
            store_failures: AtomicU64::new(0),
            connections: tokio::sync::broadcast::channel(1024).0,
        }))
    }

    fn running(&self, sid: &SessionId) -> Option<Arc<Running>> {
        lock(&self.0.sessions).get(sid).cloned()
    }

    /// Spawns a task the engine owns: `shutdown` waits for it.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.0.tasks.spawn(task);
    }

    /// Reconnects the sessions that were connecting or working when the gateway stopped,
    /// `resume_concurrency` at a time with a little jitter: a session holds its slot until it
    /// is connected, waits for a QR scan or has failed (at most `CONNECT_SLOT`), so a restart
    /// with many sessions is no reconnect storm.
    pub async fn resume_all(&self) -> anyhow::Result<usize> {
        let sessions = self.0.store.list_active_sessions().await?;
        let n = sessions.len();
        let gate = Arc::new(Semaphore::new(self.0.cfg.resume_concurrency.max(1)));
        for s in sessions {
            let Ok(sid) = s.id.parse::<SessionId>() else {
                continue;
            };
            let this = self.clone();
            let gate = gate.clone();
            self.spawn(async move {
                let stop = this.0.stop.clone();
                let slot = tokio::select! {
                    p = gate.acquire_owned() => p,
                    _ = stop.cancelled() => return,
                };
                let Ok(_slot) = slot else { return };
                let jitter = Duration::from_millis(rand::random::<u64>() % 250);
                tokio::select! {
                    _ = tokio::time::sleep(jitter) => {}
                    _ = stop.cancelled() => return,
                }
                Box::pin(this.set_status(
                    &sid,
                    SessionStatus::Starting,
                    Some("reconnecting after a gateway restart"),
                ))
                .await;
                // Boxed: the thousands of tasks waiting for a slot stay small.
                if let Err(e) = Box::pin(this.start(&s)).await {
                    tracing::warn!(session = s.id, error = %e, "could not resume the session");
                    return;
                }
                if let Some(run) = this.running(&sid) {
                    let mut settled = run.settled.subscribe();
                    drop(run);
                    tokio::select! {
                        _ = tokio::time::timeout(CONNECT_SLOT, settled.wait_for(|done| *done)) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            });
        }
        Ok(n)
    }

    /// Disconnects every session (keeping their status, so the next start resumes them) and
    /// waits for every task of the engine to end.
    pub async fn shutdown(&self) {
        let all: Vec<SessionId> = lock(&self.0.sessions).keys().copied().collect();
        let stops = all.iter().map(|sid| self.stop(sid));
        futures::future::join_all(stops).await;
        self.0.stop.cancel();
        self.0.tasks.close();
        if tokio::time::timeout(Duration::from_secs(30), self.0.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.0.tasks.len(),
                "engine tasks still running 30 s after shutdown"
            );
        }
    }

    /// Tasks the engine runs now (the event task, watchdog and history worker of each running
    /// session, and short-lived work such as downloads).
    pub fn task_count(&self) -> usize {
        self.0.tasks.len()
    }

    /// WhatsApp clients still in memory: one per running session; more means a run's client
    /// outlived the run.
    pub fn clients_alive(&self) -> usize {
        let mut clients = lock(&self.0.clients);
        clients.retain(|c| c.strong_count() > 0);
        clients.len()
    }

    /// Failed writes of WhatsApp's changes that were tried again.
    pub fn store_retries(&self) -> u64 {
        self.0.store_retries.load(Ordering::Relaxed)
    }

    async fn set_status(&self, sid: &SessionId, status: SessionStatus, reason: Option<&str>) {
        self.keep(sid, "session status", || {
            self.0.store.set_session_status(sid, status, reason)
        })
        .await;
    }

    /// Stores what WhatsApp told (a chat setting from the phone, the paired account, a QR
    /// code, a status), trying again while the database refuses: WhatsApp does not send app
    /// state or pairing again, so a write given up is a change lost. Every failure is logged
    /// with the session; after `KEEP_TRYING` (or at shutdown) it is given up, logged as an error
    /// and counted.
    async fn keep<T, F, Fut>(&self, sid: &SessionId, what: &'static str, mut op: F) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = anyhow::Result<T>>,
    {
        let deadline = tokio::time::Instant::now() + KEEP_TRYING;
        let mut pause = Duration::from_millis(200);
        loop {
            let e = match op().await {
                Ok(v) => return Some(v),
                Err(e) => e,
            };
            if tokio::time::Instant::now() + pause > deadline || self.0.stop.is_cancelled() {
                self.0.store_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(session = %sid, what, error = %format!("{e:#}"),
                    "a change from WhatsApp could not be stored and is lost");
                return None;
            }
            self.0.store_retries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(session = %sid, what, error = %format!("{e:#}"), retry_in_ms = pause.as_millis() as u64,
                "a change from WhatsApp could not be stored yet; trying again");
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = self.0.stop.cancelled() => {}
            }
            pause = (pause * 2).min(Duration::from_secs(10));
        }
    }

    /// Ends a session's connection from inside (a final status): the client is shut down in
    /// the background, then the run's tasks stop.
    fn end(&self, sid: &SessionId) {
        let Some(r) = lock(&self.0.sessions).remove(sid) else {
            return;
        };
        r.ending.store(true, Ordering::SeqCst);
        r.settle();
        self.spawn(async move {
            if let Some(h) = r.handle.lock().await.take() {
                let _ = tokio::time::timeout(Duration::from_secs(25), h.shutdown()).await;
            }
            r.cancel.cancel();
        });
    }

    async fn on_event(&self, sid: SessionId, run: &Arc<Running>, event: &Event) {
        match event {
            Event::PairingQrCode(q) => self.on_qr(sid, run, &q.code, q.timeout).await,
            Event::PairingQrCodesExhausted(_) => self.on_qr_exhausted(sid, run).await,
            Event::PairSuccess(p) => self.on_paired(sid, run, &p.id, &p.lid).await,
            Event::Connected(_) => self.on_connected(sid, run).await,
            Event::Disconnected(_) => self.on_closed(sid, run).await,
            Event::LoggedOut(l) => self.on_logged_out(sid, &format!("{:?}", l.reason)).await,
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
            Event::HistorySync(h) => self.on_history(sid, run, h).await,
            Event::Messages(batch) => {
                if !batch.hook_committed {
                    if let Err(e) =
                        record_batch(&self.0.store, &sid.to_string(), &batch.messages).await
                    {
                        tracing::error!(session = %sid, error = %format!("{e:#}"), "messages the engine delivered uncommitted could not be stored");
                    }
                }
                for m in batch.messages.iter() {
                    if m.info.source.is_group {
                        self.learn_group(&sid.to_string(), run, &m.info.source.chat);
                    }
                }
                self.after_commit(&sid, run, &batch.messages).await;
            }
            Event::Receipt(r) => self.on_receipt(sid, r).await,
            other => {
                if let Some(c) = convert::chat_setting(other) {
                    self.on_chat_setting(sid, c).await;
                }
            }
        }
    }

    async fn on_qr(&self, sid: SessionId, run: &Running, code: &str, timeout: Duration) {
        let expires_at = now_ms() + timeout.as_millis() as i64;
        *lock(&run.qr) = Some(QrCode {
            code: code.to_owned(),
            expires_at,
        });
        run.settle();
        self.set_status(
            &sid,
            SessionStatus::ScanQrCode,
            Some("scan the QR code with the phone"),
        )
        .await;
        self.keep(&sid, "QR code", || {
            self.0.store.record_qr(&sid, code, expires_at)
        })
        .await;
    }

    async fn on_qr_exhausted(&self, sid: SessionId, run: &Running) {
        *lock(&run.qr) = None;
        self.end(&sid);
        self.set_status(
            &sid,
            SessionStatus::Failed,
            Some("no QR code was scanned in time; start the session again for new ones"),
        )
        .await;
    }

    async fn on_paired(
        &self,
        sid: SessionId,
        run: &Running,
        id: &whatsapp_rust::Jid,
        lid: &whatsapp_rust::Jid,
    ) {
        *lock(&run.qr) = None;
        let (jid, lid) = (convert::jid(id), convert::jid(lid));
        let phone = jid.as_ref().map(|j| j.user().to_owned());
        let (jid, lid) = (jid.map(|j| j.to_string()), lid.map(|j| j.to_string()));
        self.keep(&sid, "paired account", || {
            self.0.store.set_session_account(
                &sid,
                jid.as_deref(),
                lid.as_deref(),
                phone.as_deref(),
                None,
            )
        })
        .await;
        self.set_status(&sid, SessionStatus::Starting, Some("paired; connecting"))
            .await;
    }

    async fn on_connected(&self, sid: SessionId, run: &Running) {
        *lock(&run.qr) = None;
        run.settle();
        self.set_status(&sid, SessionStatus::Working, None).await;
        // The sender pushes what waited for the connection (queued sends, chat settings).
        let _ = self.0.connections.send(sid);
    }

    async fn on_logged_out(&self, sid: SessionId, why: &str) {
        let reason = format!("WhatsApp unlinked this device ({why})");
        self.end(&sid);
        let keys = self.0.store.key_store(&sid.to_string());
        self.keep(&sid, "logout key wipe", || async {
            keys.delete_all().await.map_err(anyhow::Error::from)
        })
        .await;
        self.set_status(&sid, SessionStatus::LoggedOut, Some(&reason))
            .await;
    }

    /// Keeps a history sync (WhatsApp has been told the device has it) and wakes the run's
    /// history worker; the blob is processed there, off this session's event path.
    async fn on_history(
        &self,
        sid: SessionId,
        run: &Running,
        h: &whatsapp_rust::types::events::LazyHistorySync,
    ) {
        let blob = crate::store::history::PendingHistory {
            id: ulid::Ulid::new().to_string(),
            session_id: sid.to_string(),
            data: h.compressed_bytes().to_vec(),
            decompressed_size: h.decompressed_size() as i64,
            sync_type: h.sync_type(),
            chunk_order: h.chunk_order().map(i64::from),
            progress: h.progress().map(i64::from),
            created_at: now_ms(),
        };
        if self
            .keep(&sid, "history sync", || {
                self.0.store.save_history_blob(&blob)
            })
            .await
            .is_some()
        {
            run.history.notify_one();
        }
    }

    async fn on_receipt(&self, sid: SessionId, r: &whatsapp_rust::types::events::Receipt) {
        use whatsapp_rust::types::presence::ReceiptType;
        let status = match r.r#type {
            ReceiptType::Delivered => MessageStatus::Delivered,
            ReceiptType::Read | ReceiptType::ReadSelf => MessageStatus::Read,
            ReceiptType::Played | ReceiptType::PlayedSelf => MessageStatus::Played,
            _ => return,
        };
        let Some(chat) = convert::jid(&r.source.chat) else {
            return;
        };
        let receipt = Receipt {
            chat,
            ids: r.message_ids.iter().map(|i| i.to_string()).collect(),
            status,
            error: None,
        };
        let s = sid.to_string();
        self.keep(&sid, "receipt", || {
            self.0.store.record_receipt(&s, &receipt)
        })
        .await;
    }

    /// A chat setting changed on the phone (archive, pin, mute, mark read, delete).
    async fn on_chat_setting(&self, sid: SessionId, c: ChatSettings) {
        let s = sid.to_string();
        self.keep(&sid, "chat setting", || self.0.store.record_chat(&s, &c))
            .await;
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
        let cached = lock(&run.settings)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < SETTINGS_TTL)
            .map(|(_, s)| s.clone());
        let session = match cached {
            Some(s) => s,
            None => {
                let Ok(Some(s)) = self.0.store.get_session_any_org(sid).await else {
                    return;
                };
                *lock(&run.settings) = Some((std::time::Instant::now(), s.clone()));
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

    /// Downloads an attachment into the media store (`<media_dir>/<session>/<message id>`)
    /// and records it with the message. At most `MEDIA_DOWNLOADS` run at once; the file is
    /// streamed to a temporary name, its length checked, flushed to disk, renamed and the
    /// folder flushed before the row points at it, so a power cut never leaves a row pointing
    /// at a short file.
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
        let waiting = self.0.media_waiting.clone();
        if waiting.fetch_add(1, Ordering::SeqCst) >= MEDIA_WAITING {
            waiting.fetch_sub(1, Ordering::SeqCst);
            tracing::warn!(
                session = s,
                "the media store is {MEDIA_WAITING} downloads behind: attachment not kept"
            );
            return;
        }
        let (store, dir, client, gate, cancel) = (
            self.0.store.clone(),
            self.0.cfg.media_dir.clone(),
            run.client.clone(),
            self.0.media.clone(),
            run.cancel.clone(),
        );
        let (chat, wa_id) = (n.chat.clone(), n.wa_message_id.clone());
        self.spawn(async move {
            let turn = tokio::select! {
                t = gate.acquire_owned() => t.ok(),
                _ = cancel.cancelled() => None,
            };
            waiting.fetch_sub(1, Ordering::SeqCst);
            let Some(_turn) = turn else { return };
            let row = match store.get_message(&s, &chat, &wa_id).await {
                Ok(Some(row)) => row,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(session = s, error = %format!("{e:#}"), "attachment not kept: message not readable");
                    return;
                }
            };
            let rel = format!("{s}/{}", row.id);
            let kept = tokio::select! {
                k = write_media(&dir, &rel, &media, live::WaLive(client)) => k,
                _ = cancel.cancelled() => return,
            };
            match kept {
                Ok(()) => {
                    if let Err(e) = store.set_media_file(&s, row.id, &rel).await {
                        tracing::warn!(session = s, error = %format!("{e:#}"), "media file not recorded");
                    }
                }
                Err(e) => {
                    tracing::warn!(session = s, message = row.id, error = %format!("{e:#}"), "attachment not kept")
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
        if !lock(&run.groups).insert(group.to_string()) {
            return;
        }
        let (store, client, s, group, cancel) = (
            self.0.store.clone(),
            run.client.clone(),
            s.to_owned(),
            group.clone(),
            run.cancel.clone(),
        );
        self.spawn(async move {
            let groups = client.groups();
            let meta = tokio::select! {
                m = groups.get_metadata(&group) => m,
                _ = cancel.cancelled() => return,
            };
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(session = s, group = %group, error = %e, "group metadata not available");
                    return;
                }
            };
            let Some(info) = convert::group_info(&meta) else {
                return;
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
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = run.cancel.cancelled() => return,
            }
            if run.ending.load(Ordering::SeqCst) {
                return;
            }
            let failures = run.client.stats().reconnect_errors;
            if failures >= max && !run.client.is_connected() {
                self.end(&sid);
                let reason = format!("could not connect to WhatsApp {failures} times in a row");
                Box::pin(self.set_status(&sid, SessionStatus::Failed, Some(&reason))).await;
                return;
            }
        }
    }

    /// The run's history worker: processes the kept blobs (a previous run's leftovers first),
    /// one at a time and only here, so each is stored once, off the event path.
    async fn history_worker(self, sid: SessionId, run: Arc<Running>) {
        let s = sid.to_string();
        loop {
            tokio::select! {
                _ = Box::pin(process_history(&self.0.store, &s)) => {}
                _ = run.cancel.cancelled() => return,
            }
            tokio::select! {
                _ = run.history.notified() => {}
                _ = run.cancel.cancelled() => return,
            }
        }
    }

    /// The run's event task: hands the engine's events to `on_event` in order; when the run
    /// ends, what was already handed over is handled and the task ends (with it the last
    /// references to the run and its client).
    async fn event_loop(
        self,
        sid: SessionId,
        run: Arc<Running>,
        mut rx: mpsc::UnboundedReceiver<Signal>,
    ) {
        loop {
            let signal = tokio::select! {
                biased;
                s = rx.recv() => s,
                _ = run.cancel.cancelled() => None,
            };
            let Some(signal) = signal.or_else(|| rx.try_recv().ok()) else {
                break;
            };
            run.queued.fetch_sub(1, Ordering::Relaxed);
            // Boxed: the task of an idle session then holds only this loop's small state, not
            // the largest of every handler's futures (memory per connected session).
            match signal {
                Signal::Event(e) => Box::pin(self.on_event(sid, &run, &e)).await,
                Signal::ConnectionClosed => Box::pin(self.on_closed(sid, &run)).await,
            }
        }
    }
}

/// Streams an attachment into `<dir>/<rel>.part`, checks its length, flushes it to disk,
/// renames it to `<dir>/<rel>` and flushes the folder.
async fn write_media(
    dir: &std::path::Path,
    rel: &str,
    media: &crate::engine::MediaRef,
    client: live::WaLive,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let path = dir.join(rel);
    let tmp = dir.join(format!("{rel}.part"));
    let folder = path
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| dir.to_path_buf());
    tokio::fs::create_dir_all(&folder)
        .await
        .context("creating the media folder")?;
    let file = tokio::fs::File::create(&tmp)
        .await
        .context("creating the file")?
        .into_std()
        .await;
    let written = async {
        let file = client.download_media_to(media, file).await?;
        let (want, tmp2, path2, folder2) =
            (media.file_length, tmp.clone(), path.clone(), folder.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let len = file.metadata()?.len();
            anyhow::ensure!(len == want, "downloaded {len} bytes of {want}");
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp2, &path2)?;
            std::fs::File::open(&folder2)?.sync_all()?;
            Ok(())
        })
        .await?
    }
    .await;
    if written.is_err() {
        if let Err(e) = tokio::fs::remove_file(&tmp).await {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, "a partial media file could not be removed");
            }
        }
    }
    written
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
            done_with(store, s, &id).await;
            continue;
        };
        match store.record_history(s, batch).await {
            Ok(counts) => {
                tracing::info!(
                    session = s,
                    chats = counts.chats,
                    messages = counts.messages,
                    "history sync stored"
                );
                done_with(store, s, &id).await;
            }
            Err(e) => {
                tracing::warn!(session = s, error = %format!("{e:#}"), "history sync not stored; kept for the next start");
                return;
            }
        }
    }
}

/// Forgets a processed history blob (a failure only means it is processed again, idempotently).
async fn done_with(store: &Store, s: &str, blob: &str) {
    if let Err(e) = store.history_blob_done(blob).await {
        tracing::warn!(session = s, blob, error = %format!("{e:#}"), "a processed history blob could not be removed; it will be processed again");
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
struct Forward {
    tx: mpsc::UnboundedSender<Signal>,
    queued: Arc<AtomicUsize>,
}

impl EventHandler for Forward {
    fn handle_event(&self, event: Arc<Event>) {
        // Fails only once the run's task has ended (the run is over): nothing to hand to.
        if self.tx.send(Signal::Event(event)).is_ok() {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The WebSocket transport, with its closing reported to the session's task.
struct Watched {
    inner: Arc<dyn Transport>,
    tx: mpsc::UnboundedSender<Signal>,
    queued: Arc<AtomicUsize>,
}

#[async_trait]
impl Transport for Watched {
    async fn send(&self, data: bytes::Bytes) -> anyhow::Result<()> {
        self.inner.send(data).await
    }

    async fn disconnect(&self) {
        if self.tx.send(Signal::ConnectionClosed).is_ok() {
            self.queued.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.disconnect().await
    }

    fn resource_report(&self) -> Option<whatsapp_rust::wacore::stats::TransportResourceReport> {
        self.inner.resource_report()
    }
}

struct WatchedFactory {
    inner: TokioWebSocketTransportFactory,
    tx: mpsc::UnboundedSender<Signal>,
    queued: Arc<AtomicUsize>,
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
            queued: self.queued.clone(),
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
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let bot = Bot::builder()
            .with_backend_arc(backend)
            .with_transport_factory(WatchedFactory {
                inner: TokioWebSocketTransportFactory::new().with_url(&self.0.cfg.url),
                tx: tx.clone(),
                queued: queued.clone(),
            })
            .with_http_client(Http(UreqHttpClient::new()))
            .with_runtime(whatsapp_rust::TokioRuntime)
            .with_version(WA_VERSION)
            .with_wanted_pre_key_count(PRE_KEYS)
            .with_event_handler(Forward {
                tx,
                queued: queued.clone(),
            })
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
        {
            let mut clients = lock(&self.0.clients);
            clients.retain(|c| c.strong_count() > 0);
            clients.push(Arc::downgrade(&client));
        }
        let run = Arc::new(Running {
            client,
            handle: tokio::sync::Mutex::new(None),
            qr: Mutex::new(None),
            ending: AtomicBool::new(false),
            groups: Mutex::default(),
            settings: Mutex::default(),
            cancel: self.0.stop.child_token(),
            history: Notify::new(),
            settled: watch::channel(false).0,
            queued,
        });
        {
            let mut map = lock(&self.0.sessions);
            if map.contains_key(&sid) {
                return Err(EngineError::Conflict(
                    "the session is already running".into(),
                ));
            }
            map.insert(sid, run.clone());
        }
        *run.handle.lock().await = Some(bot.spawn());
        self.spawn(self.clone().event_loop(sid, run.clone(), rx));
        self.spawn(self.clone().watchdog(sid, run.clone()));
        // Also stores what a previous run kept but did not finish.
        self.spawn(self.clone().history_worker(sid, run));
        Ok(())
    }

    async fn stop(&self, sid: &SessionId) -> Result<(), EngineError> {
        let Some(r) = lock(&self.0.sessions).remove(sid) else {
            return Ok(());
        };
        r.ending.store(true, Ordering::SeqCst);
        r.settle();
        if let Some(h) = r.handle.lock().await.take() {
            if r.client.is_connected() {
                // Flushes what the device holds (receipts, key material) before closing.
                let _ = tokio::time::timeout(Duration::from_secs(25), h.shutdown()).await;
            } else {
                // Still connecting (or retrying): nothing to flush, and a graceful shutdown
                // would wait for the connect attempt to time out. The run loop is aborted,
                // then the client is told to stop what it started besides.
                h.abort();
                let _ = tokio::time::timeout(Duration::from_secs(10), r.client.disconnect()).await;
            }
        }
        r.cancel.cancel();
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
        let qr = lock(&r.qr).clone();
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
        self.keep(sid, "pairing code", || {
            self.0.store.record_pairing_code(sid, &code)
        })
        .await;
        Ok(code)
    }

    fn settings_changed(&self, sid: &SessionId) {
        if let Some(r) = self.running(sid) {
            *lock(&r.settings) = None;
        }
    }

    fn connections(&self) -> tokio::sync::broadcast::Receiver<SessionId> {
        self.0.connections.subscribe()
    }

    fn stats(&self) -> EngineStats {
        let sessions: Vec<(SessionId, Arc<Running>)> = lock(&self.0.sessions)
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        EngineStats {
            running: sessions.len(),
            connected: sessions
                .iter()
                .filter(|(_, r)| r.client.is_connected() && r.client.is_logged_in())
                .count(),
            event_queues: sessions
                .iter()
                .map(|(sid, r)| (*sid, r.queued.load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            tasks: self.task_count(),
            clients_alive: self.clients_alive(),
            store_retries: self.store_retries(),
            store_failures: self.0.store_failures.load(Ordering::Relaxed),
        }
    }

    fn client(&self, sid: &SessionId) -> Option<Arc<dyn LiveClient>> {
        let r = self.running(sid)?;
        (r.client.is_connected() && r.client.is_logged_in())
            .then(|| Arc::new(live::WaLive(r.client.clone())) as Arc<dyn LiveClient>)
    }
}
