//! People ("found users"): identities keyed by LID, what each session has seen of them,
//! groups and their members, and the LID ↔ phone-number link that merges two views of one
//! person (and of one DM) into one.

use sqlx::{AnyConnection, FromRow};

use super::chats::{add_alias, find_chat_id};
use super::Store;
use crate::domain::{now_ms, Cursor, Jid, Limit};

/// Where a session has seen a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    Dm,
    Group,
    /// Known (e.g. a name from the address book) but not seen in a chat yet.
    None,
}

/// Which people a contacts page keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactSource {
    Dm,
    Group,
}

#[derive(Debug, Clone, Default)]
pub struct ContactFilter {
    pub source: Option<ContactSource>,
    pub group: Option<Jid>,
    /// Case-insensitive substring of the name or number.
    pub q: Option<String>,
}

#[derive(Debug, Clone, FromRow, serde::Deserialize)]
pub struct ContactRecord {
    pub id: i64,
    pub lid: Option<String>,
    pub phone: Option<String>,
    pub name: Option<String>,
    pub business_name: Option<String>,
    #[sqlx(try_from = "super::Flag")]
    #[serde(deserialize_with = "super::json_flag")]
    pub in_dm: bool,
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

fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// The identity row for a person's address, created when new.
pub(crate) async fn ensure_identity(conn: &mut AnyConnection, jid: &Jid) -> sqlx::Result<i64> {
    let (col, key) = if jid.is_lid() {
        ("lid", jid.to_string())
    } else {
        ("phone", jid.user().to_owned())
    };
    let select = format!("SELECT id FROM identities WHERE {col} = $1");
    if let Some(id) = sqlx::query_scalar::<_, i64>(&select)
        .bind(&key)
        .fetch_optional(&mut *conn)
        .await?
    {
        return Ok(id);
    }
    let search = if jid.is_phone() {
        key.clone()
    } else {
        String::new()
    };
    let inserted: Option<i64> = sqlx::query_scalar(&format!(
        "INSERT INTO identities ({col}, search, updated_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING id"
    ))
    .bind(&key)
    .bind(search)
    .bind(now_ms())
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(id) => Ok(id),
        None => sqlx::query_scalar(&select).bind(&key).fetch_one(conn).await,
    }
}

async fn refresh_identity_search(conn: &mut AnyConnection, id: i64) -> sqlx::Result<()> {
    let (push, business, phone): (Option<String>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT push_name, business_name, phone FROM identities WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *conn)
            .await?;
    let search = [push, business, phone]
        .into_iter()
        .flatten()
        .map(|s| lower(&s))
        .collect::<Vec<_>>()
        .join("\u{1f}");
    sqlx::query("UPDATE identities SET search = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(search)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

async fn set_identity_name(
    conn: &mut AnyConnection,
    id: i64,
    column: &str,
    name: &str,
) -> sqlx::Result<()> {
    let changed = sqlx::query(&format!(
        "UPDATE identities SET {column} = $2 WHERE id = $1 AND {column} IS DISTINCT FROM $2"
    ))
    .bind(id)
    .bind(name)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if changed > 0 {
        refresh_identity_search(conn, id).await?;
    }
    Ok(())
}

/// Notes that `session` has seen the person at `jid` (in a DM or a group), with the push name
/// the message carried, if any.
pub(crate) async fn sight_person(
    conn: &mut AnyConnection,
    session: &str,
    jid: &Jid,
    push_name: Option<&str>,
    how: Sighting,
) -> sqlx::Result<i64> {
    let id = ensure_identity(conn, jid).await?;
    if let Some(name) = push_name.filter(|n| !n.trim().is_empty()) {
        set_identity_name(conn, id, "push_name", name).await?;
    }
    sqlx::query(
        "INSERT INTO session_contacts (session_id, identity_id, in_dm, in_group) VALUES ($1, $2, $3, $4)
         ON CONFLICT (session_id, identity_id) DO UPDATE SET
            in_dm = (session_contacts.in_dm OR excluded.in_dm),
            in_group = (session_contacts.in_group OR excluded.in_group)",
    )
    .bind(session)
    .bind(id)
    .bind(how == Sighting::Dm)
    .bind(how == Sighting::Group)
    .execute(conn)
    .await?;
    Ok(id)
}

/// Records that `lid` and the phone JID `pn` are one person, merging two identity rows if
/// both exist. Returns the surviving identity id.
pub(crate) async fn link_identity(
    conn: &mut AnyConnection,
    lid: &Jid,
    pn: &Jid,
) -> sqlx::Result<i64> {
    let lid_s = lid.to_string();
    let digits = pn.user().to_owned();
    let by_lid: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, phone FROM identities WHERE lid = $1")
            .bind(&lid_s)
            .fetch_optional(&mut *conn)
            .await?;
    let by_phone: Option<(i64, Option<String>)> =
        sqlx::query_as("SELECT id, lid FROM identities WHERE phone = $1")
            .bind(&digits)
            .fetch_optional(&mut *conn)
            .await?;
    let now = now_ms();
    let id = match (by_lid, by_phone) {
        (None, None) => {
            sqlx::query_scalar("INSERT INTO identities (lid, phone, search, updated_at) VALUES ($1, $2, $3, $4) RETURNING id")
                .bind(&lid_s)
                .bind(&digits)
                .bind(&digits)
                .bind(now)
                .fetch_one(&mut *conn)
                .await?
        }
        (Some((a, phone)), None) => {
            if phone.as_deref() != Some(digits.as_str()) {
                sqlx::query("UPDATE identities SET phone = $2 WHERE id = $1").bind(a).bind(&digits).execute(&mut *conn).await?;
            }
            a
        }
        (None, Some((b, _))) => {
            sqlx::query("UPDATE identities SET lid = $2 WHERE id = $1").bind(b).bind(&lid_s).execute(&mut *conn).await?;
            b
        }
        (Some((a, _)), Some((b, _))) if a == b => return Ok(a),
        (Some((a, _)), Some((b, _))) => {
            merge_identity(conn, a, b, &digits).await?;
            a
        }
    };
    refresh_identity_search(conn, id).await?;
    Ok(id)
}

/// Folds identity `b` (known by phone) into `a` (known by LID).
async fn merge_identity(
    conn: &mut AnyConnection,
    a: i64,
    b: i64,
    digits: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE identities SET
            push_name = COALESCE(push_name, (SELECT push_name FROM identities WHERE id = $2)),
            business_name = COALESCE(business_name, (SELECT business_name FROM identities WHERE id = $2))
         WHERE id = $1",
    )
    .bind(a)
    .bind(b)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE identities SET phone = NULL WHERE id = $1")
        .bind(b)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE identities SET phone = $2 WHERE id = $1")
        .bind(a)
        .bind(digits)
        .execute(&mut *conn)
        .await?;

    // Sightings: where a session saw both, keep one row with the union of what it saw.
    let rows: Vec<(i64, String, Option<String>, super::Flag, super::Flag)> =
        sqlx::query_as("SELECT id, session_id, saved_name, in_dm, in_group FROM session_contacts WHERE identity_id = $1")
            .bind(b)
            .fetch_all(&mut *conn)
            .await?;
    for (row_id, session, saved, in_dm, in_group) in rows {
        let merged = sqlx::query(
            "UPDATE session_contacts SET in_dm = (in_dm OR $3), in_group = (in_group OR $4),
                saved_name = COALESCE(saved_name, $5), search = CASE WHEN saved_name IS NULL THEN $6 ELSE search END
             WHERE session_id = $1 AND identity_id = $2",
        )
        .bind(&session)
        .bind(a)
        .bind(in_dm.0)
        .bind(in_group.0)
        .bind(&saved)
        .bind(saved.as_deref().map(lower).unwrap_or_default())
        .execute(&mut *conn)
        .await?
        .rows_affected();
        if merged > 0 {
            sqlx::query("DELETE FROM session_contacts WHERE id = $1")
                .bind(row_id)
                .execute(&mut *conn)
                .await?;
        } else {
            sqlx::query("UPDATE session_contacts SET identity_id = $2 WHERE id = $1")
                .bind(row_id)
                .bind(a)
                .execute(&mut *conn)
                .await?;
        }
    }
    sqlx::query("DELETE FROM group_members WHERE identity_id = $1 AND group_id IN (SELECT group_id FROM group_members WHERE identity_id = $2)")
        .bind(b)
        .bind(a)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE group_members SET identity_id = $2 WHERE identity_id = $1")
        .bind(b)
        .bind(a)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM identities WHERE id = $1")
        .bind(b)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Folds the chat `from` into `into`: messages (dropping ones `into` already has), unread
/// counts, latest activity, flags, aliases.
async fn merge_chat(
    conn: &mut AnyConnection,
    session: &str,
    into: i64,
    from: i64,
) -> sqlx::Result<()> {
    // A message both chats hold was counted as unread in each; count it once.
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
    type Flags = (
        Option<String>,
        super::Flag,
        super::Flag,
        Option<i64>,
        i64,
        i64,
        String,
    );
    let (name, archived, pinned, muted, unread, lma, old_jid): Flags = sqlx::query_as(
        "SELECT name, archived, pinned, muted_until, unread_count, last_message_at, jid FROM chats WHERE id = $1",
    )
    .bind(from)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE chats SET name = COALESCE(name, $2), archived = (archived OR $3), pinned = (pinned OR $4),
            muted_until = COALESCE(muted_until, $5), unread_count = unread_count + $6,
            last_message_at = CASE WHEN $7 > last_message_at THEN $7 ELSE last_message_at END, updated_at = $8
         WHERE id = $1",
    )
    .bind(into)
    .bind(name)
    .bind(archived.0)
    .bind(pinned.0)
    .bind(muted)
    .bind((unread - dup_incoming).max(0))
    .bind(lma)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE chat_aliases SET chat_id = $1 WHERE chat_id = $2")
        .bind(into)
        .bind(from)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM chats WHERE id = $1")
        .bind(from)
        .execute(&mut *conn)
        .await?;
    add_alias(conn, session, &old_jid, into).await?;
    Ok(())
}

async fn delete_member(
    conn: &mut AnyConnection,
    group_id: i64,
    identity_id: i64,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND identity_id = $2")
        .bind(group_id)
        .bind(identity_id)
        .execute(conn)
        .await?;
    Ok(())
}

async fn ensure_group(
    conn: &mut AnyConnection,
    session: &str,
    group: &Jid,
    subject: Option<&str>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO groups (session_id, jid, subject, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (session_id, jid) DO UPDATE SET subject = COALESCE(excluded.subject, groups.subject), updated_at = excluded.updated_at
         RETURNING id",
    )
    .bind(session)
    .bind(group.to_string())
    .bind(subject)
    .bind(now_ms())
    .fetch_one(conn)
    .await
}

/// Links a LID and a phone JID: the identities globally, the two DMs in this session.
async fn link_in_session(
    conn: &mut AnyConnection,
    session: &str,
    lid: &Jid,
    pn: &Jid,
) -> sqlx::Result<()> {
    link_identity(conn, lid, pn).await?;
    let (lid_s, pn_s) = (lid.to_string(), pn.to_string());
    let by_pn = find_chat_id(conn, session, &pn_s).await?;
    let by_lid = find_chat_id(conn, session, &lid_s).await?;
    match (by_pn, by_lid) {
        (None, None) => {}
        (Some(p), None) => add_alias(conn, session, &lid_s, p).await?,
        (None, Some(l)) => {
            sqlx::query("UPDATE chats SET jid = $2 WHERE id = $1 AND jid = $3")
                .bind(l)
                .bind(&pn_s)
                .bind(&lid_s)
                .execute(&mut *conn)
                .await?;
            sqlx::query("DELETE FROM chat_aliases WHERE session_id = $1 AND jid = $2")
                .bind(session)
                .bind(&pn_s)
                .execute(&mut *conn)
                .await?;
            add_alias(conn, session, &lid_s, l).await?;
        }
        (Some(p), Some(l)) if p == l => add_alias(conn, session, &lid_s, p).await?,
        (Some(p), Some(l)) => merge_chat(conn, session, p, l).await?,
    }
    Ok(())
}

impl Store {
    /// Records that `lid` and `pn` (a phone JID) are the same person: merges their identities
    /// and, in this session, their two DMs into the phone-number chat (the LID stays as alias).
    pub async fn link_lid_pn(&self, session: &str, lid: &Jid, pn: &Jid) -> anyhow::Result<()> {
        self.link_lid_pns(session, &[(lid.clone(), pn.clone())])
            .await
    }

    /// [`Store::link_lid_pn`] for many pairs in one transaction (history sync's mapping list).
    pub async fn link_lid_pns(&self, session: &str, pairs: &[(Jid, Jid)]) -> anyhow::Result<()> {
        for (lid, pn) in pairs {
            anyhow::ensure!(
                lid.is_lid() && pn.is_phone(),
                "link_lid_pn needs a @lid and a @s.whatsapp.net JID, got {lid} and {pn}"
            );
        }
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        for (lid, pn) in pairs {
            link_in_session(&mut tx, session, lid, pn).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records many push names in one transaction.
    pub async fn record_push_names(&self, names: &[(Jid, String)]) -> anyhow::Result<()> {
        for (jid, _) in names {
            anyhow::ensure!(jid.is_person(), "{jid} is not a person's address");
        }
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        for (jid, name) in names {
            let id = ensure_identity(&mut tx, jid).await?;
            set_identity_name(&mut tx, id, "push_name", name).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a person's push name (the name they set for themselves).
    pub async fn record_push_name(&self, jid: &Jid, name: &str) -> anyhow::Result<()> {
        self.record_identity_name(jid, "push_name", name).await
    }

    /// Records a WhatsApp Business account's verified name.
    pub async fn record_business_name(&self, jid: &Jid, name: &str) -> anyhow::Result<()> {
        self.record_identity_name(jid, "business_name", name).await
    }

    async fn record_identity_name(
        &self,
        jid: &Jid,
        column: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(jid.is_person(), "{jid} is not a person's address");
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        let id = ensure_identity(&mut tx, jid).await?;
        set_identity_name(&mut tx, id, column, name).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records the name this session's phone has saved for a person (its address book).
    pub async fn record_saved_name(
        &self,
        session: &str,
        jid: &Jid,
        name: Option<&str>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(jid.is_person(), "{jid} is not a person's address");
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        let id = sight_person(&mut tx, session, jid, None, Sighting::None).await?;
        sqlx::query("UPDATE session_contacts SET saved_name = $3, search = $4 WHERE session_id = $1 AND identity_id = $2")
            .bind(session)
            .bind(id)
            .bind(name)
            .bind(name.map(lower).unwrap_or_default())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a group (and its subject when known).
    pub async fn record_group(
        &self,
        session: &str,
        group: &Jid,
        subject: Option<&str>,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(group.is_group(), "{group} is not a group JID");
        let _w = self.write_gate().await;
        let mut conn = self.pool.acquire().await?;
        ensure_group(&mut conn, session, group, subject).await?;
        Ok(())
    }

    /// Records members of a group; with `replace`, members not listed are removed.
    pub async fn record_group_members(
        &self,
        session: &str,
        group: &Jid,
        members: &[GroupMember],
        replace: bool,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(group.is_group(), "{group} is not a group JID");
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        let gid = ensure_group(&mut tx, session, group, None).await?;
        let mut kept = Vec::with_capacity(members.len());
        for m in members {
            let id = match &m.alt {
                Some(alt) if m.jid.is_lid() && alt.is_phone() => {
                    link_identity(&mut tx, &m.jid, alt).await?
                }
                Some(alt) if m.jid.is_phone() && alt.is_lid() => {
                    link_identity(&mut tx, alt, &m.jid).await?
                }
                _ => ensure_identity(&mut tx, &m.jid).await?,
            };
            // Linked above, so either address resolves to the same identity.
            sight_person(&mut tx, session, &m.jid, None, Sighting::Group).await?;
            sqlx::query(
                "INSERT INTO group_members (group_id, identity_id, role) VALUES ($1, $2, $3)
                 ON CONFLICT (group_id, identity_id) DO UPDATE SET role = excluded.role",
            )
            .bind(gid)
            .bind(id)
            .bind(&m.role)
            .execute(&mut *tx)
            .await?;
            kept.push(id);
        }
        if replace {
            let current: Vec<i64> =
                sqlx::query_scalar("SELECT identity_id FROM group_members WHERE group_id = $1")
                    .bind(gid)
                    .fetch_all(&mut *tx)
                    .await?;
            for id in current.into_iter().filter(|id| !kept.contains(id)) {
                delete_member(&mut tx, gid, id).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes members from a group (they left or were removed).
    pub async fn remove_group_members(
        &self,
        session: &str,
        group: &Jid,
        members: &[Jid],
    ) -> anyhow::Result<()> {
        let _w = self.write_gate().await;
        let mut tx = self.pool.begin().await?;
        let gid: Option<i64> =
            sqlx::query_scalar("SELECT id FROM groups WHERE session_id = $1 AND jid = $2")
                .bind(session)
                .bind(group.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(gid) = gid {
            for m in members {
                let id = ensure_identity(&mut tx, m).await?;
                delete_member(&mut tx, gid, id).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// A page of the people this session has seen, oldest sighting first.
    pub async fn list_contacts(
        &self,
        session: &str,
        filter: &ContactFilter,
        cursor: Option<&Cursor>,
        limit: Limit,
    ) -> anyhow::Result<(Vec<ContactRecord>, Option<Cursor>)> {
        let n = limit.get() as i64;
        let mut group_id = None;
        if let Some(g) = &filter.group {
            group_id = sqlx::query_scalar::<_, i64>(
                "SELECT id FROM groups WHERE session_id = $1 AND jid = $2",
            )
            .bind(session)
            .bind(g.to_string())
            .fetch_optional(&self.pool)
            .await?;
            if group_id.is_none() {
                return Ok((Vec::new(), None));
            }
        }
        let mut sql = String::from(
            "SELECT sc.id, i.lid, i.phone, COALESCE(sc.saved_name, i.push_name) AS name, i.business_name, sc.in_dm
             FROM session_contacts sc JOIN identities i ON i.id = sc.identity_id
             WHERE sc.session_id = $1 AND sc.id > $2",
        );
        sql.push_str(match filter.source {
            Some(ContactSource::Dm) => " AND sc.in_dm",
            Some(ContactSource::Group) => " AND sc.in_group",
            None => " AND (sc.in_dm OR sc.in_group)",
        });
        let mut next_param = 4;
        if group_id.is_some() {
            sql.push_str(&format!(" AND sc.identity_id IN (SELECT identity_id FROM group_members WHERE group_id = ${next_param})"));
            next_param += 1;
        }
        let pattern = filter.q.as_deref().map(|q| super::like_contains(&lower(q)));
        if pattern.is_some() {
            sql.push_str(&format!(
                " AND (sc.search LIKE ${next_param} ESCAPE '\\' OR i.search LIKE ${next_param} ESCAPE '\\')"
            ));
        }
        sql.push_str(" ORDER BY sc.id LIMIT $3");
        let sql = self.json_page_sql(
            &sql,
            &["id", "lid", "phone", "name", "business_name", "in_dm"],
            "page.id",
        );
        let mut q = sqlx::query_scalar::<_, String>(&sql)
            .bind(session)
            .bind(cursor.map(|c| c.keys[0]).unwrap_or(0))
            .bind(n + 1);
        if let Some(g) = group_id {
            q = q.bind(g);
        }
        if let Some(p) = pattern {
            q = q.bind(p);
        }
        let mut rows: Vec<ContactRecord> = super::parse_page(&q.fetch_one(&self.pool).await?)?;
        let next = super::finish_page(&mut rows, n, |c| Cursor::new('p', vec![c.id]));
        Ok((rows, next))
    }
}
