//! Storage: one [`Store`] over SQLite (the embedded default) or PostgreSQL, through sqlx's typed
//! pools (`SqlitePool`, `PgPool`).
//!
//! Layout:
//! - [`records`]: the rows the store returns (chats, messages, contacts, sessions, keys, events).
//! - [`wire`]: the JSON shapes of the API made from those rows, which event payloads carry too
//!   (`http` re-exports them as `http::models`).
//! - [`ingest`]: the one entry point for everything WhatsApp tells the gateway, with typed inputs
//!   (messages, receipts, chat settings, names, LID↔phone pairs, groups, history batches).
//! - `api`: the reads and writes the HTTP API makes.
//! - `sql/`: the SQL. Each file under `sql/` is compiled twice, once per dialect
//!   (`sql/sqlite.rs` and `sql/postgres.rs` include it as a module and give it `DB`, `Conn` and
//!   the few helpers whose SQL differs), so statement text is shared where the dialects agree and
//!   each dialect has its own where it matters (locks, list parameters, page building).
//!
//! Concurrency: every write that touches a session's stored copy runs in a transaction that
//! first takes that session's lock (a transaction-scoped advisory lock on PostgreSQL; SQLite has
//! one writer and `BEGIN IMMEDIATE`). Transient conflicts (deadlock, serialization failure,
//! SQLite busy) are retried. Outbox events are written in the same transaction as the change.

pub mod history;
pub mod ingest;
pub mod keys;
pub mod outgoing;
pub mod records;
pub mod wire;

mod api;
pub(crate) mod outbox;
mod sql;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{PgPool, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};

pub use api::{ContactFilter, ContactSource, EventFilter};
pub use ingest::{
    ChangeKind, ChatSettings, GroupInfo, GroupMember, HistoryBatch, HistoryCounts, MediaInfo,
    MessageChange, NewMessage, ParticipantChange, PersonNames, Receipt, RecordOptions, Recorded,
};
pub use outbox::kind as event_kind;
pub use records::{
    ApiKeyRecord, ChatPatch, ChatRecord, ContactRecord, EventRecord, MessageRecord, MessageStatus,
    NewApiKey, NewSession, PendingChatSetting, SessionPatch, SessionRecord, SessionStatus,
};

/// Which SQL engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

/// The typed pool behind a store.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Handle to the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Db,
    /// SQLite has one writer: taking this in-process lock before a write transaction hands the
    /// write lock over in FIFO order instead of letting writers poll SQLite's busy handler.
    write_gate: Option<Arc<Mutex<()>>>,
    /// The on-disk media store, whose files go with their message (revoke) or session (delete).
    media_dir: Option<Arc<std::path::PathBuf>>,
    /// SQLite: inbound messages waiting for the write gate, committed together by whichever
    /// caller takes it next (see `Store::record_inbound`).
    inbound_queue: Option<Arc<ingest::InboundQueue>>,
    /// SQLite: one connection for the hot writes (inbound messages and the engine's keys), so
    /// its page cache stays valid between them instead of being dropped by each pool
    /// connection in turn after another one wrote.
    writer: Option<SqlitePool>,
}

/// A held write permit (a no-op on PostgreSQL).
pub struct WriteGuard<'a>(#[allow(dead_code)] Option<MutexGuard<'a, ()>>);

/// Runs `$call` on the dialect module of the store's pool: `on_db!(self, chats::get(args))`
/// becomes `sql::sqlite::chats::get(pool, args)` or `sql::postgres::chats::get(pool, args)`.
macro_rules! on_db {
    ($store:expr, $module:ident :: $func:ident ( $($arg:expr),* $(,)? )) => {
        match $store.db() {
            $crate::store::Db::Sqlite(pool) => {
                $crate::store::sql::sqlite::$module::$func(pool, $($arg),*).await
            }
            $crate::store::Db::Postgres(pool) => {
                $crate::store::sql::postgres::$module::$func(pool, $($arg),*).await
            }
        }
    };
}
pub(crate) use on_db;

impl Store {
    /// The store with the media store's folder: files of revoked messages and deleted
    /// sessions are removed from it.
    pub fn with_media_dir(mut self, dir: std::path::PathBuf) -> Self {
        self.media_dir = Some(Arc::new(dir));
        self
    }

    /// Removes files of the media store (paths relative to it); missing files are fine.
    pub(crate) async fn forget_media(&self, files: &[String]) {
        let Some(dir) = &self.media_dir else { return };
        for f in files {
            if f.split('/').any(|part| part == ".." || part.is_empty()) {
                continue;
            }
            match tokio::fs::remove_file(dir.join(f)).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(file = f, error = %e, "media file not removed"),
            }
        }
    }

    /// Connects to `url` (`sqlite://...` or `postgres://...`). SQLite files and their parent
    /// folders are created when missing.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let kind = db_kind(url)?;
        let max = max_connections.max(1);
        let mut writer = None;
        let db = match kind {
            DbKind::Sqlite => {
                disable_sqlite_memstatus();
                let url = prepare_sqlite_url(url)?;
                let opts = SqliteConnectOptions::from_str(&url)
                    .context("parsing the database URL")?
                    .create_if_missing(true)
                    // Pages freed by settled sends go back to the file system (see
                    // `reclaim_free_pages`); the write-ahead log is cut back after checkpoints.
                    .auto_vacuum(SqliteAutoVacuum::Incremental)
                    .pragma("journal_size_limit", (8 << 20).to_string())
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10));
                // A file needs no liveness check before each use: sqlx's default ping on
                // acquire is one more hand-off to the connection's thread per statement.
                let pool = SqlitePoolOptions::new()
                    .test_before_acquire(false)
                    .max_connections(max)
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts.clone())
                    .await
                    .context("opening the SQLite database")?;
                writer = Some(
                    SqlitePoolOptions::new()
                        .test_before_acquire(false)
                        .max_connections(1)
                        .min_connections(0)
                        .acquire_timeout(Duration::from_secs(30))
                        .connect_with(opts)
                        .await
                        .context("opening the SQLite database")?,
                );
                Db::Sqlite(pool)
            }
            DbKind::Postgres => {
                let opts = PgConnectOptions::from_str(url).context("parsing the database URL")?;
                let pool = PgPoolOptions::new()
                    .max_connections(max)
                    .min_connections(0)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .context("connecting to the PostgreSQL database")?;
                Db::Postgres(pool)
            }
        };
        let write_gate = (kind == DbKind::Sqlite).then(|| Arc::new(Mutex::new(())));
        let inbound_queue = (kind == DbKind::Sqlite).then(Arc::default);
        Ok(Store {
            db,
            write_gate,
            media_dir: None,
            inbound_queue,
            writer,
        })
    }

    /// Applies the embedded migrations of this store's dialect.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        // Other components (the engine's key store) keep their own migrations, with their own
        // version numbers, in the same bookkeeping table: ignore versions this set does not know.
        match &self.db {
            Db::Sqlite(p) => {
                let mut m = sqlx::migrate!("migrations/sqlite");
                m.set_ignore_missing(true);
                m.run(p).await
            }
            Db::Postgres(p) => {
                let mut m = sqlx::migrate!("migrations/postgres");
                m.set_ignore_missing(true);
                m.run(p).await
            }
        }
        .context("applying database migrations")?;
        if let Db::Sqlite(p) = &self.db {
            // A database file made before incremental auto-vacuum was set keeps its free pages
            // until it is rebuilt once.
            let mode: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
                .fetch_one(p)
                .await?;
            if mode != 2 {
                tracing::info!(
                    "rebuilding the SQLite file once so it can give free space back (VACUUM)"
                );
                sqlx::query("PRAGMA auto_vacuum = INCREMENTAL")
                    .execute(p)
                    .await?;
                sqlx::query("VACUUM").execute(p).await?;
            }
        }
        Ok(())
    }

    /// SQLite: gives the database file's free pages back to the file system and cuts the
    /// write-ahead log back, after a large payload was dropped. PostgreSQL's autovacuum does
    /// this on its own. A failure only leaves the space for later reuse; it is logged.
    pub(crate) async fn reclaim_free_pages(&self) {
        let Some(w) = &self.writer else { return };
        let _g = self.write_gate().await;
        for sql in [
            "PRAGMA incremental_vacuum",
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ] {
            if let Err(e) = sqlx::query(sql).execute(w).await {
                tracing::warn!(error = %e, statement = sql, "could not give free database space back");
            }
        }
    }

    pub fn kind(&self) -> DbKind {
        match self.db {
            Db::Sqlite(_) => DbKind::Sqlite,
            Db::Postgres(_) => DbKind::Postgres,
        }
    }

    /// The typed pool (for components that keep their own tables in the same database).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        match &self.db {
            Db::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
            Db::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.is_ok(),
        }
    }

    /// Updates the planner's statistics (after a bulk load).
    pub async fn analyze(&self) -> anyhow::Result<()> {
        match &self.db {
            Db::Sqlite(p) => {
                sqlx::query("ANALYZE").execute(p).await?;
            }
            Db::Postgres(p) => {
                sqlx::query("ANALYZE").execute(p).await?;
            }
        }
        Ok(())
    }

    pub async fn close(&self) {
        if let Some(w) = &self.writer {
            w.close().await;
        }
        match &self.db {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }

    /// Takes the write permit; hold it for the whole write transaction.
    pub(crate) async fn write_gate(&self) -> WriteGuard<'_> {
        match &self.write_gate {
            Some(m) => WriteGuard(Some(m.lock().await)),
            None => WriteGuard(None),
        }
    }
}

/// True for errors that go away when the transaction is simply run again: a deadlock or
/// serialization failure on PostgreSQL, a busy or locked database on SQLite.
pub(crate) fn is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code();
            matches!(
                code.as_deref(),
                Some("40001")
                    | Some("40P01")
                    | Some("55P03")
                    | Some("5")
                    | Some("6")
                    | Some("517")
                    | Some("261")
                    | Some("262")
            )
        }
        sqlx::Error::PoolTimedOut => false,
        _ => false,
    }
}

/// Runs `$body` (an expression evaluating to `sqlx::Result<T>`, typically an awaited async
/// block that opens, fills and commits a transaction) again when it fails transiently, up to
/// five attempts with a short growing pause.
macro_rules! retrying {
    ($body:expr) => {{
        let mut attempt: u32 = 0;
        loop {
            match $body {
                Err(e) if attempt < 5 && $crate::store::is_transient(&e) => {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "transient database conflict; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(
                        (5u64 << attempt) + rand::random::<u64>() % 10,
                    ))
                    .await;
                }
                other => break other,
            }
        }
    }};
}
pub(crate) use retrying;

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

/// A `LIKE ... ESCAPE '\'` pattern for text starting with `prefix`.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut p = like_contains(prefix);
    p.remove(0);
    p
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

/// A boolean as SQLite renders it in JSON (`1`/`0`) or PostgreSQL (`true`/`false`).
pub(crate) fn json_flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
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
