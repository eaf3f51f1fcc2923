//! API keys: only the SHA-256 of the secret is stored.

use super::Pool;
use crate::domain::now_ms;
use crate::store::outbox::{kind, Outbox};
use crate::store::records::{ApiKeyRecord, NewApiKey};
use crate::store::wire::ApiKey;

const COLS: &str = "id, org_id, name, key_hash, key_prefix, capabilities, created_by, created_at, expires_at, revoked_at, last_used_at";

pub async fn insert(pool: &Pool, k: &NewApiKey) -> sqlx::Result<ApiKeyRecord> {
    let mut tx = super::begin(pool).await?;
    let row = sqlx::query_as::<_, ApiKeyRecord>(&format!(
        "INSERT INTO api_keys (id, org_id, name, key_hash, key_prefix, capabilities, created_by, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLS}"
    ))
    .bind(&k.id)
    .bind(&k.org_id)
    .bind(&k.name)
    .bind(&k.key_hash)
    .bind(&k.key_prefix)
    .bind(&k.capabilities)
    .bind(&k.created_by)
    .bind(now_ms())
    .bind(k.expires_at)
    .fetch_one(&mut *tx)
    .await?;
    let mut out = Outbox::new(&row.org_id);
    out.push(None, kind::API_KEY_CREATED, &ApiKey::from(row.clone()));
    super::events::flush(&mut tx, &out).await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn find_by_hash(pool: &Pool, hash: &str) -> sqlx::Result<Option<ApiKeyRecord>> {
    sqlx::query_as::<_, ApiKeyRecord>(&format!("SELECT {COLS} FROM api_keys WHERE key_hash = $1"))
        .bind(hash)
        .fetch_optional(pool)
        .await
}

pub async fn list(pool: &Pool, org: &str) -> sqlx::Result<Vec<ApiKeyRecord>> {
    sqlx::query_as::<_, ApiKeyRecord>(&format!(
        "SELECT {COLS} FROM api_keys WHERE org_id = $1 ORDER BY id"
    ))
    .bind(org)
    .fetch_all(pool)
    .await
}

pub async fn count(pool: &Pool) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
        .fetch_one(pool)
        .await
}

/// Revokes a key (with `org`, only that org's). Returns the key when it exists; an event is
/// written only when this call revoked it.
pub async fn revoke(
    pool: &Pool,
    org: Option<&str>,
    id: &str,
) -> sqlx::Result<Option<ApiKeyRecord>> {
    let now = now_ms();
    let mut tx = super::begin(pool).await?;
    let revoked = sqlx::query_as::<_, ApiKeyRecord>(&format!(
        "UPDATE api_keys SET revoked_at = $3
         WHERE id = $1 AND ($2 IS NULL OR org_id = $2) AND revoked_at IS NULL RETURNING {COLS}"
    ))
    .bind(id)
    .bind(org)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let row = match revoked {
        Some(r) => {
            let mut out = Outbox::new(&r.org_id);
            out.push(None, kind::API_KEY_REVOKED, &ApiKey::from(r.clone()));
            super::events::flush(&mut tx, &out).await?;
            Some(r)
        }
        None => {
            sqlx::query_as::<_, ApiKeyRecord>(&format!(
                "SELECT {COLS} FROM api_keys WHERE id = $1 AND ($2 IS NULL OR org_id = $2)"
            ))
            .bind(id)
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    tx.commit().await?;
    Ok(row)
}

pub async fn touch(pool: &Pool, id: &str, at: i64) -> sqlx::Result<()> {
    sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn meta_get(pool: &Pool, key: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_optional(pool)
        .await
}

pub async fn meta_claim(pool: &Pool, key: &str, value: &str) -> sqlx::Result<bool> {
    let r =
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(pool)
            .await?;
    Ok(r.rows_affected() == 1)
}
