//! Sessions: one attached WhatsApp number each, owned by one organization.

use super::{Conn, Pool};
use crate::domain::now_ms;
use crate::store::outbox::{kind, Outbox};
use crate::store::records::{NewSession, SessionPatch, SessionRecord, SessionStatus};
use crate::store::wire::Session;

const COLS: &str = "id, org_id, label, status, status_reason, phone_number, wa_jid, wa_lid, push_name, auto_read, presence_typing, rate_per_min, rate_per_hour, download_media, last_connected_at, created_at, updated_at";

/// The organization owning a session, or `None` when it no longer exists.
pub async fn org_of(conn: &mut Conn, session: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT org_id FROM sessions WHERE id = $1")
        .bind(session)
        .fetch_optional(conn)
        .await
}

/// The organization of each of `sessions` that exists.
pub async fn orgs_of(
    conn: &mut Conn,
    sessions: &[&str],
) -> sqlx::Result<std::collections::HashMap<String, String>> {
    let mut orgs = std::collections::HashMap::with_capacity(sessions.len());
    for chunk in sessions.chunks(500) {
        let list: Vec<String> = (1..=chunk.len()).map(super::param).collect();
        let sql = format!(
            "SELECT id, org_id FROM sessions WHERE id IN ({})",
            list.join(", ")
        );
        let mut q = sqlx::query_as::<_, (String, String)>(&sql);
        for s in chunk {
            q = q.bind(*s);
        }
        orgs.extend(q.fetch_all(&mut *conn).await?);
    }
    Ok(orgs)
}

pub async fn create(pool: &Pool, id: &str, new: &NewSession) -> sqlx::Result<SessionRecord> {
    let now = now_ms();
    let mut tx = super::begin(pool).await?;
    let row = sqlx::query_as::<_, SessionRecord>(&format!(
        "INSERT INTO sessions (id, org_id, label, status, auto_read, presence_typing, rate_per_min, rate_per_hour, created_at, updated_at, download_media)
         VALUES ($1, $2, $3, 'stopped', $4, $5, $6, $7, $8, $8, $9) RETURNING {COLS}"
    ))
    .bind(id)
    .bind(&new.org_id)
    .bind(&new.label)
    .bind(new.auto_read)
    .bind(new.presence_typing)
    .bind(new.rate_per_min)
    .bind(new.rate_per_hour)
    .bind(now)
    .bind(new.download_media)
    .fetch_one(&mut *tx)
    .await?;
    let mut out = Outbox::new(&row.org_id);
    out.push(Some(id), kind::SESSION_CREATED, &Session::from(row.clone()));
    super::events::flush(&mut tx, &out).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn get(pool: &Pool, org: &str, id: &str) -> sqlx::Result<Option<SessionRecord>> {
    sqlx::query_as::<_, SessionRecord>(&format!(
        "SELECT {COLS} FROM sessions WHERE id = $1 AND org_id = $2"
    ))
    .bind(id)
    .bind(org)
    .fetch_optional(pool)
    .await
}

pub async fn get_any(pool: &Pool, id: &str) -> sqlx::Result<Option<SessionRecord>> {
    sqlx::query_as::<_, SessionRecord>(&format!("SELECT {COLS} FROM sessions WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn list(pool: &Pool, org: &str) -> sqlx::Result<Vec<SessionRecord>> {
    sqlx::query_as::<_, SessionRecord>(&format!(
        "SELECT {COLS} FROM sessions WHERE org_id = $1 ORDER BY id"
    ))
    .bind(org)
    .fetch_all(pool)
    .await
}

pub async fn list_active(pool: &Pool) -> sqlx::Result<Vec<SessionRecord>> {
    sqlx::query_as::<_, SessionRecord>(&format!(
        "SELECT {COLS} FROM sessions WHERE status IN ('starting', 'scan_qr_code', 'working') ORDER BY id"
    ))
    .fetch_all(pool)
    .await
}

pub async fn update(
    pool: &Pool,
    org: &str,
    id: &str,
    p: &SessionPatch,
) -> sqlx::Result<Option<SessionRecord>> {
    let mut tx = super::begin(pool).await?;
    super::lock_session(&mut tx, id).await?;
    let row = sqlx::query_as::<_, SessionRecord>(&format!(
        "UPDATE sessions SET
            label = CASE WHEN $3 THEN $4 ELSE label END,
            auto_read = COALESCE($5, auto_read),
            presence_typing = COALESCE($6, presence_typing),
            rate_per_min = COALESCE($7, rate_per_min),
            rate_per_hour = COALESCE($8, rate_per_hour),
            download_media = COALESCE($10, download_media),
            updated_at = $9
         WHERE id = $1 AND org_id = $2 RETURNING {COLS}"
    ))
    .bind(id)
    .bind(org)
    .bind(p.label.is_some())
    .bind(p.label.clone().flatten())
    .bind(p.auto_read)
    .bind(p.presence_typing)
    .bind(p.rate_per_min)
    .bind(p.rate_per_hour)
    .bind(now_ms())
    .bind(p.download_media)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = &row {
        let mut out = Outbox::new(org);
        out.push(Some(id), kind::SESSION_UPDATED, &Session::from(r.clone()));
        super::events::flush(&mut tx, &out).await?;
    }
    tx.commit().await?;
    Ok(row)
}

/// Sets a session's status (and why), writing a `session.status` event when it changed.
/// `only_from`, when given, makes the change conditional on the current status being one of
/// those: the claim of a state change is then one conditional update, so of two concurrent
/// callers exactly one wins. Returns the session after the call, and whether it changed.
pub async fn set_status(
    pool: &Pool,
    org: Option<&str>,
    id: &str,
    status: SessionStatus,
    reason: Option<&str>,
    only_from: Option<&[SessionStatus]>,
) -> sqlx::Result<Option<(SessionRecord, bool)>> {
    let now = now_ms();
    let mut tx = super::begin(pool).await?;
    super::lock_session(&mut tx, id).await?;
    let allowed: Vec<&str> = only_from
        .map(|s| s.iter().map(|x| x.as_str()).collect())
        .unwrap_or_default();
    let sql = format!(
        "UPDATE sessions SET status = $2, status_reason = $3, updated_at = $4,
            last_connected_at = CASE WHEN $2 = 'working' THEN $4 ELSE last_connected_at END
         WHERE id = $1 AND ($5 IS NULL OR org_id = $5)
           AND (status <> $2 OR status_reason IS DISTINCT FROM $3)
           AND ($6 = 0 OR {})
         RETURNING {COLS}",
        super::in_json("status", 7)
    );
    let changed = sqlx::query_as::<_, SessionRecord>(&sql)
        .bind(id)
        .bind(status.as_str())
        .bind(reason)
        .bind(now)
        .bind(org)
        .bind(only_from.is_some() as i64)
        .bind(serde_json::to_string(&allowed).unwrap_or_default())
        .fetch_optional(&mut *tx)
        .await?;
    let result = match changed {
        Some(row) => {
            let mut out = Outbox::new(&row.org_id);
            out.push(Some(id), kind::SESSION_STATUS, &Session::from(row.clone()));
            super::events::flush(&mut tx, &out).await?;
            Some((row, true))
        }
        None => {
            let row = sqlx::query_as::<_, SessionRecord>(&format!(
                "SELECT {COLS} FROM sessions WHERE id = $1 AND ($2 IS NULL OR org_id = $2)"
            ))
            .bind(id)
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
            row.map(|r| (r, false))
        }
    };
    tx.commit().await?;
    Ok(result)
}

/// Writes a pairing event (`auth.qr`, `auth.code`) of a session: the event is the record.
/// False when the session does not exist.
pub async fn pairing_event(
    pool: &Pool,
    id: &str,
    event: &'static str,
    payload: &serde_json::Value,
) -> sqlx::Result<bool> {
    let mut tx = super::begin(pool).await?;
    let org: Option<String> = sqlx::query_scalar("SELECT org_id FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(org) = org else {
        return Ok(false);
    };
    let mut out = Outbox::new(&org);
    out.push(Some(id), event, payload);
    super::events::flush(&mut tx, &out).await?;
    tx.commit().await?;
    Ok(true)
}

/// Records the WhatsApp account a session is paired with.
pub async fn set_account(
    pool: &Pool,
    id: &str,
    wa_jid: Option<&str>,
    wa_lid: Option<&str>,
    phone: Option<&str>,
    push_name: Option<&str>,
) -> sqlx::Result<()> {
    let mut tx = super::begin(pool).await?;
    super::lock_session(&mut tx, id).await?;
    let row = sqlx::query_as::<_, SessionRecord>(&format!(
        "UPDATE sessions SET wa_jid = $2, wa_lid = $3, phone_number = $4, push_name = COALESCE($5, push_name), updated_at = $6
         WHERE id = $1 RETURNING {COLS}"
    ))
    .bind(id)
    .bind(wa_jid)
    .bind(wa_lid)
    .bind(phone)
    .bind(push_name)
    .bind(now_ms())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(r) = row {
        let mut out = Outbox::new(&r.org_id);
        out.push(Some(id), kind::SESSION_UPDATED, &Session::from(r));
        super::events::flush(&mut tx, &out).await?;
    }
    tx.commit().await
}

/// Deletes a session with everything stored for it (chats, messages, contacts, groups, its
/// events), and writes one `session.deleted` event. True when it existed.
pub async fn delete(pool: &Pool, org: &str, id: &str) -> sqlx::Result<bool> {
    let mut tx = super::begin(pool).await?;
    super::lock_session(&mut tx, id).await?;
    let row = sqlx::query_as::<_, SessionRecord>(&format!(
        "SELECT {COLS} FROM sessions WHERE id = $1 AND org_id = $2"
    ))
    .bind(id)
    .bind(org)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    // Messages go first in one statement; the cascade would otherwise visit them chat by chat.
    for sql in [
        "DELETE FROM messages WHERE session_id = $1",
        "DELETE FROM chat_aliases WHERE session_id = $1",
        "DELETE FROM chats WHERE session_id = $1",
        "DELETE FROM contacts WHERE session_id = $1",
        "DELETE FROM groups WHERE session_id = $1",
        "DELETE FROM sessions WHERE id = $1",
    ] {
        sqlx::query(sql).bind(id).execute(&mut *tx).await?;
    }
    super::events::purge_session(&mut tx, id).await?;
    let mut out = Outbox::new(org);
    out.push(Some(id), kind::SESSION_DELETED, &Session::from(row));
    super::events::flush(&mut tx, &out).await?;
    tx.commit().await?;
    Ok(true)
}
