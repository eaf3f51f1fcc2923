//! The SQLite dialect: one writer at a time, `BEGIN IMMEDIATE` for writes, pages returned as one
//! JSON row (each row otherwise crosses sqlx's SQLite worker thread on its own).

#![allow(clippy::duplicate_mod)]

pub type DB = sqlx::Sqlite;
pub type Conn = sqlx::SqliteConnection;
pub type Pool = sqlx::SqlitePool;
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

/// Opens a write transaction. `BEGIN IMMEDIATE` takes SQLite's write lock at once, so a busy
/// database makes the caller wait (busy timeout) instead of failing on a lock upgrade.
pub async fn begin(pool: &Pool) -> sqlx::Result<Tx> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Serialises writers of one session: SQLite's single writer already does.
pub async fn lock_session(_conn: &mut Conn, _session: &str) -> sqlx::Result<()> {
    Ok(())
}

/// Orders event inserts by commit: SQLite's single writer already does.
pub async fn lock_events(_conn: &mut Conn) -> sqlx::Result<()> {
    Ok(())
}

/// The `n`th parameter of a statement whose parameters are each used once, in order. SQLite
/// gets anonymous `?`: for named ones (`$n`, `?n`) sqlx asks SQLite for each parameter's name,
/// a linear search per parameter, which made binding a multi-row insert quadratic.
pub fn param(_n: usize) -> String {
    "?".to_owned()
}

/// `col` is one of the strings in the JSON array bound at `$n`.
pub fn in_json(col: &str, n: usize) -> String {
    format!("{col} IN (SELECT value FROM json_each(${n}))")
}

/// Wraps a page query so the database returns the whole page as one JSON array in one row.
pub fn json_page(inner: &str, fields: &[&str], order: &str) -> String {
    let pairs: Vec<String> = fields.iter().map(|f| format!("'{f}', page.{f}")).collect();
    format!(
        "SELECT COALESCE(json_group_array(json_object({}) ORDER BY {order}), '[]') FROM ({inner}) AS page",
        pairs.join(", ")
    )
}

/// Fetches a page of `T` built by `inner` (see [`json_page`]); `bind` binds its parameters.
macro_rules! fetch_page {
    ($pool:expr, $inner:expr, $fields:expr, $order:expr, |$q:ident| $bind:expr) => {{
        let sql = super::json_page(&$inner, $fields, $order);
        let $q = sqlx::query_scalar::<_, String>(&sql);
        let text: String = $bind.fetch_one($pool).await?;
        serde_json::from_str::<Vec<_>>(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))?
    }};
}
pub(crate) use fetch_page;
