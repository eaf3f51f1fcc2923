//! The WhatsApp engine's key store in the gateway's database: whatsapp-rust's storage traits
//! (`SignalStore`, `AppSyncStore`, `ProtocolStore`, `MsgSecretStore`, `DeviceStore`, together
//! `Backend`) over the same pools as the stored copy, one logical store per session.
//!
//! Every kind of record is a namespace (`ns`) of one table, `wa_keys (session_id, ns, k, v, n1,
//! n2)`: the key within the namespace, the value as bytes, and two numbers for what a namespace
//! needs to select or sweep by (a flag, timestamps). The trait semantics are kept as the
//! engine's own in-memory backend keeps them (a conformance suite compares the two):
//! multi-row writes in one transaction, the sent-message take as one `DELETE ... RETURNING`,
//! pre-key "mark uploaded" as an update that never inserts, newer-wins tc-token writes, merged
//! message-secret puts, idempotent pending-inbound writes, and the expiry sweeps. Deleting a
//! session deletes its keys (cascade); [`SessionKeyStore::delete_all`] does it for a logout.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, MutexGuard};
use wacore::appstate::hash::HashState;
use wacore::appstate::processor::AppStateMutationMAC;
use wacore::store::error::{Result, StoreError};
use wacore::store::traits::*;
use wacore::store::Device;

use super::Db;

/// One session's key store. Cheap to clone (clones share the pending-inbound buffer).
#[derive(Clone)]
pub struct SessionKeyStore {
    db: Db,
    session: Arc<str>,
    /// The store's SQLite write gate, taken by every write so the engine's writes queue in
    /// order with the stored copy's instead of polling SQLite's busy handler.
    gate: Option<Arc<Mutex<()>>>,
    /// The pending-inbound buffer's state in memory. See [`SessionKeyStore::settle_pending`].
    pending: Arc<Mutex<Pending>>,
}

#[derive(Default)]
struct Pending {
    /// Rows not written yet, by key: `(message, stored at)`.
    held: HashMap<String, (Vec<u8>, i64)>,
    /// Written rows whose messages the hook has committed since: deleted with the next write.
    done: HashSet<String>,
}

/// How many committed rows may wait for the next write before they are deleted on their own.
const MAX_DONE: usize = 1024;

type Row = (String, Vec<u8>, i64, i64);

fn db_err(e: sqlx::Error) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn ser<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| StoreError::Serialization(Box::new(e)))
}

fn de<T: serde::de::DeserializeOwned>(v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| StoreError::Serialization(Box::new(e)))
}

fn now_secs() -> i64 {
    crate::domain::now_ms() / 1000
}

/// Joins the parts of a composite key.
fn key(parts: &[&str]) -> String {
    parts.join("\u{1f}")
}

/// Runs `$body` with `$p` bound to the typed pool (the same SQL serves both dialects here).
macro_rules! on_pool {
    ($db:expr, |$p:ident| $body:expr) => {
        match $db {
            Db::Sqlite($p) => $body,
            Db::Postgres($p) => $body,
        }
    };
}

/// Runs the write `$body` with `$p` bound to the typed pool, holding the write gate.
macro_rules! on_pool_w {
    ($ks:expr, |$p:ident| $body:expr) => {{
        let _gate = $ks.gate().await;
        on_pool!(&$ks.db, |$p| $body)
    }};
}

/// Runs `$body` with `$tx` a write transaction on the typed pool (holding the write gate),
/// committed when it succeeds.
macro_rules! in_tx {
    ($ks:expr, |$tx:ident| $body:expr) => {
        match &$ks.db {
            Db::Sqlite(p) => {
                let _gate = $ks.gate().await;
                let mut $tx = p.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
                let out = $body;
                $tx.commit().await.map_err(db_err)?;
                out
            }
            Db::Postgres(p) => {
                let mut $tx = p.begin().await.map_err(db_err)?;
                let out = $body;
                $tx.commit().await.map_err(db_err)?;
                out
            }
        }
    };
}

/// Deletes the keys `$keys` of namespace `$ns` inside the transaction `$tx`, in statements of
/// up to [`KEYS_PER_DELETE`] keys.
macro_rules! delete_keys {
    ($tx:ident, $sqlite:expr, $session:expr, $ns:expr, $keys:expr) => {
        for chunk in $keys.chunks(KEYS_PER_DELETE) {
            let list: Vec<String> = (3..chunk.len() + 3)
                .map(|n| placeholder($sqlite, n))
                .collect();
            let sql = format!(
                "DELETE FROM wa_keys WHERE session_id = {} AND ns = {} AND k IN ({})",
                placeholder($sqlite, 1),
                placeholder($sqlite, 2),
                list.join(", ")
            );
            let mut q = sqlx::query(&sql).bind($session).bind($ns);
            for k in chunk {
                q = q.bind(k.as_str());
            }
            q.execute(&mut *$tx).await.map_err(db_err)?;
        }
    };
}

const UPSERT: &str = "INSERT INTO wa_keys (session_id, ns, k, v, n1, n2) VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (session_id, ns, k) DO UPDATE SET v = excluded.v, n1 = excluded.n1, n2 = excluded.n2";

/// Rows per multi-row upsert, keys per multi-key delete.
const ROWS_PER_UPSERT: usize = 100;
const KEYS_PER_DELETE: usize = 500;

/// The `n`th parameter of a statement whose parameters are each used once, in order: `?` on
/// SQLite (sqlx looks a named one up by a linear search), `$n` on PostgreSQL.
fn placeholder(sqlite: bool, n: usize) -> String {
    if sqlite {
        "?".to_owned()
    } else {
        format!("${n}")
    }
}

impl SessionKeyStore {
    pub fn new(db: Db, session: impl Into<Arc<str>>) -> Self {
        SessionKeyStore {
            db,
            session: session.into(),
            gate: None,
            pending: Arc::default(),
        }
    }

    async fn gate(&self) -> Option<MutexGuard<'_, ()>> {
        match &self.gate {
            Some(g) => Some(g.lock().await),
            None => None,
        }
    }

    /// Writes the pending-inbound rows held in memory. Runs before every write of Signal
    /// state (sessions, identities, consumed pre-keys, sender keys, base keys), which keeps
    /// the engine's guarantee: once a ratchet advance is on disk, so is the buffered copy of
    /// every message decrypted with it that the durability hook has not committed yet. A
    /// message whose hook commits before the next Signal write never costs a database write
    /// for its buffer row; one that does not (a crash) is redelivered by the server and
    /// decrypts again, since its ratchet advance was not stored either. Rows written earlier
    /// whose messages are committed now are deleted in the same transaction (until then, a
    /// crash leaves them behind: the server's redelivery replays an already stored message,
    /// which the idempotent ingest ignores, and the expiry sweep removes them).
    async fn settle_pending(&self) -> Result<()> {
        self.put_many_settled("", &[], false).await
    }

    /// `rows` upserted into `ns` in one transaction with the pending-inbound buffer's writes
    /// (see [`SessionKeyStore::settle_pending`]); with `always` false and nothing held in
    /// memory, nothing is written.
    async fn put_many_settled(
        &self,
        ns: &str,
        rows: &[(String, Vec<u8>, i64, i64)],
        always: bool,
    ) -> Result<()> {
        let mut p = self.pending.lock().await;
        if p.held.is_empty() && !(always && (!rows.is_empty() || !p.done.is_empty())) {
            return Ok(());
        }
        self.upsert(ns, rows, Some(&mut p)).await
    }

    /// Upserts `rows` into `ns` in one transaction; with `pending`, the buffer's held rows are
    /// written and its committed rows deleted in the same transaction.
    async fn upsert(
        &self,
        ns: &str,
        rows: &[(String, Vec<u8>, i64, i64)],
        mut pending: Option<&mut Pending>,
    ) -> Result<()> {
        let s = &*self.session;
        let none = Pending::default();
        let p: &Pending = pending.as_deref().unwrap_or(&none);
        let sqlite = matches!(self.db, Db::Sqlite(_));
        // The last write of a key wins (PostgreSQL refuses to upsert one row twice in a
        // statement).
        let mut last: HashMap<(&str, &str), usize> = HashMap::new();
        let held = p.held.iter().map(|(k, (v, at))| ("pin", k, v, *at, 0));
        let rows: Vec<_> = held
            .chain(rows.iter().map(|(k, v, n1, n2)| (ns, k, v, *n1, *n2)))
            .collect();
        for (i, r) in rows.iter().enumerate() {
            last.insert((r.0, r.1.as_str()), i);
        }
        let rows: Vec<_> = rows
            .iter()
            .enumerate()
            .filter(|(i, r)| last[&(r.0, r.1.as_str())] == *i)
            .map(|(_, r)| r)
            .collect();
        let done: Vec<&String> = p.done.iter().collect();
        in_tx!(self, |tx| {
            delete_keys!(tx, sqlite, s, "pin", done);
            for chunk in rows.chunks(ROWS_PER_UPSERT) {
                let values: Vec<String> = (0..chunk.len())
                    .map(|i| {
                        let cols: Vec<String> =
                            (1..=6).map(|j| placeholder(sqlite, 6 * i + j)).collect();
                        format!("({})", cols.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO wa_keys (session_id, ns, k, v, n1, n2) VALUES {}
                     ON CONFLICT (session_id, ns, k) DO UPDATE SET v = excluded.v, n1 = excluded.n1, n2 = excluded.n2",
                    values.join(", ")
                );
                let mut q = sqlx::query(&sql);
                for (ns, k, v, n1, n2) in chunk {
                    q = q.bind(s).bind(*ns).bind(*k).bind(*v).bind(*n1).bind(*n2);
                }
                q.execute(&mut *tx).await.map_err(db_err)?;
            }
        });
        if let Some(p) = pending.as_mut() {
            p.held.clear();
            p.done.clear();
        }
        Ok(())
    }

    pub fn session(&self) -> &str {
        &self.session
    }

    /// Deletes every key of this session (after a logout).
    pub async fn delete_all(&self) -> Result<()> {
        let s = &*self.session;
        on_pool_w!(self, |p| sqlx::query(
            "DELETE FROM wa_keys WHERE session_id = $1"
        )
        .bind(s)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err))?;
        Ok(())
    }

    async fn get(&self, ns: &str, k: &str) -> Result<Option<Row>> {
        let s = &*self.session;
        on_pool!(&self.db, |p| sqlx::query_as::<_, Row>(
            "SELECT k, v, n1, n2 FROM wa_keys WHERE session_id = $1 AND ns = $2 AND k = $3"
        )
        .bind(s)
        .bind(ns)
        .bind(k)
        .fetch_optional(p)
        .await
        .map_err(db_err))
    }

    async fn value(&self, ns: &str, k: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.get(ns, k).await?.map(|r| r.1))
    }

    async fn put(&self, ns: &str, k: &str, v: &[u8], n1: i64, n2: i64) -> Result<()> {
        let s = &*self.session;
        on_pool_w!(self, |p| sqlx::query(UPSERT)
            .bind(s)
            .bind(ns)
            .bind(k)
            .bind(v)
            .bind(n1)
            .bind(n2)
            .execute(p)
            .await
            .map(|r| r.rows_affected())
            .map_err(db_err))?;
        Ok(())
    }

    /// Several upserts in one transaction.
    async fn put_many(&self, ns: &str, rows: &[(String, Vec<u8>, i64, i64)]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.upsert(ns, rows, None).await
    }

    /// One Signal-state row, written with the pending-inbound buffer (see `settle_pending`).
    async fn put_signal(&self, ns: &str, k: &str, v: &[u8]) -> Result<()> {
        self.put_many_settled(ns, &[(k.to_owned(), v.to_vec(), 0, 0)], true)
            .await
    }

    async fn del(&self, ns: &str, k: &str) -> Result<u64> {
        let s = &*self.session;
        on_pool_w!(self, |p| sqlx::query(
            "DELETE FROM wa_keys WHERE session_id = $1 AND ns = $2 AND k = $3"
        )
        .bind(s)
        .bind(ns)
        .bind(k)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err))
    }

    /// Several deletes in one transaction.
    async fn del_many(&self, ns: &str, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let s = &*self.session;
        let sqlite = matches!(self.db, Db::Sqlite(_));
        in_tx!(self, |tx| {
            delete_keys!(tx, sqlite, s, ns, keys);
        });
        Ok(())
    }

    async fn del_ns(&self, ns: &str) -> Result<()> {
        let s = &*self.session;
        on_pool_w!(self, |p| sqlx::query(
            "DELETE FROM wa_keys WHERE session_id = $1 AND ns = $2"
        )
        .bind(s)
        .bind(ns)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err))?;
        Ok(())
    }

    async fn scan(&self, ns: &str) -> Result<Vec<Row>> {
        let s = &*self.session;
        on_pool!(&self.db, |p| sqlx::query_as::<_, Row>(
            "SELECT k, v, n1, n2 FROM wa_keys WHERE session_id = $1 AND ns = $2 ORDER BY k"
        )
        .bind(s)
        .bind(ns)
        .fetch_all(p)
        .await
        .map_err(db_err))
    }

    /// Deletes a namespace's rows whose `n1` is below `cutoff` (and, with `n2_cutoff`, whose
    /// `n2` is below that too). Returns how many.
    async fn sweep(&self, ns: &str, cutoff: i64, n2_cutoff: Option<i64>) -> Result<u32> {
        let s = &*self.session;
        let n = on_pool_w!(self, |p| {
            sqlx::query(
            "DELETE FROM wa_keys WHERE session_id = $1 AND ns = $2 AND n1 < $3 AND ($4 IS NULL OR n2 < $4)"
        )
        .bind(s)
        .bind(ns)
        .bind(cutoff)
        .bind(n2_cutoff)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err)
        })?;
        Ok(n as u32)
    }

    /// Reads a trusted-contact token row, lets `change` make its new value from the old one (if
    /// any) and writes it back, in one transaction.
    async fn update_tc(
        &self,
        jid: &str,
        change: impl FnOnce(Option<TcTokenEntry>) -> TcTokenEntry,
    ) -> Result<()> {
        let s = &*self.session;
        in_tx!(self, |tx| {
            let old: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT v FROM wa_keys WHERE session_id = $1 AND ns = 'tc' AND k = $2",
            )
            .bind(s)
            .bind(jid)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let entry = change(old.as_deref().map(de).transpose()?);
            let (n1, n2) = tc_numbers(&entry);
            sqlx::query(UPSERT)
                .bind(s)
                .bind("tc")
                .bind(jid)
                .bind(ser(&entry)?)
                .bind(n1)
                .bind(n2)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        });
        Ok(())
    }
}

fn arr32(v: &[u8]) -> Result<[u8; 32]> {
    v.try_into()
        .map_err(|_| StoreError::Validation(format!("expected 32 bytes, got {}", v.len())))
}

fn prekey_key(id: u32) -> String {
    format!("{id:010}")
}

#[async_trait]
impl SignalStore for SessionKeyStore {
    async fn put_identity(&self, address: &str, key: [u8; 32]) -> Result<()> {
        self.put_signal("id", address, &key).await
    }

    async fn put_identities_batch(&self, identities: &[(Arc<str>, [u8; 32])]) -> Result<()> {
        let rows: Vec<_> = identities
            .iter()
            .map(|(a, k)| (a.to_string(), k.to_vec(), 0, 0))
            .collect();
        self.put_many_settled("id", &rows, true).await
    }

    async fn load_identity(&self, address: &str) -> Result<Option<[u8; 32]>> {
        self.value("id", address)
            .await?
            .map(|v| arr32(&v))
            .transpose()
    }

    async fn delete_identity(&self, address: &str) -> Result<()> {
        self.settle_pending().await?;
        self.del("id", address).await.map(|_| ())
    }

    async fn get_session(&self, address: &str) -> Result<Option<Bytes>> {
        Ok(self.value("se", address).await?.map(Bytes::from))
    }

    async fn put_session(&self, address: &str, session: &[u8]) -> Result<()> {
        self.put_signal("se", address, session).await
    }

    async fn put_sessions_batch(&self, sessions: &[(Arc<str>, Bytes)]) -> Result<()> {
        let rows: Vec<_> = sessions
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_vec(), 0, 0))
            .collect();
        self.put_many_settled("se", &rows, true).await
    }

    async fn delete_session(&self, address: &str) -> Result<()> {
        self.settle_pending().await?;
        self.del("se", address).await.map(|_| ())
    }

    async fn has_session(&self, address: &str) -> Result<bool> {
        Ok(self.get("se", address).await?.is_some())
    }

    async fn has_signal_state_for_user(&self, user: &str) -> Result<bool> {
        let s = &*self.session;
        let (at, colon) = (
            crate::store::like_prefix(&format!("{user}@")),
            crate::store::like_prefix(&format!("{user}:")),
        );
        let found: Option<i64> = on_pool!(&self.db, |p| sqlx::query_scalar(
            "SELECT n1 FROM wa_keys WHERE session_id = $1 AND ns IN ('se', 'id')
               AND (k LIKE $2 ESCAPE '\\' OR k LIKE $3 ESCAPE '\\') LIMIT 1"
        )
        .bind(s)
        .bind(&at)
        .bind(&colon)
        .fetch_optional(p)
        .await
        .map_err(db_err))?;
        Ok(found.is_some())
    }

    async fn store_prekey(&self, id: u32, record: &[u8], uploaded: bool) -> Result<()> {
        self.put("pk", &prekey_key(id), record, id as i64, uploaded as i64)
            .await
    }

    async fn store_prekeys_batch(&self, keys: &[(u32, Bytes)], uploaded: bool) -> Result<()> {
        let rows: Vec<_> = keys
            .iter()
            .map(|(id, r)| (prekey_key(*id), r.to_vec(), *id as i64, uploaded as i64))
            .collect();
        self.put_many("pk", &rows).await
    }

    async fn load_prekey(&self, id: u32) -> Result<Option<Bytes>> {
        Ok(self.value("pk", &prekey_key(id)).await?.map(Bytes::from))
    }

    async fn load_prekeys_batch(&self, ids: &[u32]) -> Result<Vec<(u32, Bytes)>> {
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(r) = self.load_prekey(id).await? {
                out.push((id, r));
            }
        }
        Ok(out)
    }

    async fn mark_prekeys_uploaded(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let s = &*self.session;
        // UPDATE only: a key consumed since the upload snapshot stays deleted.
        in_tx!(self, |tx| {
            for id in ids {
                sqlx::query(
                    "UPDATE wa_keys SET n2 = 1 WHERE session_id = $1 AND ns = 'pk' AND k = $2",
                )
                .bind(s)
                .bind(prekey_key(*id))
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
        });
        Ok(())
    }

    async fn remove_prekey(&self, id: u32) -> Result<()> {
        self.settle_pending().await?;
        self.del("pk", &prekey_key(id)).await.map(|_| ())
    }

    async fn get_max_prekey_id(&self) -> Result<u32> {
        let s = &*self.session;
        let max: Option<i64> = on_pool!(&self.db, |p| sqlx::query_scalar(
            "SELECT MAX(n1) FROM wa_keys WHERE session_id = $1 AND ns = 'pk'"
        )
        .bind(s)
        .fetch_one(p)
        .await
        .map_err(db_err))?;
        Ok(max.unwrap_or(0) as u32)
    }

    async fn store_signed_prekey(&self, id: u32, record: &[u8]) -> Result<()> {
        self.put("spk", &prekey_key(id), record, id as i64, 0).await
    }

    async fn load_signed_prekey(&self, id: u32) -> Result<Option<Vec<u8>>> {
        self.value("spk", &prekey_key(id)).await
    }

    async fn load_all_signed_prekeys(&self) -> Result<Vec<(u32, Vec<u8>)>> {
        Ok(self
            .scan("spk")
            .await?
            .into_iter()
            .map(|(_, v, id, _)| (id as u32, v))
            .collect())
    }

    async fn remove_signed_prekey(&self, id: u32) -> Result<()> {
        self.del("spk", &prekey_key(id)).await.map(|_| ())
    }

    async fn put_sender_key(&self, address: &str, record: &[u8]) -> Result<()> {
        self.put_signal("sk", address, record).await
    }

    async fn put_sender_keys_batch(&self, sender_keys: &[(Arc<str>, Bytes)]) -> Result<()> {
        let rows: Vec<_> = sender_keys
            .iter()
            .map(|(a, r)| (a.to_string(), r.to_vec(), 0, 0))
            .collect();
        self.put_many_settled("sk", &rows, true).await
    }

    async fn get_sender_key(&self, address: &str) -> Result<Option<Vec<u8>>> {
        self.value("sk", address).await
    }

    async fn delete_sender_key(&self, address: &str) -> Result<()> {
        self.settle_pending().await?;
        self.del("sk", address).await.map(|_| ())
    }
}

#[async_trait]
impl AppSyncStore for SessionKeyStore {
    async fn get_sync_key(&self, key_id: &[u8]) -> Result<Option<AppStateSyncKey>> {
        self.value("sync", &hex::encode(key_id))
            .await?
            .map(|v| de(&v))
            .transpose()
    }

    async fn set_sync_key(&self, key_id: &[u8], key: AppStateSyncKey) -> Result<()> {
        let v = ser(&key)?;
        let rows = [(hex::encode(key_id), v, 0, 0)];
        self.put_many("sync", &rows).await?;
        self.put("meta", "latest_sync_key", key_id, 0, 0).await
    }

    async fn get_version(&self, name: &str) -> Result<HashState> {
        match self.value("ver", name).await? {
            Some(v) => de(&v),
            None => Ok(HashState::default()),
        }
    }

    async fn set_version(&self, name: &str, state: HashState) -> Result<()> {
        self.put("ver", name, &ser(&state)?, 0, 0).await
    }

    async fn put_mutation_macs(
        &self,
        name: &str,
        _version: u64,
        mutations: &[AppStateMutationMAC],
    ) -> Result<()> {
        let rows: Vec<_> = mutations
            .iter()
            .map(|m| (hex::encode(&m.index_mac), m.value_mac.clone(), 0, 0))
            .collect();
        self.put_many(&format!("mac:{name}"), &rows).await
    }

    async fn get_mutation_mac(&self, name: &str, index_mac: &[u8]) -> Result<Option<Vec<u8>>> {
        self.value(&format!("mac:{name}"), &hex::encode(index_mac))
            .await
    }

    async fn delete_mutation_macs(&self, name: &str, index_macs: &[Vec<u8>]) -> Result<()> {
        let keys: Vec<String> = index_macs.iter().map(hex::encode).collect();
        self.del_many(&format!("mac:{name}"), &keys).await
    }

    async fn clear_mutation_macs(&self, name: &str) -> Result<()> {
        self.del_ns(&format!("mac:{name}")).await
    }

    async fn get_latest_sync_key_id(&self) -> Result<Option<Vec<u8>>> {
        self.value("meta", "latest_sync_key").await
    }
}

fn tc_numbers(e: &TcTokenEntry) -> (i64, i64) {
    // n1: the received token's time while there is a token; n2: when we last sent ours.
    let n1 = if e.token.is_empty() {
        i64::MIN
    } else {
        e.token_timestamp
    };
    (n1, e.sender_timestamp.unwrap_or(i64::MIN))
}

#[async_trait]
impl ProtocolStore for SessionKeyStore {
    async fn get_sender_key_devices(&self, group_jid: &str) -> Result<Vec<(String, bool)>> {
        Ok(self
            .scan(&format!("skd:{group_jid}"))
            .await?
            .into_iter()
            .map(|(k, _, has, _)| (k, has != 0))
            .collect())
    }

    async fn set_sender_key_status(&self, group_jid: &str, entries: &[(&str, bool)]) -> Result<()> {
        let rows: Vec<_> = entries
            .iter()
            .map(|(d, has)| (d.to_string(), Vec::new(), *has as i64, 0))
            .collect();
        self.put_many(&format!("skd:{group_jid}"), &rows).await
    }

    async fn clear_sender_key_devices(&self, group_jid: &str) -> Result<()> {
        self.del_ns(&format!("skd:{group_jid}")).await
    }

    async fn delete_sender_key_device_rows(&self, device_jids: &[&str]) -> Result<()> {
        if device_jids.is_empty() {
            return Ok(());
        }
        let s = &*self.session;
        in_tx!(self, |tx| {
            for d in device_jids {
                sqlx::query(
                    "DELETE FROM wa_keys WHERE session_id = $1 AND ns LIKE 'skd:%' AND k = $2",
                )
                .bind(s)
                .bind(*d)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
        });
        Ok(())
    }

    async fn clear_all_sender_key_devices(&self) -> Result<()> {
        let s = &*self.session;
        on_pool_w!(self, |p| sqlx::query(
            "DELETE FROM wa_keys WHERE session_id = $1 AND ns LIKE 'skd:%'"
        )
        .bind(s)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err))?;
        Ok(())
    }

    async fn get_lid_mapping(&self, lid: &str) -> Result<Option<LidPnMappingEntry>> {
        self.value("lid", lid).await?.map(|v| de(&v)).transpose()
    }

    async fn get_pn_mapping(&self, phone: &str) -> Result<Option<LidPnMappingEntry>> {
        match self.value("pn", phone).await? {
            Some(lid) => {
                let lid = String::from_utf8_lossy(&lid).into_owned();
                self.get_lid_mapping(&lid).await
            }
            None => Ok(None),
        }
    }

    async fn put_lid_mapping(&self, entry: &LidPnMappingEntry) -> Result<()> {
        self.put_lid_mappings(std::slice::from_ref(entry)).await
    }

    async fn put_lid_mappings(&self, entries: &[LidPnMappingEntry]) -> Result<()> {
        let s = &*self.session;
        let mut encoded = Vec::with_capacity(entries.len());
        for e in entries {
            encoded.push((e, ser(e)?));
        }
        in_tx!(self, |tx| {
            for (e, v) in &encoded {
                // A LID that moves to another number leaves no reverse entry for the old one.
                let old: Option<Vec<u8>> = sqlx::query_scalar(
                    "SELECT v FROM wa_keys WHERE session_id = $1 AND ns = 'lid' AND k = $2",
                )
                .bind(s)
                .bind(&e.lid)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                if let Some(old) = old {
                    let old: LidPnMappingEntry = de(&old)?;
                    if old.phone_number != e.phone_number {
                        sqlx::query(
                            "DELETE FROM wa_keys WHERE session_id = $1 AND ns = 'pn' AND k = $2",
                        )
                        .bind(s)
                        .bind(&old.phone_number)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    }
                }
                for (ns, k, v) in [
                    ("pn", &e.phone_number, e.lid.as_bytes().to_vec()),
                    ("lid", &e.lid, v.clone()),
                ] {
                    sqlx::query(UPSERT)
                        .bind(s)
                        .bind(ns)
                        .bind(k)
                        .bind(v)
                        .bind(0_i64)
                        .bind(0_i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                }
            }
        });
        Ok(())
    }

    async fn get_all_lid_mappings(&self) -> Result<Vec<LidPnMappingEntry>> {
        self.scan("lid")
            .await?
            .into_iter()
            .map(|(_, v, _, _)| de(&v))
            .collect()
    }

    async fn save_base_key(&self, address: &str, message_id: &str, base_key: &[u8]) -> Result<()> {
        self.settle_pending().await?;
        self.put("bk", &key(&[address, message_id]), base_key, 0, 0)
            .await
    }

    async fn has_same_base_key(
        &self,
        address: &str,
        message_id: &str,
        current_base_key: &[u8],
    ) -> Result<bool> {
        Ok(self
            .value("bk", &key(&[address, message_id]))
            .await?
            .is_some_and(|v| v == current_base_key))
    }

    async fn delete_base_key(&self, address: &str, message_id: &str) -> Result<()> {
        self.del("bk", &key(&[address, message_id]))
            .await
            .map(|_| ())
    }

    async fn update_device_list(&self, record: DeviceListRecord) -> Result<()> {
        self.put("dev", &record.user.clone(), &ser(&record)?, 0, 0)
            .await
    }

    async fn update_device_lists(&self, records: Vec<DeviceListRecord>) -> Result<()> {
        let mut rows = Vec::with_capacity(records.len());
        for r in &records {
            rows.push((r.user.clone(), ser(r)?, 0, 0));
        }
        self.put_many("dev", &rows).await
    }

    async fn get_devices(&self, user: &str) -> Result<Option<DeviceListRecord>> {
        self.value("dev", user).await?.map(|v| de(&v)).transpose()
    }

    async fn delete_devices(&self, user: &str) -> Result<()> {
        self.del("dev", user).await.map(|_| ())
    }

    async fn get_group_metadata(&self, group_jid: &str) -> Result<Option<Vec<u8>>> {
        self.value("gm", group_jid).await
    }

    async fn put_group_metadata(&self, group_jid: &str, blob: &[u8]) -> Result<()> {
        self.put("gm", group_jid, blob, 0, 0).await
    }

    async fn delete_group_metadata(&self, group_jid: &str) -> Result<()> {
        self.del("gm", group_jid).await.map(|_| ())
    }

    async fn get_tc_token(&self, jid: &str) -> Result<Option<TcTokenEntry>> {
        self.value("tc", jid).await?.map(|v| de(&v)).transpose()
    }

    async fn put_tc_token(&self, jid: &str, entry: &TcTokenEntry) -> Result<()> {
        let (n1, n2) = tc_numbers(entry);
        self.put("tc", jid, &ser(entry)?, n1, n2).await
    }

    async fn delete_tc_token(&self, jid: &str) -> Result<()> {
        self.del("tc", jid).await.map(|_| ())
    }

    async fn get_all_tc_token_jids(&self) -> Result<Vec<String>> {
        Ok(self.scan("tc").await?.into_iter().map(|r| r.0).collect())
    }

    async fn delete_expired_tc_tokens(&self, token_cutoff: i64, sender_cutoff: i64) -> Result<u32> {
        // A row goes only when both the received token and our sending are stale.
        self.sweep("tc", token_cutoff, Some(sender_cutoff)).await
    }

    async fn touch_tc_token_sender_timestamp(
        &self,
        jid: &str,
        sender_timestamp: i64,
    ) -> Result<()> {
        self.update_tc(jid, |old| match old {
            Some(mut e) => {
                e.sender_timestamp = Some(
                    e.sender_timestamp
                        .map_or(sender_timestamp, |x| x.max(sender_timestamp)),
                );
                e
            }
            None => TcTokenEntry {
                token: Vec::new(),
                token_timestamp: sender_timestamp,
                sender_timestamp: Some(sender_timestamp),
            },
        })
        .await
    }

    async fn store_received_tc_token(
        &self,
        jid: &str,
        token: &[u8],
        token_timestamp: i64,
    ) -> Result<()> {
        self.update_tc(jid, |old| match old {
            // Newer wins: a stale write never replaces a fresher token.
            Some(mut e) => {
                if e.token.is_empty() || token_timestamp >= e.token_timestamp {
                    e.token = token.to_vec();
                    e.token_timestamp = token_timestamp;
                }
                e
            }
            None => TcTokenEntry {
                token: token.to_vec(),
                token_timestamp,
                sender_timestamp: None,
            },
        })
        .await
    }

    async fn store_sent_message(
        &self,
        chat_jid: &str,
        message_id: &str,
        payload: &[u8],
    ) -> Result<()> {
        self.put(
            "sent",
            &key(&[chat_jid, message_id]),
            payload,
            now_secs(),
            0,
        )
        .await
    }

    async fn take_sent_message(&self, chat_jid: &str, message_id: &str) -> Result<Option<Vec<u8>>> {
        // One statement: of concurrent takers exactly one gets the row.
        let s = &*self.session;
        let k = key(&[chat_jid, message_id]);
        on_pool_w!(self, |p| sqlx::query_scalar(
            "DELETE FROM wa_keys WHERE session_id = $1 AND ns = 'sent' AND k = $2 RETURNING v"
        )
        .bind(s)
        .bind(&k)
        .fetch_optional(p)
        .await
        .map_err(db_err))
    }

    async fn delete_expired_sent_messages(&self, cutoff_timestamp: i64) -> Result<u32> {
        self.sweep("sent", cutoff_timestamp, None).await
    }

    // The pending-inbound buffer is held in memory and written by `settle_pending` before
    // the next Signal-state write; a row deleted before that never reaches the database.
    async fn store_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
        message: &[u8],
    ) -> Result<()> {
        let k = key(&[chat, sender, id]);
        let mut p = self.pending.lock().await;
        p.done.remove(&k);
        p.held.insert(k, (message.to_vec(), now_secs()));
        Ok(())
    }

    async fn get_pending_inbound(
        &self,
        chat: &str,
        sender: &str,
        id: &str,
    ) -> Result<Option<Vec<u8>>> {
        let k = key(&[chat, sender, id]);
        {
            let p = self.pending.lock().await;
            if let Some((v, _)) = p.held.get(&k) {
                return Ok(Some(v.clone()));
            }
            if p.done.contains(&k) {
                return Ok(None);
            }
        }
        self.value("pin", &k).await
    }

    async fn delete_pending_inbound(&self, chat: &str, sender: &str, id: &str) -> Result<()> {
        self.delete_pending_inbound_batch(&[PendingInboundKey { chat, sender, id }])
            .await
    }

    async fn delete_expired_pending_inbound(&self, cutoff_timestamp: i64) -> Result<u32> {
        let mut p = self.pending.lock().await;
        let before = p.held.len();
        p.held.retain(|_, (_, at)| *at >= cutoff_timestamp);
        let in_memory = (before - p.held.len()) as u32;
        Ok(in_memory + self.sweep("pin", cutoff_timestamp, None).await?)
    }

    async fn store_pending_inbound_batch(&self, rows: &[PendingInboundRow<'_>]) -> Result<()> {
        let now = now_secs();
        let mut p = self.pending.lock().await;
        for r in rows {
            let k = key(&[r.chat, r.sender, r.id]);
            p.done.remove(&k);
            p.held.insert(k, (r.message.to_vec(), now));
        }
        Ok(())
    }

    async fn delete_pending_inbound_batch(&self, keys: &[PendingInboundKey<'_>]) -> Result<()> {
        let mut p = self.pending.lock().await;
        for k in keys {
            let k = key(&[k.chat, k.sender, k.id]);
            if p.held.remove(&k).is_none() {
                p.done.insert(k);
            }
        }
        if p.done.len() > MAX_DONE {
            let done: Vec<String> = p.done.drain().collect();
            self.del_many("pin", &done).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl MsgSecretStore for SessionKeyStore {
    async fn put_msg_secrets(&self, entries: Vec<MsgSecretEntry>) -> Result<usize> {
        let stored = entries.len();
        if entries.is_empty() {
            return Ok(0);
        }
        let s = &*self.session;
        in_tx!(self, |tx| {
            for e in &entries {
                let k = key(&[&e.chat, &e.sender, &e.msg_id]);
                let old: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT n1, n2 FROM wa_keys WHERE session_id = $1 AND ns = 'ms' AND k = $2",
                )
                .bind(s)
                .bind(&k)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                // n1: expiry (0 = never), merged; n2: the parent message's time, merged.
                let (exp, ts) = match old {
                    Some((oe, ot)) => (
                        merge_msg_secret_expiry(oe, e.expires_at),
                        merge_msg_secret_message_ts(ot, e.message_ts),
                    ),
                    None => (e.expires_at, e.message_ts),
                };
                sqlx::query(UPSERT)
                    .bind(s)
                    .bind("ms")
                    .bind(&k)
                    .bind(e.secret.to_vec())
                    .bind(exp)
                    .bind(ts)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        });
        Ok(stored)
    }

    async fn get_msg_secret(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<Vec<u8>>> {
        self.value("ms", &key(&[chat, sender, msg_id])).await
    }

    async fn get_msg_secret_with_ts(
        &self,
        chat: &str,
        sender: &str,
        msg_id: &str,
    ) -> Result<Option<(Vec<u8>, i64)>> {
        Ok(self
            .get("ms", &key(&[chat, sender, msg_id]))
            .await?
            .map(|(_, v, _, ts)| (v, ts)))
    }

    async fn delete_expired_msg_secrets(&self, cutoff_timestamp: i64) -> Result<u32> {
        // Rows with no deadline (0) stay; others go once the deadline is not after the cutoff.
        let s = &*self.session;
        let n = on_pool_w!(self, |p| sqlx::query(
            "DELETE FROM wa_keys WHERE session_id = $1 AND ns = 'ms' AND n1 <> 0 AND n1 <= $2"
        )
        .bind(s)
        .bind(cutoff_timestamp)
        .execute(p)
        .await
        .map(|r| r.rows_affected())
        .map_err(db_err))?;
        Ok(n as u32)
    }
}

#[async_trait]
impl DeviceStore for SessionKeyStore {
    async fn save(&self, device: &Device) -> Result<()> {
        self.put("device", "", &ser(device)?, 0, 0).await
    }

    async fn load(&self) -> Result<Option<Device>> {
        self.value("device", "").await?.map(|v| de(&v)).transpose()
    }

    async fn exists(&self) -> Result<bool> {
        Ok(self.get("device", "").await?.is_some())
    }

    async fn create(&self) -> Result<i32> {
        let s = &*self.session;
        let fresh = ser(&Device::new())?;
        let id = in_tx!(self, |tx| {
            let next: Option<i64> = sqlx::query_scalar(
                "SELECT n1 FROM wa_keys WHERE session_id = $1 AND ns = 'meta' AND k = 'next_device_id'",
            )
            .bind(s)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let id = next.unwrap_or(1);
            sqlx::query(UPSERT)
                .bind(s)
                .bind("meta")
                .bind("next_device_id")
                .bind(Vec::<u8>::new())
                .bind(id + 1)
                .bind(0_i64)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            // A created device exists at once.
            sqlx::query(
                "INSERT INTO wa_keys (session_id, ns, k, v, n1, n2) VALUES ($1, 'device', '', $2, 0, 0)
                 ON CONFLICT (session_id, ns, k) DO NOTHING",
            )
            .bind(s)
            .bind(&fresh)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            id
        });
        Ok(id as i32)
    }
}

impl super::Store {
    /// The engine's key store of one session.
    pub fn key_store(&self, session: &str) -> SessionKeyStore {
        let db = match &self.writer {
            Some(w) => Db::Sqlite(w.clone()),
            None => self.db().clone(),
        };
        let mut ks = SessionKeyStore::new(db, session);
        ks.gate = self.write_gate.clone();
        ks
    }
}

/// Re-exported for tests that compare against the engine's own in-memory backend.
pub use wacore::store::InMemoryBackend;
