//! The sender: everything that leaves for WhatsApp from the durable tables of `store` — the
//! outbox of messages (`store::outgoing`) and the chat settings changed through the API
//! (`chat_settings_pending`, see [`super::settings_sync`]).
//!
//! Each session with work has one worker task while it has a connected client. Per session,
//! jobs leave in the order they were accepted, one at a time, within its `ratePerMin` /
//! `ratePerHour`. A temporary failure holds the job and retries it later with the same WhatsApp
//! id; a refusal fails it (the stored message shows `failed` with the reason). Nothing is
//! removed from the outbox before WhatsApp's server has the message, so a restart or a kill -9
//! repeats at most the send in flight, with the same id, which the recipient's devices keep
//! once.
//!
//! Owner and stop: the [`Sender`] owns every task it starts (a `TaskTracker`); [`Sender::stop`]
//! cancels them and waits. A worker that panics takes no lock or mark with it: its guard
//! removes it from the table, and the next wake or tick starts a fresh one, so the queue moves
//! again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::send::{OutgoingContent, OutgoingMessage, SendError};
use super::{ChatPresence, Engine, LiveClient};
use crate::domain::{now_ms, Jid, SessionId};
use crate::store::ingest::{JobEnd, Receipt};
use crate::store::outgoing::QueuedJob;
use crate::store::{ChangeKind, MessageChange, MessageStatus, RecordOptions, SessionRecord, Store};

/// Attempts before a job that keeps failing temporarily is given up as `failed`.
pub const MAX_ATTEMPTS: i32 = 8;
/// How often the sender looks for sessions with work it was not woken for (a session that
/// connected through an engine that does not report connections, a worker that panicked).
const TICK: Duration = Duration::from_millis(1000);
/// Queued jobs read per look at a session's queue.
const BATCH: i64 = 32;
/// Send times remembered per session for its rate limits; above this many sends in an hour
/// the per-hour count is read from the database.
const WINDOW_CAP: usize = 4096;
/// A worker with nothing to do ends after this long (a session that sends rarely keeps no
/// task).
const IDLE_END: Duration = Duration::from_secs(30);
/// The session's settings (rate limits, typing) are read again at least this often.
const SETTINGS_FRESH: Duration = Duration::from_secs(10);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A session's worker, as the table knows it.
struct Slot {
    /// Tells the worker to look again.
    wake: Arc<Notify>,
    /// Set by every wake, cleared by the worker when it starts a round: a worker only ends
    /// when nobody asked for work since its last round.
    pending: bool,
    /// The chat settings queue should be looked at (set on connect and by API changes).
    settings: bool,
    /// The session's settings changed: read them again.
    reload: bool,
    /// Tells this worker's guard apart from a later worker's.
    generation: u64,
}

struct Inner {
    store: Store,
    engine: Arc<dyn Engine>,
    workers: Mutex<HashMap<SessionId, Slot>>,
    generation: std::sync::atomic::AtomicU64,
    /// Requests waiting for a job to settle, by job id.
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// Handle to the sender (cheap to clone).
#[derive(Clone)]
pub struct Sender(Arc<Inner>);

/// A request's wait for one job to settle; dropping it forgets the wait.
pub struct JobWatch {
    inner: Arc<Inner>,
    job: String,
    rx: oneshot::Receiver<()>,
}

impl JobWatch {
    /// Resolves when the sender settled the job (sent or failed), or when the sender stopped.
    pub async fn settled(&mut self) {
        let _ = (&mut self.rx).await;
    }
}

impl Drop for JobWatch {
    fn drop(&mut self) {
        self.rx.close();
        let mut w = lock(&self.inner.waiters);
        if let Some(list) = w.get_mut(&self.job) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                w.remove(&self.job);
            }
        }
    }
}

impl Sender {
    /// Starts the sender's task on the current runtime.
    pub fn start(store: Store, engine: Arc<dyn Engine>) -> Self {
        let inner = Arc::new(Inner {
            store,
            engine,
            workers: Mutex::default(),
            generation: Default::default(),
            waiters: Mutex::default(),
            tasks: TaskTracker::new(),
            stop: CancellationToken::new(),
        });
        let connections = inner.engine.connections();
        inner
            .tasks
            .spawn(run(Arc::downgrade(&inner), inner.stop.clone(), connections));
        Sender(inner)
    }

    /// New messages were queued for the session: send them now if it is connected.
    pub fn wake(&self, sid: &SessionId) {
        self.0.wake(sid, false);
    }

    /// Chat settings were queued for the session: push them now if it is connected.
    pub fn push_settings(&self, sid: &SessionId) {
        self.0.wake(sid, true);
    }

    /// The session's settings (rate limits, typing indicator) changed.
    pub fn settings_changed(&self, sid: &SessionId) {
        if let Some(slot) = lock(&self.0.workers).get_mut(sid) {
            slot.reload = true;
        }
    }

    /// Watches a job until it settles (register before looking at the job, to miss nothing).
    pub fn watch(&self, job: &str) -> JobWatch {
        let (tx, rx) = oneshot::channel();
        lock(&self.0.waiters)
            .entry(job.to_owned())
            .or_default()
            .push(tx);
        JobWatch {
            inner: self.0.clone(),
            job: job.to_owned(),
            rx,
        }
    }

    /// Worker tasks running now (for tests and `/metrics`).
    pub fn workers(&self) -> usize {
        lock(&self.0.workers).len()
    }

    /// Stops every task of the sender and waits for them. Queued work stays in the outbox.
    pub async fn stop(&self) {
        self.0.stop.cancel();
        self.0.tasks.close();
        self.0.tasks.wait().await;
    }
}

impl Inner {
    /// Asks the session's worker to look again, starting one when there is none and the
    /// session has a connected client.
    fn wake(self: &Arc<Self>, sid: &SessionId, settings: bool) {
        if self.stop.is_cancelled() {
            return;
        }
        let mut workers = lock(&self.workers);
        if let Some(slot) = workers.get_mut(sid) {
            slot.pending = true;
            slot.settings |= settings;
            slot.wake.notify_one();
            return;
        }
        if self.engine.client(sid).is_none() {
            return;
        }
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        workers.insert(
            *sid,
            Slot {
                wake: wake.clone(),
                pending: true,
                settings,
                reload: true,
                generation,
            },
        );
        drop(workers);
        let guard = WorkerGuard {
            inner: self.clone(),
            sid: *sid,
            generation,
        };
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = guard.work(wake) => {}
                _ = stop.cancelled() => {}
            }
        });
    }

    /// Tells the requests waiting for `job` that it settled.
    fn settled(&self, job: &str) {
        if let Some(list) = lock(&self.waiters).remove(job) {
            for tx in list {
                let _ = tx.send(());
            }
        }
    }
}

async fn run(
    weak: std::sync::Weak<Inner>,
    stop: CancellationToken,
    mut connections: broadcast::Receiver<SessionId>,
) {
    let mut reported = true;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        // Sessions with queued messages and no worker (the worker of a connected session
        // keeps its own timers).
        match inner.store.sessions_with_sends(100_000).await {
            Ok(sessions) => {
                for s in sessions {
                    if let Ok(sid) = s.parse::<SessionId>() {
                        if !lock(&inner.workers).contains_key(&sid) {
                            inner.wake(&sid, false);
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "sender: cannot read the outbox"),
        }
        drop(inner);
        let deadline = tokio::time::Instant::now() + TICK;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(deadline) => break,
                c = connections.recv(), if reported => {
                    let Some(inner) = weak.upgrade() else { return };
                    match c {
                        // A session connected: its queued messages and chat settings go now.
                        Ok(sid) => inner.wake(&sid, true),
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => reported = false,
                    }
                }
            }
        }
    }
}

/// Removes its worker from the table when the worker ends, however it ends (a panic too).
struct WorkerGuard {
    inner: Arc<Inner>,
    sid: SessionId,
    generation: u64,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let mut workers = lock(&self.inner.workers);
        if workers.get(&self.sid).map(|s| s.generation) == Some(self.generation) {
            workers.remove(&self.sid);
        }
        if std::thread::panicking() {
            tracing::error!(session = %self.sid, "sender: the session's send loop panicked; it starts again at the next look");
        }
    }
}

/// What a round of a worker found.
enum Next {
    /// Nothing queued.
    Idle,
    /// The next job may go at this time (epoch ms): a retry's backoff or a rate limit.
    At(i64),
    /// The client is gone: the session's next connect wakes a new worker.
    Gone,
}

impl WorkerGuard {
    /// The worker's loop. It takes the session's client afresh for each round and holds none
    /// while it waits, so a stopped session's client is not kept alive by its sender.
    async fn work(self, wake: Arc<Notify>) {
        let s = self.sid.to_string();
        let mut session: Option<(SessionRecord, tokio::time::Instant)> = None;
        let mut window: Option<Window> = None;
        loop {
            let Some(client) = self.inner.engine.client(&self.sid) else {
                return;
            };
            let (settings, reload) = {
                let mut workers = lock(&self.inner.workers);
                let Some(slot) = workers.get_mut(&self.sid) else {
                    return;
                };
                slot.pending = false;
                (
                    std::mem::take(&mut slot.settings),
                    std::mem::take(&mut slot.reload),
                )
            };
            if settings {
                super::settings_sync::push_pending(&self.inner.store, &self.sid, client.as_ref())
                    .await;
            }
            if reload
                || session
                    .as_ref()
                    .is_none_or(|(_, at)| at.elapsed() > SETTINGS_FRESH)
            {
                match self.inner.store.get_session_any_org(&self.sid).await {
                    Ok(Some(r)) => session = Some((r, tokio::time::Instant::now())),
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(session = s, error = %format!("{e:#}"), "sender: cannot read the session");
                        return;
                    }
                }
            }
            let Some((record, _)) = &session else { return };
            if window.is_none() {
                match Window::load(&self.inner.store, &s).await {
                    Ok(w) => window = Some(w),
                    Err(e) => {
                        tracing::warn!(session = s, error = %format!("{e:#}"), "sender: cannot read recent sends");
                        return;
                    }
                }
            }
            let Some(win) = window.as_mut() else { return };
            let next = match drain(&self.inner, record, win, client.as_ref()).await {
                Ok(n) => n,
                Err(e) => {
                    // The database failed under the sender: the job is still queued; try
                    // again at the next tick.
                    tracing::warn!(session = s, error = %format!("{e:#}"), "sender: step failed");
                    return;
                }
            };
            drop(client);
            let wait = match next {
                Next::Gone => return,
                Next::Idle => IDLE_END,
                Next::At(t) => Duration::from_millis((t - now_ms()).clamp(1, 3_600_000) as u64),
            };
            let woken = tokio::time::timeout(wait, wake.notified()).await.is_ok();
            if !woken && matches!(next, Next::Idle) {
                // End, unless a wake came in meanwhile.
                let mut workers = lock(&self.inner.workers);
                if workers.get(&self.sid).is_some_and(|w| !w.pending) {
                    workers.remove(&self.sid);
                    return;
                }
            }
        }
    }
}

/// Sends the session's queued jobs in order while they may go.
async fn drain(
    inner: &Inner,
    session: &SessionRecord,
    window: &mut Window,
    client: &dyn LiveClient,
) -> anyhow::Result<Next> {
    loop {
        let jobs = inner.store.next_sends(&session.id, BATCH).await?;
        if jobs.is_empty() {
            return Ok(Next::Idle);
        }
        for job in jobs {
            match step(inner, session, window, client, &job).await? {
                None => {}
                Some(next) => return Ok(next),
            }
        }
    }
}

/// Send times of a session's recent messages, oldest first, for its rate limits.
struct Window {
    times: VecDeque<i64>,
    /// Older sends than the first one kept may exist.
    truncated: bool,
}

impl Window {
    async fn load(store: &Store, s: &str) -> anyhow::Result<Self> {
        let mut times: VecDeque<i64> = store
            .recent_send_times(s, WINDOW_CAP as i64)
            .await?
            .into_iter()
            .collect();
        let truncated = times.len() >= WINDOW_CAP;
        times.make_contiguous().reverse();
        Ok(Window { times, truncated })
    }

    fn push(&mut self, at: i64) {
        self.times.push_back(at);
        while self.times.len() > WINDOW_CAP {
            self.times.pop_front();
            self.truncated = true;
        }
    }

    /// When a send may go next under `limit` sends per `span` ms, or `None` for now.
    async fn hold_until(
        &self,
        store: &Store,
        s: &str,
        now: i64,
        span: i64,
        limit: i64,
    ) -> anyhow::Result<Option<i64>> {
        let limit = limit.max(1);
        let since = now - span;
        let first = self.times.partition_point(|&t| t < since);
        let count = (self.times.len() - first) as i64;
        if first == 0 && self.truncated && count < limit {
            // Every remembered send is in the window and older ones may be too: count them.
            let (n, oldest) = store.sends_sent_since(s, since).await?;
            return Ok((n >= limit).then(|| oldest.unwrap_or(now) + span + 1));
        }
        if count < limit {
            return Ok(None);
        }
        // The send whose leaving the window makes room again.
        let t = self.times[first + (count - limit) as usize];
        Ok(Some(t + span + 1))
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

/// Sends one job if it may go now. `None` when the caller should go on with the next job.
async fn step(
    inner: &Inner,
    session: &SessionRecord,
    window: &mut Window,
    client: &dyn LiveClient,
    job: &QueuedJob,
) -> anyhow::Result<Option<Next>> {
    let store = &inner.store;
    let s = session.id.as_str();
    let now = now_ms();
    if job.not_before > now {
        return Ok(Some(Next::At(job.not_before)));
    }
    for (span, limit) in [
        (60_000, session.rate_per_min),
        (3_600_000, session.rate_per_hour),
    ] {
        if let Some(until) = window.hold_until(store, s, now, span, limit).await? {
            store.send_hold(&job.id, until).await?;
            return Ok(Some(Next::At(until)));
        }
    }
    let to: Jid = job
        .chat_jid
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let Some(content) = store.send_content(&job.id).await? else {
        // Settled or removed (its session or chat deleted) meanwhile.
        return Ok(None);
    };
    let content: OutgoingContent = match serde_json::from_str(&content) {
        Ok(c) => c,
        Err(e) => {
            fail(inner, s, job, &to, &format!("unreadable job: {e}")).await?;
            return Ok(None);
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
            // The stored copy and the job in one transaction: whoever sees the job settled
            // sees the message's new status (or the edit, the revoke) too.
            let at = now_ms();
            let receipt = match change_of(&to, &msg.content) {
                Some(change) => {
                    store
                        .record_inbound(s, &[], &[change], RecordOptions::default())
                        .await?;
                    None
                }
                None => Some(Receipt {
                    chat: to.clone(),
                    ids: vec![job.wa_message_id.clone()],
                    status: MessageStatus::Sent,
                    error: None,
                }),
            };
            drop(msg);
            store
                .settle_send(s, &job.id, JobEnd::Sent { at }, receipt, job.content_len)
                .await?;
            window.push(at);
            inner.settled(&job.id);
            Ok(None)
        }
        Err(SendError::NotConnected) => Ok(Some(Next::Gone)),
        Err(SendError::Retry(e)) if job.attempts + 1 < MAX_ATTEMPTS => {
            tracing::info!(
                session = s,
                job = job.id,
                attempts = job.attempts + 1,
                error = e,
                "send will be retried"
            );
            let at = now_ms() + backoff(job.attempts);
            store.send_retry(&job.id, at, &e).await?;
            Ok(Some(Next::At(at)))
        }
        Err(SendError::Retry(e)) | Err(SendError::Refused(e)) => {
            fail(inner, s, job, &to, &e).await?;
            Ok(None)
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

async fn fail(
    inner: &Inner,
    s: &str,
    job: &QueuedJob,
    to: &Jid,
    error: &str,
) -> anyhow::Result<()> {
    tracing::warn!(session = s, job = job.id, error, "send failed");
    let receipt = Receipt {
        chat: to.clone(),
        ids: vec![job.wa_message_id.clone()],
        status: MessageStatus::Failed,
        error: Some(error.to_owned()),
    };
    inner
        .store
        .settle_send(
            s,
            &job.id,
            JobEnd::Failed {
                error: error.to_owned(),
            },
            Some(receipt),
            job.content_len,
        )
        .await?;
    inner.settled(&job.id);
    Ok(())
}
