//! People as one session knows them: contacts keyed by LID and/or phone number within the
//! session, the LID↔phone link that makes one person of two addresses, and the direct chat
//! that belongs to each person. Every function here runs inside a transaction that holds the
//! session's lock, so the read-then-write steps cannot interleave with another writer of the
//! same session; the result does not depend on which address arrived first.

use sqlx::FromRow;

use super::Conn;
use crate::domain::{now_ms, Jid};
use crate::store::outbox::Touched;

#[derive(Debug, Clone, FromRow)]
pub struct Row {
    pub id: i64,
    pub lid: Option<String>,
    pub phone: Option<String>,
    pub push_name: Option<String>,
    pub business_name: Option<String>,
    pub saved_name: Option<String>,
    pub in_group: bool,
    pub updated_at: i64,
}

/// saved, push and business name, and the number, as an update returns them.
type Names = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

const ROW: &str = "id, lid, phone, push_name, business_name, saved_name, in_group, updated_at";

/// What `q=` searches: the name shown, the business name and the number, lower-cased.
fn search_text(
    saved: Option<&str>,
    push: Option<&str>,
    business: Option<&str>,
    phone: Option<&str>,
) -> String {
    let shown = saved.or(push).unwrap_or("");
    format!(
        "{}\u{1f}{}\u{1f}{}",
        shown.to_lowercase(),
        business.unwrap_or("").to_lowercase(),
        phone.unwrap_or("")
    )
}

pub async fn by_id(conn: &mut Conn, id: i64) -> sqlx::Result<Row> {
    sqlx::query_as::<_, Row>(&format!("SELECT {ROW} FROM contacts WHERE id = $1"))
        .bind(id)
        .fetch_one(conn)
        .await
}

async fn find(conn: &mut Conn, s: &str, jid: &Jid) -> sqlx::Result<Option<Row>> {
    let (col, key) = if jid.is_lid() {
        ("lid", jid.to_string())
    } else {
        ("phone", jid.user().to_owned())
    };
    sqlx::query_as::<_, Row>(&format!(
        "SELECT {ROW} FROM contacts WHERE session_id = $1 AND {col} = $2"
    ))
    .bind(s)
    .bind(key)
    .fetch_optional(conn)
    .await
}

async fn insert(
    conn: &mut Conn,
    s: &str,
    lid: Option<&str>,
    phone: Option<&str>,
) -> sqlx::Result<i64> {
    let now = now_ms();
    sqlx::query_scalar(
        "INSERT INTO contacts (session_id, lid, phone, search, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
    )
    .bind(s)
    .bind(lid)
    .bind(phone)
    .bind(search_text(None, None, None, phone))
    .bind(now)
    .fetch_one(conn)
    .await
}

async fn refresh_search(conn: &mut Conn, id: i64) -> sqlx::Result<()> {
    let r = by_id(&mut *conn, id).await?;
    let text = search_text(
        r.saved_name.as_deref(),
        r.push_name.as_deref(),
        r.business_name.as_deref(),
        r.phone.as_deref(),
    );
    sqlx::query("UPDATE contacts SET search = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(text)
        .bind(now_ms())
        .execute(conn)
        .await?;
    Ok(())
}

/// The contact for one address (a LID or a phone JID), created when new.
pub async fn person(conn: &mut Conn, s: &str, jid: &Jid, t: &mut Touched) -> sqlx::Result<i64> {
    if let Some(r) = find(&mut *conn, s, jid).await? {
        return Ok(r.id);
    }
    let id = if jid.is_lid() {
        insert(conn, s, Some(&jid.to_string()), None).await?
    } else {
        insert(conn, s, None, Some(jid.user())).await?
    };
    t.contacts.insert(id);
    Ok(id)
}

/// The contact for an address and, when WhatsApp gave it, the person's other address.
pub async fn person_with_alt(
    conn: &mut Conn,
    s: &str,
    jid: &Jid,
    alt: Option<&Jid>,
    t: &mut Touched,
) -> sqlx::Result<i64> {
    match alt {
        Some(a) if jid.is_lid() && a.is_phone() => link(conn, s, jid, a, t).await,
        Some(a) if jid.is_phone() && a.is_lid() => link(conn, s, a, jid, t).await,
        _ => person(conn, s, jid, t).await,
    }
}

/// Records that `lid` and the phone JID `pn` are one person in this session: one contact
/// holds both and that person's direct chats become one, kept under the phone JID with the LID
/// as its alias. A number WhatsApp has given to a new LID leaves its previous holder (who keeps
/// their LID and their chat, now under the LID). Returns the contact.
pub async fn link(
    conn: &mut Conn,
    s: &str,
    lid: &Jid,
    pn: &Jid,
    t: &mut Touched,
) -> sqlx::Result<i64> {
    let (l, p) = (lid.to_string(), pn.user().to_owned());
    let rows = sqlx::query_as::<_, Row>(&format!(
        "SELECT {ROW} FROM contacts WHERE session_id = $1 AND lid = $2
         UNION ALL SELECT {ROW} FROM contacts WHERE session_id = $1 AND phone = $3"
    ))
    .bind(s)
    .bind(&l)
    .bind(&p)
    .fetch_all(&mut *conn)
    .await?;
    let by_lid = rows.iter().find(|r| r.lid.as_deref() == Some(&l)).cloned();
    let mut by_phone = rows
        .iter()
        .find(|r| r.phone.as_deref() == Some(&p))
        .cloned();
    if let (Some(a), Some(b)) = (&by_lid, &by_phone) {
        if a.id == b.id {
            return Ok(a.id);
        }
    }
    if let Some(holder) = by_phone.clone() {
        if holder.lid.as_deref().is_some_and(|x| x != l) {
            // The number now belongs to another account: the previous holder loses it.
            sqlx::query("UPDATE contacts SET phone = NULL WHERE id = $1")
                .bind(holder.id)
                .execute(&mut *conn)
                .await?;
            refresh_search(conn, holder.id).await?;
            fix_dm(conn, s, holder.id, t).await?;
            t.contacts.insert(holder.id);
            by_phone = None;
        }
    }
    let id = match (by_lid, by_phone) {
        (None, None) => {
            let id = insert(&mut *conn, s, Some(&l), Some(&p)).await?;
            t.contacts.insert(id);
            fix_dm(conn, s, id, t).await?;
            return Ok(id);
        }
        (Some(a), None) => {
            sqlx::query("UPDATE contacts SET phone = $2 WHERE id = $1")
                .bind(a.id)
                .bind(&p)
                .execute(&mut *conn)
                .await?;
            a.id
        }
        (None, Some(b)) => {
            sqlx::query("UPDATE contacts SET lid = $2 WHERE id = $1")
                .bind(b.id)
                .bind(&l)
                .execute(&mut *conn)
                .await?;
            b.id
        }
        (Some(a), Some(b)) => merge(conn, a, b, &l, &p).await?,
    };
    refresh_search(conn, id).await?;
    t.contacts.insert(id);
    fix_dm(conn, s, id, t).await?;
    Ok(id)
}

/// Folds two contacts of one person into the older one (the lower id, i.e. the first sighting).
async fn merge(conn: &mut Conn, a: Row, b: Row, lid: &str, phone: &str) -> sqlx::Result<i64> {
    let (keep, drop) = if a.id < b.id { (a, b) } else { (b, a) };
    let (newer, older) = if drop.updated_at > keep.updated_at {
        (&drop, &keep)
    } else {
        (&keep, &drop)
    };
    let push = newer.push_name.clone().or_else(|| older.push_name.clone());
    let business = newer
        .business_name
        .clone()
        .or_else(|| older.business_name.clone());
    let saved = newer
        .saved_name
        .clone()
        .or_else(|| older.saved_name.clone());
    // The dropped contact's chat is found again by its JID when the DM is rebuilt.
    sqlx::query("UPDATE chats SET contact_id = NULL WHERE contact_id = $1")
        .bind(drop.id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "DELETE FROM group_members WHERE contact_id = $1 AND group_id IN (SELECT group_id FROM group_members WHERE contact_id = $2)",
    )
    .bind(drop.id)
    .bind(keep.id)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE group_members SET contact_id = $2 WHERE contact_id = $1")
        .bind(drop.id)
        .bind(keep.id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM contacts WHERE id = $1")
        .bind(drop.id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "UPDATE contacts SET lid = $2, phone = $3, push_name = $4, business_name = $5, saved_name = $6, in_group = $7 WHERE id = $1",
    )
    .bind(keep.id)
    .bind(lid)
    .bind(phone)
    .bind(push)
    .bind(business)
    .bind(saved)
    .bind(keep.in_group || drop.in_group)
    .execute(&mut *conn)
    .await?;
    Ok(keep.id)
}

/// Makes a contact's direct chat exactly one chat, under the best address this session knows
/// (the phone JID, else the LID), with the other address as its only alias; merges chats that
/// were kept apart under each address.
pub async fn fix_dm(conn: &mut Conn, s: &str, contact: i64, t: &mut Touched) -> sqlx::Result<()> {
    let r = by_id(&mut *conn, contact).await?;
    let pj = r.phone.as_deref().map(|p| Jid::phone(p).to_string());
    let lj = r.lid.clone();
    // The contact's chat, and chats or aliases under either address that belong to nobody else;
    // each lookup is one unique-index probe.
    let mut ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM chats WHERE contact_id = $1")
        .bind(contact)
        .fetch_all(&mut *conn)
        .await?;
    for addr in pj.iter().chain(lj.iter()) {
        let found: Vec<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT id, contact_id FROM chats WHERE session_id = $1 AND jid = $2
             UNION ALL
             SELECT c.id, c.contact_id FROM chat_aliases a JOIN chats c ON c.id = a.chat_id
             WHERE a.session_id = $1 AND a.jid = $2",
        )
        .bind(s)
        .bind(addr)
        .fetch_all(&mut *conn)
        .await?;
        ids.extend(
            found
                .into_iter()
                .filter(|(_, owner)| owner.is_none_or(|o| o == contact))
                .map(|(id, _)| id),
        );
    }
    ids.sort_unstable();
    ids.dedup();
    let Some((&keep, rest)) = ids.split_first() else {
        sqlx::query("UPDATE contacts SET in_dm = $2 WHERE id = $1 AND in_dm")
            .bind(contact)
            .bind(false)
            .execute(&mut *conn)
            .await?;
        return Ok(());
    };
    for &other in rest {
        super::chats::merge_chat(conn, keep, other).await?;
        t.chats.remove(&other);
    }
    let target = pj.clone().or(lj.clone()).expect("a contact has an address");
    sqlx::query("DELETE FROM chat_aliases WHERE chat_id = $1")
        .bind(keep)
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE chats SET jid = $2, contact_id = $3, updated_at = $4 WHERE id = $1")
        .bind(keep)
        .bind(&target)
        .bind(contact)
        .bind(now_ms())
        .execute(&mut *conn)
        .await?;
    let alias = if pj.is_some() { lj } else { None };
    if let Some(a) = &alias {
        sqlx::query(
            "INSERT INTO chat_aliases (session_id, jid, chat_id) VALUES ($1, $2, $3)
             ON CONFLICT (session_id, jid) DO UPDATE SET chat_id = excluded.chat_id",
        )
        .bind(s)
        .bind(a)
        .bind(keep)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("UPDATE chats SET aliases = $2 WHERE id = $1")
        .bind(keep)
        .bind(alias.unwrap_or_default())
        .execute(&mut *conn)
        .await?;
    sqlx::query("UPDATE contacts SET in_dm = $2 WHERE id = $1")
        .bind(contact)
        .bind(true)
        .execute(&mut *conn)
        .await?;
    t.chats.insert(keep);
    t.contacts.insert(contact);
    Ok(())
}

/// Changes names WhatsApp reported for a contact; `saved: Some(None)` clears the address-book
/// name. Only real changes mark the contact touched.
pub async fn set_names(
    conn: &mut Conn,
    id: i64,
    push: Option<&str>,
    business: Option<&str>,
    saved: Option<Option<&str>>,
    t: &mut Touched,
) -> sqlx::Result<()> {
    let push = push.map(str::trim).filter(|n| !n.is_empty());
    let business = business.map(str::trim).filter(|n| !n.is_empty());
    if push.is_none() && business.is_none() && saved.is_none() {
        return Ok(());
    }
    let changed: Option<Names> = sqlx::query_as(
        "UPDATE contacts SET push_name = COALESCE($2, push_name), business_name = COALESCE($3, business_name),
            saved_name = CASE WHEN $4 THEN $5 ELSE saved_name END
         WHERE id = $1 AND (push_name IS DISTINCT FROM COALESCE($2, push_name)
            OR business_name IS DISTINCT FROM COALESCE($3, business_name)
            OR ($4 AND saved_name IS DISTINCT FROM $5))
         RETURNING saved_name, push_name, business_name, phone",
    )
    .bind(id)
    .bind(push)
    .bind(business)
    .bind(saved.is_some())
    .bind(saved.flatten())
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((saved, push, business, phone)) = changed {
        let text = search_text(
            saved.as_deref(),
            push.as_deref(),
            business.as_deref(),
            phone.as_deref(),
        );
        sqlx::query("UPDATE contacts SET search = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(text)
            .bind(now_ms())
            .execute(&mut *conn)
            .await?;
        t.contacts.insert(id);
        // A direct chat without a name of its own shows the contact's name: it changed too.
        let dm: Option<i64> =
            sqlx::query_scalar("SELECT id FROM chats WHERE contact_id = $1 AND name IS NULL")
                .bind(id)
                .fetch_optional(conn)
                .await?;
        t.chats.extend(dm);
    }
    Ok(())
}

/// Notes that the session has seen the contact in a group.
pub async fn mark_in_group(conn: &mut Conn, id: i64, t: &mut Touched) -> sqlx::Result<()> {
    let changed = sqlx::query("UPDATE contacts SET in_group = $2 WHERE id = $1 AND in_group = $3")
        .bind(id)
        .bind(true)
        .bind(false)
        .execute(conn)
        .await?
        .rows_affected();
    if changed > 0 {
        t.contacts.insert(id);
    }
    Ok(())
}

/// The group's row, created when new; `subject` replaces the stored one when given.
pub async fn ensure_group(
    conn: &mut Conn,
    s: &str,
    group: &Jid,
    subject: Option<&str>,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO groups (session_id, jid, subject, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (session_id, jid) DO UPDATE SET subject = COALESCE(excluded.subject, groups.subject), updated_at = excluded.updated_at
         RETURNING id",
    )
    .bind(s)
    .bind(group.to_string())
    .bind(subject)
    .bind(now_ms())
    .fetch_one(conn)
    .await
}

pub async fn find_group(conn: &mut Conn, s: &str, group: &Jid) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar("SELECT id FROM groups WHERE session_id = $1 AND jid = $2")
        .bind(s)
        .bind(group.to_string())
        .fetch_optional(conn)
        .await
}

pub async fn add_member(conn: &mut Conn, group: i64, contact: i64, role: &str) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO group_members (group_id, contact_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (group_id, contact_id) DO UPDATE SET role = excluded.role",
    )
    .bind(group)
    .bind(contact)
    .bind(role)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remove_member(conn: &mut Conn, group: i64, contact: i64) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND contact_id = $2")
        .bind(group)
        .bind(contact)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn members(conn: &mut Conn, group: i64) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT contact_id FROM group_members WHERE group_id = $1")
        .bind(group)
        .fetch_all(conn)
        .await
}

/// One contact as the API shows it.
pub async fn record(conn: &mut Conn, id: i64) -> sqlx::Result<Option<crate::store::ContactRecord>> {
    sqlx::query_as(
        "SELECT id, lid, phone, COALESCE(saved_name, push_name) AS name, business_name, in_dm, in_group FROM contacts WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// A page of the people this session has seen, in the order it first saw them.
pub async fn list(
    pool: &super::Pool,
    s: &str,
    filter: &crate::store::ContactFilter,
    after: i64,
    n: i64,
) -> sqlx::Result<Vec<crate::store::ContactRecord>> {
    use crate::store::ContactSource;
    let mut conn = pool.acquire().await?;
    let mut group_id = None;
    if let Some(g) = &filter.group {
        group_id = find_group(&mut conn, s, g).await?;
        if group_id.is_none() {
            return Ok(Vec::new());
        }
    }
    let mut sql = String::from(
        "SELECT id, lid, phone, COALESCE(saved_name, push_name) AS name, business_name, in_dm, in_group
         FROM contacts WHERE session_id = $1 AND id > $2",
    );
    sql.push_str(match filter.source {
        Some(ContactSource::Dm) => " AND in_dm",
        Some(ContactSource::Group) => " AND in_group",
        None => " AND (in_dm OR in_group)",
    });
    let mut next = 4;
    if group_id.is_some() {
        sql.push_str(&format!(
            " AND id IN (SELECT contact_id FROM group_members WHERE group_id = ${next})"
        ));
        next += 1;
    }
    let pattern = filter
        .q
        .as_deref()
        .map(|q| crate::store::like_contains(&q.to_lowercase()));
    if pattern.is_some() {
        sql.push_str(&format!(" AND search LIKE ${next} ESCAPE '\\'"));
    }
    sql.push_str(" ORDER BY id LIMIT $3");
    let rows: Vec<crate::store::ContactRecord> = super::fetch_page!(
        &mut *conn,
        sql,
        &[
            "id",
            "lid",
            "phone",
            "name",
            "business_name",
            "in_dm",
            "in_group"
        ],
        "page.id",
        |q| {
            let mut q = q.bind(s).bind(after).bind(n + 1);
            if let Some(g) = group_id {
                q = q.bind(g);
            }
            if let Some(p) = &pattern {
                q = q.bind(p.clone());
            }
            q
        }
    );
    Ok(rows)
}
