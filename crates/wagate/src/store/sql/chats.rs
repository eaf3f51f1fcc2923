//! Chats: the stored copy of a session's conversations, and the SQL behind the chat endpoints.

use std::collections::HashMap;

use super::{Conn, Pool};
use crate::domain::{now_ms, Cursor, Jid};
use crate::store::outbox::Touched;
use crate::store::records::{ChatPatch, ChatRecord, PendingChatSetting};

/// A chat's columns as the API shows them. A direct chat without a name of its own is called
/// what its contact is shown as: the address-book name, else the push name, else the business
/// name (computed on read, so it follows the contact's names).
pub const CHAT_COLS: &str = "id, session_id, jid, type,
    COALESCE(name, (SELECT COALESCE(k.saved_name, k.push_name, k.business_name) FROM contacts k WHERE k.id = chats.contact_id)) AS name,
    archived, pinned, muted_until, unread_count, last_message_at, aliases";

const CHAT_FIELDS: [&str; 11] = [
    "id",
    "session_id",
    "jid",
    "type",
    "name",
    "archived",
    "pinned",
    "muted_until",
    "unread_count",
    "last_message_at",
    "aliases",
];

/// The chat a JID names in a session: its own JID or one of its aliases.
pub async fn find_id(conn: &mut Conn, s: &str, jid: &str) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT id FROM chats WHERE session_id = $1 AND jid = $2
         UNION ALL SELECT chat_id FROM chat_aliases WHERE session_id = $1 AND jid = $2 LIMIT 1",
    )
    .bind(s)
    .bind(jid)
    .fetch_optional(conn)
    .await
}

/// A chat's id and JID, found by its JID or one of its other addresses.
pub async fn find(conn: &mut Conn, s: &str, jid: &str) -> sqlx::Result<Option<(i64, String)>> {
    sqlx::query_as(
        "SELECT id, jid FROM chats WHERE session_id = $1 AND jid = $2
         UNION ALL SELECT c.id, c.jid FROM chat_aliases a JOIN chats c ON c.id = a.chat_id
         WHERE a.session_id = $1 AND a.jid = $2 LIMIT 1",
    )
    .bind(s)
    .bind(jid)
    .fetch_optional(conn)
    .await
}

pub async fn by_id(conn: &mut Conn, id: i64) -> sqlx::Result<Option<ChatRecord>> {
    sqlx::query_as::<_, ChatRecord>(&format!("SELECT {CHAT_COLS} FROM chats WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Persons' existing direct chats, found in one query for all of `keys` (session, address,
/// other address): for each key, the contact that already holds the address (and the other
/// address, when given) and that contact's chat, with the contact's push name. `None` whenever
/// [`ensure`] would have to create or link something; where this answers, `ensure` gives the
/// same chat and contact and changes nothing.
pub async fn known_dms(
    conn: &mut Conn,
    keys: &[(&str, &Jid, Option<&Jid>)],
) -> sqlx::Result<Vec<Option<(i64, i64, Option<String>)>>> {
    /// Two compound terms per key; SQLite allows 500 in one statement.
    const KEYS_PER_QUERY: usize = 100;
    type Hit = (
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let addresses: Vec<(Option<String>, Option<String>)> = keys
        .iter()
        .map(|(_, jid, alt)| match alt {
            Some(a) if jid.is_lid() && a.is_phone() => {
                (Some(jid.to_string()), Some(a.user().to_owned()))
            }
            Some(a) if jid.is_phone() && a.is_lid() => {
                (Some(a.to_string()), Some(jid.user().to_owned()))
            }
            _ if jid.is_lid() => (Some(jid.to_string()), None),
            _ => (None, Some(jid.user().to_owned())),
        })
        .collect();
    let mut rows: Vec<Hit> = Vec::new();
    for (chunk_no, chunk) in keys.chunks(KEYS_PER_QUERY).enumerate() {
        let base = chunk_no * KEYS_PER_QUERY;
        // (key, session, column, address) of each term.
        let terms: Vec<(usize, &str, &str, &String)> = chunk
            .iter()
            .enumerate()
            .flat_map(|(i, (s, _, _))| {
                let (lid, phone) = &addresses[base + i];
                let lid = lid.as_ref().map(|a| (base + i, *s, "lid", a));
                let phone = phone.as_ref().map(|a| (base + i, *s, "phone", a));
                lid.into_iter().chain(phone)
            })
            .collect();
        let sql: Vec<String> = terms
            .iter()
            .enumerate()
            .map(|(n, (k, _, col, _))| {
                format!(
                    "SELECT CAST({k} AS BIGINT), c.id, c.lid, c.phone, c.push_name,
                       (SELECT ch.id FROM chats ch WHERE ch.contact_id = c.id LIMIT 1)
                     FROM contacts c WHERE c.session_id = {} AND c.{col} = {}",
                    super::param(2 * n + 1),
                    super::param(2 * n + 2),
                )
            })
            .collect();
        let sql = sql.join(" UNION ALL ");
        let mut q = sqlx::query_as::<_, Hit>(&sql);
        for (_, s, _, address) in &terms {
            q = q.bind(*s).bind(*address);
        }
        rows.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(addresses
        .iter()
        .enumerate()
        .map(|(k, (lid, phone))| {
            let mut hits = rows.iter().filter(|r| r.0 == k as i64);
            let (_, id, has_lid, has_phone, push, chat) = hits.next()?.clone();
            // One contact holding every given address (a pair must already be linked).
            let one = hits.all(|r| r.1 == id)
                && (lid.is_none() || has_lid == *lid)
                && (phone.is_none() || has_phone == *phone);
            chat.filter(|_| one).map(|chat| (chat, id, push))
        })
        .collect())
}

/// Moves chats' activity forward in one statement per 200 chats: for each `(chat, latest
/// message time, new unread messages)`, the last activity becomes the later of the two and
/// the unread counter grows. Returns each chat's JID.
pub async fn note_activity(
    conn: &mut Conn,
    chats: &[(i64, i64, i64)],
    now: i64,
) -> sqlx::Result<HashMap<i64, String>> {
    /// One compound term per chat; SQLite allows 500 in one statement.
    const CHATS_PER_UPDATE: usize = 200;
    let mut jids = HashMap::with_capacity(chats.len());
    for chunk in chats.chunks(CHATS_PER_UPDATE) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p = |j| super::param(2 + 3 * i + j);
                format!(
                    "SELECT CAST({} AS BIGINT) AS id, CAST({} AS BIGINT) AS latest, CAST({} AS BIGINT) AS unread",
                    p(0),
                    p(1),
                    p(2)
                )
            })
            .collect();
        let sql = format!(
            "UPDATE chats SET
                last_message_at = CASE WHEN v.latest > chats.last_message_at THEN v.latest ELSE chats.last_message_at END,
                unread_count = chats.unread_count + v.unread, updated_at = {}
             FROM ({}) AS v WHERE chats.id = v.id RETURNING chats.id, chats.jid",
            super::param(1),
            values.join(" UNION ALL ")
        );
        let mut q = sqlx::query_as::<_, (i64, String)>(&sql).bind(now);
        for (id, latest, unread) in chunk {
            q = q.bind(id).bind(latest).bind(unread);
        }
        jids.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(jids)
}

/// The chat for `jid` (with the person's other address `alt`, when WhatsApp gave it), created
/// empty when new. A person's direct chat is found through their contact, whichever address
/// the message used.
pub async fn ensure(
    conn: &mut Conn,
    s: &str,
    jid: &Jid,
    alt: Option<&Jid>,
    t: &mut Touched,
) -> sqlx::Result<(i64, Option<i64>)> {
    if jid.is_person() {
        let contact = super::people::person_with_alt(conn, s, jid, alt, t).await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM chats WHERE contact_id = $1")
                .bind(contact)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(id) = existing {
            return Ok((id, Some(contact)));
        }
        let r = super::people::by_id(&mut *conn, contact).await?;
        let target = match &r.phone {
            Some(p) => Jid::phone(p).to_string(),
            None => r.lid.clone().unwrap_or_else(|| jid.to_string()),
        };
        let now = now_ms();
        sqlx::query(
            "INSERT INTO chats (session_id, jid, type, contact_id, created_at, updated_at) VALUES ($1, $2, 'dm', $3, $4, $4)
             ON CONFLICT (session_id, jid) DO NOTHING",
        )
        .bind(s)
        .bind(&target)
        .bind(contact)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        // Attaches the new chat (or a chat left under one of the addresses) and sets aliases.
        super::people::fix_dm(conn, s, contact, t).await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM chats WHERE contact_id = $1")
            .bind(contact)
            .fetch_one(&mut *conn)
            .await?;
        t.chats.insert(id);
        return Ok((id, Some(contact)));
    }
    let key = jid.to_string();
    if let Some(id) = find_id(&mut *conn, s, &key).await? {
        return Ok((id, None));
    }
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO chats (session_id, jid, type, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (session_id, jid) DO UPDATE SET updated_at = chats.updated_at RETURNING id",
    )
    .bind(s)
    .bind(&key)
    .bind(jid.chat_kind().as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    t.chats.insert(id);
    Ok((id, None))
}

/// Folds the chat `from` into `into`: messages (dropping ones `into` already has), unread
/// counters (a message both held counts once), latest activity, flags.
pub async fn merge_chat(conn: &mut Conn, into: i64, from: i64) -> sqlx::Result<()> {
    let dup_incoming: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM messages WHERE chat_id = $2 AND from_me = $3
           AND wa_message_id IN (SELECT wa_message_id FROM messages WHERE chat_id = $1)",
    )
    .bind(into)
    .bind(from)
    .bind(false)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM messages WHERE chat_id = $2 AND wa_message_id IN (SELECT wa_message_id FROM messages WHERE chat_id = $1)",
    )
    .bind(into)
    .bind(from)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE messages SET chat_id = $1 WHERE chat_id = $2")
        .bind(into)
        .bind(from)
        .execute(&mut *conn)
        .await?;
    let Some(f) = by_id(&mut *conn, from).await? else {
        return Ok(());
    };
    // The merged chat's own name, not the one shown for it.
    let own_name: Option<String> = sqlx::query_scalar("SELECT name FROM chats WHERE id = $1")
        .bind(from)
        .fetch_one(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM chat_aliases WHERE chat_id = $1")
        .bind(from)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM chats WHERE id = $1")
        .bind(from)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE chats SET name = COALESCE(name, $2), archived = (archived OR $3), pinned = (pinned OR $4),
            muted_until = COALESCE(muted_until, $5), unread_count = unread_count + $6,
            last_message_at = CASE WHEN $7 > last_message_at THEN $7 ELSE last_message_at END, updated_at = $8
         WHERE id = $1",
    )
    .bind(into)
    .bind(own_name)
    .bind(f.archived)
    .bind(f.pinned)
    .bind(f.muted_until)
    .bind((f.unread_count - dup_incoming).max(0))
    .bind(f.last_message_at)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What WhatsApp says about a chat (history sync, the phone's app-state changes); `None`
/// fields stay as they are.
#[allow(clippy::too_many_arguments)]
pub async fn apply_settings(
    conn: &mut Conn,
    id: i64,
    name: Option<&str>,
    archived: Option<bool>,
    pinned: Option<bool>,
    muted_until: Option<Option<i64>>,
    unread_count: Option<i64>,
    last_message_at: Option<i64>,
) -> sqlx::Result<Option<ChatRecord>> {
    sqlx::query_as::<_, ChatRecord>(&format!(
        "UPDATE chats SET
            name = COALESCE($2, name),
            archived = COALESCE($3, archived),
            pinned = COALESCE($4, pinned),
            muted_until = CASE WHEN $5 THEN $6 ELSE muted_until END,
            unread_count = COALESCE($7, unread_count),
            last_message_at = CASE WHEN $8 IS NOT NULL AND $8 > last_message_at THEN $8 ELSE last_message_at END,
            updated_at = $9
         WHERE id = $1 RETURNING {CHAT_COLS}"
    ))
    .bind(id)
    .bind(name)
    .bind(archived)
    .bind(pinned)
    .bind(muted_until.is_some())
    .bind(muted_until.flatten())
    .bind(unread_count)
    .bind(last_message_at)
    .bind(now_ms())
    .fetch_optional(conn)
    .await
}

/// An API patch, as one statement whose result is the answer.
pub async fn patch(
    conn: &mut Conn,
    s: &str,
    jid: &Jid,
    p: &ChatPatch,
) -> sqlx::Result<Option<ChatRecord>> {
    let Some(id) = find_id(&mut *conn, s, &jid.to_string()).await? else {
        return Ok(None);
    };
    sqlx::query_as::<_, ChatRecord>(&format!(
        "UPDATE chats SET archived = COALESCE($2, archived), pinned = COALESCE($3, pinned),
            muted_until = CASE WHEN $4 THEN $5 ELSE muted_until END, updated_at = $6
         WHERE id = $1 RETURNING {CHAT_COLS}"
    ))
    .bind(id)
    .bind(p.archived)
    .bind(p.pinned)
    .bind(p.muted_until.is_some())
    .bind(p.muted_until.flatten())
    .bind(now_ms())
    .fetch_optional(conn)
    .await
}

/// Queues the settings an API call changed for the phone: the latest value per chat and
/// setting wins (see migration 0005).
pub async fn queue_for_phone(
    conn: &mut Conn,
    s: &str,
    chat_jid: &str,
    p: &ChatPatch,
) -> sqlx::Result<()> {
    let now = now_ms();
    let changes = [
        p.archived.map(|v| ("archived", v as i64)),
        p.pinned.map(|v| ("pinned", v as i64)),
        p.muted_until.map(|m| ("muted_until", m.unwrap_or(0))),
    ];
    for (setting, value) in changes.into_iter().flatten() {
        sqlx::query(
            "INSERT INTO chat_settings_pending (session_id, chat_jid, setting, value, changed_at, attempts)
             VALUES ($1, $2, $3, $4, $5, 0)
             ON CONFLICT (session_id, chat_jid, setting)
             DO UPDATE SET value = excluded.value, changed_at = excluded.changed_at, attempts = 0",
        )
        .bind(s)
        .bind(chat_jid)
        .bind(setting)
        .bind(value)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The oldest changes waiting for the phone.
pub async fn pending_for_phone(
    pool: &Pool,
    s: &str,
    limit: i64,
) -> sqlx::Result<Vec<PendingChatSetting>> {
    sqlx::query_as::<_, PendingChatSetting>(
        "SELECT chat_jid, setting, value, changed_at, attempts FROM chat_settings_pending
         WHERE session_id = $1 ORDER BY changed_at, chat_jid, setting LIMIT $2",
    )
    .bind(s)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Settles a change: `sent` deletes it unless a newer one replaced it meanwhile; otherwise
/// its attempts are counted.
pub async fn settle_for_phone(
    pool: &Pool,
    s: &str,
    p: &PendingChatSetting,
    sent: bool,
) -> sqlx::Result<()> {
    let sql = if sent {
        "DELETE FROM chat_settings_pending
         WHERE session_id = $1 AND chat_jid = $2 AND setting = $3 AND changed_at = $4"
    } else {
        "UPDATE chat_settings_pending SET attempts = attempts + 1
         WHERE session_id = $1 AND chat_jid = $2 AND setting = $3 AND changed_at = $4"
    };
    sqlx::query(sql)
        .bind(s)
        .bind(&p.chat_jid)
        .bind(&p.setting)
        .bind(p.changed_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// A change made on the phone at `at` supersedes the API's older wish for that setting.
pub async fn superseded_by_phone(
    conn: &mut Conn,
    s: &str,
    chat_jid: &str,
    setting: &str,
    at: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM chat_settings_pending
         WHERE session_id = $1 AND chat_jid = $2 AND setting = $3 AND changed_at <= $4",
    )
    .bind(s)
    .bind(chat_jid)
    .bind(setting)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Sets the unread counter to zero; returns the chat and whether it changed.
pub async fn mark_read(
    conn: &mut Conn,
    s: &str,
    jid: &Jid,
) -> sqlx::Result<Option<(ChatRecord, bool)>> {
    let Some(id) = find_id(&mut *conn, s, &jid.to_string()).await? else {
        return Ok(None);
    };
    let changed = sqlx::query_as::<_, ChatRecord>(&format!(
        "UPDATE chats SET unread_count = 0, updated_at = $2 WHERE id = $1 AND unread_count <> 0 RETURNING {CHAT_COLS}"
    ))
    .bind(id)
    .bind(now_ms())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match changed {
        Some(c) => Some((c, true)),
        None => by_id(conn, id).await?.map(|c| (c, false)),
    })
}

/// Removes a chat and its messages; its contact no longer has a direct chat. Returns the chat.
pub async fn delete(conn: &mut Conn, s: &str, jid: &Jid) -> sqlx::Result<Option<ChatRecord>> {
    let Some(id) = find_id(&mut *conn, s, &jid.to_string()).await? else {
        return Ok(None);
    };
    let chat = by_id(&mut *conn, id).await?;
    sqlx::query(
        "UPDATE contacts SET in_dm = $2 WHERE id IN (SELECT contact_id FROM chats WHERE id = $1)",
    )
    .bind(id)
    .bind(false)
    .execute(&mut *conn)
    .await?;
    for sql in [
        "DELETE FROM messages WHERE chat_id = $1",
        "DELETE FROM chat_aliases WHERE chat_id = $1",
        "DELETE FROM chats WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    }
    Ok(chat)
}

pub async fn get(pool: &Pool, s: &str, jid: &Jid) -> sqlx::Result<Option<ChatRecord>> {
    sqlx::query_as::<_, ChatRecord>(&format!(
        "SELECT {CHAT_COLS} FROM chats WHERE session_id = $1 AND jid = $2
         UNION ALL
         SELECT c.id, c.session_id, c.jid, c.type,
                COALESCE(c.name, (SELECT COALESCE(k.saved_name, k.push_name, k.business_name) FROM contacts k WHERE k.id = c.contact_id)),
                c.archived, c.pinned, c.muted_until, c.unread_count, c.last_message_at, c.aliases
         FROM chat_aliases a JOIN chats c ON c.id = a.chat_id WHERE a.session_id = $1 AND a.jid = $2
         LIMIT 1"
    ))
    .bind(s)
    .bind(jid.to_string())
    .fetch_optional(pool)
    .await
}

/// A page of chats in display order: pinned first, then latest activity, then id.
pub async fn list(
    pool: &Pool,
    s: &str,
    cursor: Option<&Cursor>,
    n: i64,
) -> sqlx::Result<Vec<ChatRecord>> {
    // Without a cursor, start above every row.
    let (pinned, lma, id) = match cursor {
        Some(c) => (c.keys[0] != 0, c.keys[1], c.keys[2]),
        None => (true, i64::MAX, i64::MAX),
    };
    let rows: Vec<ChatRecord> = super::fetch_page!(
        pool,
        format!(
            "SELECT {CHAT_COLS} FROM chats WHERE session_id = $1 AND (pinned, last_message_at, id) < ($2, $3, $4)
             ORDER BY pinned DESC, last_message_at DESC, id DESC LIMIT $5"
        ),
        &CHAT_FIELDS,
        "page.pinned DESC, page.last_message_at DESC, page.id DESC",
        |q| q.bind(s).bind(pinned).bind(lma).bind(id).bind(n + 1)
    );
    Ok(rows)
}
