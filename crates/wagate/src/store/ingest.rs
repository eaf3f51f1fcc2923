//! The ingest service: the one way into the stored copy for everything WhatsApp tells the
//! gateway. The engine calls these operations as events arrive, and tests seed data through
//! them too.
//!
//! Every operation is one transaction that holds the session's lock, is safe to run
//! concurrently with any other and to repeat (a redelivered message is one row; linking the
//! same pair twice changes nothing), retries transient conflicts, and writes its outbox events
//! in the same transaction. An operation on a session that no longer exists stores nothing.

use serde::Serialize;

use super::records::{ChatRecord, MessageStatus};
use super::{on_db, sql, Db, Store};
use crate::domain::Jid;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Attachment metadata (the bytes live elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaInfo {
    pub mimetype: Option<String>,
    pub size: Option<i64>,
    pub filename: Option<String>,
    /// How to fetch the file again from WhatsApp (`engine::MediaRef` as JSON), when known.
    pub reference: Option<String>,
}

/// A message to record, as the engine converts it from WhatsApp.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The chat: a group JID, or for a direct chat the other person's address (phone JID or LID).
    pub chat: Jid,
    /// For a direct chat, the other person's other address when WhatsApp gave it.
    pub chat_alt: Option<Jid>,
    pub wa_message_id: String,
    pub from_me: bool,
    /// The author's address as WhatsApp gave it (phone JID or LID).
    pub sender: Option<Jid>,
    /// The author's LID when WhatsApp gave the other address as well.
    pub sender_lid: Option<Jid>,
    /// The author's push name, if the message carried it.
    pub sender_name: Option<String>,
    /// `text`, `image`, `video`, `audio`, `document`, `sticker`, `location`, `contact`, `poll`, `reaction`, ...
    pub kind: String,
    pub body: Option<String>,
    pub media: Option<MediaInfo>,
    pub quoted_message_id: Option<String>,
    pub mentions: Vec<String>,
    pub status: MessageStatus,
    /// When WhatsApp says it was sent, epoch ms.
    pub timestamp: i64,
    /// For a poll: what voting needs (`engine::PollInfo` as JSON).
    pub poll: Option<String>,
}

/// A change WhatsApp reports to a message already sent: an edit of its text or a revoke
/// ("deleted for everyone"). Reactions are messages of their own (type `reaction`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// The new text (or caption).
    Edit {
        body: Option<String>,
    },
    Revoke,
}

/// A change to a stored message, as the engine converts it from WhatsApp (or as the gateway
/// itself made it from the API, once WhatsApp took it).
#[derive(Debug, Clone)]
pub struct MessageChange {
    /// The chat, addressed as in [`NewMessage::chat`].
    pub chat: Jid,
    pub chat_alt: Option<Jid>,
    /// WhatsApp id of the changed message.
    pub target: String,
    /// Made by the account (from any of its devices or the API) rather than the other side.
    pub from_me: bool,
    pub kind: ChangeKind,
}

/// How a batch of messages is counted.
#[derive(Debug, Clone, Copy)]
pub struct RecordOptions {
    /// Bump the chat's unread counter for each new incoming message (live traffic). History
    /// sync passes `false` and sets the counter WhatsApp reported instead.
    pub count_unread: bool,
    /// Write a `message` / `message.from_me` event per new message (history sync does not).
    pub emit_events: bool,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions {
            count_unread: true,
            emit_events: true,
        }
    }
}

/// The outcome of recording one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub id: i64,
    pub chat_id: i64,
    /// False when the same WhatsApp id was already stored in that chat.
    pub inserted: bool,
}

/// A delivery or read receipt for messages of one chat.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub chat: Jid,
    pub ids: Vec<String>,
    pub status: MessageStatus,
    pub error: Option<String>,
}

/// How an outbox job ends, recorded in the same transaction as its message's new status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JobEnd {
    /// WhatsApp's server took it at `at` (epoch ms).
    Sent { at: i64 },
    /// It will not be sent.
    Failed { error: String },
}

/// One caller's writes to a session's stored copy, applied in one transaction (on SQLite
/// possibly shared with other callers' jobs, see [`Store::record_queued`]): new messages,
/// then changes to stored ones, then status changes, then the end of an outbox job.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteJob {
    pub session: String,
    pub msgs: Vec<NewMessage>,
    pub changes: Vec<MessageChange>,
    pub opts: RecordOptions,
    pub receipts: Vec<Receipt>,
    /// An outbox job (by id) and how it ended.
    pub settle: Option<(String, JobEnd)>,
}

/// What a [`WriteJob`] did.
#[derive(Debug, Clone, Default)]
pub(crate) struct WriteOutcome {
    /// One per new message, in order (empty when the session does not exist).
    pub recorded: Vec<Recorded>,
    /// Messages whose status the receipts moved.
    pub statuses: u64,
}

/// What WhatsApp says about a chat: from history sync, or a change made on the phone
/// (archive, pin, mute, mark read, delete). `None` fields stay as they are.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub chat: Jid,
    /// For a direct chat, the person's other address when known.
    pub chat_alt: Option<Jid>,
    pub name: Option<String>,
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
    /// `Some(None)` clears the mute.
    pub muted_until: Option<Option<i64>>,
    /// `Some(0)` marks the chat read.
    pub unread_count: Option<i64>,
    pub last_message_at: Option<i64>,
    /// The chat was deleted on the phone: remove it from the stored copy.
    pub deleted: bool,
    /// When the phone made this change (the app-state action's timestamp, epoch ms), if it is a
    /// change made on WhatsApp's side: a newer one cancels the API's queued change of the same
    /// setting instead of being overwritten by it.
    pub changed_at: Option<i64>,
}

impl ChatSettings {
    /// Settings that change nothing yet, for `chat`.
    pub fn new(chat: Jid) -> Self {
        ChatSettings {
            chat,
            chat_alt: None,
            name: None,
            archived: None,
            pinned: None,
            muted_until: None,
            unread_count: None,
            last_message_at: None,
            deleted: false,
            changed_at: None,
        }
    }
}

/// Names WhatsApp reported for a person.
#[derive(Debug, Clone)]
pub struct PersonNames {
    pub jid: Jid,
    pub alt: Option<Jid>,
    /// The name the person set for themselves.
    pub push_name: Option<String>,
    /// A business account's verified name.
    pub business_name: Option<String>,
    /// The name in this session's phone address book; `Some(None)` removes it.
    pub saved_name: Option<Option<String>>,
}

impl PersonNames {
    pub fn push(jid: Jid, name: impl Into<String>) -> Self {
        PersonNames {
            jid,
            alt: None,
            push_name: Some(name.into()),
            business_name: None,
            saved_name: None,
        }
    }
}

/// A group member as WhatsApp lists it.
#[derive(Debug, Clone)]
pub struct GroupMember {
    /// The member's address (LID or phone JID).
    pub jid: Jid,
    /// The other address, when WhatsApp gave both.
    pub alt: Option<Jid>,
    /// `member`, `admin` or `superadmin`.
    pub role: String,
}

/// A group's metadata; `members`, when given, is the complete list.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub jid: Jid,
    pub subject: Option<String>,
    pub members: Option<Vec<GroupMember>>,
}

/// A change of a group's membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParticipantChange {
    Add,
    Remove,
    Promote,
    Demote,
}

/// One batch of a history sync.
#[derive(Debug, Clone, Default)]
pub struct HistoryBatch {
    pub pairs: Vec<(Jid, Jid)>,
    pub names: Vec<PersonNames>,
    pub chats: Vec<ChatSettings>,
    pub messages: Vec<NewMessage>,
}

/// What a history batch stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryCounts {
    pub chats: usize,
    pub messages: usize,
    pub new_messages: usize,
    pub contacts: usize,
}

fn check_pairs(pairs: &[(Jid, Jid)]) -> anyhow::Result<()> {
    for (lid, pn) in pairs {
        anyhow::ensure!(
            lid.is_lid() && pn.is_phone(),
            "a LID↔phone pair needs a @lid and a @s.whatsapp.net JID, got {lid} and {pn}"
        );
    }
    Ok(())
}

impl Store {
    /// Records one message; see [`Store::record_messages`].
    pub async fn record_message(
        &self,
        session: &str,
        msg: NewMessage,
        opts: RecordOptions,
    ) -> anyhow::Result<Recorded> {
        let mut out = self
            .record_messages(session, std::slice::from_ref(&msg), opts)
            .await?;
        anyhow::ensure!(!out.is_empty(), "the session {session} does not exist");
        Ok(out.remove(0))
    }

    /// Records a batch in one transaction: creates missing chats, inserts each message once
    /// (the same WhatsApp id in the same chat twice is one row), moves each chat's activity
    /// forward, counts new incoming messages as unread, notes the people seen (the DM partner,
    /// a group's author) with their push names and LID↔phone pairs, and writes an event per new
    /// message. Returns one outcome per input, or nothing when the session does not exist.
    pub async fn record_messages(
        &self,
        session: &str,
        msgs: &[NewMessage],
        opts: RecordOptions,
    ) -> anyhow::Result<Vec<Recorded>> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        self.record_inbound(session, msgs, &[], opts).await
    }

    /// Records new messages and changes to stored ones (edits, revokes) in one transaction,
    /// messages first, so an edit that arrives in the same batch as its message applies.
    /// An edit changes the body and sets `edited`; a revoke clears the body, mentions and
    /// attachment metadata and sets `deleted`; each writes one `message.edited` /
    /// `message.revoked` event, and repeating it changes nothing. A change is applied only when
    /// it comes from the side that wrote the message (in a group, a revoke may also come from
    /// an admin); a change to a message the stored copy does not have is ignored.
    pub async fn record_inbound(
        &self,
        session: &str,
        msgs: &[NewMessage],
        changes: &[MessageChange],
        opts: RecordOptions,
    ) -> anyhow::Result<Vec<Recorded>> {
        if msgs.is_empty() && changes.is_empty() {
            return Ok(Vec::new());
        }
        // Revoked attachments leave the media store too (their paths are read first: the
        // revoke clears them).
        let mut files = Vec::new();
        if self.media_dir.is_some() {
            for c in changes.iter().filter(|c| c.kind == ChangeKind::Revoke) {
                if let Some(m) = self.get_message(session, &c.chat, &c.target).await? {
                    files.extend(m.media_file);
                }
            }
        }
        let recorded = self
            .write(WriteJob {
                session: session.to_owned(),
                msgs: msgs.to_vec(),
                changes: changes.to_vec(),
                opts,
                ..WriteJob::default()
            })
            .await?
            .recorded;
        self.forget_media(&files).await;
        Ok(recorded)
    }

    /// Applies one caller's writes in one transaction: on SQLite through the shared writer
    /// (see [`Store::record_queued`]), on PostgreSQL directly.
    pub(crate) async fn write(&self, job: WriteJob) -> anyhow::Result<WriteOutcome> {
        match &self.inbound_queue {
            Some(queue) => self.record_queued(queue, job).await,
            None => {
                let _w = self.write_gate().await;
                Ok(on_db!(self, ingest::apply(&job))?)
            }
        }
    }

    /// SQLite's group commit: the caller queues its job and waits for its result; one writer
    /// task takes the write gate, then every job queued by then, and commits them in one
    /// transaction (each applied as alone, in queue order). Jobs that arrive while a
    /// transaction runs go together into the next one, so the busier the node, the larger the
    /// batches. When a shared transaction fails, each of its jobs runs alone, so one bad job
    /// cannot fail the others.
    async fn record_queued(
        &self,
        queue: &Arc<InboundQueue>,
        job: WriteJob,
    ) -> anyhow::Result<WriteOutcome> {
        let (done, result) = tokio::sync::oneshot::channel();
        lock(&queue.jobs).push(QueuedInbound { job, done });
        if !queue.writer.swap(true, Ordering::AcqRel) {
            let (store, queue) = (self.clone(), queue.clone());
            tokio::spawn(async move { store.inbound_writer(queue).await });
        }
        queue.wake.notify_one();
        match result.await {
            Ok(r) => Ok(r?),
            // Only if the writer task ended mid-commit (a panic): nothing was acknowledged,
            // so WhatsApp delivers the message again.
            Err(_) => Err(anyhow::anyhow!(
                "the shared ingest transaction was interrupted"
            )),
        }
    }

    /// The writer task of [`Store::record_queued`].
    async fn inbound_writer(self, queue: Arc<InboundQueue>) {
        /// Lets the next caller start a new writer if this one ends (it only ends by a panic).
        struct Restart(Arc<InboundQueue>);
        impl Drop for Restart {
            fn drop(&mut self) {
                self.0.writer.store(false, Ordering::Release);
                self.0.wake.notify_one();
            }
        }
        let _restart = Restart(queue.clone());
        loop {
            queue.wake.notified().await;
            loop {
                let _w = self.write_gate().await;
                let jobs: Vec<QueuedInbound> = {
                    let mut q = lock(&queue.jobs);
                    let n = q.len().min(MAX_JOBS_PER_COMMIT);
                    q.drain(..n).collect()
                };
                if jobs.is_empty() {
                    break;
                }
                self.commit_queued(jobs).await;
            }
        }
    }

    async fn commit_queued(&self, jobs: Vec<QueuedInbound>) {
        let started = std::time::Instant::now();
        let n_jobs = jobs.len();
        let shared = {
            let batch: Vec<&WriteJob> = jobs.iter().map(|j| &j.job).collect();
            match (&self.writer, self.db()) {
                (Some(pool), _) | (None, Db::Sqlite(pool)) => {
                    sql::sqlite::ingest::apply_batch(pool, &batch).await
                }
                (None, Db::Postgres(_)) => unreachable!("only SQLite queues inbound messages"),
            }
        };
        tracing::trace!(
            jobs = n_jobs,
            micros = started.elapsed().as_micros() as u64,
            "shared ingest transaction"
        );
        match shared {
            Ok(results) => {
                for (job, r) in jobs.into_iter().zip(results) {
                    let _ = job.done.send(Ok(r));
                }
            }
            Err(e) => {
                if jobs.len() > 1 {
                    tracing::debug!(error = %e, jobs = jobs.len(), "shared ingest failed; committing each job alone");
                }
                for QueuedInbound { job, done } in jobs {
                    let r = on_db!(self, ingest::apply(&job));
                    let _ = done.send(r);
                }
            }
        }
    }

    /// Applies a receipt: the messages' status moves forward. Returns how many changed.
    pub async fn record_receipt(&self, session: &str, r: &Receipt) -> anyhow::Result<u64> {
        if r.ids.is_empty() {
            return Ok(0);
        }
        Ok(self
            .write(WriteJob {
                session: session.to_owned(),
                receipts: vec![r.clone()],
                ..WriteJob::default()
            })
            .await?
            .statuses)
    }

    /// [`Store::record_receipt`] in the shape of the old call.
    pub async fn update_message_status(
        &self,
        session: &str,
        chat: &Jid,
        ids: &[String],
        status: MessageStatus,
        error: Option<&str>,
    ) -> anyhow::Result<u64> {
        self.record_receipt(
            session,
            &Receipt {
                chat: chat.clone(),
                ids: ids.to_vec(),
                status,
                error: error.map(str::to_owned),
            },
        )
        .await
    }

    /// Applies what WhatsApp says about a chat (creating it when new, removing it when the
    /// phone deleted it). Returns the chat as stored, `None` after a delete.
    pub async fn record_chat(
        &self,
        session: &str,
        c: &ChatSettings,
    ) -> anyhow::Result<Option<ChatRecord>> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, ingest::chat(session, c))?)
    }

    /// Records names of people (push, business, address book).
    pub async fn record_names(&self, session: &str, names: &[PersonNames]) -> anyhow::Result<()> {
        for n in names {
            anyhow::ensure!(n.jid.is_person(), "{} is not a person's address", n.jid);
        }
        if names.is_empty() {
            return Ok(());
        }
        let _w = self.write_gate().await;
        Ok(on_db!(self, ingest::names(session, names))?)
    }

    /// Records a person's push name (the name they set for themselves).
    pub async fn record_push_name(
        &self,
        session: &str,
        jid: &Jid,
        name: &str,
    ) -> anyhow::Result<()> {
        self.record_names(session, &[PersonNames::push(jid.clone(), name)])
            .await
    }

    /// Records a business account's verified name.
    pub async fn record_business_name(
        &self,
        session: &str,
        jid: &Jid,
        name: &str,
    ) -> anyhow::Result<()> {
        let mut n = PersonNames::push(jid.clone(), "");
        n.push_name = None;
        n.business_name = Some(name.to_owned());
        self.record_names(session, &[n]).await
    }

    /// Records the name this session's phone has saved for a person (its address book).
    pub async fn record_saved_name(
        &self,
        session: &str,
        jid: &Jid,
        name: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut n = PersonNames::push(jid.clone(), "");
        n.push_name = None;
        n.saved_name = Some(name.map(str::to_owned));
        self.record_names(session, &[n]).await
    }

    /// Records that `lid` and `pn` (a phone JID) are one person in this session; see
    /// [`Store::link_lid_pns`].
    pub async fn link_lid_pn(&self, session: &str, lid: &Jid, pn: &Jid) -> anyhow::Result<()> {
        self.link_lid_pns(session, &[(lid.clone(), pn.clone())])
            .await
    }

    /// Records LID↔phone pairs in one transaction: each person becomes one contact, and their
    /// direct chats one chat under the phone JID with the LID as alias.
    pub async fn link_lid_pns(&self, session: &str, pairs: &[(Jid, Jid)]) -> anyhow::Result<()> {
        check_pairs(pairs)?;
        if pairs.is_empty() {
            return Ok(());
        }
        let _w = self.write_gate().await;
        Ok(on_db!(self, ingest::pairs(session, pairs))?)
    }

    /// Records a group's metadata and, when listed, its complete membership.
    pub async fn record_group(&self, session: &str, g: &GroupInfo) -> anyhow::Result<()> {
        anyhow::ensure!(g.jid.is_group(), "{} is not a group JID", g.jid);
        let _w = self.write_gate().await;
        Ok(on_db!(self, ingest::group(session, g))?)
    }

    /// Applies a membership change of a group.
    pub async fn record_participants(
        &self,
        session: &str,
        group: &Jid,
        change: ParticipantChange,
        members: &[GroupMember],
    ) -> anyhow::Result<()> {
        anyhow::ensure!(group.is_group(), "{group} is not a group JID");
        let _w = self.write_gate().await;
        Ok(on_db!(
            self,
            ingest::participants(session, group, change, members)
        )?)
    }

    /// Stores one history-sync batch: pairs, names, chats with their state, and messages (which
    /// neither count as unread nor raise `message` events; one `history.sync` event sums the
    /// batch up).
    ///
    ///
    /// A large batch is stored in bounded chunks, each its own transaction (pairs and names
    /// first, then chats with their messages), so other writes of every session interleave with
    /// it instead of waiting behind the whole sync; each chat is in one chunk unless its own
    /// messages exceed one, and the `history.sync` event comes with the last chunk. A batch cut
    /// off by a crash is stored again from the start (every step is idempotent).
    pub async fn record_history(
        &self,
        session: &str,
        mut batch: HistoryBatch,
    ) -> anyhow::Result<HistoryCounts> {
        check_pairs(&batch.pairs)?;
        let parts = HistoryPart::split(&mut batch);
        let last = parts.len() - 1;
        let mut sum = HistoryCounts::default();
        for (i, part) in parts.into_iter().enumerate() {
            let finish = (i == last).then_some(sum);
            let _w = self.write_gate().await;
            let c = on_db!(self, ingest::history(session, &part, finish))?;
            sum.chats += c.chats;
            sum.messages += c.messages;
            sum.new_messages += c.new_messages;
            sum.contacts += c.contacts;
        }
        Ok(sum)
    }
}

/// One transaction's share of a history batch.
#[derive(Debug, Default)]
pub(crate) struct HistoryPart<'a> {
    pub pairs: &'a [(Jid, Jid)],
    pub names: &'a [PersonNames],
    pub chats: &'a [ChatSettings],
    pub messages: &'a [NewMessage],
}

impl<'a> HistoryPart<'a> {
    /// Rows per transaction.
    const PEOPLE: usize = 2_000;
    const CHATS: usize = 500;
    const MESSAGES: usize = 1_000;

    /// The batch in bounded parts: pairs, names, then chats each with its messages (the
    /// messages are reordered so a chat's are together, chats in their order, messages of
    /// unlisted chats last). An empty batch is one empty part.
    fn split(b: &'a mut HistoryBatch) -> Vec<HistoryPart<'a>> {
        let mut at: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for (i, c) in b.chats.iter().enumerate() {
            at.entry(c.chat.to_string()).or_insert(i);
            if let Some(alt) = &c.chat_alt {
                at.entry(alt.to_string()).or_insert(i);
            }
        }
        let pos = |m: &NewMessage| at.get(&m.chat.to_string()).copied().unwrap_or(usize::MAX);
        b.messages.sort_by_cached_key(pos);
        let positions: Vec<usize> = b.messages.iter().map(pos).collect();
        let b: &'a HistoryBatch = b;
        let mut parts: Vec<HistoryPart<'a>> = Vec::new();
        parts.extend(b.pairs.chunks(Self::PEOPLE).map(|pairs| HistoryPart {
            pairs,
            ..Default::default()
        }));
        parts.extend(b.names.chunks(Self::PEOPLE).map(|names| HistoryPart {
            names,
            ..Default::default()
        }));
        // Walk the chats, each taking its run of messages; cut when a bound is reached.
        let (mut c0, mut m0, mut m) = (0, 0, 0);
        for i in 0..b.chats.len() {
            while m < positions.len() && positions[m] == i {
                m += 1;
            }
            if i + 1 - c0 >= Self::CHATS || m - m0 >= Self::MESSAGES {
                parts.push(HistoryPart {
                    chats: &b.chats[c0..=i],
                    messages: &b.messages[m0..m],
                    ..Default::default()
                });
                (c0, m0) = (i + 1, m);
            }
        }
        if c0 < b.chats.len() {
            parts.push(HistoryPart {
                chats: &b.chats[c0..],
                messages: &b.messages[m0..m],
                ..Default::default()
            });
            m0 = m;
        }
        parts.extend(
            b.messages[m0..]
                .chunks(Self::MESSAGES)
                .map(|messages| HistoryPart {
                    messages,
                    ..Default::default()
                }),
        );
        // A chat with more messages than one part holds: the rest follow in parts of their own.
        let mut bounded = Vec::with_capacity(parts.len());
        for p in parts {
            if p.messages.len() <= Self::MESSAGES {
                bounded.push(p);
                continue;
            }
            let (first, rest) = p.messages.split_at(Self::MESSAGES);
            bounded.push(HistoryPart {
                messages: first,
                ..p
            });
            bounded.extend(rest.chunks(Self::MESSAGES).map(|messages| HistoryPart {
                messages,
                ..Default::default()
            }));
        }
        if bounded.is_empty() {
            bounded.push(HistoryPart::default());
        }
        bounded
    }
}

#[cfg(test)]
mod history_parts {
    use super::*;

    fn msg(chat: &str, n: usize) -> NewMessage {
        NewMessage {
            chat: chat.parse().unwrap(),
            chat_alt: None,
            wa_message_id: format!("M{n}"),
            from_me: false,
            sender: None,
            sender_lid: None,
            sender_name: None,
            kind: "text".into(),
            body: None,
            media: None,
            quoted_message_id: None,
            mentions: vec![],
            status: MessageStatus::Delivered,
            timestamp: n as i64,
            poll: None,
        }
    }

    #[test]
    fn a_chat_and_its_messages_share_a_part_and_parts_are_bounded() {
        let a = "6281200000001@s.whatsapp.net";
        let big = "6281200000002@s.whatsapp.net";
        let stray = "6281200000003@s.whatsapp.net";
        let mut b = HistoryBatch::default();
        b.chats.push(ChatSettings::new(a.parse().unwrap()));
        b.chats.push(ChatSettings::new(big.parse().unwrap()));
        // Interleaved as WhatsApp may send them.
        for n in 0..2_500 {
            b.messages.push(msg(if n % 5 == 0 { a } else { big }, n));
        }
        b.messages.push(msg(stray, 9_999));
        let total = b.messages.len();
        let parts = HistoryPart::split(&mut b);
        let mut seen = 0;
        let mut chats_so_far: Vec<String> = Vec::new();
        for p in &parts {
            assert!(p.messages.len() <= 1_000 && p.chats.len() <= 500);
            chats_so_far.extend(p.chats.iter().map(|c| c.chat.to_string()));
            for m in p.messages {
                // A message comes with its chat, or after it (a chat larger than one part).
                let ok = chats_so_far.contains(&m.chat.to_string()) || m.chat.to_string() == stray;
                assert!(ok, "{} before its chat", m.wa_message_id);
            }
            seen += p.messages.len();
        }
        // The small chat is stored whole with its chat row.
        let with_a = parts
            .iter()
            .find(|p| p.chats.iter().any(|c| c.chat.to_string() == a))
            .unwrap();
        assert_eq!(
            with_a
                .messages
                .iter()
                .filter(|m| m.chat.to_string() == a)
                .count(),
            500
        );
        assert_eq!(seen, total);
        assert_eq!(parts.iter().map(|p| p.chats.len()).sum::<usize>(), 2);
        let mut empty = HistoryBatch::default();
        assert_eq!(HistoryPart::split(&mut empty).len(), 1);
    }
}

/// The most queued jobs one shared transaction takes (the rest go to the next gate holder).
const MAX_JOBS_PER_COMMIT: usize = 256;

/// SQLite's queue of inbound jobs and its writer task (see `Store::record_queued`).
#[derive(Default)]
pub(crate) struct InboundQueue {
    jobs: std::sync::Mutex<Vec<QueuedInbound>>,
    wake: tokio::sync::Notify,
    /// Whether the writer task runs.
    writer: AtomicBool,
}

/// A caller's job waiting for SQLite's write gate (see `Store::write`).
pub(crate) struct QueuedInbound {
    job: WriteJob,
    done: tokio::sync::oneshot::Sender<sqlx::Result<WriteOutcome>>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
