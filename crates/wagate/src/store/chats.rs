//! Chats: the stored copy of a session's conversations, and the SQL behind the chat endpoints.

use sqlx::{AnyConnection, FromRow};

use super::Store;
use crate::domain::{now_ms, Cursor, Jid, Limit};

#[derive(Debug, Clone, FromRow, serde::Deserialize)]
pub struct ChatRecord {
    pub id: i64,
    pub session_id: String,
    pub jid: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub name: Option<String>,
    #[sqlx(try_from = "super::Flag")]
    #[serde(deserialize_with = "super::json_flag")]
    pub archived: bool,
    #[sqlx(try_from = "super::Flag")]
    #[serde(deserialize_with = "super::json_flag")]
    pub pinned: bool,
    pub muted_until: Option<i64>,
    pub unread_count: i64,
    pub last_message_at: i64,
    /// Other JIDs of the same conversation, comma-separated.
    pub aliases: String,
}

impl ChatRecord {
    pub fn alias_list(&self) -> Vec<String> {
        self.aliases
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

pub(crate) const CHAT_COLS: &str =
    "id, session_id, jid, type, name, archived, pinned, muted_until, unread_count, last_message_at, aliases";

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

/// The chat a JID names in a session (its own JID or an alias), in one query.
async fn fetch_chat(
    conn: &mut AnyConnection,
    session: &str,
    jid: &str,
) -> sqlx::Result<Option<ChatRecord>> {
    sqlx::query_as::<_, ChatRecord>(&format!(
        "SELECT {CHAT_COLS} FROM chats WHERE session_id = $1 AND jid = $2
         UNION ALL
         SELECT c.id, c.session_id, c.jid, c.type, c.name, c.archived, c.pinned, c.muted_until, c.unread_count,
                c.last_message_at, c.aliases
         FROM chat_aliases a JOIN chats c ON c.id = a.chat_id WHERE a.session_id = $1 AND a.jid = $2
         LIMIT 1"
    ))
    .bind(session)
    .bind(jid)
    .fetch_optional(conn)
    .await
}

/// A chat as WhatsApp reports it; `None` fields are left unchanged (or defaulted on insert).
#[derive(Debug, Clone, Default)]
pub struct ChatUpsert {
    pub name: Option<String>,
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
    /// `Some(None)` clears the mute.
    pub muted_until: Option<Option<i64>>,
    pub unread_count: Option<i64>,
    pub last_message_at: Option<i64>,
}

/// A partial update from the API. `unmute` wins over `muted_until`.
#[derive(Debug, Clone, Default)]
pub struct ChatPatch {
    pub archived: Option<bool>,
    pub pinned: Option<bool>,
    pub muted_until: Option<Option<i64>>,
}

/// Finds the chat a JID names in a session, through its aliases too.
pub(crate) async fn find_chat_id(
    conn: &mut AnyConnection,
    session: &str,
    jid: &str,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT id FROM chats WHERE session_id = $1 AND jid = $2
         UNION ALL SELECT chat_id FROM chat_aliases WHERE session_id = $1 AND jid = $2 LIMIT 1",
    )
    .bind(session)
    .bind(jid)
    .fetch_optional(conn)
    .await
}

/// The chat for `jid`, created empty when it does not exist yet. A DM addressed by LID whose
/// phone number is known lands in the phone-number chat (the LID becomes an alias).
pub(crate) async fn ensure_chat(
    conn: &mut AnyConnection,
    session: &str,
    jid: &Jid,
) -> sqlx::Result<i64> {
    let key = jid.to_string();
    if let Some(id) = find_chat_id(conn, session, &key).await? {
        return Ok(id);
    }
    let mut primary = key.clone();
    if jid.is_lid() {
        let phone: Option<Option<String>> =
            sqlx::query_scalar("SELECT phone FROM identities WHERE lid = $1")
                .bind(&key)
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(Some(phone)) = phone {
            primary = Jid::phone(&phone).to_string();
            if let Some(id) = find_chat_id(conn, session, &primary).await? {
                add_alias(conn, session, &key, id).await?;
                return Ok(id);
            }
        }
    }
    let now = now_ms();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO chats (session_id, jid, type, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (session_id, jid) DO UPDATE SET updated_at = chats.updated_at RETURNING id",
    )
    .bind(session)
    .bind(&primary)
    .bind(jid.chat_kind().as_str())
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    if primary != key {
        add_alias(conn, session, &key, id).await?;
    }
    if jid.is_person() {
        super::contacts::sight_person(conn, session, jid, None, super::contacts::Sighting::Dm)
            .await?;
    }
    Ok(id)
}

pub(crate) async fn add_alias(
    conn: &mut AnyConnection,
    session: &str,
    alias: &str,
    chat_id: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO chat_aliases (session_id, jid, chat_id) VALUES ($1, $2, $3)
         ON CONFLICT (session_id, jid) DO UPDATE SET chat_id = excluded.chat_id",
    )
    .bind(session)
    .bind(alias)
    .bind(chat_id)
    .execute(&mut *conn)
    .await?;
    refresh_alias_list(conn, chat_id).await
}

/// Rewrites a chat's denormalised alias list from `chat_aliases`.
pub(crate) async fn refresh_alias_list(conn: &mut AnyConnection, chat_id: i64) -> sqlx::Result<()> {
    let list: Vec<String> =
        sqlx::query_scalar("SELECT jid FROM chat_aliases WHERE chat_id = $1 ORDER BY jid")
            .bind(chat_id)
            .fetch_all(&mut *conn)
            .await?;
    sqlx::query("UPDATE chats SET aliases = $2 WHERE id = $1")
        .bind(chat_id)
        .bind(list.join(","))
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// Creates or updates a chat with what WhatsApp reported (history sync, app-state actions).
    pub async fn upsert_chat(
        &self,
        session: &str,
        jid: &Jid,
        up: ChatUpsert,
    ) -> anyhow::Result<ChatRecord> {
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        let id = ensure_chat(&mut tx, session, jid).await?;
        let (mute_set, mute_val) = match up.muted_until {
            Some(v) => (1i64, v),
            None => (0, None),
        };
        let row = sqlx::query_as::<_, ChatRecord>(&format!(
            "UPDATE chats SET
                name = COALESCE($2, name),
                archived = COALESCE($3, archived),
                pinned = COALESCE($4, pinned),
                muted_until = CASE WHEN $5 = 1 THEN $6 ELSE muted_until END,
                unread_count = COALESCE($7, unread_count),
                last_message_at = CASE WHEN $8 IS NOT NULL AND $8 > last_message_at THEN $8 ELSE last_message_at END,
                updated_at = $9
             WHERE id = $1 RETURNING {CHAT_COLS}"
        ))
        .bind(id)
        .bind(up.name)
        .bind(up.archived)
        .bind(up.pinned)
        .bind(mute_set)
        .bind(mute_val)
        .bind(up.unread_count)
        .bind(up.last_message_at)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    /// One chat by any of its JIDs.
    pub async fn get_chat(&self, session: &str, jid: &Jid) -> anyhow::Result<Option<ChatRecord>> {
        let mut conn = self.pool.acquire().await?;
        Ok(fetch_chat(&mut conn, session, &jid.to_string()).await?)
    }

    /// A page of chats in display order: pinned first, then latest activity, then id.
    pub async fn list_chats(
        &self,
        session: &str,
        cursor: Option<&Cursor>,
        limit: Limit,
    ) -> anyhow::Result<(Vec<ChatRecord>, Option<Cursor>)> {
        let n = limit.get() as i64;
        // Without a cursor, start above every row.
        let (pinned, lma, id) = match cursor {
            Some(c) => (c.keys[0] != 0, c.keys[1], c.keys[2]),
            None => (true, i64::MAX, i64::MAX),
        };
        let sql = self.json_page_sql(
            &format!(
                "SELECT {CHAT_COLS} FROM chats WHERE session_id = $1 AND (pinned, last_message_at, id) < ($2, $3, $4)
                 ORDER BY pinned DESC, last_message_at DESC, id DESC LIMIT $5"
            ),
            &CHAT_FIELDS,
            "page.pinned DESC, page.last_message_at DESC, page.id DESC",
        );
        let text: String = sqlx::query_scalar(&sql)
            .bind(session)
            .bind(pinned)
            .bind(lma)
            .bind(id)
            .bind(n + 1)
            .fetch_one(&self.pool)
            .await?;
        let mut rows: Vec<ChatRecord> = super::parse_page(&text)?;
        let next = super::finish_page(&mut rows, n, |c| {
            Cursor::new('c', vec![c.pinned as i64, c.last_message_at, c.id])
        });
        Ok((rows, next))
    }

    /// Applies an API patch atomically; `None` when the chat is not stored.
    pub async fn patch_chat(
        &self,
        session: &str,
        jid: &Jid,
        p: ChatPatch,
    ) -> anyhow::Result<Option<ChatRecord>> {
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        let Some(id) = find_chat_id(&mut tx, session, &jid.to_string()).await? else {
            return Ok(None);
        };
        let (mute_set, mute_val) = match p.muted_until {
            Some(v) => (1i64, v),
            None => (0, None),
        };
        sqlx::query(
            "UPDATE chats SET archived = COALESCE($2, archived), pinned = COALESCE($3, pinned),
                muted_until = CASE WHEN $4 = 1 THEN $5 ELSE muted_until END, updated_at = $6
             WHERE id = $1",
        )
        .bind(id)
        .bind(p.archived)
        .bind(p.pinned)
        .bind(mute_set)
        .bind(mute_val)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        drop(_w);
        self.get_chat(session, jid).await
    }

    /// Sets the gateway's unread counter of a chat to zero. Idempotent.
    pub async fn mark_chat_read(
        &self,
        session: &str,
        jid: &Jid,
    ) -> anyhow::Result<Option<ChatRecord>> {
        {
            let _w = self.write_gate().await;
            let mut conn = self.pool.acquire().await?;
            let Some(id) = find_chat_id(&mut conn, session, &jid.to_string()).await? else {
                return Ok(None);
            };
            sqlx::query("UPDATE chats SET unread_count = 0, updated_at = $2 WHERE id = $1 AND unread_count <> 0")
                .bind(id)
                .bind(now_ms())
                .execute(&mut *conn)
                .await?;
        }
        self.get_chat(session, jid).await
    }

    /// Removes a chat and its messages from the stored copy only. True when it existed.
    pub async fn delete_chat(&self, session: &str, jid: &Jid) -> anyhow::Result<bool> {
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        let Some(id) = find_chat_id(&mut tx, session, &jid.to_string()).await? else {
            return Ok(false);
        };
        sqlx::query("DELETE FROM messages WHERE chat_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM chats WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }
}
