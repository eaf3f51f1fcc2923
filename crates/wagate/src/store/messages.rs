//! Messages: idempotent ingest (one row per WhatsApp id in a chat), delivery status, and the
//! newest-first keyset pages of one chat.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use sqlx::FromRow;

use super::chats::ensure_chat;
use super::contacts::{sight_person, Sighting};
use super::Store;
use crate::domain::{now_ms, ChatKind, Cursor, Jid, Limit};

/// Delivery state of a message; it only ever moves forward (`failed` aside).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Pending,
    Sent,
    Delivered,
    Read,
    Played,
    Failed,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Pending => "pending",
            MessageStatus::Sent => "sent",
            MessageStatus::Delivered => "delivered",
            MessageStatus::Read => "read",
            MessageStatus::Played => "played",
            MessageStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "pending" => MessageStatus::Pending,
            "delivered" => MessageStatus::Delivered,
            "read" => MessageStatus::Read,
            "played" => MessageStatus::Played,
            "failed" => MessageStatus::Failed,
            _ => MessageStatus::Sent,
        }
    }

    fn rank(self) -> i64 {
        match self {
            MessageStatus::Pending => 0,
            MessageStatus::Sent => 1,
            MessageStatus::Delivered => 2,
            MessageStatus::Read => 3,
            MessageStatus::Played => 4,
            MessageStatus::Failed => 5,
        }
    }
}

/// Attachment metadata (the bytes live elsewhere).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaInfo {
    pub mimetype: Option<String>,
    pub size: Option<i64>,
    pub filename: Option<String>,
}

/// A message to record, as the engine converts it from WhatsApp.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub chat: Jid,
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
}

/// How a batch is counted.
#[derive(Debug, Clone, Copy)]
pub struct RecordOptions {
    /// Bump the chat's unread counter for each new incoming message (live traffic). History
    /// sync passes `false` and sets the counter WhatsApp reported instead.
    pub count_unread: bool,
}

impl Default for RecordOptions {
    fn default() -> Self {
        RecordOptions { count_unread: true }
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

#[derive(Debug, Clone, FromRow, serde::Deserialize)]
pub struct MessageRecord {
    pub id: i64,
    pub session_id: String,
    pub chat_id: i64,
    pub wa_message_id: String,
    #[sqlx(try_from = "super::Flag")]
    #[serde(deserialize_with = "super::json_flag")]
    pub from_me: bool,
    pub sender_jid: Option<String>,
    pub sender_lid: Option<String>,
    pub sender_name: Option<String>,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub body: Option<String>,
    #[sqlx(try_from = "super::Flag")]
    #[serde(deserialize_with = "super::json_flag")]
    pub has_media: bool,
    pub media_mimetype: Option<String>,
    pub media_size: Option<i64>,
    pub media_filename: Option<String>,
    pub quoted_message_id: Option<String>,
    pub mentions: Option<String>,
    pub status: String,
    pub error: Option<String>,
    #[sqlx(try_from = "super::Flag")]
    #[serde(deserialize_with = "super::json_flag")]
    pub edited: bool,
    #[sqlx(try_from = "super::Flag")]
    #[serde(deserialize_with = "super::json_flag")]
    pub deleted: bool,
    pub timestamp: i64,
    pub created_at: i64,
}

const MSG_COLS: &str = "id, session_id, chat_id, wa_message_id, from_me, sender_jid, sender_lid, sender_name, type, body, has_media, media_mimetype, media_size, media_filename, quoted_message_id, mentions, status, error, edited, deleted, timestamp, created_at";
const INSERT_COLS: &str = "session_id, chat_id, wa_message_id, from_me, sender_jid, sender_lid, sender_name, type, body, has_media, media_mimetype, media_size, media_filename, quoted_message_id, mentions, status, timestamp, created_at";
const INSERT_ARITY: usize = 18;
/// Rows per multi-row INSERT. SQLite resolves each `$n` by walking the statement's list of
/// parameter names, so binding costs grow with the square of the parameter count: at 200 rows
/// (3,600 parameters) that walk was 74% of ingest time. 16 rows measured fastest (bench_seed,
/// 100k messages: 8 rows 23k/s, 16 rows 26-31k/s, 24 rows 17k/s, 40 rows 12k/s).
const ROWS_PER_INSERT: usize = 16;

impl Store {
    /// Records one message idempotently; see [`Store::record_messages`].
    pub async fn record_message(
        &self,
        session: &str,
        msg: NewMessage,
        opts: RecordOptions,
    ) -> anyhow::Result<Recorded> {
        let mut out = self
            .record_messages(session, std::slice::from_ref(&msg), opts)
            .await?;
        Ok(out.remove(0))
    }

    /// Records a batch in one transaction: creates missing chats, inserts each message once
    /// (the same WhatsApp id in the same chat twice is one row), moves each chat's last
    /// activity forward, bumps unread counters for new incoming messages, and notes the
    /// people seen (DM partner, group author) with their push names.
    pub async fn record_messages(
        &self,
        session: &str,
        msgs: &[NewMessage],
        opts: RecordOptions,
    ) -> anyhow::Result<Vec<Recorded>> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;

        let mut chat_ids: HashMap<String, i64> = HashMap::new();
        let mut seen_people: HashSet<(String, Option<String>)> = HashSet::new();
        for m in msgs {
            let key = m.chat.to_string();
            if let std::collections::hash_map::Entry::Vacant(slot) = chat_ids.entry(key) {
                slot.insert(ensure_chat(&mut tx, session, &m.chat).await?);
            }
            // People: the DM partner (already noted by ensure_chat) gets its push name; group
            // authors are noted as seen in a group.
            if !m.from_me {
                let (person, sighting) = match m.chat.chat_kind() {
                    ChatKind::Dm => (
                        Some(m.sender.clone().unwrap_or_else(|| m.chat.clone())),
                        Sighting::Dm,
                    ),
                    ChatKind::Group => (m.sender.clone(), Sighting::Group),
                    _ => (None, Sighting::Group),
                };
                if let Some(p) = person {
                    if seen_people.insert((p.to_string(), m.sender_name.clone())) {
                        sight_person(&mut tx, session, &p, m.sender_name.as_deref(), sighting)
                            .await?;
                        if let Some(lid) = &m.sender_lid {
                            if p.is_phone() && lid.is_lid() {
                                super::contacts::link_identity(&mut tx, lid, &p).await?;
                            }
                        }
                    }
                }
            }
        }

        let mut results: Vec<Option<Recorded>> = vec![None; msgs.len()];
        for (chunk_no, chunk) in msgs.chunks(ROWS_PER_INSERT).enumerate() {
            let mut sql = format!("INSERT INTO messages ({INSERT_COLS}) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for j in 0..INSERT_ARITY {
                    if j > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", i * INSERT_ARITY + j + 1));
                }
                sql.push(')');
            }
            sql.push_str(" ON CONFLICT (chat_id, wa_message_id) DO NOTHING RETURNING id, chat_id, wa_message_id");
            let mut q = sqlx::query_as::<_, (i64, i64, String)>(&sql);
            for m in chunk {
                let media = m.media.clone().unwrap_or_default();
                let mentions = (!m.mentions.is_empty())
                    .then(|| serde_json::to_string(&m.mentions).unwrap_or_default());
                q = q
                    .bind(session)
                    .bind(chat_ids[&m.chat.to_string()])
                    .bind(&m.wa_message_id)
                    .bind(m.from_me)
                    .bind(m.sender.as_ref().map(|j| j.to_string()))
                    .bind(m.sender_lid.as_ref().map(|j| j.to_string()))
                    .bind(m.sender_name.clone())
                    .bind(m.kind.clone())
                    .bind(m.body.clone())
                    .bind(m.media.is_some())
                    .bind(media.mimetype)
                    .bind(media.size)
                    .bind(media.filename)
                    .bind(m.quoted_message_id.clone())
                    .bind(mentions)
                    .bind(m.status.as_str())
                    .bind(m.timestamp)
                    .bind(now);
            }
            let inserted = q.fetch_all(&mut *tx).await?;
            let mut by_key: HashMap<(i64, String), i64> = inserted
                .into_iter()
                .map(|(id, chat, wa)| ((chat, wa), id))
                .collect();
            for (i, m) in chunk.iter().enumerate() {
                let chat_id = chat_ids[&m.chat.to_string()];
                // A WhatsApp id repeated inside one batch is inserted by its first occurrence only.
                if let Some(id) = by_key.remove(&(chat_id, m.wa_message_id.clone())) {
                    results[chunk_no * ROWS_PER_INSERT + i] = Some(Recorded {
                        id,
                        chat_id,
                        inserted: true,
                    });
                }
            }
        }

        // Duplicates: look up the row that already holds the id.
        for (i, m) in msgs.iter().enumerate() {
            if results[i].is_none() {
                let chat_id = chat_ids[&m.chat.to_string()];
                let id: i64 = sqlx::query_scalar(
                    "SELECT id FROM messages WHERE chat_id = $1 AND wa_message_id = $2",
                )
                .bind(chat_id)
                .bind(&m.wa_message_id)
                .fetch_one(&mut *tx)
                .await?;
                results[i] = Some(Recorded {
                    id,
                    chat_id,
                    inserted: false,
                });
            }
        }

        // Per chat: latest activity and the number of new incoming messages.
        let mut per_chat: HashMap<i64, (i64, i64)> = HashMap::new();
        for (m, r) in msgs.iter().zip(&results) {
            let r = r.expect("every message has an outcome");
            if !r.inserted {
                continue;
            }
            let e = per_chat.entry(r.chat_id).or_insert((0, 0));
            e.0 = e.0.max(m.timestamp);
            if opts.count_unread && !m.from_me {
                e.1 += 1;
            }
        }
        for (chat_id, (latest, unread)) in per_chat {
            sqlx::query(
                "UPDATE chats SET
                    last_message_at = CASE WHEN $2 > last_message_at THEN $2 ELSE last_message_at END,
                    unread_count = unread_count + $3, updated_at = $4
                 WHERE id = $1",
            )
            .bind(chat_id)
            .bind(latest)
            .bind(unread)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(results
            .into_iter()
            .map(|r| r.expect("filled above"))
            .collect())
    }

    /// Moves the status of messages in a chat forward (a receipt from WhatsApp). A status never
    /// goes back (`read` stays `read` when a late `delivered` arrives); `failed` only replaces
    /// `pending` or `sent`. Returns how many rows changed.
    pub async fn update_message_status(
        &self,
        session: &str,
        chat: &Jid,
        wa_message_ids: &[String],
        status: MessageStatus,
        error: Option<&str>,
    ) -> anyhow::Result<u64> {
        if wa_message_ids.is_empty() {
            return Ok(0);
        }
        let _w = self.write_gate().await;
        let mut conn = self.pool.acquire().await?;
        let Some(chat_id) =
            super::chats::find_chat_id(&mut conn, session, &chat.to_string()).await?
        else {
            return Ok(0);
        };
        let placeholders: Vec<String> = (0..wa_message_ids.len())
            .map(|i| format!("${}", i + 5))
            .collect();
        let (guard, rank) = if status == MessageStatus::Failed {
            ("status IN ('pending', 'sent')", 0)
        } else {
            (
                "(CASE status WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'played' THEN 4 ELSE 5 END) < $4",
                status.rank(),
            )
        };
        let sql = format!(
            "UPDATE messages SET status = $2, error = $3 WHERE chat_id = $1 AND {guard} AND wa_message_id IN ({})",
            placeholders.join(",")
        );
        let mut q = sqlx::query(&sql)
            .bind(chat_id)
            .bind(status.as_str())
            .bind(error)
            .bind(rank);
        for id in wa_message_ids {
            q = q.bind(id);
        }
        Ok(q.execute(&mut *conn).await?.rows_affected())
    }

    /// A page of a chat's messages, newest first.
    pub async fn list_messages(
        &self,
        chat_id: i64,
        cursor: Option<&Cursor>,
        limit: Limit,
    ) -> anyhow::Result<(Vec<MessageRecord>, Option<Cursor>)> {
        let n = limit.get() as i64;
        let (ts, id) = match cursor {
            Some(c) => (c.keys[0], c.keys[1]),
            None => (i64::MAX, i64::MAX),
        };
        let fields: Vec<&str> = MSG_COLS.split(", ").collect();
        let sql = self.json_page_sql(
            &format!(
                "SELECT {MSG_COLS} FROM messages WHERE chat_id = $1 AND (timestamp, id) < ($2, $3)
                 ORDER BY timestamp DESC, id DESC LIMIT $4"
            ),
            &fields,
            "page.timestamp DESC, page.id DESC",
        );
        let text: String = sqlx::query_scalar(&sql)
            .bind(chat_id)
            .bind(ts)
            .bind(id)
            .bind(n + 1)
            .fetch_one(&self.pool)
            .await?;
        let mut rows: Vec<MessageRecord> = super::parse_page(&text)?;
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
        let mut conn = self.pool.acquire().await?;
        let Some(chat_id) =
            super::chats::find_chat_id(&mut conn, session, &chat.to_string()).await?
        else {
            return Ok(None);
        };
        Ok(sqlx::query_as::<_, MessageRecord>(&format!(
            "SELECT {MSG_COLS} FROM messages WHERE chat_id = $1 AND wa_message_id = $2"
        ))
        .bind(chat_id)
        .bind(wa_message_id)
        .fetch_optional(&mut *conn)
        .await?)
    }
}
