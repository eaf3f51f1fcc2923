//! The PostgreSQL dialect: transaction-scoped advisory locks serialise the writers of one
//! session and the inserts of outbox events; list parameters are arrays; pages are typed rows.

#![allow(clippy::duplicate_mod)]

pub type DB = sqlx::Postgres;
pub type Conn = sqlx::PgConnection;
pub type Pool = sqlx::PgPool;
pub type Tx = sqlx::Transaction<'static, DB>;

#[path = "api_keys.rs"]
pub mod api_keys;
#[path = "chats.rs"]
pub mod chats;
#[path = "events.rs"]
pub mod events;
#[path = "history.rs"]
pub mod history;
#[path = "ingest.rs"]
pub mod ingest;
#[path = "messages.rs"]
pub mod messages;
#[path = "outgoing.rs"]
pub mod outgoing;
#[path = "people.rs"]
pub mod people;
#[path = "sessions.rs"]
pub mod sessions;

/// Advisory lock classes (the first key of the two-key form).
const LOCK_SESSION: i32 = 0x7761_0001;
const LOCK_EVENTS: i32 = 0x7761_0002;

pub async fn begin(pool: &Pool) -> sqlx::Result<Tx> {
    pool.begin().await
}

/// Serialises the writers of one session's stored copy (ingest from any number of tasks or
/// nodes, API writes) until the transaction ends.
///
/// It also plans the transaction's statements for their actual parameters: a generic plan
/// made while a table was still small (a new session's first history sync, before autovacuum
/// has analysed it) would otherwise keep scanning whole tables for the life of the connection.
pub async fn lock_session(conn: &mut Conn, session: &str) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2)), set_config('plan_cache_mode', 'force_custom_plan', true)")
        .bind(LOCK_SESSION)
        .bind(session)
        .execute(conn)
        .await?;
    Ok(())
}

/// Taken just before a transaction inserts outbox events and held until it commits, so event
/// sequence numbers become visible in increasing order (no reader can see n+1 and then n).
pub async fn lock_events(conn: &mut Conn) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_EVENTS)
        .execute(conn)
        .await?;
    Ok(())
}

/// The `n`th parameter of a statement whose parameters are each used once, in order.
pub fn param(n: usize) -> String {
    format!("${n}")
}

/// `col` is one of the strings in the JSON array bound at `$n`.
pub fn in_json(col: &str, n: usize) -> String {
    format!("{col} IN (SELECT jsonb_array_elements_text(${n}::jsonb))")
}

/// Fetches a page of typed rows.
macro_rules! fetch_page {
    ($pool:expr, $inner:expr, $fields:expr, $order:expr, |$q:ident| $bind:expr) => {{
        let _ = ($fields, $order);
        let sql: String = $inner;
        let $q = sqlx::query_as::<_, _>(&sql);
        $bind.fetch_all($pool).await?
    }};
}
pub(crate) use fetch_page;
