//! The durable outbox of messages to send: what `POST /sessions/{sid}/messages` accepted and
//! the sender works through (see migration 0006).

use sqlx::FromRow;

use super::ingest::NewMessage;
use super::{on_db, Store};

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
    /// `engine::send::OutgoingContent` as JSON.
    pub content: String,
    /// `queued`, `sent` or `failed`.
    pub state: String,
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

    pub async fn outgoing(&self, id: &str) -> anyhow::Result<Option<OutgoingRecord>> {
        Ok(on_db!(self, outgoing::get(id))?)
    }

    /// Sessions that have queued sends.
    pub async fn sessions_with_sends(&self, limit: i64) -> anyhow::Result<Vec<String>> {
        Ok(on_db!(self, outgoing::sessions_with_work(limit))?)
    }

    /// The session's next send, in acceptance order.
    pub async fn next_send(&self, session: &str) -> anyhow::Result<Option<OutgoingRecord>> {
        Ok(on_db!(self, outgoing::head(session))?)
    }

    /// Sends accepted (queued or sent) since `since`, and when the oldest of them was accepted.
    pub async fn sends_accepted_since(
        &self,
        session: &str,
        since: i64,
    ) -> anyhow::Result<(i64, Option<i64>)> {
        Ok(on_db!(self, outgoing::accepted_since(session, since))?)
    }

    /// Messages sent since `since`, and when the oldest of them left.
    pub async fn sends_sent_since(
        &self,
        session: &str,
        since: i64,
    ) -> anyhow::Result<(i64, Option<i64>)> {
        Ok(on_db!(self, outgoing::sent_since(session, since))?)
    }

    pub async fn send_done(&self, id: &str, at: i64) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, outgoing::mark_sent(id, at))?)
    }

    pub async fn send_retry(&self, id: &str, not_before: i64, error: &str) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, outgoing::mark_retry(id, not_before, error))?)
    }

    pub async fn send_hold(&self, id: &str, not_before: i64) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, outgoing::hold(id, not_before))?)
    }

    pub async fn send_failed(&self, id: &str, error: &str) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, outgoing::mark_failed(id, error))?)
    }

    /// Forgets finished sends accepted before `before`.
    pub async fn sweep_sends(&self, before: i64) -> anyhow::Result<u64> {
        let _w = self.write_gate().await;
        Ok(on_db!(self, outgoing::sweep(before))?)
    }
}
