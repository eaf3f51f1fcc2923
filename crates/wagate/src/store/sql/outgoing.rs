// The durable outbox of messages to send (see migration 0006 and `store::outgoing`).

use super::{Conn, Pool};
use crate::store::ingest::JobEnd;
use crate::store::outgoing::{OutgoingRecord, QueuedJob};

/// Every column but the content, which reads of a job by id or key never need (a queued
/// attachment is megabytes): it comes back empty; the sender reads it with [`content`].
const COLS: &str =
    "id, session_id, idempotency_key, request_hash, chat_jid, wa_message_id, message_id, \
    '' AS content, state, attempts, not_before, error, created_at, sent_at";

pub async fn by_key(conn: &mut Conn, s: &str, key: &str) -> sqlx::Result<Option<OutgoingRecord>> {
    sqlx::query_as::<_, OutgoingRecord>(&format!(
        "SELECT {COLS} FROM outgoing WHERE session_id = $1 AND idempotency_key = $2"
    ))
    .bind(s)
    .bind(key)
    .fetch_optional(conn)
    .await
}

pub async fn insert(conn: &mut Conn, r: &OutgoingRecord) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO outgoing (id, session_id, idempotency_key, request_hash, chat_jid, wa_message_id, message_id,
            content, state, attempts, not_before, error, created_at, sent_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
    )
    .bind(&r.id)
    .bind(&r.session_id)
    .bind(&r.idempotency_key)
    .bind(&r.request_hash)
    .bind(&r.chat_jid)
    .bind(&r.wa_message_id)
    .bind(r.message_id)
    .bind(&r.content)
    .bind(r.state)
    .bind(r.attempts)
    .bind(r.not_before)
    .bind(&r.error)
    .bind(r.created_at)
    .bind(r.sent_at)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get(pool: &Pool, id: &str) -> sqlx::Result<Option<OutgoingRecord>> {
    sqlx::query_as::<_, OutgoingRecord>(&format!("SELECT {COLS} FROM outgoing WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Sessions with queued work (the partial index `outgoing_queued` holds queued jobs only).
pub async fn sessions_with_work(pool: &Pool, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar("SELECT DISTINCT session_id FROM outgoing WHERE state = 'queued' LIMIT $1")
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// The session's oldest queued jobs, without their content: jobs go out in the order they
/// were accepted.
pub async fn head(pool: &Pool, s: &str, limit: i64) -> sqlx::Result<Vec<QueuedJob>> {
    sqlx::query_as::<_, QueuedJob>(
        "SELECT id, chat_jid, wa_message_id, attempts, not_before,
                CAST(LENGTH(content) AS BIGINT) AS content_len
         FROM outgoing WHERE session_id = $1 AND state = 'queued'
         ORDER BY created_at, id LIMIT $2",
    )
    .bind(s)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A queued job's content.
pub async fn content(pool: &Pool, id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT content FROM outgoing WHERE id = $1 AND state = 'queued'")
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// When the session's last `n` messages left, newest first.
pub async fn recent_sent(pool: &Pool, s: &str, n: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT sent_at FROM outgoing WHERE session_id = $1 AND sent_at IS NOT NULL
         ORDER BY sent_at DESC LIMIT $2",
    )
    .bind(s)
    .bind(n)
    .fetch_all(pool)
    .await
}

/// Jobs queued over all sessions.
pub async fn queued_count(pool: &Pool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM outgoing WHERE state = 'queued'")
        .fetch_one(pool)
        .await
}

/// Sends accepted (queued or sent, not failed) since `since`, counted up to `cap`, and the
/// oldest of their times. The cap keeps the check's cost at the limit it checks, not at the
/// hour's traffic.
pub async fn accepted_since(
    pool: &Pool,
    s: &str,
    since: i64,
    cap: i64,
) -> sqlx::Result<(i64, Option<i64>)> {
    sqlx::query_as(
        "SELECT COUNT(*), MIN(created_at) FROM (SELECT created_at FROM outgoing
         WHERE session_id = $1 AND created_at >= $2 AND state <> 'failed'
         ORDER BY created_at LIMIT $3) AS w",
    )
    .bind(s)
    .bind(since)
    .bind(cap)
    .fetch_one(pool)
    .await
}

/// Messages that left since `since`, and the oldest of their times.
pub async fn sent_since(pool: &Pool, s: &str, since: i64) -> sqlx::Result<(i64, Option<i64>)> {
    sqlx::query_as(
        "SELECT COUNT(*), MIN(sent_at) FROM outgoing WHERE session_id = $1 AND sent_at >= $2",
    )
    .bind(s)
    .bind(since)
    .fetch_one(pool)
    .await
}

/// Settles a job (sent or failed) and drops its content.
pub async fn settle(conn: &mut Conn, id: &str, end: &JobEnd) -> sqlx::Result<()> {
    match end {
        JobEnd::Sent { at } => {
            sqlx::query(
                "UPDATE outgoing SET state = 'sent', sent_at = $2, attempts = attempts + 1, error = NULL, content = ''
                 WHERE id = $1",
            )
            .bind(id)
            .bind(*at)
            .execute(conn)
            .await?;
        }
        JobEnd::Failed { error } => {
            sqlx::query(
                "UPDATE outgoing SET state = 'failed', attempts = attempts + 1, error = $2, content = '' WHERE id = $1",
            )
            .bind(id)
            .bind(error)
            .execute(conn)
            .await?;
        }
    }
    Ok(())
}

/// Counts a failed attempt and holds the job until `not_before`.
pub async fn mark_retry(pool: &Pool, id: &str, not_before: i64, error: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE outgoing SET attempts = attempts + 1, not_before = $2, error = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(not_before)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Holds the job until `not_before` without counting an attempt (rate limit).
pub async fn hold(pool: &Pool, id: &str, not_before: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE outgoing SET not_before = $2 WHERE id = $1")
        .bind(id)
        .bind(not_before)
        .execute(pool)
        .await?;
    Ok(())
}

/// Forgets finished jobs accepted before `before` (their idempotency keys with them).
pub async fn sweep(pool: &Pool, before: i64) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("DELETE FROM outgoing WHERE state <> 'queued' AND created_at < $1")
            .bind(before)
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
