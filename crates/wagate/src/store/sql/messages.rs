//! Messages: idempotent ingest (one row per WhatsApp id in a chat), delivery status, and the
//! newest-first keyset pages of one chat.

use std::collections::HashMap;

use super::{Conn, Pool};
use crate::domain::{now_ms, ChatKind, Cursor};
use crate::store::ingest::{ChangeKind, MessageChange, NewMessage, RecordOptions, Recorded};
use crate::store::outbox::{kind, Outbox, Touched};
use crate::store::records::{MessageRecord, MessageStatus};
use crate::store::wire::Message;

const MSG_COLS: &str = "id, session_id, chat_id, wa_message_id, from_me, sender_jid, sender_lid, sender_name, type, body, has_media, media_mimetype, media_size, media_filename, quoted_message_id, mentions, status, error, edited, deleted, timestamp, created_at, media_ref, media_file, poll";
const INSERT_COLS: &str = "session_id, chat_id, wa_message_id, from_me, sender_jid, sender_lid, sender_name, type, body, has_media, media_mimetype, media_size, media_filename, quoted_message_id, mentions, status, timestamp, created_at, media_ref, poll";
const INSERT_ARITY: usize = 20;
/// Rows per multi-row INSERT. With anonymous parameters on SQLite (see `param`) binding is
/// linear, and 64 rows measured as fast as 200 (bench_seed, 300k messages: ~42k/s either way).
const ROWS_PER_INSERT: usize = 64;

fn mentions_json(m: &NewMessage) -> Option<String> {
    (!m.mentions.is_empty()).then(|| serde_json::to_string(&m.mentions).unwrap_or_default())
}

/// The stored row a new message becomes (for its event), without reading it back.
fn as_record(s: &str, chat_id: i64, id: i64, m: &NewMessage, now: i64) -> MessageRecord {
    let media = m.media.clone().unwrap_or_default();
    MessageRecord {
        id,
        session_id: s.to_owned(),
        chat_id,
        wa_message_id: m.wa_message_id.clone(),
        from_me: m.from_me,
        sender_jid: m.sender.as_ref().map(|j| j.to_string()),
        sender_lid: m.sender_lid.as_ref().map(|j| j.to_string()),
        sender_name: m.sender_name.clone(),
        kind: m.kind.clone(),
        body: m.body.clone(),
        has_media: m.media.is_some(),
        media_mimetype: media.mimetype,
        media_size: media.size,
        media_filename: media.filename,
        media_ref: media.reference,
        media_file: None,
        poll: m.poll.clone(),
        quoted_message_id: m.quoted_message_id.clone(),
        mentions: mentions_json(m),
        status: m.status,
        error: None,
        edited: false,
        deleted: false,
        timestamp: m.timestamp,
        created_at: now,
    }
}

/// Records a batch inside the caller's transaction: finds or creates each chat, notes the
/// people seen (the DM partner, a group's author) with their names and addresses, inserts each
/// message once, moves each chat's activity forward and counts new incoming messages as unread.
pub async fn record(
    conn: &mut Conn,
    s: &str,
    msgs: &[NewMessage],
    opts: RecordOptions,
    t: &mut Touched,
    out: &mut Outbox,
) -> sqlx::Result<Vec<Recorded>> {
    let mut parts = [Part {
        session: s,
        msgs,
        opts,
        t,
        out,
    }];
    Ok(record_parts(conn, &mut parts)
        .await?
        .pop()
        .unwrap_or_default())
}

/// One session's messages in [`record_parts`], with what recording them touches and the events
/// it drafts.
pub struct Part<'a> {
    pub session: &'a str,
    pub msgs: &'a [NewMessage],
    pub opts: RecordOptions,
    pub t: &'a mut Touched,
    pub out: &'a mut Outbox,
}

/// [`record`] for the batches of several sessions at once, in few statements: the known direct
/// chats of all of them are found in one query, the messages inserted in multi-row statements
/// and the chats' activity moved in one. Returns each part's outcomes.
pub async fn record_parts(
    conn: &mut Conn,
    parts: &mut [Part<'_>],
) -> sqlx::Result<Vec<Vec<Recorded>>> {
    let now = now_ms();
    let chat_of = resolve_chats(&mut *conn, parts).await?;
    // Every part's messages, in order, with their chat.
    let all: Vec<(usize, &str, &NewMessage, i64)> = parts
        .iter()
        .enumerate()
        .flat_map(|(n, p)| {
            let ids = &chat_of[n];
            p.msgs
                .iter()
                .zip(ids)
                .map(move |(m, &chat)| (n, p.session, m, chat))
        })
        .collect();
    let results = insert_rows(&mut *conn, &all, now).await?;
    let per_chat = activity(parts, &all, &results);
    let jids = super::chats::note_activity(&mut *conn, &per_chat, now).await?;
    let mut outcome: Vec<Vec<Recorded>> = parts
        .iter()
        .map(|p| Vec::with_capacity(p.msgs.len()))
        .collect();
    for (&(n, s, m, _), r) in all.iter().zip(results) {
        let p = &mut parts[n];
        if p.opts.emit_events && r.inserted {
            let rec = as_record(s, r.chat_id, r.id, m, now);
            let event = if m.kind == "reaction" {
                kind::MESSAGE_REACTION
            } else if m.from_me {
                kind::MESSAGE_FROM_ME
            } else {
                kind::MESSAGE
            };
            p.out.push(
                Some(s),
                event,
                &Message::from_record(rec, &jids[&r.chat_id]),
            );
        }
        outcome[n].push(r);
    }
    Ok(outcome)
}

/// One message of [`record_parts`]: its part, session, the message and its chat's id.
type Row<'a> = (usize, &'a str, &'a NewMessage, i64);

/// The chat of every message of every part (created when new), and what the messages tell
/// about their authors (push names, group membership). Known direct chats are found in one
/// query for all parts.
async fn resolve_chats(conn: &mut Conn, parts: &mut [Part<'_>]) -> sqlx::Result<Vec<Vec<i64>>> {
    // (session, chat, alt) → chat id, the DM partner's contact and, when known, their push
    // name now.
    type Key = (String, String, Option<String>);
    type Known = (i64, Option<i64>, Option<Option<String>>);
    let key_of = |s: &str, m: &NewMessage| -> Key {
        (
            s.to_owned(),
            m.chat.to_string(),
            m.chat_alt.as_ref().map(|j| j.to_string()),
        )
    };

    // Direct chats that already exist, for every part in one go.
    let mut dms: Vec<(&str, &NewMessage)> = Vec::new();
    let mut listed: HashMap<Key, usize> = HashMap::new();
    for p in parts.iter() {
        for m in p.msgs.iter().filter(|m| m.chat.chat_kind() == ChatKind::Dm) {
            let n = dms.len();
            if let std::collections::hash_map::Entry::Vacant(e) = listed.entry(key_of(p.session, m))
            {
                e.insert(n);
                dms.push((p.session, m));
            }
        }
    }
    let lookups: Vec<(&str, &crate::domain::Jid, Option<&crate::domain::Jid>)> = dms
        .iter()
        .map(|(s, m)| (*s, &m.chat, m.chat_alt.as_ref()))
        .collect();
    let prefetched = super::chats::known_dms(&mut *conn, &lookups).await?;

    let mut chats: HashMap<Key, Known> = HashMap::new();
    // Sessions whose people or chats this call changed: their prefetched answers may be stale.
    let mut changed: std::collections::HashSet<String> = Default::default();
    let mut chat_of: Vec<Vec<i64>> = Vec::with_capacity(parts.len());
    for p in parts.iter_mut() {
        let s = p.session;
        let mut ids = Vec::with_capacity(p.msgs.len());
        let mut seen: HashMap<(String, Option<String>, Option<String>), ()> = HashMap::new();
        for m in p.msgs {
            let key = key_of(s, m);
            let (chat_id, partner, push_now) = match chats.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let alt = m.chat_alt.as_ref();
                    let known = match m.chat.chat_kind() {
                        ChatKind::Dm if changed.contains(s) => {
                            super::chats::known_dms(&mut *conn, &[(s, &m.chat, alt)])
                                .await?
                                .pop()
                                .flatten()
                        }
                        ChatKind::Dm => listed.get(&key).and_then(|&n| prefetched[n].clone()),
                        _ => None,
                    };
                    let v = match known {
                        Some((chat, contact, push)) => (chat, Some(contact), Some(push)),
                        None => {
                            changed.insert(s.to_owned());
                            let (chat, contact) =
                                super::chats::ensure(&mut *conn, s, &m.chat, alt, p.t).await?;
                            (chat, contact, None)
                        }
                    };
                    chats.insert(key.clone(), v.clone());
                    v
                }
            };
            ids.push(chat_id);
            if m.from_me {
                continue;
            }
            let sender_key = (
                m.sender
                    .as_ref()
                    .map(|j| j.to_string())
                    .unwrap_or_else(|| m.chat.to_string()),
                m.sender_lid.as_ref().map(|j| j.to_string()),
                m.sender_name.clone(),
            );
            if seen.insert(sender_key, ()).is_some() {
                continue;
            }
            match m.chat.chat_kind() {
                ChatKind::Dm => {
                    let name = m
                        .sender_name
                        .as_deref()
                        .map(str::trim)
                        .filter(|n| !n.is_empty());
                    let unchanged =
                        name.is_none() || matches!(&push_now, Some(now) if now.as_deref() == name);
                    if let (Some(c), false) = (partner, unchanged) {
                        super::people::set_names(&mut *conn, c, name, None, None, p.t).await?;
                        if let Some(v) = chats.get_mut(&key) {
                            v.2 = Some(name.map(str::to_owned));
                        }
                    }
                }
                ChatKind::Group => {
                    if let Some(sender) = &m.sender {
                        changed.insert(s.to_owned());
                        let alt = m.sender_lid.as_ref().filter(|l| *l != sender);
                        let c =
                            super::people::person_with_alt(&mut *conn, s, sender, alt, p.t).await?;
                        super::people::mark_in_group(&mut *conn, c, p.t).await?;
                        super::people::set_names(
                            &mut *conn,
                            c,
                            m.sender_name.as_deref(),
                            None,
                            None,
                            p.t,
                        )
                        .await?;
                    }
                }
                _ => {}
            }
        }
        chat_of.push(ids);
    }

    Ok(chat_of)
}

/// Inserts the rows in multi-row statements; a WhatsApp id already stored in its chat keeps
/// its row (`inserted: false`).
async fn insert_rows(conn: &mut Conn, all: &[Row<'_>], now: i64) -> sqlx::Result<Vec<Recorded>> {
    let mut results: Vec<Option<Recorded>> = vec![None; all.len()];
    for (chunk_no, chunk) in all.chunks(ROWS_PER_INSERT).enumerate() {
        let base = chunk_no * ROWS_PER_INSERT;
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
                sql.push_str(&super::param(i * INSERT_ARITY + j + 1));
            }
            sql.push(')');
        }
        sql.push_str(
            " ON CONFLICT (chat_id, wa_message_id) DO NOTHING RETURNING id, chat_id, wa_message_id",
        );
        let mut q = sqlx::query_as::<_, (i64, i64, String)>(&sql);
        for &(_, s, m, chat_id) in chunk {
            let media = m.media.clone().unwrap_or_default();
            q = q
                .bind(s)
                .bind(chat_id)
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
                .bind(mentions_json(m))
                .bind(m.status.as_str())
                .bind(m.timestamp)
                .bind(now)
                .bind(media.reference)
                .bind(m.poll.clone());
        }
        let inserted = q.fetch_all(&mut *conn).await?;
        let mut by_key: HashMap<(i64, String), i64> = inserted
            .into_iter()
            .map(|(id, chat, wa)| ((chat, wa), id))
            .collect();
        for (i, &(_, _, m, chat_id)) in chunk.iter().enumerate() {
            // A WhatsApp id repeated inside one batch is inserted by its first occurrence only.
            if let Some(id) = by_key.remove(&(chat_id, m.wa_message_id.clone())) {
                results[base + i] = Some(Recorded {
                    id,
                    chat_id,
                    inserted: true,
                });
            }
        }
    }

    // Redeliveries: the row that already holds the id.
    for (i, &(_, _, m, chat_id)) in all.iter().enumerate() {
        if results[i].is_none() {
            let id: i64 = sqlx::query_scalar(
                "SELECT id FROM messages WHERE chat_id = $1 AND wa_message_id = $2",
            )
            .bind(chat_id)
            .bind(&m.wa_message_id)
            .fetch_one(&mut *conn)
            .await?;
            results[i] = Some(Recorded {
                id,
                chat_id,
                inserted: false,
            });
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("filled above"))
        .collect())
}

/// Per chat: the latest activity of the new rows and how many count as unread.
fn activity(parts: &[Part<'_>], all: &[Row<'_>], results: &[Recorded]) -> Vec<(i64, i64, i64)> {
    let mut per_chat: Vec<(i64, i64, i64)> = Vec::new();
    let mut slot: HashMap<i64, usize> = HashMap::new();
    for (&(n, _, m, _), r) in all.iter().zip(results) {
        if !r.inserted {
            continue;
        }
        let i = *slot.entry(r.chat_id).or_insert_with(|| {
            per_chat.push((r.chat_id, 0, 0));
            per_chat.len() - 1
        });
        let e = &mut per_chat[i];
        e.1 = e.1.max(m.timestamp);
        if parts[n].opts.count_unread && !m.from_me && m.kind != "reaction" {
            e.2 += 1;
        }
    }
    per_chat
}

/// Applies an edit or a revoke inside the caller's transaction (see
/// `Store::record_inbound`); writes its event when the stored message changed.
pub async fn change(
    conn: &mut Conn,
    s: &str,
    c: &MessageChange,
    out: &mut Outbox,
) -> sqlx::Result<()> {
    let mut chat_id = super::chats::find_id(&mut *conn, s, &c.chat.to_string()).await?;
    if chat_id.is_none() {
        if let Some(alt) = &c.chat_alt {
            chat_id = super::chats::find_id(&mut *conn, s, &alt.to_string()).await?;
        }
    }
    let Some(chat_id) = chat_id else {
        tracing::debug!(
            session = s,
            target = c.target,
            "change to a message of an unknown chat: ignored"
        );
        return Ok(());
    };
    // In a direct chat only the author changes a message; in a group an admin may revoke too.
    let author = if c.chat.is_group() && c.kind == ChangeKind::Revoke {
        "($3 OR NOT $3)"
    } else {
        "from_me = $3"
    };
    let (sql, event) = match &c.kind {
        ChangeKind::Edit { .. } => (
            format!(
                "UPDATE messages SET body = $4, edited = $5
                 WHERE chat_id = $1 AND wa_message_id = $2 AND {author} AND deleted = $6
                   AND (edited = $6 OR body IS DISTINCT FROM $4)
                 RETURNING {MSG_COLS}"
            ),
            kind::MESSAGE_EDITED,
        ),
        ChangeKind::Revoke => (
            format!(
                "UPDATE messages SET deleted = $5, body = $4, mentions = NULL, has_media = $6,
                   media_mimetype = NULL, media_size = NULL, media_filename = NULL, media_ref = NULL, media_file = NULL
                 WHERE chat_id = $1 AND wa_message_id = $2 AND {author} AND deleted = $6
                 RETURNING {MSG_COLS}"
            ),
            kind::MESSAGE_REVOKED,
        ),
    };
    let body = match &c.kind {
        ChangeKind::Edit { body } => body.clone(),
        ChangeKind::Revoke => None,
    };
    let row = sqlx::query_as::<_, MessageRecord>(&sql)
        .bind(chat_id)
        .bind(&c.target)
        .bind(c.from_me)
        .bind(body)
        .bind(true)
        .bind(false)
        .fetch_optional(&mut *conn)
        .await?;
    match row {
        Some(r) => {
            let jid: String = sqlx::query_scalar("SELECT jid FROM chats WHERE id = $1")
                .bind(chat_id)
                .fetch_one(&mut *conn)
                .await?;
            out.push(Some(s), event, &Message::from_record(r, &jid));
        }
        None => tracing::debug!(
            session = s,
            target = c.target,
            "change to a message not stored (or already applied, or not the author's): ignored"
        ),
    }
    Ok(())
}

/// Moves the status of messages in a chat forward (a receipt). A status never goes back;
/// `failed` only replaces `pending` or `sent`. Writes a `message.status` event per change.
pub async fn set_status(
    conn: &mut Conn,
    chat_id: i64,
    chat_jid: &str,
    ids: &[String],
    status: MessageStatus,
    error: Option<&str>,
    out: &mut Outbox,
) -> sqlx::Result<u64> {
    let guard = if status == MessageStatus::Failed {
        "status IN ('pending', 'sent')"
    } else {
        "(CASE status WHEN 'pending' THEN 0 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'played' THEN 4 ELSE 5 END) < $4"
    };
    let sql = format!(
        "UPDATE messages SET status = $2, error = $3 WHERE chat_id = $1 AND {guard} AND {} RETURNING {MSG_COLS}",
        super::in_json("wa_message_id", 5)
    );
    let rows = sqlx::query_as::<_, MessageRecord>(&sql)
        .bind(chat_id)
        .bind(status.as_str())
        .bind(error)
        .bind(status.rank())
        .bind(serde_json::to_string(ids).unwrap_or_default())
        .fetch_all(&mut *conn)
        .await?;
    let n = rows.len() as u64;
    for r in rows {
        let s = r.session_id.clone();
        out.push(
            Some(&s),
            kind::MESSAGE_STATUS,
            &Message::from_record(r, chat_jid),
        );
    }
    Ok(n)
}

/// A page of a chat's messages, newest first.
pub async fn list(
    pool: &Pool,
    chat_id: i64,
    cursor: Option<&Cursor>,
    n: i64,
) -> sqlx::Result<Vec<MessageRecord>> {
    let (ts, id) = match cursor {
        Some(c) => (c.keys[0], c.keys[1]),
        None => (i64::MAX, i64::MAX),
    };
    let fields: Vec<&str> = MSG_COLS.split(", ").collect();
    let rows: Vec<MessageRecord> = super::fetch_page!(
        pool,
        format!(
            "SELECT {MSG_COLS} FROM messages WHERE chat_id = $1 AND (timestamp, id) < ($2, $3)
             ORDER BY timestamp DESC, id DESC LIMIT $4"
        ),
        &fields,
        "page.timestamp DESC, page.id DESC",
        |q| q.bind(chat_id).bind(ts).bind(id).bind(n + 1)
    );
    Ok(rows)
}

/// One stored message by its WhatsApp id in a chat.
pub async fn get(
    pool: &Pool,
    chat_id: i64,
    wa_message_id: &str,
) -> sqlx::Result<Option<MessageRecord>> {
    sqlx::query_as::<_, MessageRecord>(&format!(
        "SELECT {MSG_COLS} FROM messages WHERE chat_id = $1 AND wa_message_id = $2"
    ))
    .bind(chat_id)
    .bind(wa_message_id)
    .fetch_optional(pool)
    .await
}

/// A session's message by its stored id (all digits) or its WhatsApp id, with its chat's JID.
/// More than one match (the same WhatsApp id in two chats) is returned as such.
pub async fn find(pool: &Pool, s: &str, mid: &str) -> sqlx::Result<Vec<(MessageRecord, String)>> {
    let cols: String = MSG_COLS
        .split(", ")
        .map(|c| format!("m.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(id) = mid.parse::<i64>() {
        let row: Option<MessageRecord> = sqlx::query_as(&format!(
            "SELECT {cols} FROM messages m WHERE m.session_id = $1 AND m.id = $2"
        ))
        .bind(s)
        .bind(id)
        .fetch_optional(pool)
        .await?;
        if let Some(r) = row {
            let jid: String = sqlx::query_scalar("SELECT jid FROM chats WHERE id = $1")
                .bind(r.chat_id)
                .fetch_one(pool)
                .await?;
            return Ok(vec![(r, jid)]);
        }
    }
    let rows: Vec<MessageRecord> = sqlx::query_as(&format!(
        "SELECT {cols} FROM messages m WHERE m.session_id = $1 AND m.wa_message_id = $2 LIMIT 2"
    ))
    .bind(s)
    .bind(mid)
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let jid: String = sqlx::query_scalar("SELECT jid FROM chats WHERE id = $1")
            .bind(r.chat_id)
            .fetch_one(pool)
            .await?;
        out.push((r, jid));
    }
    Ok(out)
}

/// Records the on-disk copy of a message's attachment.
pub async fn set_media_file(pool: &Pool, s: &str, id: i64, file: &str) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE messages SET media_file = $3 WHERE session_id = $1 AND id = $2 AND deleted = $4",
    )
    .bind(s)
    .bind(id)
    .bind(file)
    .bind(false)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records how to fetch a sent message's attachment again (known once it was uploaded).
pub async fn set_media_ref(
    pool: &Pool,
    s: &str,
    wa_message_id: &str,
    reference: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE messages SET media_ref = $3 WHERE session_id = $1 AND wa_message_id = $2 AND from_me = $4 AND has_media = $4",
    )
    .bind(s)
    .bind(wa_message_id)
    .bind(reference)
    .bind(true)
    .execute(pool)
    .await?;
    Ok(())
}
