//! The outbox table: inserts at the end of a write transaction, the pull feed, retention.

use super::Conn;
use crate::domain::now_ms;
use crate::store::api::EventFilter;
use crate::store::outbox::Outbox;
use crate::store::records::EventRecord;

const ROWS_PER_INSERT: usize = 64;

/// Inserts the drafted events; call last in the transaction, right before commit.
pub async fn flush(conn: &mut Conn, out: &Outbox) -> sqlx::Result<()> {
    if out.drafts.is_empty() {
        return Ok(());
    }
    super::lock_events(&mut *conn).await?;
    let now = now_ms();
    for chunk in out.drafts.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO events (id, org_id, session_id, event, payload, created_at) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let p: Vec<String> = (1..=6).map(|k| super::param(i * 6 + k)).collect();
            sql.push_str(&format!("({})", p.join(", ")));
        }
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q
                .bind(&d.id)
                .bind(&out.org)
                .bind(&d.session)
                .bind(d.event)
                .bind(&d.payload)
                .bind(now);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The organization's events after `after`, oldest first.
pub async fn list(
    pool: &super::Pool,
    org: &str,
    after: i64,
    limit: i64,
    filter: &EventFilter,
) -> sqlx::Result<Vec<EventRecord>> {
    let mut sql = String::from(
        "SELECT seq, id, org_id, session_id, event, payload, created_at FROM events WHERE org_id = $1 AND seq > $2",
    );
    if filter.session.is_some() {
        sql.push_str(" AND session_id = $4");
    }
    let events_json = (!filter.events.is_empty())
        .then(|| serde_json::to_string(&filter.events).unwrap_or_default());
    if events_json.is_some() {
        let n = if filter.session.is_some() { 5 } else { 4 };
        sql.push_str(" AND ");
        sql.push_str(&super::in_json("event", n));
    }
    sql.push_str(" ORDER BY seq LIMIT $3");
    let mut q = sqlx::query_as::<_, EventRecord>(&sql)
        .bind(org)
        .bind(after)
        .bind(limit);
    if let Some(s) = &filter.session {
        q = q.bind(s);
    }
    if let Some(e) = &events_json {
        q = q.bind(e);
    }
    q.fetch_all(pool).await
}

/// Deletes events older than `before` (epoch ms); returns how many, and remembers the highest
/// sequence number removed so the feed can tell a consumer that it missed events.
pub async fn sweep(pool: &super::Pool, before: i64) -> sqlx::Result<u64> {
    let mut tx = super::begin(pool).await?;
    let top: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE created_at < $1")
        .bind(before)
        .fetch_one(&mut *tx)
        .await?;
    let Some(top) = top else {
        return Ok(0);
    };
    let n = sqlx::query("DELETE FROM events WHERE seq <= $1")
        .bind(top)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    sqlx::query(
        "INSERT INTO meta (key, value) VALUES ('events_swept_through', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .bind(top.to_string())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(n)
}

/// The highest sequence number retention has removed (0 when none).
pub async fn swept_through(pool: &super::Pool) -> sqlx::Result<i64> {
    let v: Option<String> =
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'events_swept_through'")
            .fetch_optional(pool)
            .await?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Removes every event of a session (its data is gone with it).
pub async fn purge_session(conn: &mut Conn, session: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM events WHERE session_id = $1")
        .bind(session)
        .execute(conn)
        .await?;
    Ok(())
}
