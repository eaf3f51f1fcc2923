//! Storage: one `Store` over SQLite (embedded default) or PostgreSQL.
//!
//! Queries are written once in the SQL both dialects share (`$n` placeholders, `RETURNING`,
//! `ON CONFLICT`, row-value comparisons) and run through sqlx's `Any` driver; each dialect has
//! its own embedded migrations. The ingest operations the WhatsApp engine calls live in
//! [`chats`], [`messages`] and [`contacts`]; tests seed data through them as well.

pub mod api_keys;
pub mod chats;
pub mod contacts;
mod flag;
pub mod messages;
pub mod sessions;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};
use tokio::sync::{Mutex, MutexGuard};

pub use api_keys::{ApiKeyRecord, NewApiKey};
pub use chats::{ChatPatch, ChatRecord, ChatUpsert};
pub use contacts::{ContactFilter, ContactRecord, ContactSource, GroupMember};
pub(crate) use flag::Flag;
pub use messages::{MediaInfo, MessageRecord, MessageStatus, NewMessage, RecordOptions, Recorded};
pub use sessions::{NewSession, SessionPatch, SessionRecord, SessionStatus};

/// Which SQL engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    kind: DbKind,
    /// SQLite allows one writer; taking this in-process lock before a write transaction avoids
    /// `SQLITE_BUSY` on lock upgrade. PostgreSQL needs none.
    write_gate: Option<Arc<Mutex<()>>>,
}

/// A held write permit (a no-op on PostgreSQL).
pub struct WriteGuard<'a>(#[allow(dead_code)] Option<MutexGuard<'a, ()>>);

impl Store {
    /// Connects to `url` (`sqlite://...` or `postgres://...`). SQLite files and their parent
    /// folders are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let kind = db_kind(url)?;
        if kind == DbKind::Sqlite {
            disable_sqlite_memstatus();
        }
        let url = match kind {
            DbKind::Sqlite => prepare_sqlite_url(url)?,
            DbKind::Postgres => url.to_owned(),
        };
        let opts = AnyConnectOptions::from_str(&url).with_context(|| "parsing the database URL")?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if kind == DbKind::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA mmap_size = 1073741824;")
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .with_context(|| format!("connecting to the {kind:?} database"))?;
        let write_gate = (kind == DbKind::Sqlite).then(|| Arc::new(Mutex::new(())));
        Ok(Store {
            pool,
            kind,
            write_gate,
        })
    }

    /// Applies the embedded migrations of this store's dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let migrator = match self.kind {
            DbKind::Sqlite => sqlx::migrate!("migrations/sqlite"),
            DbKind::Postgres => sqlx::migrate!("migrations/postgres"),
        };
        migrator
            .run(&self.pool)
            .await
            .context("applying database migrations")?;
        Ok(())
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Takes the write permit; hold it for the whole write transaction.
    pub async fn write_gate(&self) -> WriteGuard<'_> {
        match &self.write_gate {
            Some(m) => WriteGuard(Some(m.lock().await)),
            None => WriteGuard(None),
        }
    }

    /// Reads a value from the `meta` table.
    pub async fn meta_get(&self, key: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Sets `key` only if it is not set yet; true when this call set it.
    pub async fn meta_claim(&self, key: &str, value: &str) -> anyhow::Result<bool> {
        let _w = self.write_gate().await;
        let r = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }
}

/// SQLite keeps allocation statistics under one process-wide mutex unless told not to; with a
/// worker thread per connection that mutex was a visible share of a list request's CPU time.
/// This must run before SQLite initialises; later calls are refused by SQLite and harmless.
fn disable_sqlite_memstatus() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is documented as callable before sqlite3_initialize from one
        // thread; `Once` guarantees a single call, and a call after initialisation only
        // returns SQLITE_MISUSE.
        let rc = unsafe {
            libsqlite3_sys::sqlite3_config(
                libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
                0 as std::ffi::c_int,
            )
        };
        if rc != libsqlite3_sys::SQLITE_OK {
            tracing::debug!(
                rc,
                "SQLite was already initialised; memory statistics stay on"
            );
        }
    });
}

fn db_kind(url: &str) -> anyhow::Result<DbKind> {
    if url.starts_with("sqlite:") {
        Ok(DbKind::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DbKind::Postgres)
    } else {
        anyhow::bail!("the database URL must start with sqlite:// or postgres://")
    }
}

/// Makes sure a SQLite file URL creates its file and folder.
fn prepare_sqlite_url(url: &str) -> anyhow::Result<String> {
    let rest = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:");
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if path != ":memory:" && !path.is_empty() {
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
    }
    let query = match query {
        Some(q) if q.contains("mode=") => q.to_owned(),
        Some(q) => format!("{q}&mode=rwc"),
        None => "mode=rwc".to_owned(),
    };
    Ok(format!("sqlite://{path}?{query}"))
}

impl Store {
    /// Wraps a page query so the database returns the whole page as one JSON array in one row.
    ///
    /// `inner` selects the page's rows (already ordered and limited); `fields` are its column
    /// names, which become the JSON keys; `order` repeats the ordering for the aggregate.
    /// Pages then cross sqlx's SQLite worker thread and the `Any` driver once instead of once
    /// per row, which was most of the cost of a list request (see the README's benchmark).
    pub(crate) fn json_page_sql(&self, inner: &str, fields: &[&str], order: &str) -> String {
        let pairs: Vec<String> = fields.iter().map(|f| format!("'{f}', page.{f}")).collect();
        let pairs = pairs.join(", ");
        match self.kind {
            DbKind::Sqlite => format!(
                "SELECT COALESCE(json_group_array(json_object({pairs}) ORDER BY {order}), '[]') FROM ({inner}) AS page"
            ),
            DbKind::Postgres => format!(
                "SELECT COALESCE(json_agg(json_build_object({pairs}) ORDER BY {order}), '[]')::text FROM ({inner}) AS page"
            ),
        }
    }
}

/// Reads a JSON page produced by [`Store::json_page_sql`].
pub(crate) fn parse_page<T: serde::de::DeserializeOwned>(text: &str) -> anyhow::Result<Vec<T>> {
    serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("decoding a page from the database: {e}"))
}

/// A boolean as the databases render it in JSON: `true`/`false` (PostgreSQL) or `1`/`0` (SQLite).
pub(crate) fn json_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a boolean or 0/1")
        }
        fn visit_bool<E>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_i64<E>(self, v: i64) -> Result<bool, E> {
            Ok(v != 0)
        }
        fn visit_u64<E>(self, v: u64) -> Result<bool, E> {
            Ok(v != 0)
        }
    }
    d.deserialize_any(V)
}

/// Trims a keyset query's `limit + 1` rows to `limit` and returns the cursor after the last
/// kept row, or `None` when there was no further row (the last page).
pub(crate) fn finish_page<T>(
    rows: &mut Vec<T>,
    limit: i64,
    cursor_of: impl Fn(&T) -> crate::domain::Cursor,
) -> Option<crate::domain::Cursor> {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(cursor_of)
    } else {
        None
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern and wraps it in `%`.
pub(crate) fn like_contains(needle: &str) -> String {
    let mut out = String::with_capacity(needle.len() + 2);
    out.push('%');
    for ch in needle.chars() {
        if matches!(ch, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode() {
        assert_eq!(
            prepare_sqlite_url("sqlite::memory:").unwrap(),
            "sqlite://:memory:?mode=rwc"
        );
        assert!(prepare_sqlite_url("sqlite:///tmp/x.db?mode=ro")
            .unwrap()
            .ends_with("mode=ro"));
        assert!(db_kind("mysql://x").is_err());
    }

    #[test]
    fn like_escapes() {
        assert_eq!(like_contains("50%_a\\"), "%50\\%\\_a\\\\%");
    }
}
