//! The durable outbox of messages to send: what `POST /sessions/{sid}/messages` accepted and
//! the sender works through (see migration 0006).

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::ingest::{JobEnd, NewMessage, Receipt, WriteJob};
use super::{on_db, Store};

/// Where a send job is: waiting in the outbox, or settled one way or the other. Stored as its
/// lowercase name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Sent,
    Failed,
}

impl JobState {
    /// Sent or failed: nothing more happens to the job.
    pub fn is_settled(self) -> bool {
        self != JobState::Queued
    }
}

/// A queued job as the sender works through it: everything but the content, which
/// [`Store::send_content`] reads for the one job about to be sent (a queue of large
/// attachments is not read again on every look at the queue).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct QueuedJob {
    pub id: String,
    pub chat_jid: String,
    pub wa_message_id: String,
    pub attempts: i32,
    pub not_before: i64,
    /// Bytes of the content JSON.
    pub content_len: i64,
}

/// A settled job's content at least this large (bytes) is given back to the file system at
/// once rather than left as free pages inside the database file.
const RECLAIM_AFTER: i64 = 1 << 20;

/// One send job.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct OutgoingRecord {
    pub id: String,
    pub session_id: String,
    pub idempotency_key: Option<String>,
    pub request_hash: String,
    pub chat_jid: String,
    pub wa_message_id: String,
    /// The stored message it shows as.
    pub message_id: i64,
    /// `engine::send::OutgoingContent` as JSON while the job is queued; empty once it settled.
    pub content: String,
    pub state: JobState,
    pub attempts: i32,
    pub not_before: i64,
    pub error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

/// The outcome of accepting a send.
#[derive(Debug, Clone)]
pub struct Enqueued {
    pub job: OutgoingRecord,
    /// False when an earlier request with the same idempotency key is answered instead.
    pub created: bool,
}

impl Store {
    /// Accepts a send in one transaction: the job (unless the idempotency key names an earlier
    /// one, which is returned instead) and the stored message it shows as (none for an edit or
    /// a revoke: `job.message_id` is then the message it changes). `None` when the session does
    /// not exist.
    pub async fn enqueue_send(
        &self,
        job: &OutgoingRecord,
        msg: Option<&NewMessage>,
    ) -> anyhow::Result<Option<Enqueued>> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, ingest::enqueue_send(job, msg))?)
    }

    /// A job by id, without its content.
    pub async fn outgoing(&self, id: &str) -> anyhow::Result<Option<OutgoingRecord>> {
        Ok(on_db!(self, outgoing::get(id))?)
    }

    /// Sessions that have queued sends.
    pub async fn sessions_with_sends(&self, limit: i64) -> anyhow::Result<Vec<String>> {
        Ok(on_db!(self, outgoing::sessions_with_work(limit))?)
    }

    /// The session's next `limit` queued sends, in acceptance order, without their content.
    pub async fn next_sends(&self, session: &str, limit: i64) -> anyhow::Result<Vec<QueuedJob>> {
        Ok(on_db!(self, outgoing::head(session, limit))?)
    }

    /// The content of a queued job (`None` once it settled or was removed).
    pub async fn send_content(&self, id: &str) -> anyhow::Result<Option<String>> {
        Ok(on_db!(self, outgoing::content(id))?)
    }

    /// When the session's last `n` sends left (newest first), for its rate limits.
    pub async fn recent_send_times(&self, session: &str, n: i64) -> anyhow::Result<Vec<i64>> {
        Ok(on_db!(self, outgoing::recent_sent(session, n))?)
    }

    /// Sends accepted (queued or sent) since `since`, counted up to `cap`, and when the
    /// oldest of them was accepted.
    pub async fn sends_accepted_since(
        &self,
        session: &str,
        since: i64,
        cap: i64,
    ) -> anyhow::Result<(i64, Option<i64>)> {
        Ok(on_db!(self, outgoing::accepted_since(session, since, cap))?)
    }

    /// Messages sent since `since`, and when the oldest of them left.
    pub async fn sends_sent_since(
        &self,
        session: &str,
        since: i64,
    ) -> anyhow::Result<(i64, Option<i64>)> {
        Ok(on_db!(self, outgoing::sent_since(session, since))?)
    }

    /// Settles a job as sent or failed, drops its content and moves its message's status
    /// (`receipt`: sent, or failed with the error) in the same transaction, so whoever sees
    /// the job settled sees the message's new status too. `freed` is the content's size: a
    /// large one gives its pages back to the file system at once (SQLite), so a queue of
    /// attachments does not leave the database file at its high-water mark.
    pub(crate) async fn settle_send(
        &self,
        session: &str,
        job: &str,
        end: JobEnd,
        receipt: Option<Receipt>,
        freed: i64,
    ) -> anyhow::Result<()> {
        self.write(WriteJob {
            session: session.to_owned(),
            receipts: receipt.into_iter().collect(),
            settle: Some((job.to_owned(), end)),
            ..WriteJob::default()
        })
        .await?;
        if freed >= RECLAIM_AFTER {
            self.reclaim_free_pages().await;
        }
        Ok(())
    }

    pub async fn send_retry(&self, id: &str, not_before: i64, error: &str) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, outgoing::mark_retry(id, not_before, error))?)
    }

    pub async fn send_hold(&self, id: &str, not_before: i64) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, outgoing::hold(id, not_before))?)
    }

    /// Jobs waiting in the outbox, over every session (for `/metrics`).
    pub async fn queued_sends(&self) -> anyhow::Result<i64> {
        Ok(on_db!(self, outgoing::queued_count())?)
    }

    /// Forgets finished sends accepted before `before`.
    pub async fn sweep_sends(&self, before: i64) -> anyhow::Result<u64> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, outgoing::sweep(before))?)
    }
}
